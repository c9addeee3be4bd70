"""
Running the study: one run per (environment, configuration, seed), each in a worker process, built exactly as
``python -m rl_zoo3.train`` would build it (rl-zoo3's ExperimentManager and the packaged hyperparameter files),
recording returns and collapse metrics over time.

Each run writes into ``<out>/<env>/<config>/seed<seed>/``:

- ``metrics.csv``: after every update, the timestep, the mean return of the last 100 training episodes and the
  ``jepa/`` metrics;
- ``episodes.csv``: every training episode's end timestep, return and length;
- ``summary.json``: written last, so a run without it is unfinished and runs again (a rerun skips finished runs);
- ``stdout.log`` and ``zoo/`` (rl-zoo3's own log folder: config, monitor files, the final model and, for entries
  with ``normalize: true``, the training run's VecNormalize statistics).
"""

import argparse
import contextlib
import copy
import csv
import inspect
import json
import os
import shutil
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sb3_jepa.common.utils import write_atomically
from sb3_jepa.study.configs import config_folder, config_kwargs
from sb3_jepa.study.workers import DEFAULT_RETRIES, report_retry, run_on_process_pool

#: Training-episode statistics window for ``ep_rew_mean`` (SB3's default stats_window_size)
RETURN_WINDOW = 100
#: Fraction of the budget whose training episodes make a run's final training return
FINAL_FRACTION = 0.1
#: Steps of the final policy whose embeddings and true states (where the environment reports them) fit the probes:
#: 10 episodes of a CartPole policy at the 500-step limit (2000 gave 4: one held out, one to choose the ridge)
PROBE_STEPS = 5000


@dataclass(frozen=True)
class RunSpec:
    """
    One run of the study.

    :param algo: ``a2c_jepa`` or ``ppo_jepa``
    :param env_id: a gymnasium id with an entry (or ``default``/``atari``) in the packaged hyperparameters
    :param config: a configuration name (see :mod:`sb3_jepa.study.configs`)
    :param seed: the run's seed
    :param timesteps: training budget
    :param hyperparams: overrides applied to every configuration (the configuration's own settings win)
    :param eval_episodes: episodes of the final evaluation (0: none)
    :param device: torch device
    :param threads: torch threads in the worker
    """

    algo: str
    env_id: str
    config: str
    seed: int
    timesteps: int
    hyperparams: dict[str, Any] = field(default_factory=dict, hash=False)
    eval_episodes: int = 10
    device: str = "cpu"
    threads: int = 1

    def directory(self, out: Path) -> Path:
        """:return: where this run writes (the configuration's folder: :func:`config_folder`)"""
        return out / self.env_id.replace("/", "-") / config_folder(self.config) / f"seed{self.seed}"

    def algorithm_kwargs(self) -> dict[str, Any]:
        """:return: the hyperparameter overrides of this run: ``--hyperparams``, then the configuration's"""
        return {**self.hyperparams, **config_kwargs(self.config)}


def check_specs(specs: Iterable[RunSpec]) -> None:
    """
    Fail before any run starts on a configuration an algorithm cannot take (e.g. PPO-only arguments for A2C).

    :param specs: the runs
    """
    from sb3_jepa.zoo import ALGORITHMS

    for spec in specs:
        if spec.algo not in ALGORITHMS:
            raise ValueError(f"algo must be one of {sorted(ALGORITHMS)}, got {spec.algo!r}")
        accepted = inspect.signature(ALGORITHMS[spec.algo]).parameters
        unknown = [key for key in config_kwargs(spec.config) if key not in accepted]
        if unknown:
            raise ValueError(f"Configuration {spec.config!r} sets {unknown}, which {spec.algo} does not accept")


def check_environments(env_ids: list[str]) -> None:
    """
    Check that every id is registered, as rl-zoo3 would register it (its ``import_envs``: MinAtar, ALE, ...) plus this
    package's testbeds, so that a typo fails here with gymnasium's own "did you mean" instead of in every worker.

    :param env_ids: the ``--env`` ids
    :raises ValueError: naming the first unknown id
    """
    import gymnasium

    from sb3_jepa.envs import register_envs

    with contextlib.suppress(ImportError):  # the planning evaluation runs without rl-zoo3 (its ids are ours)
        import rl_zoo3.import_envs  # noqa: F401  (registers what rl-zoo3's train.py registers)

    register_envs()
    for env_id in env_ids:
        try:
            gymnasium.spec(env_id)
        except gymnasium.error.Error as unknown:
            raise ValueError(f"--env {env_id}: {unknown}") from None


