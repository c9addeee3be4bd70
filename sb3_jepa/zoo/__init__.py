"""
rl-zoo3 support: ``a2c_jepa`` and ``ppo_jepa`` as ``--algo`` choices, their packaged hyperparameter files as the
default ``--conf-file``, and ``-optimize`` samplers.

After ``pip install`` the registration is automatic (see :mod:`sb3_jepa_zoo_hook`). Without the hook (or with
``SB3_JEPA_NO_ZOO_HOOK=1``), call :func:`register` before rl-zoo3 builds its parser, e.g. in a wrapper script.

Each ``register_*`` function, and each patch that :func:`register_config_files` applies, receives an rl-zoo3 module
that has just loaded, so nothing here imports rl-zoo3 at module level (the hook runs while rl-zoo3's own package is
still being imported).
"""

import functools
from collections import OrderedDict
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from sb3_jepa.a2c_jepa import A2CJEPA
from sb3_jepa.envs import register_envs
from sb3_jepa.ppo_jepa import PPOJEPA
from sb3_jepa.zoo.samplers import CONVERTERS, SAMPLERS, search_space

#: rl-zoo3 algorithm name -> class
ALGORITHMS: dict[str, type[OnPolicyAlgorithm]] = {"a2c_jepa": A2CJEPA, "ppo_jepa": PPOJEPA}

#: hyperparameters that rl-zoo3 does not turn into schedules itself but we do (``jepa_coef: lin_0.5``)
SCHEDULED_HYPERPARAMETERS = ("jepa_coef",)


def config_path(algo: str) -> Path:
    """
    :param algo: ``a2c_jepa`` or ``ppo_jepa``
    :return: the packaged rl-zoo3 hyperparameter file of that algorithm (``sb3_jepa/hyperparams/<algo>.yml``)
    """
    if algo not in ALGORITHMS:
        raise ValueError(f"algo must be one of {sorted(ALGORITHMS)}, got {algo!r}")
    return Path(str(resources.files("sb3_jepa") / "hyperparams" / f"{algo}.yml"))


def register_algorithms(utils: ModuleType) -> None:
    """
    Add the algorithms to ``rl_zoo3.utils.ALGOS`` (existing keys are left alone) and register the pixel testbeds.

    :param utils: the ``rl_zoo3.utils`` module
    """
    for name, algorithm in ALGORITHMS.items():
        utils.ALGOS.setdefault(name, algorithm)
    register_envs()


def register_samplers(hyperparams_opt: ModuleType) -> None:
    """
    Add the ``-optimize`` samplers and their converters (used to reload a trial with ``--trial-id``).

    :param hyperparams_opt: the ``rl_zoo3.hyperparams_opt`` module
    """
    for name, sampler in SAMPLERS.items():
        hyperparams_opt.HYPERPARAMS_SAMPLER.setdefault(name, sampler)
    for name, converter in CONVERTERS.items():
        hyperparams_opt.HYPERPARAMS_CONVERTER.setdefault(name, converter)


#: attribute set on each rl-zoo3 method we wrap, so that patching twice never wraps twice
_PATCHED = "_sb3_jepa"


def _is_patched(method: Any) -> bool:
    return bool(getattr(method, _PATCHED, False))


def _mark_patched(method: Any) -> Any:
    setattr(method, _PATCHED, True)
    return method


