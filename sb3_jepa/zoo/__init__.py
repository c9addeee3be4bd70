"""
rl-zoo3 support: ``a2c_jepa`` and ``ppo_jepa`` as ``--algo`` choices, their packaged hyperparameter files as the
default ``--conf-file``, and ``-optimize`` samplers.

After ``pip install`` the registration is automatic (see :mod:`sb3_jepa_zoo_hook`). Without the hook (or with
``SB3_JEPA_NO_ZOO_HOOK=1``), call :func:`register` before rl-zoo3 builds its parser, e.g. in a wrapper script.

Each ``register_*`` function receives an rl-zoo3 module that has just loaded, so nothing here imports rl-zoo3 at
module level (the hook runs while rl-zoo3's own package is still being imported).
"""

import functools
from collections import OrderedDict
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

from sb3_jepa.a2c_jepa import A2CJEPA
from sb3_jepa.envs import register_envs
from sb3_jepa.ppo_jepa import PPOJEPA
from sb3_jepa.zoo.samplers import CONVERTERS, SAMPLERS

#: rl-zoo3 algorithm name -> class
ALGORITHMS = {"a2c_jepa": A2CJEPA, "ppo_jepa": PPOJEPA}

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


def register_config_files(exp_manager: ModuleType) -> None:
    """
    Make the packaged YAML files the default config of ``a2c_jepa``/``ppo_jepa`` (rl-zoo3 looks for
    ``rl_zoo3/hyperparams/<algo>.yml``), and let ``jepa_coef`` take rl-zoo3's ``lin_<value>`` schedules.

    :param exp_manager: the ``rl_zoo3.exp_manager`` module
    """
    manager = exp_manager.ExperimentManager
    if getattr(manager.__init__, "_sb3_jepa", False):
        return
    assert exp_manager.__file__ is not None
    zoo_root = Path(exp_manager.__file__).parent
    zoo_defaults = {zoo_root / "hyperparams", zoo_root.parent / "hyperparams"}
    original_init = manager.__init__

    @functools.wraps(original_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        config = Path(self.config)
        if self.algo in ALGORITHMS and config.parent in zoo_defaults and not config.exists():
            self.config = str(config_path(self.algo))

    __init__._sb3_jepa = True  # type: ignore[attr-defined]
    manager.__init__ = __init__

    original_schedules = manager._preprocess_schedules

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

    manager._preprocess_schedules = staticmethod(_preprocess_schedules)

    original_read = manager.read_hyperparameters

    @functools.wraps(original_read)
    def read_hyperparameters(self: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        hyperparams, saved = original_read(self)
        # rl-zoo3 tests `if self.trial_id`, so `--trial-id 0` silently loads nothing: load it for our algorithms
        if self.algo in ALGORITHMS and self.storage and self.study_name and self.trial_id == 0:
            hyperparams.update(self.load_trial(self.storage, self.study_name, 0))
            hyperparams.update(self.custom_hyperparams or {})
            saved = OrderedDict((key, hyperparams[key]) for key in sorted(hyperparams))
        return hyperparams, saved

    manager.read_hyperparameters = read_hyperparameters


def register() -> None:
    """Register with rl-zoo3 explicitly (what the import hook does automatically). Needs rl-zoo3 installed."""
    import rl_zoo3.exp_manager
    import rl_zoo3.hyperparams_opt
    import rl_zoo3.utils

    register_algorithms(rl_zoo3.utils)
    register_samplers(rl_zoo3.hyperparams_opt)
    register_config_files(rl_zoo3.exp_manager)


__all__ = ["ALGORITHMS", "config_path", "register"]