def check_output_folder(out: Path) -> None:
    """
    Check, before any run starts and without making anything, that the study's output folder can be made and
    written: it is a folder or does not exist yet, and a file can be written in it (or in its nearest existing
    parent, where it will be made).

    :param out: the study's output folder
    :raises ValueError: naming the folder and why not (a file, under a file, no permission, a read-only or full disk)
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"output folder {out} is a file, not a folder")
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"output folder {out} cannot be made: {existing} is a file")
    probe = existing / f".sb3_jepa_write_probe_{os.getpid()}"
    try:
        try:
            probe.write_bytes(b"0" * 4096)  # a full disk refuses a block, not always an empty file
        finally:
            probe.unlink(missing_ok=True)
    except OSError as error:
        raise ValueError(f"output folder {out} cannot be written: {error.strerror or error}") from None


def _recorder_class() -> type:
    from sb3_jepa.common.callbacks import CollapseMetricsCallback

    class Recorder(CollapseMetricsCallback):
        """The collapse metrics of every update with the mean return of the last training episodes; every training
        episode; progress reports."""

        def __init__(self, report: Callable[[int], None]):
            super().__init__()
            self.report = report
            self.episodes: list[tuple[int, float, int]] = []
            self._reported = 0

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", []):
                episode = info.get("episode")
                if episode is not None:
                    self.episodes.append((self.num_timesteps, float(episode["r"]), int(episode["l"])))
            if self.num_timesteps - self._reported >= 1000:
                self.report(self.num_timesteps - self._reported)
                self._reported = self.num_timesteps
            return True

        def _row(self, values: dict[str, Any]) -> dict[str, Any]:
            recent = [ret for _, ret, _ in self.episodes[-RETURN_WINDOW:]]
            row = {**super()._row(values), "timesteps": float(self.num_timesteps)}
            row["ep_rew_mean"] = float(np.mean(recent)) if recent else np.nan
            return row

        def _on_training_end(self) -> None:
            super()._on_training_end()
            self.report(self.num_timesteps - self._reported)

    return Recorder


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = sorted({key for row in rows for key in row}, key=lambda key: (key != "timesteps", key))

    def write(file: Any) -> None:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)

    write_atomically(path, write)


def execute(spec: RunSpec, out: Path, progress: Any = None, where: dict[str, Any] | None = None) -> dict[str, Any]:
    """
    Run one spec (in a worker process) and write its files. An unfinished run's earlier files (a dead worker's, a
    failed attempt's) are replaced: the run starts again from scratch.

    :param spec: the run
    :param out: the study's output folder
    :param progress: a queue receiving ``(key, timesteps done since the last message)``, or None
    :param where: what else to record of the worker in the summary's ``worker`` (e.g. the Ray node), besides its
        host and process id
    :return: the run's summary
    """
    import torch as th
    from stable_baselines3.common.evaluation import evaluate_policy

    th.set_num_threads(spec.threads)
    run_dir = spec.directory(out)
    run_dir.mkdir(parents=True, exist_ok=True)
    # rl-zoo3 numbers its log folders (zoo/<algo>/<env>_<N>): a dead attempt's folder would sit beside this one's
    shutil.rmtree(run_dir / "zoo", ignore_errors=True)
    key = str(run_dir.relative_to(out))

    def report(steps: int) -> None:
        if progress is not None and steps > 0:
            progress.put((key, steps))

    start = time.perf_counter()
    with open(run_dir / "stdout.log", "w") as log, redirect_stdout(log), redirect_stderr(log):
        manager = _experiment_manager(spec, run_dir / "zoo")
        setup = manager.setup_experiment()
        assert setup is not None
        model = setup[0]
        recorder = _recorder_class()(report)
        model.learn(spec.timesteps, callback=recorder)
        normalization = model.get_vec_normalize_env()
        eval_returns: list[float] = []
        if spec.eval_episodes > 0:
            eval_env = evaluation_env(manager, normalization)
            returns, _ = evaluate_policy(model, eval_env, n_eval_episodes=spec.eval_episodes, return_episode_rewards=True)
            assert isinstance(returns, list)
            eval_returns = [float(r) for r in returns]
            eval_env.close()
        probe_r2, distractor_scores = _probe_scores(model, manager, normalization)
        model.save(run_dir / MODEL_FILE)
        if normalization is not None:
            normalization.save(run_dir / VEC_NORMALIZE_FILE)
        train_env = model.get_env()
        if train_env is not None:
            train_env.close()

    _write_csv(run_dir / "metrics.csv", recorder.rows)
    _write_csv(run_dir / "episodes.csv", [dict(timesteps=t, ret=r, length=n) for t, r, n in recorder.episodes])
    final_start = spec.timesteps * (1 - FINAL_FRACTION)
    final_episodes = [ret for t, ret, _ in recorder.episodes if t >= final_start]
    last = recorder.rows[-1] if recorder.rows else {}
    summary = {
        **asdict(spec),
        "train_return": float(np.mean(final_episodes)) if final_episodes else None,
        "eval_return": float(np.mean(eval_returns)) if eval_returns else None,
        "eval_returns": eval_returns,
        "effective_rank": last.get("jepa/effective_rank"),
        "embedding_std": last.get("jepa/embedding_std"),
        "participation_ratio": last.get("jepa/participation_ratio"),
        "jepa_loss": last.get("jepa/loss"),
        **_probe_summary(probe_r2, distractor_scores),
        "wall_time_s": time.perf_counter() - start,
        # which machine and process ran it (the study's placement on a cluster)
        "worker": {"host": socket.gethostname(), "pid": os.getpid(), **(where or {})},
    }
    # Written last and atomically: its presence marks the run as finished
    write_atomically(run_dir / "summary.json", lambda file: file.write(json.dumps(summary, indent=2, default=str)))
    return summary


def _experiment_manager(spec: RunSpec, log_folder: Path) -> Any:
    """
    :param spec: the run
    :param log_folder: rl-zoo3's log folder
    :return: the rl-zoo3 ExperimentManager that builds the run as ``python -m rl_zoo3.train`` would (call its
        ``setup_experiment()`` before ``create_envs``)
    """
    from rl_zoo3.exp_manager import ExperimentManager

    import sb3_jepa.zoo

    sb3_jepa.zoo.register()
    return ExperimentManager(
        argparse.Namespace(),
        spec.algo,
        spec.env_id,
        str(log_folder),
        n_timesteps=spec.timesteps,
        eval_freq=-1,
        hyperparams=spec.algorithm_kwargs(),
        seed=spec.seed,
        verbose=0,
        device=spec.device,
    )


#: Where a finished run keeps its final model (rl-zoo3's log folder, ``zoo/``)
MODEL_FILE = Path("zoo") / "model.zip"
#: Where a finished run of an entry with ``normalize: true`` keeps its VecNormalize statistics (rl-zoo3's file name)
VEC_NORMALIZE_FILE = Path("zoo") / "vecnormalize.pkl"


def evaluation_env(manager: Any, normalization: Any = None) -> Any:
    """
    The run's evaluation environment (rl-zoo3's, with the training wrappers), normalizing observations with the
    training run's statistics, frozen.

    rl-zoo3's ``create_envs(eval_env=True)`` wraps an entry with ``normalize: true`` in a *fresh* VecNormalize, frozen
    (``training=False``): mean 0, variance 1, so the policy would see raw observations, only clipped to
    ``clip_obs``. rl-zoo3's EvalCallback copies the training statistics in before each evaluation (SB3's
    ``sync_envs_normalization``); the study, which evaluates without the callback, must do the same.

    :param manager: the run's rl-zoo3 ExperimentManager (after ``setup_experiment()``)
    :param normalization: the training run's VecNormalize (``model.get_vec_normalize_env()``, or one loaded from
        :data:`VEC_NORMALIZE_FILE`), or None where the entry does not normalize
    :return: the evaluation VecEnv (close it)
    :raises ValueError: if ``normalization`` is given but the evaluation environment does not normalize (the run's
        entry changed since), or the other way round
    """
    from stable_baselines3.common.vec_env import unwrap_vec_normalize

    env = manager.create_envs(1, eval_env=True)
    target = unwrap_vec_normalize(env)
    if (normalization is None) != (target is None):
        env.close()
        have = "no" if normalization is None else "the training run's"
        raise ValueError(
            f"normalization: {have} VecNormalize statistics, but the entry of {manager.env_name} now says normalize: "
            f"{target is not None}; run it again with the entry it was trained with"
        )
    if target is not None:
        # As sync_envs_normalization: a VecNormalize with norm_obs=False has no obs_rms
        if hasattr(normalization, "obs_rms"):
            target.obs_rms = copy.deepcopy(normalization.obs_rms)
        target.ret_rms = copy.deepcopy(normalization.ret_rms)
        # rl-zoo3 already freezes its evaluation env; said again here, since the copy must never be updated
        target.training = False
        target.norm_reward = False
    return env


def add_probes(run_dir: Path, threads: int = 1) -> list[str]:
    """
    Probe a finished run's saved model again and add to its summary the probe scores it lacks (those of a newer
    version, e.g. ``distractor_centroid_r2``), leaving every value it has as it is. The probes collect
    :data:`PROBE_STEPS` fresh steps of the final policy, so the added scores come from other episodes than the
    summary's own: the summary's ``probes_added`` names them. The summary is rewritten atomically.

    :param run_dir: a finished run's folder, with its model (``zoo/model.zip``)
    :param threads: torch threads
    :return: the keys added (empty: nothing was missing, or the probes found too few episodes or no state)
    :raises FileNotFoundError: if the run kept no model, or, for an entry with ``normalize: true``, no
        :data:`VEC_NORMALIZE_FILE`
    :raises CorruptRunError: if the run's files do not parse (see :func:`check_run_files`)
    :raises ValueError: if the summary names a configuration this version does not know, or if the entry's
        :data:`ENVIRONMENT_SETTINGS` changed since the run
    """
    import tempfile

    import torch as th
    from stable_baselines3.common.vec_env import VecNormalize

    from sb3_jepa.zoo import ALGORITHMS

    summary = check_run_files(run_dir)
    model_path = run_dir / MODEL_FILE
    if not model_path.exists():
        raise FileNotFoundError(f"{model_path}: the run kept no model to probe")
    fields = inspect.signature(RunSpec).parameters
    spec = RunSpec(**{key: summary[key] for key in fields if key in summary})
    th.set_num_threads(threads)
    with (
        tempfile.TemporaryDirectory() as log_folder,
        open(os.devnull, "w") as quiet,
        redirect_stdout(quiet),
        redirect_stderr(quiet),
    ):
        manager = _experiment_manager(spec, Path(log_folder))
        setup = manager.setup_experiment()  # the environments' wrappers, as today's entry builds them
        assert setup is not None
        _check_environment_settings(run_dir, setup[1])
        fresh = setup[0].get_vec_normalize_env()
        normalization = None
        try:
            if fresh is not None:
                stats_path = run_dir / VEC_NORMALIZE_FILE
                if not stats_path.exists():
                    raise FileNotFoundError(
                        f"{stats_path}: the entry normalizes observations and the run kept no statistics (a run of "
                        "a version before they were saved): its policy's inputs cannot be rebuilt"
                    )
                # SB3's own loader, on the rebuilt training VecEnv (it checks the observation space): only the
                # statistics are used
                normalization = VecNormalize.load(str(stats_path), fresh.venv)
        finally:
            setup[0].get_env().close()
        model = ALGORITHMS[spec.algo].load(model_path, device=spec.device)
        probe_r2, distractor_scores = _probe_scores(model, manager, normalization)
    scores = _probe_summary(probe_r2, distractor_scores)
    # The probe's R^2, its mean and its split are one measurement: added together or not at all (a summary from
    # before probe_split held out random steps, and must not be labelled "episodes" by a later probe)
    if any(summary.get(key) is not None for key in PROBE_KEYS):
        scores = {key: value for key, value in scores.items() if key not in PROBE_KEYS}
    added = [key for key, value in scores.items() if value is not None and summary.get(key) is None]
    if added:
        summary.update({key: scores[key] for key in added})
        summary["probes_added"] = sorted({*summary.get("probes_added", []), *added})
        write_atomically(run_dir / "summary.json", lambda file: file.write(json.dumps(summary, indent=2, default=str)))
    return added


#: The entry's settings from which rl-zoo3 builds the environment around a model (its observations): a saved model
#: is probed only in an environment built as its run's was
ENVIRONMENT_SETTINGS = ("env_wrapper", "env_kwargs", "frame_stack", "normalize", "vec_env_wrapper")


def _check_environment_settings(run_dir: Path, settings: dict[str, Any]) -> None:
    """
    :param run_dir: a finished run's folder, with rl-zoo3's ``config.yml`` of the run (``zoo/<algo>/<env>_1/<env>/``)
    :param settings: the hyperparameters that today's entry gives the run (``setup_experiment()``'s second value)
    :raises FileNotFoundError: if the run has no ``config.yml``
    :raises ValueError: if an :data:`ENVIRONMENT_SETTINGS` setting differs between the two
    """
    import yaml

    found = sorted((run_dir / "zoo").glob("*/*/*/config.yml"))
    if not found:
        raise FileNotFoundError(f"{run_dir / 'zoo'}: no config.yml of the run (rl-zoo3 writes one with every run)")
    with open(found[0]) as file:
        saved = dict(yaml.load(file, Loader=yaml.UnsafeLoader))  # an OrderedDict, as rl-zoo3's enjoy reads it
    changed = {key: (saved.get(key), settings.get(key)) for key in ENVIRONMENT_SETTINGS if saved.get(key) != settings.get(key)}
    if changed:
        described = "; ".join(f"{key}: {then!r} in the run, {now!r} now" for key, (then, now) in changed.items())
        raise ValueError(
            f"{run_dir}: the entry builds another environment than the run's ({described}): its model cannot be probed"
        )


#: The summary's keys of the state probe (None where the environment reports no state)
PROBE_KEYS = ("probe_r2", "probe_r2_mean", "probe_split")


def _probe_summary(probe_r2: list[float] | None, distractor_scores: dict[str, float] | None) -> dict[str, Any]:
    """
    :param probe_r2: the probes' R^2 per state variable, or None (see :func:`_probe_scores`)
    :param distractor_scores: the distractor probes' scores, or None
    :return: the summary's probe entries: :data:`PROBE_KEYS`, then :data:`DISTRACTOR_PROBE_KEYS`
    """
    return {
        # held-out R^2 of linear probes from z to each true state variable (None: the environment reports none)
        "probe_r2": probe_r2,
        "probe_r2_mean": None if probe_r2 is None else float(np.mean(probe_r2)),
        # whole episodes held out (summaries without this key held out random steps, which scores higher)
        "probe_split": None if probe_r2 is None else "episodes",
        # on the distractor testbeds: the task's and the distractors' mean R^2, the fraction of z's variance the
        # distractors explain and, for look-alike objects, their centroid's R^2 (None elsewhere)
        **{key: (distractor_scores or {}).get(key) for key in DISTRACTOR_PROBE_KEYS},
    }


def _probe_scores(model: Any, manager: Any, normalization: Any = None) -> tuple[list[float] | None, dict[str, float] | None]:
    """
    :param model: the trained model
    :param manager: the run's rl-zoo3 ExperimentManager (its evaluation environment has the training wrappers)
    :param normalization: the training run's VecNormalize, or None (see :func:`evaluation_env`)
    :return: the probes' R^2 per state variable on held-out episodes of the final policy, and, where the environment
        reports ``info["distractor_state"]`` (the last variables of its state), the
        :func:`~sb3_jepa.common.probes.distractor_probes`; None if the environment reports no state, or if the
        :data:`PROBE_STEPS` steps hold too few episodes to hold some out (with a warning)
    """
    from sb3_jepa.common.probes import NoStateError, collect_states, distractor_probes, linear_probe_r2

    env = evaluation_env(manager, normalization)
    try:
        z, states, episodes = collect_states(model, env, PROBE_STEPS)
        # Read off a reset's info (collect_states reset the env): how many of the state's last variables are distractors
        first_info = env.unwrapped.reset_infos[0]
        n_distractor_vars = len(np.ravel(first_info.get("distractor_state", [])))
        # Look-alike objects (Two Rooms' dots): the probes also ask for their centroid
        exchangeable_objects = first_info.get("distractor_objects")
    except NoStateError:
        return None, None
    finally:
        env.close()
    try:
        # Held out by whole episodes: a random-row split would test on near copies of the fitted steps
        scores = linear_probe_r2(z, states, groups=episodes)
        parts = (
            distractor_probes(z, states, n_distractor_vars, groups=episodes, exchangeable_objects=exchangeable_objects)
            if n_distractor_vars
            else None
        )
    except ValueError as error:
        # Too few episodes (3: held out, held back for the ridge, fitted) or rows: no probe rather than a failed run
        warnings.warn(f"No probe on {len(np.unique(episodes))} episodes of {PROBE_STEPS} steps: {error}", stacklevel=2)
        return None, None
    return [float(r2) for r2 in scores], parts


#: The summary's keys from :func:`~sb3_jepa.common.probes.distractor_probes` (None where there are no distractors)
DISTRACTOR_PROBE_KEYS = ("task_r2", "distractor_r2", "distractor_variance_fraction", "distractor_centroid_r2")

#: Keys every finished run's summary has (a summary without them is not one this package wrote whole)
SUMMARY_KEYS = ("algo", "env_id", "config", "seed", "timesteps", "eval_return", "train_return")


class CorruptRunError(ValueError):
    """
    A run folder holds a file that a finished run cannot have written: not JSON, not a summary, not a CSV table.

    :param path: the file
    :param reason: what is wrong with it
    """

    def __init__(self, path: Path, reason: str):
        self.path = path
        super().__init__(f"{path}: {reason}")


def check_run_files(run_dir: Path) -> dict[str, Any]:
    """
    Read a finished run's ``summary.json`` and check its ``metrics.csv`` and ``episodes.csv`` parse, so that nothing
    is ever built from half a file (files written by hand, copied partway, or by an older version without atomic
    writes).

    :param run_dir: the run's folder (it has a ``summary.json``)
    :return: the summary
    :raises CorruptRunError: naming the first bad file
    """
    summary_path = run_dir / "summary.json"
    try:
        summary = json.loads(summary_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CorruptRunError(summary_path, f"not valid JSON ({error})") from None
    if not isinstance(summary, dict) or not set(SUMMARY_KEYS) <= set(summary):
        missing = sorted(set(SUMMARY_KEYS) - set(summary)) if isinstance(summary, dict) else list(SUMMARY_KEYS)
        raise CorruptRunError(summary_path, f"not a run summary (missing {missing})")
    for name in ("metrics.csv", "episodes.csv"):
        path = run_dir / name
        if not path.exists():
            continue
        try:
            with open(path, newline="") as file:
                header, *rows = list(csv.reader(file, strict=True)) or [[]]
            for row in rows:
                [float(value or "nan") for value in row]
        except (csv.Error, UnicodeDecodeError, ValueError) as error:
            raise CorruptRunError(path, f"not a table of numbers ({error})") from None
        for number, row in enumerate(rows, start=2):
            if len(row) != len(header):
                raise CorruptRunError(path, f"line {number} has {len(row)} fields, the header {len(header)}")
    return summary


def is_finished(spec: RunSpec, out: Path) -> bool:
    """
    :return: whether the run already has its summary (reruns skip it). A run whose files are corrupt (see
        :func:`check_run_files`) is not finished: its bad file is moved aside to ``<name>.corrupt``, with a warning,
        and the run is done again.
    """
    run_dir = spec.directory(out)
    if not (run_dir / "summary.json").exists():
        return False
    try:
        check_run_files(run_dir)
    except CorruptRunError as corrupt:
        aside = corrupt.path.with_name(corrupt.path.name + ".corrupt")
        os.replace(corrupt.path, aside)
        (run_dir / "summary.json").unlink(missing_ok=True)
        warnings.warn(f"{corrupt}; moved to {aside.name}, the run is done again", stacklevel=2)
        return False
    return True


class ProgressLines:
    """
    tqdm's ``update``/``set_postfix_str``/``close`` as plain lines on stdout, one each ``step`` of the total (10%),
    for output that is not a terminal, where a live bar never shows.

    :param total: the total count
    :param desc: what is counted
    :param step: the fraction of the total between two lines
    :param unit: what one count is
    """

    def __init__(self, total: int, desc: str, step: float = 0.1, unit: str = "steps"):
        self.total, self.desc, self.step, self.unit = total, desc, step, unit
        self.count, self.postfix, self._next = 0, "", step
        self._printed: tuple[int, str] | None = None

    def update(self, count: int) -> None:
        self.count += count
        if self.total > 0 and self.count / self.total >= self._next:
            while self.count / self.total >= self._next:
                self._next += self.step
            self._print()

    def set_postfix_str(self, postfix: str) -> None:
        self.postfix = postfix

    def close(self) -> None:
        if self._printed != (self.count, self.postfix):
            self._print()

    def _print(self) -> None:
        share = 100 * self.count / self.total if self.total else 100.0
        suffix = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {share:3.0f}% ({self.count:,}/{self.total:,} {self.unit}{suffix})", flush=True)
        self._printed = (self.count, self.postfix)


def progress_bar(total: int, desc: str, unit: str = "step") -> Any:
    """
    :param total: the total count
    :param desc: what is counted
    :param unit: what one count is
    :return: a tqdm bar on a terminal; :class:`ProgressLines` otherwise (a redirected stderr, such as a log file,
        CI or a notebook's captured output, shows no live bar)
    """
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        return tqdm(total=total, unit=unit, desc=desc)
    return ProgressLines(total, desc, unit=f"{unit}s")


#: How the runs are spread: a local process pool (the default, no extra dependency) or Ray tasks
BACKENDS = ("process", "ray")


def run_all(
    specs: list[RunSpec],
    out: Path,
    workers: int,
    show_progress: bool = True,
    backend: str = "process",
    address: str | None = None,
    gpus_per_run: float = 0.0,
    retries: int = DEFAULT_RETRIES,
    shared_filesystem: bool | None = None,
) -> tuple[list[dict[str, Any]], list[tuple[RunSpec, BaseException]]]:
    """
    Run the unfinished specs, with a progress bar over all their timesteps. A failing run does not stop the others;
    it stays unfinished (a rerun tries it again), and so does a run cut by Ctrl-C. A run whose worker dies (a
    signal, the out-of-memory killer, a lost Ray node) is started again up to ``retries`` times, then fails with a
    :class:`~sb3_jepa.study.workers.WorkerLost` saying why; an exception raised by the run itself is not retried.

    :param specs: the runs
    :param out: the study's output folder
    :param workers: worker processes (``process`` backend; Ray schedules by each run's ``threads`` as CPUs)
    :param show_progress: draw a progress bar (tqdm)
    :param backend: one of :data:`BACKENDS`
    :param address: ``ray`` backend: the cluster to use (None: a local one; ``auto``; ``ray://host:port``)
    :param gpus_per_run: ``ray`` backend: the GPU fraction each run asks for
    :param retries: how many times a run whose worker died is started again
    :param shared_filesystem: ``ray`` backend: whether the tasks write into ``out`` themselves (None: where they see
        it; False: they send their files back, see :mod:`sb3_jepa.study.ray_backend`)
    :return: the summaries of the runs done now, and the runs that failed with their error
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "process" and (address is not None or gpus_per_run or shared_filesystem is not None):
        raise ValueError("address, gpus_per_run and shared_filesystem are for the ray backend")
    if gpus_per_run < 0:
        raise ValueError(f"gpus_per_run must be >= 0, got {gpus_per_run!r}")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries!r}")
    todo = [spec for spec in specs if not is_finished(spec, out)]
    summaries: list[dict[str, Any]] = []
    failures: list[tuple[RunSpec, BaseException]] = []
    if not todo:
        return summaries, failures
    bar = progress_bar(sum(spec.timesteps for spec in todo), f"{len(todo)} runs") if show_progress else None

    def on_progress(steps: int) -> None:
        if bar is not None:
            bar.update(steps)

    def on_result(spec: RunSpec, summary: dict[str, Any] | None, error: BaseException | None) -> None:
        if error is None:
            assert summary is not None
            summaries.append(summary)
        else:
            failures.append((spec, error))
        if bar is not None:
            bar.set_postfix_str(f"{len(summaries)} done, {len(failures)} failed, of {len(todo)}")

    try:
        if backend == "ray":
            from sb3_jepa.study.ray_backend import run_on_ray

            run_on_ray(todo, out, address, gpus_per_run, on_progress, on_result, shared_filesystem, retries)
        else:
            on_retry = report_retry(lambda spec: str(spec.directory(out)))
            run_on_process_pool(execute, todo, out, workers, on_progress, on_result, retries, on_retry)
    finally:
        if bar is not None:
            bar.close()
    return summaries, failures
