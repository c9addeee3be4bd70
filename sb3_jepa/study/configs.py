"""
The study's named configurations: each is a set of algorithm arguments applied on top of the environment's
packaged rl-zoo3 hyperparameters (and of ``--hyperparams``), so that configurations differ only where named.
"""

import hashlib
from typing import Any

#: The paper's target. Every configuration names its target: the package default (stop_grad since 0.2.0) is not
#: the paper's, and a configuration must mean what it meant when its results were recorded
ONLINE = dict(jepa_target="online")

CONFIGS: dict[str, dict[str, Any]] = {
    # The baseline: plain A2C/PPO (bit for bit), collapse metrics still logged. Every setting that changes plain
    # A2C/PPO even at jepa_coef=0 is reset, because tuned zoo entries carry them: the LayerNorm (MinAtar, A2C
    # Acrobot), the random shift (Asterix, Freeway) and the VICReg terms on z (A2C Acrobot, Asterix, SpaceInvaders:
    # weighted on their own, not by jepa_coef, so they train E at jepa_coef=0). So rl_only stays the plain baseline it
    # was when the studies' tables were recorded. (A reward head, --hyperparams jepa_reward_coef in the planning
    # study, stays: its input is detached, E never sees it.) DrQ's control, plain RL with the entry's norm or shift,
    # is named: rl_only:jepa_embedding_norm=layernorm,augment_observations=shift
    "rl_only": dict(
        jepa_coef=0.0,
        jepa_embedding_norm=None,
        augment_observations=None,
        jepa_vicreg_var_coef=0.0,
        jepa_vicreg_cov_coef=0.0,
    ),
    # The paper: JEPA loss + RL gradient into the encoder, online target, no anti-collapse term
    "jepa_rl": dict(ONLINE),
    # JEPA alone trains the encoder (the heads still learn on its detached output): expected to collapse
    "jepa_only": dict(ONLINE, encoder_rl_grad=False),
    # JEPA alone, with VICReg's variance hinge and covariance penalty as the explicit anti-collapse terms (weights of
    # the first study: about 1/128 of VICReg's balance against the summed JEPA loss; see jepa_only_vicreg_fair)
    "jepa_only_vicreg": dict(ONLINE, encoder_rl_grad=False, jepa_vicreg_var_coef=1.0, jepa_vicreg_cov_coef=0.04),
    # JEPA + RL with an EMA target (BYOL/SPR style)
    "jepa_rl_ema": dict(jepa_target="ema"),
    # JEPA + RL with a stop-gradient target (SimSiam/TD-MPC2 style; the package default since 0.2.0)
    "jepa_rl_stop_grad": dict(jepa_target="stop_grad"),
    # JEPA + RL with SPR-style 5-step latent prediction (the predictor rolled forward with the actions taken)
    "jepa_rl_multistep": dict(ONLINE, jepa_prediction_steps=5),
    # JEPA + RL with PPO minibatches drawn as 16-step segments (the faster sampler; PPO only)
    "jepa_rl_segments": dict(ONLINE, jepa_segment_length=16),
    # Pairs: segments of 2 steps, the JEPA term only on in-pair transitions, the pairing offset alternating between
    # epochs: no extra encoding at all, minibatches nearly as shuffled as SB3's (PPO only)
    "jepa_rl_pairs": dict(ONLINE, jepa_segment_length=2, jepa_in_minibatch_only=True),
    # The scale-invariant loss (SPR/BYOL's 2 - 2 cos) at the paper's lambda: shrinking z cannot lower it
    "jepa_rl_cosine": dict(ONLINE, jepa_loss="cosine", jepa_coef=1.0),
    # JEPA alone with the cosine loss: what is left is collapse in direction (every state on one point)
    "jepa_only_cosine": dict(ONLINE, encoder_rl_grad=False, jepa_loss="cosine", jepa_coef=1.0),
    # A parameter-free normalisation ending the encoder, at the paper's lambda with its squared loss
    "jepa_rl_layernorm": dict(ONLINE, jepa_embedding_norm="layernorm", jepa_coef=1.0),
    "jepa_rl_simnorm": dict(ONLINE, jepa_embedding_norm="simnorm", jepa_coef=1.0),
    # VICReg as published (Bardes et al. 2022): invariance 25 on the MSE *averaged* over dimensions, variance 25,
    # covariance 1. This package's JEPA loss is *summed* over the d dimensions, so invariance 25 is jepa_coef = 25/d:
    # 25/128 for the 128-dim embeddings of the MinAtar and pixel testbeds' SmallImageCNN. JEPA alone at that balance:
    "jepa_only_vicreg_fair": dict(
        ONLINE, encoder_rl_grad=False, jepa_coef=25 / 128, jepa_vicreg_var_coef=25.0, jepa_vicreg_cov_coef=1.0
    ),
    # ... and under the RL loss, the same 25:25:1 balance scaled so the JEPA term keeps the zoo's lambda of 0.01
    # (0.01 / (25/128) = 0.0512: variance 25 * 0.0512 = 1.28, covariance 0.0512)
    "jepa_rl_vicreg_fair": dict(ONLINE, jepa_coef=0.01, jepa_vicreg_var_coef=1.28, jepa_vicreg_cov_coef=0.0512),
    # Kenneweg et al.'s setting: EMA target (tau 0.01 in SB3's convention), lambda 1
    "jepa_rl_ema_lambda1": dict(jepa_target="ema", jepa_tau=0.01, jepa_coef=1.0),
}

