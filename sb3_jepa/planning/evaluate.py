"""
The planning evaluation: for the models a study trained on a Two Rooms task, a set of controllers on a fixed,
seeded set of start/goal pairs (half in the same room, half in opposite rooms), every model on every pair:

- ``greedy``: the trained policy, deterministic (the distribution's mode);
- ``stochastic``: the trained policy, sampling its actions;
- ``planner``: model-predictive control with the :class:`~sb3_jepa.planning.LatentPlanner`, the latent distance to
  the goal alone (no prior, no value);
- ``planner_prior``: the same, with candidates sampled from the policy through ``W`` (``prior="policy"``, TD-MPC2);
- ``planner_prior_value``: the same, and the critic's value of the last predicted latent in the cost;
- ``planner_prior_return``: the same, with TD-MPC2's return estimate instead (the reward predictor's rewards along
  the plan and the discounted value of its last latent: ``value_estimate="return"``; models trained with
  ``jepa_reward_coef > 0``);
- ``random``: random actions (no model: one run, on the same pairs).

Also the world model's open-loop prediction error against the horizon, next to the "no change" baseline.

Every episode of a pair is seeded by the pair (:func:`episode_seed`): the planner's generator is reseeded, torch's
global generator (SB3's ``predict`` samples from it) too, so a pair's episode is the same whichever pairs ran
before it.

Each model's episodes go to ``<out>/episodes/<config>/seed<k>.csv`` (written last and atomically: a model with its
file is finished, a rerun skips it), the random reference to ``<out>/episodes/random.csv``, the prediction errors
to ``<out>/prediction/<config>/seed<k>.csv``; ``settings.json`` holds the evaluation's settings, and a rerun with
other settings into the same ``--out`` is refused (results of different settings are never mixed; a folder of an
older version, whose settings lack the newer keys, is refused too).
"""

import csv
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sb3_jepa.common.utils import check_finite_nonnegative, check_positive_int, write_atomically
from sb3_jepa.planning.planner import PRIORS

#: Episode columns (``ms_per_step``: the time the controller took per environment step, in milliseconds)
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
    "ms_per_step",
)
#: The controllers, in the order they run and are reported (see the module)
CONTROLLERS = (
    "greedy",
    "stochastic",
    "planner",
    "planner_prior",
    "planner_prior_value",
    "planner_prior_return",
    "random",
)
#: The controllers that plan with the latent planner
PLANNERS = ("planner", "planner_prior", "planner_prior_value", "planner_prior_return")
#: The planners that sample the policy prior
PRIOR_PLANNERS = ("planner_prior", "planner_prior_value", "planner_prior_return")
#: The planners with a value term, and its estimate (see :data:`~sb3_jepa.planning.planner.VALUE_ESTIMATES`)
VALUE_PLANNERS = {"planner_prior_value": "terminal", "planner_prior_return": "return"}
#: The controllers run once per model (``random`` needs no model: it runs once)
MODEL_CONTROLLERS = tuple(name for name in CONTROLLERS if name != "random")