def use_packaged_config_files(exp_manager: ModuleType) -> None:
    """
    Make the packaged YAML files (:func:`config_path`) the default ``--conf-file`` of ``a2c_jepa``/``ppo_jepa``.
    An explicit ``--conf-file``, or a file rl-zoo3 does ship for the algorithm, is left alone.
    Patching an already patched module does nothing.

    :param exp_manager: the ``rl_zoo3.exp_manager`` module
    """
    manager = exp_manager.ExperimentManager
    if _is_patched(manager.__init__):
        return
    assert exp_manager.__file__ is not None
    zoo_root = Path(exp_manager.__file__).parent
    # rl-zoo3 2.9.2, rl_zoo3/exp_manager.py, ExperimentManager.__init__ (line 127), with default_path being the
    # rl_zoo3 package, or its parent folder in a source checkout:
    #     self.config = config or str(default_path / f"hyperparams/{self.algo}.yml")
    # so without --conf-file it looks for rl_zoo3/hyperparams/a2c_jepa.yml, which does not exist.
    zoo_defaults = {zoo_root / "hyperparams", zoo_root.parent / "hyperparams"}
    original_init = manager.__init__

    @functools.wraps(original_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        config = Path(self.config)
        if self.algo in ALGORITHMS and config.parent in zoo_defaults and not config.exists():
            self.config = str(config_path(self.algo))

    manager.__init__ = _mark_patched(__init__)


def schedule_jepa_coef(exp_manager: ModuleType) -> None:
    """
    Let the :data:`SCHEDULED_HYPERPARAMETERS` (``jepa_coef``) take rl-zoo3's ``lin_<initial value>`` schedules, as
    ``learning_rate`` does (``jepa_coef: lin_0.5`` in a config file or ``--hyperparams``). Any other string raises a
    ``ValueError``; numbers are left as they are. Patching an already patched module does nothing.

    :param exp_manager: the ``rl_zoo3.exp_manager`` module
    """
    manager = exp_manager.ExperimentManager
    if _is_patched(manager._preprocess_schedules):
        return
    # rl-zoo3 2.9.2, rl_zoo3/exp_manager.py, ExperimentManager._preprocess_schedules (line 403) only converts:
    #     for key in ["learning_rate", "clip_range", "clip_range_vf", "delta_std"]:
    # so a "lin_0.5" jepa_coef would reach the algorithm as a string.
    original_schedules = manager._preprocess_schedules

    @functools.wraps(original_schedules)
    def _preprocess_schedules(hyperparams: dict[str, Any]) -> dict[str, Any]:
        hyperparams = original_schedules(hyperparams)
        for key in SCHEDULED_HYPERPARAMETERS:
            value = hyperparams.get(key)
            if isinstance(value, str):
                kind, _, initial = value.partition("_")
                if kind != "lin":
                    raise ValueError(f"{key} must be a number or 'lin_<initial value>', got {value!r}")
                hyperparams[key] = exp_manager.SimpleLinearSchedule(float(initial))
        return hyperparams

    manager._preprocess_schedules = staticmethod(_mark_patched(_preprocess_schedules))


def load_trial_zero(exp_manager: ModuleType) -> None:
    """
    Make ``--storage ... --study-name ... --trial-id 0`` load trial 0 of the study for ``a2c_jepa``/``ppo_jepa``
    (rl-zoo3 silently ignores it), then reapply ``--hyperparams`` on top, as rl-zoo3 does for other trials.
    Patching an already patched module does nothing.

    :param exp_manager: the ``rl_zoo3.exp_manager`` module
    """
    manager = exp_manager.ExperimentManager
    if _is_patched(manager.read_hyperparameters):
        return
    # rl-zoo3 2.9.2, rl_zoo3/exp_manager.py, ExperimentManager.read_hyperparameters (line 359):
    #     if self.storage and self.study_name and self.trial_id:
    # trial_id 0 is falsy, so `--trial-id 0` loads nothing from the study, with no message.
    original_read = manager.read_hyperparameters

    @functools.wraps(original_read)
    def read_hyperparameters(self: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        hyperparams, saved = original_read(self)
        if self.algo in ALGORITHMS and self.storage and self.study_name and self.trial_id == 0:
            hyperparams.update(self.load_trial(self.storage, self.study_name, 0))
            hyperparams.update(self.custom_hyperparams or {})
            saved = OrderedDict((key, hyperparams[key]) for key in sorted(hyperparams))
        return hyperparams, saved

    manager.read_hyperparameters = _mark_patched(read_hyperparameters)


def retry_lost_trials(exp_manager: ModuleType) -> None:
    """
    Make ``-optimize`` of ``a2c_jepa``/``ppo_jepa`` on an RDB storage (``--storage postgresql://...``: any URL that does
    not end with ``.log``) survive a lost worker: the worker's running trial sends heartbeats, and once a trial has
    sent none for the grace period (its worker was killed, preempted, its machine lost), the next worker to look fails
    it and queues a retry of it, with the same parameters, that the next trial of any worker runs. This is Optuna's
    ``RDBStorage(url, heartbeat_interval=..., grace_period=..., heartbeat_stale_trial_callback=...)`` with its
    ``RetryHeartbeatStaleTrialCallback(max_retry=...)``: see :mod:`sb3_jepa.zoo.heartbeats` for the defaults and the
    environment variables that change them, checked when the search starts, before the study is opened. Workers look
    for stale trials when each trial starts (Optuna), when the study is opened, and after each trial when counting
    ``--max-total-trials``.

    rl-zoo3's ``--max-total-trials`` counts running trials (so that N workers do not run N trials too many): a lost
    worker's trial counts until it is failed. A worker that reaches the count only thanks to running trials therefore
    waits for them, up to a grace period and a heartbeat interval, so that a lost one is failed and retried, by this
    worker, rather than left running with the search stopped one trial short.

    A journal file (``--storage study.log``) has no heartbeat: a killed worker's trial stays ``RUNNING`` forever (and
    counts toward ``--max-total-trials``); fail it by hand (see the guide). Other algorithms, and searches without a
    storage, are left alone. Patching an already patched module does nothing.

    :param exp_manager: the ``rl_zoo3.exp_manager`` module
    """
    from sb3_jepa.zoo.heartbeats import MaxTrialsCallback, OptunaWithHeartbeats, heartbeat_settings

    manager = exp_manager.ExperimentManager
    if _is_patched(manager.hyperparameters_optimization):
        return
    # rl-zoo3 2.9.2, rl_zoo3/exp_manager.py, ExperimentManager.hyperparameters_optimization (line 912) turns a .log
    # path into a JournalStorage and hands any other string as is to optuna.create_study (line 922), which opens it
    # as an RDBStorage without heartbeats; it counts the running trials toward --max-total-trials (line 946, so a lost
    # worker's trial counts until it is failed) and builds MaxTrialsCallback(self.max_total_trials,
    # states=counted_states) (line 952), both names read from the module's globals: they are swapped while it runs.
    original_optimization = manager.hyperparameters_optimization

    @functools.wraps(original_optimization)
    def hyperparameters_optimization(self: Any) -> None:
        if self.algo not in ALGORITHMS:
            return original_optimization(self)
        settings = heartbeat_settings()  # before any work: a wrong variable stops the search before it starts
        search_space()  # SB3_JEPA_SEARCH_SPACE too, before the study is opened
        if not settings.enabled or not isinstance(self.storage, str) or self.storage.endswith(".log"):
            return original_optimization(self)
        swapped = {
            "optuna": OptunaWithHeartbeats(exp_manager.optuna, settings),
            "MaxTrialsCallback": functools.partial(MaxTrialsCallback, settings=settings),
        }
        saved = {name: getattr(exp_manager, name) for name in swapped}
        for name, value in swapped.items():
            setattr(exp_manager, name, value)
        try:
            return original_optimization(self)
        finally:
            for name, value in saved.items():
                setattr(exp_manager, name, value)

    manager.hyperparameters_optimization = _mark_patched(hyperparameters_optimization)


def refuse_unfinished_trials(exp_manager: ModuleType) -> None:
    """
    Make ``--trial-id N`` of ``a2c_jepa``/``ppo_jepa`` refuse a trial that is not ``COMPLETE`` (failed, pruned,
    running, or a queued retry): its parameters were never trained to the end, and rl-zoo3 would load them anyway. The
    error names the trial's state and, for a lost worker's trial (see :func:`retry_lost_trials`), the trial that retried
    it. Patching an already patched module does nothing.

    :param exp_manager: the ``rl_zoo3.exp_manager`` module
    """
    from sb3_jepa.zoo.heartbeats import check_complete

    manager = exp_manager.ExperimentManager
    if _is_patched(manager.load_trial):
        return
    # rl-zoo3 2.9.2, rl_zoo3/exp_manager.py, ExperimentManager.load_trial (line 392), whatever the trial's state:
    #     params = study.trials[trial_id].params
    original_load = manager.load_trial

    @functools.wraps(original_load)
    def load_trial(
        self: Any, storage: str, study_name: str, trial_id: int | None = None, convert: bool = True
    ) -> dict[str, Any]:
        if self.algo in ALGORITHMS and trial_id is not None:
            optuna = exp_manager.optuna
            # the same storage as rl-zoo3's (line 386): a .log path is a journal file, anything else a URL
            if storage.endswith(".log"):
                opened = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))
            else:
                opened = storage
            study = optuna.load_study(storage=opened, study_name=study_name)
            check_complete(study.get_trials(deepcopy=False), trial_id, study_name)
        return original_load(self, storage, study_name, trial_id, convert)

    manager.load_trial = _mark_patched(load_trial)


