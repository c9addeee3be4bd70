"""
The planning evaluation: for the models a study trained on a Two Rooms task, model-predictive control with the
:class:`~sb3_jepa.planning.LatentPlanner` on a fixed, seeded set of start/goal pairs (half in the same room, half
in opposite rooms), against two references on the same pairs: random actions and the trained policy acting
greedily. Also the world model's open-loop prediction error against the horizon.

Each model's episodes go to ``<out>/episodes/<config>/seed<k>.csv`` (written last and atomically: a model with its
file is finished, a rerun skips it), the random reference to ``<out>/episodes/random.csv``, the prediction errors
to ``<out>/prediction/<config>/seed<k>.csv``; ``settings.json`` holds the evaluation's settings, and a rerun with
other settings into the same ``--out`` is refused (results of different settings are never mixed).
"""

import csv
import json
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Episode columns
EPISODE_FIELDS = (
    "config",
    "seed",
    "controller",
    "pair",
    "cross_room",
    "success",
    "final_distance",
    "start_distance",
    "steps",
    "planning_time_s",
)
#: The controllers: the planner, the trained policy acting greedily, random actions (one run, not per model)
CONTROLLERS = ("planner", "policy", "random")


@dataclass(frozen=True)
class PlanningSettings:
    """
    What the evaluation does (saved to ``settings.json``).

    :param env_id: a Two Rooms id (``TwoRooms-v0`` or ``TwoRoomsDiscrete-v0``)
    :param n_pairs: start/goal pairs (the first half in the same room, the second across the wall)
    :param pair_seed: seed of the pairs
    :param method: the planner's method
    :param horizon: the planner's horizon
    :param replan_every: actions played from each plan
    :param cost: the planner's cost (``sum`` or ``final``)
    :param options: the planner's method options
    :param normalize: measure latent distances in units of the embedding's per-dimension std over the pairs' start
        and goal observations
    :param prediction_horizon: steps of the open-loop prediction error
    :param max_steps: the episode length (the environment's time limit when None)
    """

    env_id: str = "TwoRoomsDiscrete-v0"
    n_pairs: int = 100
    pair_seed: int = 0
    method: str = "cem"
    horizon: int = 12
    replan_every: int = 4
    cost: str = "sum"
    options: dict[str, Any] = field(default_factory=lambda: dict(n_samples=128, n_elites=16, n_iterations=5))
    normalize: bool = False
    prediction_horizon: int = 16
    max_steps: int | None = None


@dataclass(frozen=True)
class ModelTask:
    """
    One trained model to evaluate.

    :param config: its study configuration
    :param seed: its training seed
    :param path: its saved zip
    :param algo: its algorithm (``a2c_jepa`` or ``ppo_jepa``)
    :param settings: the evaluation's settings
    """

    config: str
    seed: int
    path: str
    algo: str
    settings: PlanningSettings

    def key(self) -> str:
        return f"{self.config}/seed{self.seed}"


def make_pairs(env_id: str, n_pairs: int, seed: int) -> list[dict[str, Any]]:
    """
    The fixed start/goal pairs: the first ``n_pairs // 2`` in the same room, the rest in opposite rooms, each drawn
    by the environment's own reset from its own seed (``seed * 1_000_003 + index``).

    :return: one dict per pair: ``start``, ``goal`` (``(x, y)`` pixels) and ``cross_room``
    """
    import gymnasium as gym

    import sb3_jepa  # noqa: F401  (registers the environments)

    env = gym.make(env_id).unwrapped
    pairs = []
    for index in range(n_pairs):
        layout = "same" if index < n_pairs // 2 else "cross"
        _, info = env.reset(seed=seed * 1_000_003 + index, options=dict(layout=layout))
        state = info["state"]
        pairs.append(dict(start=state[:2].tolist(), goal=state[2:].tolist(), cross_room=bool(info["cross_room"])))
    env.close()
    return pairs


def _episode(env: Any, pair: dict[str, Any], act: Any, max_steps: int) -> dict[str, Any]:
    """
    Run one episode from a pair with ``act(obs, goal_obs, first)`` choosing the actions; time spent in ``act``.

    :return: ``success``, ``final_distance``, ``start_distance``, ``steps``, ``planning_time_s``
    """
    obs, info = env.reset(options=dict(start=pair["start"], goal=pair["goal"]))
    goal_obs = env.unwrapped.goal_observation()
    start_distance, thinking, steps = info["distance"], 0.0, 0
    for steps in range(1, max_steps + 1):
        began = time.perf_counter()
        action = act(obs, goal_obs, steps == 1)
        thinking += time.perf_counter() - began
        obs, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    return dict(
        success=bool(info["is_success"]),
        final_distance=float(info["distance"]),
        start_distance=float(start_distance),
        steps=steps,
        planning_time_s=thinking,
    )