def episode_seed(pair_seed: int, index: int) -> int:
    """
    :param pair_seed: the evaluation's pair seed
    :param index: the pair's index
    :return: the seed of everything random in that pair: its draw (:func:`make_pairs`), its random actions, the
        planner's and the policy's sampling
    """
    return pair_seed * 1_000_003 + index


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
    :param controllers: the controllers to run, some of :data:`CONTROLLERS` (kept in that order, once each)
    :param prior: the prior of the planners of :data:`PRIOR_PLANNERS`, one of the planner's
        :data:`~sb3_jepa.planning.planner.PRIORS`
    :param n_prior_samples: their prior candidates per search
    :param value_weight: the weight of the value term in the cost of the planners of :data:`VALUE_PLANNERS` (> 0;
        the distance's weight is 1)
    """

    env_id: str = "TwoRoomsDiscrete-v0"
    n_pairs: int = 100
    pair_seed: int = 0
    method: str = "cem"
    horizon: int = 12
    replan_every: int = 4
    cost: str = "sum"
    # Sized for the 20 ms per step of issue 17 on one core of these machines (about 14 ms, 17 with the prior)
    options: dict[str, Any] = field(default_factory=lambda: dict(n_samples=64, n_elites=8, n_iterations=4))
    normalize: bool = False
    prediction_horizon: int = 16
    max_steps: int | None = None
    controllers: tuple[str, ...] = CONTROLLERS
    prior: str = "policy"
    n_prior_samples: int = 24
    value_weight: float = 1.0

    def __post_init__(self) -> None:
        controllers = tuple(self.controllers)
        unknown = [name for name in controllers if name not in CONTROLLERS]
        if unknown or not controllers:
            raise ValueError(f"controllers must be a non-empty selection of {CONTROLLERS}, got {list(controllers)}")
        # One canonical order: the same selection in another order is the same settings (the guard compares them)
        object.__setattr__(self, "controllers", tuple(name for name in CONTROLLERS if name in controllers))
        if self.prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, got {self.prior!r}")
        check_positive_int("n_prior_samples", self.n_prior_samples)
        check_finite_nonnegative("value_weight", self.value_weight)
        valued = [name for name in VALUE_PLANNERS if name in self.controllers]
        if valued and not self.value_weight > 0:
            raise ValueError(
                f"value_weight must be > 0 for the controllers {valued} (at 0 they are planner_prior), got "
                f"{self.value_weight!r}"
            )
        prior_controllers = [name for name in PRIOR_PLANNERS if name in self.controllers]
        if self.method == "exhaustive" and prior_controllers:
            raise ValueError(
                f"the controllers {prior_controllers} sample a prior, which method 'exhaustive' cannot use (it scores "
                "every sequence): choose cem, mppi or grad, or leave them out of controllers"
            )

    def model_controllers(self) -> tuple[str, ...]:
        """:return: the selected controllers that run once per model (all but ``random``)"""
        return tuple(name for name in self.controllers if name in MODEL_CONTROLLERS)


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


@dataclass(frozen=True)
class Controller:
    """
    How one controller acts in an episode.

    :param name: one of :data:`CONTROLLERS`
    :param act: ``act(obs, goal_obs)``: the action to play
    :param start: called with the pair's seed (:func:`episode_seed`) before each episode: forgets the last episode
        and reseeds what the controller samples with
    """

    name: str
    act: Callable[[np.ndarray, np.ndarray], Any]
    start: Callable[[int], None]


def make_pairs(env_id: str, n_pairs: int, seed: int) -> list[dict[str, Any]]:
    """
    The fixed start/goal pairs: the first ``n_pairs // 2`` in the same room, the rest in opposite rooms, each drawn
    by the environment's own reset from its own seed (:func:`episode_seed`).

    :param env_id: a Two Rooms id
    :param n_pairs: the number of pairs
    :param seed: the pair seed
    :return: one dict per pair: ``start``, ``goal`` (``(x, y)`` pixels) and ``cross_room``
    """
    import gymnasium as gym

    import sb3_jepa  # noqa: F401  (registers the environments)
    from sb3_jepa.envs.two_rooms import STATE_GOAL, STATE_POSITION

    env = gym.make(env_id).unwrapped
    pairs = []
    for index in range(n_pairs):
        layout = "same" if index < n_pairs // 2 else "cross"
        _, info = env.reset(seed=episode_seed(seed, index), options=dict(layout=layout))
        state = info["state"]  # [x, y, goal_x, goal_y], then any distractor dots (not part of a pair)
        start, goal = state[STATE_POSITION].tolist(), state[STATE_GOAL].tolist()
        pairs.append(dict(start=start, goal=goal, cross_room=bool(info["cross_room"])))
    env.close()
    return pairs


def reference_observations(env: Any, pairs: list[dict[str, Any]]) -> np.ndarray:
    """
    The images ``--normalize`` measures the embedding's spread on: each pair's first observation and its goal
    observation, as the controllers see them (both with the episode's goal dot drawn).

    :param env: a Two Rooms environment (reset to each pair in turn)
    :param pairs: the pairs (:func:`make_pairs`)
    :return: shape ``(2 * len(pairs), *observation shape)``: start, goal, start, goal, ...
    """
    images = []
    for pair in pairs:
        obs, _ = env.reset(options=dict(start=pair["start"], goal=pair["goal"]))
        images += [obs, env.unwrapped.goal_observation()]
    return np.stack(images)


def _episode(env: Any, pair: dict[str, Any], act: Callable[[np.ndarray, np.ndarray], Any], max_steps: int) -> dict[str, Any]:
    """
    Run one episode from a pair with ``act(obs, goal_obs)`` choosing the actions; time spent in ``act``.

    :return: ``success``, ``final_distance``, ``start_distance``, ``steps``, ``planning_time_s``, ``ms_per_step``
    """
    obs, info = env.reset(options=dict(start=pair["start"], goal=pair["goal"]))
    goal_obs = env.unwrapped.goal_observation()
    start_distance, thinking, steps, done = info["distance"], 0.0, 0, False
    while steps < max_steps and not done:
        began = time.perf_counter()
        action = act(obs, goal_obs)
        thinking += time.perf_counter() - began
        obs, _, terminated, truncated, info = env.step(action)
        steps, done = steps + 1, terminated or truncated
    return dict(
        success=bool(info["is_success"]),
        final_distance=float(info["distance"]),
        start_distance=float(start_distance),
        steps=steps,
        planning_time_s=thinking,
        ms_per_step=1000 * thinking / steps,
    )


def play(
    controller: Controller,
    env: Any,
    pairs: list[dict[str, Any]],
    indices: list[int],
    max_steps: int,
    pair_seed: int,
    on_episode: Callable[[], None] | None = None,
) -> list[dict[str, Any]]:
    """
    One episode per pair with one controller, each started from the pair's seed.

    :param controller: the controller
    :param env: the environment
    :param pairs: the pairs (:func:`make_pairs`)
    :param indices: the indices of the pairs to play, in order
    :param max_steps: the episode length
    :param pair_seed: the evaluation's pair seed (see :func:`episode_seed`)
    :param on_episode: called after each episode, or None
    :return: one row per episode: ``controller``, ``pair``, ``cross_room`` and :func:`_episode`'s results
    """
    rows = []
    for index in indices:
        pair = pairs[index]
        controller.start(episode_seed(pair_seed, index))
        result = _episode(env, pair, controller.act, max_steps)
        rows.append(dict(controller=controller.name, pair=index, cross_room=pair["cross_room"], **result))
        if on_episode is not None:
            on_episode()
    return rows


def planner_keywords(settings: PlanningSettings, controller: str) -> dict[str, Any]:
    """
    :param settings: the evaluation's settings
    :param controller: one of :data:`PLANNERS`
    :return: the :class:`~sb3_jepa.planning.LatentPlanner` keywords of that controller (without the model, the
        seed and the reference observations)
    """
    if controller not in PLANNERS:
        raise ValueError(f"controller must be one of {PLANNERS}, got {controller!r}")
    keywords: dict[str, Any] = dict(
        horizon=settings.horizon,
        method=settings.method,
        cost=settings.cost,
        replan_every=settings.replan_every,
        prior=None,
        value_weight=0.0,
        **settings.options,
    )
    if controller in PRIOR_PLANNERS:
        keywords.update(prior=settings.prior, n_prior_samples=settings.n_prior_samples)
    if controller in VALUE_PLANNERS:
        keywords.update(value_weight=float(settings.value_weight), value_estimate=VALUE_PLANNERS[controller])
    return keywords


def make_planner(model: Any, settings: PlanningSettings, controller: str, reference: np.ndarray | None = None) -> Any:
    """
    :param model: a trained A2CJEPA/PPOJEPA
    :param settings: the evaluation's settings
    :param controller: one of :data:`PLANNERS`
    :param reference: the planner's ``reference_obs`` (``--normalize``), or None
    :return: the controller's :class:`~sb3_jepa.planning.LatentPlanner` (seeded again at each pair's start)
    """
    from sb3_jepa.planning.planner import LatentPlanner

    with warnings.catch_warnings():
        # rl_only's predictor never trained: the evaluation keeps it on purpose, as the floor
        warnings.filterwarnings("ignore", message=".*predictor W never learned.*")
        return LatentPlanner(model, seed=settings.pair_seed, reference_obs=reference, **planner_keywords(settings, controller))


def model_controllers(
    model: Any, settings: PlanningSettings, reference: np.ndarray | None = None, names: tuple[str, ...] | None = None
) -> list[Controller]:
    """
    :param model: a trained A2CJEPA/PPOJEPA
    :param settings: the evaluation's settings
    :param reference: the planners' ``reference_obs`` (``--normalize``), or None
    :param names: the controllers (None: the settings' model controllers)
    :return: the controllers, in the order of :data:`CONTROLLERS`
    """
    names = settings.model_controllers() if names is None else names
    unknown = [name for name in names if name not in MODEL_CONTROLLERS]
    if unknown:
        raise ValueError(f"names must be some of {MODEL_CONTROLLERS} (random needs no model), got {list(names)}")
    controllers = []
    for name in (name for name in MODEL_CONTROLLERS if name in names):
        if name in PLANNERS:
            controllers.append(_planner_controller(name, make_planner(model, settings, name, reference)))
        else:
            controllers.append(_policy_controller(name, model, deterministic=name == "greedy"))
    return controllers


def _planner_controller(name: str, planner: Any) -> Controller:
    """A planner's receding-horizon control, the plan forgotten and the generator reseeded at each pair"""
    import torch as th

    def start(seed: int) -> None:
        planner.reset(seed=seed)
        th.manual_seed(seed)  # the planner samples from its own generator; anything else from torch's, seeded too

    return Controller(name, lambda obs, goal_obs: planner.predict(obs, goal_obs)[0], start)


def _policy_controller(name: str, model: Any, deterministic: bool) -> Controller:
    """The trained policy's ``predict``, torch's generator reseeded at each pair"""
    import torch as th

    def start(seed: int) -> None:
        th.manual_seed(seed)  # SB3's predict samples from torch's global generator

    return Controller(name, lambda obs, goal_obs: model.predict(obs, deterministic=deterministic)[0], start)


def random_controller(env: Any) -> Controller:
    """
    :param env: the environment the episodes run in
    :return: random actions from ``env``'s action space, reseeded at each pair's start
    """

    def start(seed: int) -> None:
        env.action_space.seed(seed)

    return Controller("random", lambda obs, goal_obs: env.action_space.sample(), start)


def _env_and_steps(settings: PlanningSettings) -> tuple[Any, int]:
    import gymnasium as gym

    import sb3_jepa  # noqa: F401

    env = gym.make(settings.env_id)
    limit = settings.max_steps or (env.spec.max_episode_steps if env.spec else None) or 200
    return env, int(limit)


def _write_rows(path: Path, rows: list[dict[str, Any]], fields: tuple[str, ...] | list[str]) -> None:
    """Write a CSV atomically (its presence marks the work as done)."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(file: Any) -> None:
        writer = csv.DictWriter(file, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(rows)

    write_atomically(path, write)


def episodes_path(out: Path, task: ModelTask) -> Path:
    return out / "episodes" / task.config / f"seed{task.seed}.csv"


def prediction_path(out: Path, task: ModelTask) -> Path:
    return out / "prediction" / task.config / f"seed{task.seed}.csv"


def _load(task: ModelTask) -> Any:
    from sb3_jepa.zoo import ALGORITHMS

    algorithm: Any = ALGORITHMS[task.algo]
    return algorithm.load(task.path, device="cpu")


def evaluate_model(task: ModelTask, out: Path, progress: Any = None) -> int:
    """
    Every pair with each of the settings' model controllers, and the open-loop prediction error (in a worker).

    :param task: the model
    :param out: the evaluation's output folder
    :param progress: a queue receiving ``(key, episodes done)``, or None
    :return: the number of episodes run
    """
    import torch as th

    th.set_num_threads(1)
    settings = task.settings
    pairs = make_pairs(settings.env_id, settings.n_pairs, settings.pair_seed)
    model = _load(task)
    env, max_steps = _env_and_steps(settings)
    reference = reference_observations(env, pairs) if settings.normalize else None

    def on_episode() -> None:
        if progress is not None:
            progress.put((task.key(), 1))

    rows = []
    for controller in model_controllers(model, settings, reference):
        played = play(controller, env, pairs, list(range(len(pairs))), max_steps, settings.pair_seed, on_episode)
        rows += [dict(config=task.config, seed=task.seed, **row) for row in played]
    _write_rows(prediction_path(out, task), prediction_error(model, env, pairs, settings), PREDICTION_FIELDS)
    env.close()
    _write_rows(episodes_path(out, task), rows, EPISODE_FIELDS)
    return len(rows)


#: Prediction-error columns (``no_change_error``: the baseline that predicts ``z_k = z_0``)
PREDICTION_FIELDS = ("step", "relative_error", "no_change_error", "n")


def prediction_error(model: Any, env: Any, pairs: list[dict[str, Any]], settings: PlanningSettings) -> list[dict[str, Any]]:
    """
    The world model's open-loop error against the horizon: from each pair's start, random actions (seeded by the
    pair, the same for every model) for ``prediction_horizon`` steps; W is rolled from ``E(o_0)`` along them, and
    at each step ``k`` the error is ``mean ||z_hat_k - E(o_k)||^2`` divided by the embeddings' total variance over
    all the visited observations (``mean ||E(o) - mean E(o)||^2``): 0 is perfect, 1 is as far as a typical
    embedding from the mean. The division keeps a collapsed (tiny) embedding scale from looking like a good model.

    The baseline, over the same variance: "nothing moves", ``z_hat_k = E(o_0)``, whose error ``mean ||E(o_0) -
    E(o_k)||^2`` is how far the embedding actually moved. A ``W`` that does not beat it has learned no dynamics
    (an embedding that hardly moves makes both small; the ratio of the two is what tells).

    Embeddings are compared in the space ``W`` was trained to predict in, as the planner compares them (see
    :mod:`~sb3_jepa.planning.world_model`): for ``mse`` models with an online or stop-gradient target, ``E`` itself.

    :param model: a trained A2CJEPA/PPOJEPA
    :param env: a Two Rooms environment
    :param pairs: the pairs (:func:`make_pairs`)
    :param settings: the evaluation's settings (``prediction_horizon``, ``pair_seed``)
    :return: one row per step ``k = 1..prediction_horizon``: ``step``, ``relative_error``, ``no_change_error``, ``n``
    """
    import torch as th

    from sb3_jepa.planning.world_model import WorldModel

    policy = model.policy
    observations, actions = [], []
    for index, pair in enumerate(pairs):
        obs, _ = env.reset(options=dict(start=pair["start"], goal=pair["goal"]))
        env.action_space.seed(episode_seed(settings.pair_seed, index))
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
    # In the space W was trained to predict in (the target encoder's for ema, directions for cosine), as the planner
    world = WorldModel(policy, getattr(model, "jepa_loss", "mse"))
    with th.no_grad(), world.eval_mode():
        tensor, _ = policy.obs_to_tensor(obs_array.reshape(-1, *obs_array.shape[2:]))
        z = world.compared(world.target(tensor)).reshape(n_pairs, steps + 1, -1)
        variance = (z.flatten(0, 1) - z.flatten(0, 1).mean(dim=0)).pow(2).sum(dim=1).mean().clamp_min(1e-12)
        predicted = world.encode(tensor).reshape(n_pairs, steps + 1, -1)[:, 0]  # W's input: the online E(o_0)
        rows = []
        for k in range(steps):
            step_actions = th.as_tensor(action_array[:, k], device=policy.device)
            predicted = world.next(predicted, world.action_features(step_actions))
            error = (world.compared(predicted) - z[:, k + 1]).pow(2).sum(dim=1).mean() / variance
            no_change = (z[:, 0] - z[:, k + 1]).pow(2).sum(dim=1).mean() / variance
            rows.append(dict(step=k + 1, relative_error=float(error), no_change_error=float(no_change), n=n_pairs))
    return rows


def evaluate_random(settings: PlanningSettings, out: Path) -> None:
    """
    The random-action reference on the pairs (seeded by the pair), once for all models.

    :param settings: the evaluation's settings
    :param out: the evaluation's output folder
    """
    path = out / "episodes" / "random.csv"
    if path.exists():
        return
    pairs = make_pairs(settings.env_id, settings.n_pairs, settings.pair_seed)
    env, max_steps = _env_and_steps(settings)
    played = play(random_controller(env), env, pairs, list(range(len(pairs))), max_steps, settings.pair_seed)
    env.close()
    _write_rows(path, [dict(config="random", seed=0, **row) for row in played], EPISODE_FIELDS)


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
    from sb3_jepa.study.configs import config_folder

    root = study / env_id.replace("/", "-")
    # A configuration is known by its folder's name (a name too long for a folder: its shortened one, config_folder)
    configs = None if configs is None else [config_folder(config) for config in configs]
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
    # Refused here, before any episode: SB3's load would name "model.zip.zip", and only once the evaluation started
    without_model = [f"{config}/seed{seed}" for config, seed, path, _ in found if not path.is_file()]
    if without_model:
        raise FileNotFoundError(
            f"runs without a saved model (zoo/model.zip) under {root}: {', '.join(without_model)}; "
            "pass --configs and --seeds that leave them out"
        )
    return found


def check_settings(settings: PlanningSettings, out: Path, write: bool = True) -> None:
    """
    Save the settings, or refuse to go on when ``out`` holds results of other settings.

    :param settings: the evaluation's settings
    :param out: the evaluation's output folder
    :param write: save the settings when ``out`` has none yet (False: only refuse other settings)
    """
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
    if not write:
        return
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, indent=2))


def check_planners(task: ModelTask) -> None:
    """
    Build the model's planners once, so that a model they refuse (a critic that does not read the actor's
    embedding for ``value_weight > 0``, an action distribution the prior cannot sample) fails before any work.

    :param task: the model
    :raise ValueError: naming the model and the planner's reason
    """
    planners = [name for name in task.settings.model_controllers() if name in PLANNERS]
    if not planners:
        return
    model = _load(task)
    for name in planners:
        try:
            make_planner(model, task.settings, name)
        except ValueError as refused:
            raise ValueError(
                f"{task.key()} ({task.path}) cannot run the controller {name}: {refused} (or leave {name} out of "
                "--controllers)"
            ) from refused


def run_evaluation(
    settings: PlanningSettings,
    models: list[tuple[str, int, Path, str]],
    out: Path,
    workers: int,
    show_progress: bool = True,
) -> list[tuple[ModelTask, BaseException]]:
    """
    Evaluate the models not evaluated yet in ``out`` (and the random reference), with a progress bar over episodes.

    :param settings: the evaluation's settings
    :param models: ``(config, seed, model path, algo)`` of each model (:func:`find_models`)
    :param out: the evaluation's output folder
    :param workers: worker processes
    :param show_progress: show a progress bar
    :return: the models that failed, with their error (they stay unfinished: a rerun tries them again)
    """
    from sb3_jepa.study.runner import progress_bar
    from sb3_jepa.study.workers import report_retry, run_on_process_pool

    tasks = [ModelTask(config, seed, str(path), algo, settings) for config, seed, path, algo in models]
    todo = [task for task in tasks if not episodes_path(out, task).exists()]
    check_settings(settings, out, write=False)  # other settings: refused before any model is loaded
    for task in todo:
        check_planners(task)
    check_settings(settings, out)
    if "random" in settings.controllers:
        evaluate_random(settings, out)
    failures: list[tuple[ModelTask, BaseException]] = []
    if not todo:
        return failures
    total = settings.n_pairs * len(settings.model_controllers()) * len(todo)
    bar = progress_bar(total, f"{len(todo)} models", unit="episode") if show_progress else None

    def on_progress(count: int) -> None:
        if bar is not None:
            bar.update(count)

    def on_result(task: ModelTask, result: Any, error: BaseException | None) -> None:
        if error is not None:
            failures.append((task, error))

    try:
        on_retry = report_retry(lambda task: f"{task.config} seed {task.seed}")
        run_on_process_pool(evaluate_model, todo, out, workers, on_progress, on_result, on_retry=on_retry)
    finally:
        if bar is not None:
            bar.close()
    return failures
