"""
rl-zoo3 ``-optimize`` samplers for ``a2c_jepa`` and ``ppo_jepa``, and the matching converters that turn a stored
Optuna trial back into hyperparameters (``--storage ... --study-name ... --trial-id N``). Two search spaces, chosen
with the environment variable :data:`SEARCH_SPACE_VARIABLE` (``SB3_JEPA_SEARCH_SPACE``):

- ``full`` (the default): the base algorithm's own search space (rl-zoo3's sampler, called as is) plus the JEPA
  settings;
- ``jepa``: the JEPA settings only. The RL settings stay at the hyperparameter file's entry for the environment
  (rl-zoo3 starts every trial from the entry and overrides only what the sampler returns), so that whatever a trial
  gains over the entry's ``jepa_coef=0`` is the JEPA term's;
- ``jepa_spr``: the ``jepa`` space plus SPR's two missing ingredients (:func:`sample_spr_params`): the random-shift
  augmentation (off or on) and a projection head (none, linear or a 2-layer MLP). For image observations only
  (augmentation needs images); its ``jepa_coef=0`` control with the same augmentation is DrQ's:

      SB3_JEPA_SEARCH_SPACE=jepa python -m rl_zoo3.train --algo ppo_jepa --env CartPole-v1 -optimize \
          --n-trials 30 --storage tuning.log --study-name cartpole-jepa

Both spaces sample the same JEPA settings (:func:`sample_jepa_params`).

rl-zoo3 is imported when a sampler runs, never when this module loads.
"""

import os
from collections.abc import Callable
from typing import Any

from sb3_jepa.common.jepa import EMBEDDING_NORMS
from sb3_jepa.common.loss import JEPA_LOSSES, TARGET_MODES

#: lambda's log-uniform search range: from a loss that barely registers to one that dominates the RL loss
JEPA_COEF_RANGE = (1e-4, 10.0)
#: the ema target's Polyak coefficient range (log-uniform), searched only when the target mode is ema
JEPA_TAU_RANGE = (1e-3, 1.0)
#: width of the predictor's hidden layers
PREDICTOR_WIDTHS = (64, 128, 256, 512)
#: the predictor's hidden layers (all of the sampled width)
PREDICTOR_DEPTHS = (1, 2, 3)
#: latent steps of the JEPA loss (``jepa_prediction_steps``: 1 is the paper's, SPR uses 5)
PREDICTION_STEPS_RANGE = (1, 5)
#: VICReg's weights (log-uniform), searched only when the trial turns VICReg on (``jepa_vicreg: on``)
VICREG_VAR_RANGE = (1e-3, 10.0)
VICREG_COV_RANGE = (1e-4, 1.0)

#: The environment variable that chooses the search space, and its values
SEARCH_SPACE_VARIABLE = "SB3_JEPA_SEARCH_SPACE"
SEARCH_SPACES = ("full", "jepa", "jepa_spr")
#: ``jepa_projection`` choices of the ``jepa_spr`` space: their ``jepa_projection_arch`` (projections of 128)
PROJECTIONS: dict[str, list[int] | None] = {"none": None, "linear": [128], "mlp": [256, 128]}

#: the embedding normalisations searched ("none" stands for None, which Optuna's categorical cannot store)
EMBEDDING_NORM_CHOICES = ("none", *EMBEDDING_NORMS)

# Trial parameters that are ours (rl-zoo3's converter must not see them)
_JEPA_PARAMS = (
    "jepa_coef",
    "jepa_target",
    "jepa_tau",
    "predictor_width",
    "predictor_depth",
    "jepa_loss",
    "jepa_embedding_norm",
    "jepa_prediction_steps",
    "jepa_vicreg",
    "jepa_vicreg_var_coef",
    "jepa_vicreg_cov_coef",
    "augment_observations",
    "jepa_projection",
)


def search_space() -> str:
    """
    :return: the search space that :data:`SEARCH_SPACE_VARIABLE` chooses (``full`` where it is not set)
    :raises ValueError: naming the variable and the allowed values
    """
    value = os.environ.get(SEARCH_SPACE_VARIABLE, "full")
    if value not in SEARCH_SPACES:
        raise ValueError(f"{SEARCH_SPACE_VARIABLE} must be one of {SEARCH_SPACES}, got {value!r}")
    return value


def sample_jepa_params(trial: Any) -> dict[str, Any]:
    """
    The JEPA settings of a trial: lambda (log-uniform), the target mode (and the ema target's tau), the loss, the
    latent steps K, the predictor's width and depth, VICReg (off, or on with both weights log-uniform) and the
    embedding normalisation. Parameters that only matter under another one (tau under ema, the VICReg weights
    under ``on``) are sampled only then, so that TPE does not spend trials on settings that change nothing.

    :param trial: an ``optuna.Trial``
    :return: the sampled JEPA settings, as trial parameters (see :func:`convert_jepa_params`)
    """
    params: dict[str, Any] = {
        "jepa_coef": trial.suggest_float("jepa_coef", *JEPA_COEF_RANGE, log=True),
        "jepa_target": trial.suggest_categorical("jepa_target", list(TARGET_MODES)),
        "predictor_width": trial.suggest_categorical("predictor_width", list(PREDICTOR_WIDTHS)),
        "predictor_depth": trial.suggest_categorical("predictor_depth", list(PREDICTOR_DEPTHS)),
        "jepa_loss": trial.suggest_categorical("jepa_loss", list(JEPA_LOSSES)),
        "jepa_embedding_norm": trial.suggest_categorical("jepa_embedding_norm", list(EMBEDDING_NORM_CHOICES)),
        "jepa_prediction_steps": trial.suggest_int("jepa_prediction_steps", *PREDICTION_STEPS_RANGE),
        "jepa_vicreg": trial.suggest_categorical("jepa_vicreg", ["off", "on"]),
    }
    if params["jepa_target"] == "ema":
        params["jepa_tau"] = trial.suggest_float("jepa_tau", *JEPA_TAU_RANGE, log=True)
    if params["jepa_vicreg"] == "on":
        params["jepa_vicreg_var_coef"] = trial.suggest_float("jepa_vicreg_var_coef", *VICREG_VAR_RANGE, log=True)
        params["jepa_vicreg_cov_coef"] = trial.suggest_float("jepa_vicreg_cov_coef", *VICREG_COV_RANGE, log=True)
    return params


