"""
What the embeddings encode: linear probes from ``z = E(s)`` to the environment's true state.

A collapse metric says how many directions the embeddings use; a probe says whether the task's state is still in
them. The paper's "simplicity" hypothesis (a minimal but sufficient feature space) predicts low rank that still holds
the state; collapse that costs the task loses it. Measured here as the held-out R^2 of a ridge regression from z
to each state variable, on states the trained policy visits.
"""

from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from sb3_jepa.common.utils import check_positive_int


class NoStateError(ValueError):
    """The environment reports no true state to probe (its infos lack the state key)."""


def linear_probe_r2(
    z: np.ndarray, states: np.ndarray, ridge: float = 1e-3, holdout: float = 0.25, seed: int = 0
) -> np.ndarray:
    """
    Held-out R^2 of a ridge regression (with intercept) from the embeddings to each state variable.

    The rows are shuffled with ``seed`` and split into a fit set and a held-out set (``holdout`` of the rows); the
    embeddings are standardised with the fit set's statistics (so ``ridge`` means the same whatever z's scale: a
    collapse in scale alone does not lower the score) and the R^2 of each variable is computed on the held-out rows,
    against their own mean. 1: the variable is a linear function of z; 0: no better than its mean; negative: worse.

    :param z: embeddings, shape ``(n, dim)``
    :param states: the true states, shape ``(n, n_vars)`` (or ``(n,)``)
    :param ridge: the ridge penalty on the standardised embeddings, ``>= 0``
    :param holdout: the held-out fraction, in ``(0, 1)``
    :param seed: the seed of the split
    :return: the R^2 of each variable, shape ``(n_vars,)``
    """
    z = np.asarray(z, dtype=np.float64).reshape(len(z), -1)
    states = np.asarray(states, dtype=np.float64).reshape(len(states), -1)
    if len(z) != len(states):
        raise ValueError(f"z and states must have as many rows, got {len(z)} and {len(states)}")
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must be in (0, 1), got {holdout!r}")
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, got {ridge!r}")
    n_test = round(holdout * len(z))
    if n_test < 2 or len(z) - n_test < 2:
        raise ValueError(f"linear_probe_r2 needs at least 2 fit and 2 held-out rows, got {len(z)} rows")
    order = np.random.default_rng(seed).permutation(len(z))
    test, fit = order[:n_test], order[n_test:]
    mean, std = z[fit].mean(axis=0), z[fit].std(axis=0)
    # A dimension constant on the fit set carries nothing: leave it at 0 instead of dividing by 0
    scaled = (z - mean) / np.where(std > 1e-12, std, np.inf)
    design = np.concatenate([scaled, np.ones((len(z), 1))], axis=1)
    penalty = ridge * np.eye(design.shape[1])
    penalty[-1, -1] = 0.0  # the intercept is not penalised
    x_fit = design[fit]
    weights = np.linalg.solve(x_fit.T @ x_fit + penalty, x_fit.T @ states[fit])
    residual = states[test] - design[test] @ weights
    total = states[test] - states[test].mean(axis=0)
    sst = (total**2).sum(axis=0)
    return 1.0 - (residual**2).sum(axis=0) / np.where(sst > 0, sst, np.nan)


def collect_states(
    model: BaseAlgorithm, env: VecEnv, n_steps: int, deterministic: bool = False, state_key: str = "state"
) -> tuple[np.ndarray, np.ndarray]:
    """
    Run the model's policy in ``env`` and keep, for every step, the embedding of the observation and the true state
    the environment reports with it (``info[state_key]``; ``env.reset_infos`` after a reset). Steps whose
    observation is a reset (an episode ended) pair the new observation with the reset's info.

    :param model: a trained A2CJEPA/PPOJEPA
    :param env: a VecEnv whose infos carry the state (e.g. ``PixelCartPole-v1``, with the model's wrappers)
    :param n_steps: how many VecEnv steps to collect (``n_steps * env.num_envs`` rows)
    :param deterministic: act greedily instead of sampling
    :param state_key: the info key holding the true state
    :return: ``(z, states)``: shapes ``(rows, dim)`` and ``(rows, n_vars)``
    :raises NoStateError: if the environment's infos carry no ``state_key``
    """
    check_positive_int("n_steps", n_steps)
    policy: Any = model.policy
    observations: Any = env.reset()
    # The innermost VecEnv's: wrappers such as VecFrameStack have reset_infos of their own, always empty
    inner = env.unwrapped
    infos: list[dict[str, Any]] = list(getattr(inner, "reset_infos", [{}] * env.num_envs))
    embeddings, states = [], []
    for _ in range(n_steps):
        if any(state_key not in info for info in infos):
            raise NoStateError(f"The environment's infos have no {state_key!r} entry: it exposes no true state to probe")
        with th.no_grad():
            obs_tensor, _ = policy.obs_to_tensor(observations)
            embeddings.append(policy.jepa_encode(obs_tensor).flatten(1).cpu().numpy())
        states.append(np.stack([np.asarray(info[state_key], dtype=np.float64).ravel() for info in infos]))
        actions, _ = model.predict(observations, deterministic=deterministic)
        observations, _, dones, step_infos = env.step(actions)
        reset_infos = getattr(inner, "reset_infos", None)
        # After an episode end the observation is the next episode's first: its state is in the reset info
        infos = [reset_infos[i] if dones[i] and reset_infos else step_infos[i] for i in range(env.num_envs)]
    return np.concatenate(embeddings), np.concatenate(states)
