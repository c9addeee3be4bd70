"""
rl-zoo3 ``-optimize`` samplers for ``a2c_jepa`` and ``ppo_jepa``: the base algorithm's own search space (rl-zoo3's
sampler, called as is) plus the JEPA settings, and the matching converters that turn a stored Optuna trial back
into hyperparameters (``--storage ... --study-name ... --trial-id N``).

rl-zoo3 is imported when a sampler runs, never when this module loads.
"""

from collections.abc import Callable
from typing import Any

from sb3_jepa.common.jepa import EMBEDDING_NORMS
from sb3_jepa.common.loss import JEPA_LOSSES, TARGET_MODES

#: lambda's log-uniform search range: from a loss that barely registers to one that dominates the RL loss
JEPA_COEF_RANGE = (1e-4, 10.0)
#: the ema target's Polyak coefficient range (log-uniform), searched only when the target mode is ema
JEPA_TAU_RANGE = (1e-3, 1.0)
#: width of the predictor's hidden layer
PREDICTOR_WIDTHS = (64, 128, 256, 512)

#: the embedding normalisations searched ("none" stands for None, which Optuna's categorical cannot store)
EMBEDDING_NORM_CHOICES = ("none", *EMBEDDING_NORMS)

# Trial parameters that are ours (rl-zoo3's converter must not see them)
_JEPA_PARAMS = ("jepa_coef", "jepa_target", "jepa_tau", "predictor_width", "jepa_loss", "jepa_embedding_norm")


def sample_jepa_params(trial: Any) -> dict[str, Any]:
    """
    :param trial: an ``optuna.Trial``
    :return: the sampled JEPA settings, as trial parameters (see :func:`convert_jepa_params`)
    """
    params: dict[str, Any] = {
        "jepa_coef": trial.suggest_float("jepa_coef", *JEPA_COEF_RANGE, log=True),
        "jepa_target": trial.suggest_categorical("jepa_target", list(TARGET_MODES)),
        "predictor_width": trial.suggest_categorical("predictor_width", list(PREDICTOR_WIDTHS)),
        "jepa_loss": trial.suggest_categorical("jepa_loss", list(JEPA_LOSSES)),
        "jepa_embedding_norm": trial.suggest_categorical("jepa_embedding_norm", list(EMBEDDING_NORM_CHOICES)),
    }
    if params["jepa_target"] == "ema":
        params["jepa_tau"] = trial.suggest_float("jepa_tau", *JEPA_TAU_RANGE, log=True)
    return params


def convert_jepa_params(params: dict[str, Any]) -> dict[str, Any]:
    """
    :param params: trial parameters holding some of ``jepa_coef``, ``jepa_target``, ``jepa_tau``, ``predictor_width``,
        ``jepa_loss``, ``jepa_embedding_norm``
    :return: the algorithm's keyword arguments for them
    """
    names = ("jepa_coef", "jepa_target", "jepa_tau", "jepa_loss")
    kwargs: dict[str, Any] = {key: params[key] for key in names if key in params}
    if "jepa_embedding_norm" in params:
        kwargs["jepa_embedding_norm"] = None if params["jepa_embedding_norm"] == "none" else params["jepa_embedding_norm"]
    if "predictor_width" in params:
        kwargs["predictor_net_arch"] = [int(params["predictor_width"])]
    return kwargs


def _split(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    base = {key: value for key, value in params.items() if key not in _JEPA_PARAMS}
    return base, convert_jepa_params(params)


def jepa_sampler(base_sampler: str) -> Callable[[Any, int, int, dict], dict[str, Any]]:
    """
    :param base_sampler: the name of rl-zoo3's sampler for the base algorithm in ``rl_zoo3.hyperparams_opt``
    :return: a sampler of rl-zoo3's search space for that algorithm plus the JEPA settings (rl-zoo3's sampler
        signature: ``(trial, n_actions, n_envs, additional_args) -> hyperparameters``)
    """

    def sample(trial: Any, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
        from rl_zoo3 import hyperparams_opt

        base = getattr(hyperparams_opt, base_sampler)(trial, n_actions, n_envs, additional_args)
        return {**base, **convert_jepa_params(sample_jepa_params(trial))}

    sample.__name__ = sample.__qualname__ = f"{base_sampler}_with_jepa"
    return sample


def convert_onpolicy_jepa_params(params: dict[str, Any]) -> dict[str, Any]:
    """
    rl-zoo3's on-policy converter for the base parameters, :func:`convert_jepa_params` for ours.

    :param params: a stored trial's parameters
    :return: the hyperparameters
    """
    from rl_zoo3.hyperparams_opt import convert_onpolicy_params

    base, jepa = _split(params)
    return {**convert_onpolicy_params(base), **jepa}


SAMPLERS = {"a2c_jepa": jepa_sampler("sample_a2c_params"), "ppo_jepa": jepa_sampler("sample_ppo_params")}
CONVERTERS = {"a2c_jepa": convert_onpolicy_jepa_params, "ppo_jepa": convert_onpolicy_jepa_params}