def sample_spr_params(trial: Any) -> dict[str, Any]:
    """
    The ``jepa_spr`` space's additions to :func:`sample_jepa_params`: the random shift of the training minibatches
    (``augment_observations``: ``none`` or ``shift``) and a projection head before the loss (``jepa_projection``,
    one of :data:`PROJECTIONS`).

    :param trial: an ``optuna.Trial``
    :return: the sampled settings, as trial parameters (see :func:`convert_jepa_params`)
    """
    return {
        "augment_observations": trial.suggest_categorical("augment_observations", ["none", "shift"]),
        "jepa_projection": trial.suggest_categorical("jepa_projection", list(PROJECTIONS)),
    }


def convert_jepa_params(params: dict[str, Any]) -> dict[str, Any]:
    """
    :param params: trial parameters holding some of the settings :func:`sample_jepa_params` samples (trials of
        earlier versions hold fewer: ``predictor_depth`` is then 1 and VICReg off, as they were)
    :return: the algorithm's keyword arguments for them
    """
    names = ("jepa_coef", "jepa_target", "jepa_tau", "jepa_loss", "jepa_prediction_steps")
    kwargs: dict[str, Any] = {key: params[key] for key in names if key in params}
    if "jepa_embedding_norm" in params:
        kwargs["jepa_embedding_norm"] = None if params["jepa_embedding_norm"] == "none" else params["jepa_embedding_norm"]
    if "predictor_width" in params:
        kwargs["predictor_net_arch"] = [int(params["predictor_width"])] * int(params.get("predictor_depth", 1))
    if "jepa_vicreg" in params:
        on = params["jepa_vicreg"] == "on"
        kwargs["jepa_vicreg_var_coef"] = float(params["jepa_vicreg_var_coef"]) if on else 0.0
        kwargs["jepa_vicreg_cov_coef"] = float(params["jepa_vicreg_cov_coef"]) if on else 0.0
    if "augment_observations" in params:
        kwargs["augment_observations"] = None if params["augment_observations"] == "none" else params["augment_observations"]
    if "jepa_projection" in params:
        kwargs["jepa_projection_arch"] = PROJECTIONS[params["jepa_projection"]]
    return kwargs


def _split(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    base = {key: value for key, value in params.items() if key not in _JEPA_PARAMS}
    return base, convert_jepa_params(params)


def jepa_sampler(base_sampler: str) -> Callable[[Any, int, int, dict], dict[str, Any]]:
    """
    :param base_sampler: the name of rl-zoo3's sampler for the base algorithm in ``rl_zoo3.hyperparams_opt``
    :return: a sampler of rl-zoo3's search space for that algorithm plus the JEPA settings, or of the JEPA settings
        alone where :func:`search_space` says ``jepa`` (rl-zoo3's sampler signature: ``(trial, n_actions, n_envs,
        additional_args) -> hyperparameters``)
    """

    def sample(trial: Any, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
        from rl_zoo3 import hyperparams_opt

        space = search_space()
        if space == "jepa":  # the RL settings stay the entry's
            return convert_jepa_params(sample_jepa_params(trial))
        if space == "jepa_spr":
            return convert_jepa_params({**sample_jepa_params(trial), **sample_spr_params(trial)})
        base = getattr(hyperparams_opt, base_sampler)(trial, n_actions, n_envs, additional_args)
        return {**base, **convert_jepa_params(sample_jepa_params(trial))}

    sample.__name__ = sample.__qualname__ = f"{base_sampler}_with_jepa"
    return sample


def convert_onpolicy_jepa_params(params: dict[str, Any]) -> dict[str, Any]:
    """
    rl-zoo3's on-policy converter for the base parameters, :func:`convert_jepa_params` for ours.

    :param params: a stored trial's parameters (a trial of the ``jepa`` search space has no base parameters: the
        RL settings are then the entry's, which rl-zoo3 reads from the hyperparameter file as for any run)
    :return: the hyperparameters
    """
    from rl_zoo3.hyperparams_opt import convert_onpolicy_params

    base, jepa = _split(params)
    return {**(convert_onpolicy_params(base) if base else {}), **jepa}


SAMPLERS = {"a2c_jepa": jepa_sampler("sample_a2c_params"), "ppo_jepa": jepa_sampler("sample_ppo_params")}
CONVERTERS = {"a2c_jepa": convert_onpolicy_jepa_params, "ppo_jepa": convert_onpolicy_jepa_params}
