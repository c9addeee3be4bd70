"""
What the embeddings encode: linear probes from ``z = E(s)`` to the environment's true state.

A collapse metric says how many directions the embeddings use; a probe says whether the task's state is still in
them. The paper's "simplicity" hypothesis (a minimal but sufficient feature space) predicts low rank that still holds
the state; collapse that costs the task loses it. Measured here as the held-out R^2 of a ridge regression from z
to each state variable, on states the trained policy visits.
"""

from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from sb3_jepa.common.utils import check_positive_int


class NoStateError(ValueError):
    """The environment reports no true state to probe (its infos lack the state key)."""


#: The ridge penalties tried (per fit row, on embeddings scaled to unit mean variance) when none is given
RIDGE_GRID = tuple(10.0**k for k in range(-4, 3))


def _ridge_fit(x: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    """Least squares with intercept (the last column of ``x`` is ones, not penalised), penalty ``ridge * rows``."""
    penalty = ridge * len(x) * np.eye(x.shape[1])
    penalty[-1, -1] = 0.0
    return np.linalg.solve(x.T @ x + penalty, x.T @ y)


def _r2(y: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    total = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    return 1.0 - ((y - prediction) ** 2).sum(axis=0) / np.where(total > 0, total, np.nan)


def linear_probe_r2(
    z: np.ndarray, states: np.ndarray, ridge: float | None = None, holdout: float = 0.25, seed: int = 0
) -> np.ndarray:
    """
    Held-out R^2 of a ridge regression (with intercept) from the embeddings to each state variable.

    The rows are shuffled with ``seed`` and split into a fit set and a held-out set (``holdout`` of the rows). The
    embeddings are centred and divided by one number, their root-mean-square spread on the fit set, so that a
    collapse in scale alone does not change the score, while nearly dead dimensions stay small instead of being blown
    up. The ridge penalty (per fit row) is ``ridge``, or, if None, the one of :data:`RIDGE_GRID` that scores best on
    a fifth of the fit set held back for it. Each variable's R^2 is then computed on the held-out rows, against
    their own mean: 1, the variable is a linear function of z; 0, no better than its mean; negative, worse.

    :param z: embeddings, shape ``(n, dim)``
    :param states: the true states, shape ``(n, n_vars)`` (or ``(n,)``)
    :param ridge: the ridge penalty, ``>= 0``; None: chosen from :data:`RIDGE_GRID`
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
    if ridge is not None and ridge < 0:
        raise ValueError(f"ridge must be None or >= 0, got {ridge!r}")
    n_test = round(holdout * len(z))
    if n_test < 2 or len(z) - n_test < 10:
        raise ValueError(f"linear_probe_r2 needs at least 2 held-out and 10 fit rows, got {len(z)} rows")
    order = np.random.default_rng(seed).permutation(len(z))
    test, fit = order[:n_test], order[n_test:]
    mean = z[fit].mean(axis=0)
    spread = np.sqrt(((z[fit] - mean) ** 2).sum(axis=1).mean() / z.shape[1])
    # A constant encoder (spread 0) holds nothing: its features are all zero, the probe predicts the mean
    scaled = (z - mean) / spread if spread > 1e-12 else np.zeros_like(z)
    design = np.concatenate([scaled, np.ones((len(z), 1))], axis=1)
    if ridge is None:
        n_val = len(fit) // 5
        val, train = fit[:n_val], fit[n_val:]
        scores = [np.nanmean(_r2(states[val], design[val] @ _ridge_fit(design[train], states[train], r))) for r in RIDGE_GRID]
        ridge = RIDGE_GRID[int(np.nanargmax(scores))] if np.isfinite(scores).any() else RIDGE_GRID[-1]
    weights = _ridge_fit(design[fit], states[fit], ridge)
    return _r2(states[test], design[test] @ weights)


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
        states.append(np.stack([np.asarray(info[state_key], dtype=np.float64).ravel() for info in infos]))
        # The embeddings of the encoder pass predict() does anyway (the policy's one-shot capture), not a second pass
        policy.jepa_capture_start()
        actions, _ = model.predict(observations, deterministic=deterministic)
        captured = policy.jepa_capture_stop()
        assert captured is not None, "predict() did not run the encoder"
        embeddings.append(captured.batch.detach().flatten(1).cpu().numpy())
        observations, _, dones, step_infos = env.step(actions)
        reset_infos = getattr(inner, "reset_infos", None)
        # After an episode end the observation is the next episode's first: its state is in the reset info
        infos = [reset_infos[i] if dones[i] and reset_infos else step_infos[i] for i in range(env.num_envs)]
    return np.concatenate(embeddings), np.concatenate(states)