def _env_and_steps(settings: PlanningSettings) -> tuple[Any, int]:
    import gymnasium as gym

    import sb3_jepa  # noqa: F401

    env = gym.make(settings.env_id)
    limit = settings.max_steps or (env.spec.max_episode_steps if env.spec else None) or 200
    return env, int(limit)


def _write_rows(path: Path, rows: list[dict[str, Any]], fields: tuple[str, ...] | list[str]) -> None:
    """Write a CSV atomically (its presence marks the work as done)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, path)


def episodes_path(out: Path, task: ModelTask) -> Path:
    return out / "episodes" / task.config / f"seed{task.seed}.csv"


def prediction_path(out: Path, task: ModelTask) -> Path:
    return out / "prediction" / task.config / f"seed{task.seed}.csv"


def evaluate_model(task: ModelTask, out: Path, progress: Any = None) -> int:
    """
    Every pair with the planner and with the greedy policy, and the open-loop prediction error (in a worker).

    :param task: the model
    :param out: the evaluation's output folder
    :param progress: a queue receiving ``(key, episodes done)``, or None
    :return: the number of episodes run
    """
    import torch as th

    from sb3_jepa.planning.planner import LatentPlanner
    from sb3_jepa.zoo import ALGORITHMS

    th.set_num_threads(1)
    settings = task.settings
    pairs = make_pairs(settings.env_id, settings.n_pairs, settings.pair_seed)
    algorithm: Any = ALGORITHMS[task.algo]
    model = algorithm.load(task.path, device="cpu")
    env, max_steps = _env_and_steps(settings)
    reference = None
    if settings.normalize:
        reference = np.stack([env.unwrapped.observation_at(np.array(p[key])) for p in pairs for key in ("start", "goal")])
    with warnings.catch_warnings():
        # rl_only's predictor never trained: the evaluation keeps it on purpose, as the floor
        warnings.filterwarnings("ignore", message=".*predictor W never learned.*")
        planner = LatentPlanner(
            model,
            horizon=settings.horizon,
            method=settings.method,
            seed=settings.pair_seed,
            cost=settings.cost,
            reference_obs=reference,
            replan_every=settings.replan_every,
            **settings.options,
        )

    def plan(obs: np.ndarray, goal_obs: np.ndarray, first: bool) -> Any:
        if first:
            planner.reset()
        return planner.predict(obs, goal_obs)[0]

    def greedy(obs: np.ndarray, goal_obs: np.ndarray, first: bool) -> Any:
        return model.predict(obs, deterministic=True)[0]

    rows = []
    for controller, act in (("planner", plan), ("policy", greedy)):
        for index, pair in enumerate(pairs):
            result = _episode(env, pair, act, max_steps)
            rows.append(
                dict(
                    config=task.config,
                    seed=task.seed,
                    controller=controller,
                    pair=index,
                    cross_room=pair["cross_room"],
                    **result,
                )
            )
            if progress is not None:
                progress.put((task.key(), 1))
    _write_rows(prediction_path(out, task), prediction_error(model, env, pairs, settings), PREDICTION_FIELDS)
    env.close()
    _write_rows(episodes_path(out, task), rows, EPISODE_FIELDS)
    return len(rows)


#: Prediction-error columns
PREDICTION_FIELDS = ("step", "relative_error", "n")


def prediction_error(model: Any, env: Any, pairs: list[dict[str, Any]], settings: PlanningSettings) -> list[dict[str, Any]]:
    """
    The world model's open-loop error against the horizon: from each pair's start, random actions (seeded by the
    pair, the same for every model) for ``prediction_horizon`` steps; W is rolled from ``E(o_0)`` along them, and
    at each step ``k`` the error is ``mean ||z_hat_k - E(o_k)||^2`` divided by the embeddings' total variance over
    all the visited observations (``mean ||E(o) - mean E(o)||^2``): 0 is perfect, 1 is as far as a typical
    embedding from the mean. The division keeps a collapsed (tiny) embedding scale from looking like a good model.

    :return: one row per step ``k = 1..prediction_horizon``: ``step``, ``relative_error``, ``n``
    """
    import torch as th

    policy = model.policy
    observations, actions = [], []
    for index, pair in enumerate(pairs):
        obs, _ = env.reset(options=dict(start=pair["start"], goal=pair["goal"]))
        env.action_space.seed(settings.pair_seed * 1_000_003 + index)
        episode_obs, episode_actions = [obs], []
        for _ in range(settings.prediction_horizon):
            action = env.action_space.sample()
            obs, *_ = env.step(action)
            episode_obs.append(obs)
            episode_actions.append(action)
        observations.append(np.stack(episode_obs))
        actions.append(np.stack(episode_actions))
    obs_array = np.stack(observations)  # (pairs, horizon + 1, H, W, C)
    action_array = np.stack(actions)  # (pairs, horizon, *action shape)
    n_pairs, steps = action_array.shape[:2]
    with th.no_grad():
        tensor, _ = policy.obs_to_tensor(obs_array.reshape(-1, *obs_array.shape[2:]))
        z = policy.jepa_encode(tensor).reshape(n_pairs, steps + 1, -1)
        variance = (z.flatten(0, 1) - z.flatten(0, 1).mean(dim=0)).pow(2).sum(dim=1).mean().clamp_min(1e-12)
        predicted = z[:, 0]
        rows = []
        for k in range(steps):
            step_actions = th.as_tensor(action_array[:, k], device=policy.device)
            features = policy.jepa_predictor.action_encoder.from_env_actions(step_actions)
            predicted = policy.jepa_predictor.next(predicted, features)
            error = (predicted - z[:, k + 1]).pow(2).sum(dim=1).mean() / variance
            rows.append(dict(step=k + 1, relative_error=float(error), n=n_pairs))
    return rows


def evaluate_random(settings: PlanningSettings, out: Path) -> None:
    """The random-action reference on the pairs (seeded by the pair)."""
    path = out / "episodes" / "random.csv"
    if path.exists():
        return
    pairs = make_pairs(settings.env_id, settings.n_pairs, settings.pair_seed)
    env, max_steps = _env_and_steps(settings)
    rows = []
    for index, pair in enumerate(pairs):
        env.action_space.seed(settings.pair_seed * 1_000_003 + index)
        result = _episode(env, pair, lambda obs, goal, first: env.action_space.sample(), max_steps)
        rows.append(dict(config="random", seed=0, controller="random", pair=index, cross_room=pair["cross_room"], **result))
    env.close()
    _write_rows(path, rows, EPISODE_FIELDS)


def find_models(
    study: Path, env_id: str, configs: list[str] | None, seeds: list[int] | None
) -> list[tuple[str, int, Path, str]]:
    """
    :param study: a study's output folder (``python -m sb3_jepa.study run --out``)
    :param env_id: the environment whose runs to take
    :param configs: the configurations (None: every one found)
    :param seeds: the seeds (None: every one found)
    :return: ``(config, seed, model path, algo)`` of every finished run
    """
    root = study / env_id.replace("/", "-")
    found = []
    for summary in sorted(root.glob("*/seed*/summary.json")):
        config, seed = summary.parent.parent.name, int(summary.parent.name.removeprefix("seed"))
        if (configs is None or config in configs) and (seeds is None or seed in seeds):
            algo = json.loads(summary.read_text())["algo"]
            found.append((config, seed, summary.parent / "zoo" / "model.zip", algo))
    if configs is not None:
        missing = sorted(set(configs) - {found_config for found_config, *_ in found})
        if missing:
            raise ValueError(f"configs {missing} have no finished run under {root}")
    if not found:
        raise FileNotFoundError(f"No finished study run under {root} (runs write <config>/seed<N>/summary.json)")
    return found


def check_settings(settings: PlanningSettings, out: Path) -> None:
    """Save the settings, or refuse to go on when ``out`` holds results of other settings."""
    path = out / "settings.json"
    current = json.loads(json.dumps(asdict(settings)))
    if path.exists():
        saved = json.loads(path.read_text())
        if saved != current:
            changed = sorted(key for key in set(saved) | set(current) if saved.get(key) != current.get(key))
            raise ValueError(
                f"{out} holds results of other settings ({', '.join(changed)} differ): use another --out, or the "
                f"saved settings {saved}"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, indent=2))


def run_evaluation(
    settings: PlanningSettings,
    models: list[tuple[str, int, Path, str]],
    out: Path,
    workers: int,
    show_progress: bool = True,
) -> list[tuple[ModelTask, BaseException]]:
    """
    Evaluate the models not evaluated yet in ``out`` (and the random reference), with a progress bar over episodes.

    :return: the models that failed, with their error (they stay unfinished: a rerun tries them again)
    """
    from sb3_jepa.study.runner import progress_bar, run_on_process_pool

    check_settings(settings, out)
    evaluate_random(settings, out)
    tasks = [ModelTask(config, seed, str(path), algo, settings) for config, seed, path, algo in models]
    todo = [task for task in tasks if not episodes_path(out, task).exists()]
    failures: list[tuple[ModelTask, BaseException]] = []
    if not todo:
        return failures
    bar = progress_bar(2 * settings.n_pairs * len(todo), f"{len(todo)} models", unit="episode") if show_progress else None

    def on_progress(count: int) -> None:
        if bar is not None:
            bar.update(count)

    def on_result(task: ModelTask, result: Any, error: BaseException | None) -> None:
        if error is not None:
            failures.append((task, error))

    try:
        run_on_process_pool(evaluate_model, todo, out, workers, on_progress, on_result)
    finally:
        if bar is not None:
            bar.close()
    return failures