def evaluate_with_the_entry_env_kwargs(exp_manager: ModuleType) -> None:
    """
    Give the evaluation environments of ``a2c_jepa``/``ppo_jepa`` the config file's ``env_kwargs`` too, as rl-zoo3
    means to ("if no custom eval env args were passed, use the same as env kwargs") and does for ``--env-kwargs``.
    An explicit ``--eval-env-kwargs`` is left alone. Patching an already patched module does nothing.

    :param exp_manager: the ``rl_zoo3.exp_manager`` module
    """
    manager = exp_manager.ExperimentManager
    if _is_patched(manager._preprocess_hyperparams):
        return
    # rl-zoo3 2.9.2, rl_zoo3/exp_manager.py: __init__ (line 152) sets
    #     self.eval_env_kwargs = eval_env_kwargs or self.env_kwargs
    # and _preprocess_hyperparams (line 493) then replaces env_kwargs with the config file's:
    #     self.env_kwargs = hyperparams["env_kwargs"]
    # leaving eval_env_kwargs the empty dict of before. MinAtar/Seaquest-v1's entries need their max_episode_steps in
    # the evaluation environment above all (see hyperparams/ppo_jepa.yml): without it an evaluation never returns.
    original_preprocess = manager._preprocess_hyperparams

    @functools.wraps(original_preprocess)
    def _preprocess_hyperparams(self: Any, hyperparams: dict[str, Any]) -> Any:
        preprocessed = original_preprocess(self, hyperparams)
        if self.algo in ALGORITHMS and self._eval_env_kwargs_args is None:
            self.eval_env_kwargs = self.env_kwargs
        return preprocessed

    manager._preprocess_hyperparams = _mark_patched(_preprocess_hyperparams)