#: What `python -m sb3_jepa.study run` runs when no --configs are given
DEFAULT_CONFIGS = ("rl_only", "jepa_rl", "jepa_only", "jepa_only_vicreg", "jepa_rl_ema")


def config_kwargs(name: str) -> dict[str, Any]:
    """
    :param name: a configuration name, optionally with overrides for a sweep: ``jepa_rl:jepa_coef=0.1,jepa_tau=0.05``
        (values are read as numbers, else as YAML: booleans, strings, lists)
    :return: the algorithm arguments it sets
    """
    base, _, overrides = name.partition(":")
    if base not in CONFIGS:
        raise ValueError(f"Unknown configuration {base!r}; choose from {sorted(CONFIGS)}")
    kwargs = dict(CONFIGS[base])
    for item in filter(None, overrides.split(",")):
        key, equals, value = item.partition("=")
        if not equals or not key.isidentifier():
            raise ValueError(f"Configuration overrides must read key=value[,key=value], got {item!r} in {name!r}")
        kwargs[key] = _parse_value(value)
    return kwargs


#: The longest folder name the usual filesystems take (NAME_MAX of ext4, XFS, btrfs, tmpfs: 255 bytes)
MAX_FOLDER_BYTES = 255
#: Hex digits of the hash that ends the folder of a configuration whose name cannot be one
FOLDER_HASH_DIGITS = 12


def config_folder(name: str) -> str:
    """
    The folder that holds a configuration's runs: its name, where the name can be a folder's; else (longer than
    :data:`MAX_FOLDER_BYTES` in UTF-8, as a re-measurement of a searched trial with all its overrides easily is, or
    holding a ``/``) its first bytes with ``/`` made ``-``, then ``~`` and the first :data:`FOLDER_HASH_DIGITS` hex
    digits of the SHA-256 of the whole name, 255 bytes in all. Each run's ``summary.json`` keeps the whole name,
    which the study's report reads.

    Example: ``rl_only:jepa_coef=0`` is its own folder; a 300-byte ``jepa_rl:jepa_coef=0.000157...`` becomes its
    first 242 bytes, ``~`` and 12 hex digits.

    :param name: a configuration name, with its overrides
    :return: the folder's name
    """
    encoded = name.encode()
    if len(encoded) <= MAX_FOLDER_BYTES and "/" not in name:
        return name
    digest = hashlib.sha256(encoded).hexdigest()[:FOLDER_HASH_DIGITS]
    # errors="ignore": a multi-byte character cut in two is left out, so the folder stays within the limit
    prefix = encoded[: MAX_FOLDER_BYTES - FOLDER_HASH_DIGITS - 1].decode(errors="ignore").replace("/", "-")
    return f"{prefix}~{digest}"


def _parse_value(text: str) -> Any:
    """Numbers as numbers (``1e-4`` included, which YAML 1.1 reads as a string), anything else as YAML."""
    import yaml

    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return yaml.safe_load(text)