def register_config_files(exp_manager: ModuleType) -> None:
    """
    Apply the six patches of ``rl_zoo3.exp_manager.ExperimentManager``: :func:`use_packaged_config_files`,
    :func:`schedule_jepa_coef`, :func:`load_trial_zero`, :func:`retry_lost_trials`,
    :func:`refuse_unfinished_trials` and :func:`evaluate_with_the_entry_env_kwargs` (what the import hook calls once
    rl-zoo3's ``exp_manager`` has loaded). Each of them is idempotent, so calling this twice patches once.

    :param exp_manager: the ``rl_zoo3.exp_manager`` module
    """
    use_packaged_config_files(exp_manager)
    schedule_jepa_coef(exp_manager)
    load_trial_zero(exp_manager)
    retry_lost_trials(exp_manager)
    refuse_unfinished_trials(exp_manager)
    evaluate_with_the_entry_env_kwargs(exp_manager)


def register() -> None:
    """Register with rl-zoo3 explicitly (what the import hook does automatically). Needs rl-zoo3 installed."""
    import rl_zoo3.exp_manager
    import rl_zoo3.hyperparams_opt
    import rl_zoo3.utils

    register_algorithms(rl_zoo3.utils)
    register_samplers(rl_zoo3.hyperparams_opt)
    register_config_files(rl_zoo3.exp_manager)


__all__ = ["ALGORITHMS", "config_path", "register"]
