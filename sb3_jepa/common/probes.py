"""
What the embeddings encode: linear probes from ``z = E(s)`` to the environment's true state.

A collapse metric says how many directions the embeddings use; a probe says whether the task's state is still in
them. The paper's "simplicity" hypothesis (a minimal but sufficient feature space) predicts low rank that still holds
the state; collapse that costs the task loses it. Measured here as the held-out R^2 of a ridge regression from z
to each state variable, on states the trained policy visits. The study holds out whole episodes (``groups``): held-out
random steps have near copies among the fitted ones, which flatters a probe.

On the distractor testbeds (the paper's open question, issue 20) :func:`distractor_probes` splits the score: what z
keeps of the task's variables, what it keeps of the distractors the reward never depends on, and how much of z's
variance the distractors explain.
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


def _hold_out_groups(groups: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """
    Split rows by whole groups: the groups are shuffled, and the shortest run of them from the start whose rows
    come closest to ``fraction`` of all rows is held out (at least one group, never all of them).

    :param groups: the group of each row, shape ``(n,)``, with at least two distinct values
    :param fraction: the fraction of the rows to hold out
    :param rng: the generator that shuffles the groups
    :return: the indices of the held-out rows and of the others, each in increasing order
    """
    names, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    order = rng.permutation(len(names))
    held_rows = np.cumsum(counts[order])[:-1]  # rows held out when the first 1, 2, ... groups are
    n_held = 1 + int(np.argmin(np.abs(held_rows - fraction * len(groups))))
    held = np.zeros(len(names), dtype=bool)
    held[order[:n_held]] = True
    return np.flatnonzero(held[inverse]), np.flatnonzero(~held[inverse])


def linear_probe_r2(
    z: np.ndarray,
    states: np.ndarray,
    ridge: float | None = None,
    holdout: float = 0.25,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """
    Held-out R^2 of a ridge regression (with intercept) from the embeddings to each state variable.

    The rows are split with ``seed`` into a fit set and a held-out set of about ``holdout`` of the rows: random
    rows, or, when ``groups`` is given, whole groups (shuffled, then as many as come closest to that fraction).
    Consecutive steps of an episode are nearly alike, so a random-row split tests mostly on near copies of fitted
    rows, and a probe that memorises episodes (a per-episode constant, say) scores as if it generalised: pass the
    episode ids of :func:`collect_states` as ``groups`` to test on unseen episodes. The embeddings are centred and
    divided by one number, their root-mean-square spread on the fit set, so that a collapse in scale alone does not
    change the score, while nearly dead dimensions stay small instead of being blown up. The ridge penalty (per fit
    row) is ``ridge``, or, if None, the one of :data:`RIDGE_GRID` that scores best on about a fifth of the fit set
    held back for it (random rows, or whole groups when ``groups`` is given). Each variable's R^2 is then computed
    on the held-out rows, against their own mean: 1, the variable is a linear function of z; 0, no better than its
    mean; negative, worse.

    :param z: embeddings, shape ``(n, dim)``
    :param states: the true states, shape ``(n, n_vars)`` (or ``(n,)``)
    :param ridge: the ridge penalty, ``>= 0``; None: chosen from :data:`RIDGE_GRID`
    :param holdout: the held-out fraction, in ``(0, 1)``
    :param seed: the seed of the split
    :param groups: the group of each row, shape ``(n,)`` (e.g. the episode ids of :func:`collect_states`): held out
        and held back whole, never split between fit and test; at least 2 distinct groups, 3 when ``ridge`` is
        None. None: random rows
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
    rng = np.random.default_rng(seed)
    if groups is None:
        n_test = round(holdout * len(z))
        if n_test < 2 or len(z) - n_test < 10:
            raise ValueError(f"linear_probe_r2 needs at least 2 held-out and 10 fit rows, got {len(z)} rows")
        order = rng.permutation(len(z))
        test, fit = order[:n_test], order[n_test:]
    else:
        groups = np.asarray(groups).reshape(-1)
        if len(groups) != len(z):
            raise ValueError(f"groups must have one entry per row of z, got {len(groups)} for {len(z)} rows")
        needed = 3 if ridge is None else 2  # held out, (held back to choose the ridge,) fitted
        n_groups = len(np.unique(groups))
        if n_groups < needed:
            raise ValueError(
                f"groups must have at least {needed} distinct values (one held out, "
                f"{'one held back to choose the ridge, ' if ridge is None else ''}one to fit), got {n_groups}"
            )
        test, fit = _hold_out_groups(groups, holdout, rng)
        if len(test) < 2 or len(fit) < 10:
            raise ValueError(
                f"linear_probe_r2 needs at least 2 held-out and 10 fit rows, got {len(test)} and {len(fit)} "
                f"from holding out whole groups"
            )
    mean = z[fit].mean(axis=0)
    spread = np.sqrt(((z[fit] - mean) ** 2).sum(axis=1).mean() / z.shape[1])
    # A constant encoder (spread 0) holds nothing: its features are all zero, the probe predicts the mean
    scaled = (z - mean) / spread if spread > 1e-12 else np.zeros_like(z)
    design = np.concatenate([scaled, np.ones((len(z), 1))], axis=1)
    if ridge is None:
        if groups is None:
            n_val = len(fit) // 5
            val, train = fit[:n_val], fit[n_val:]
        else:
            # The ridge is chosen on unseen groups too: on rows of fitted episodes it would favour memorising
            held_back, kept = _hold_out_groups(groups[fit], 0.2, rng)
            val, train = fit[held_back], fit[kept]
        scores = [np.nanmean(_r2(states[val], design[val] @ _ridge_fit(design[train], states[train], r))) for r in RIDGE_GRID]
        ridge = RIDGE_GRID[int(np.nanargmax(scores))] if np.isfinite(scores).any() else RIDGE_GRID[-1]
    weights = _ridge_fit(design[fit], states[fit], ridge)
    return _r2(states[test], design[test] @ weights)


def explained_variance_fraction(z: np.ndarray, predictors: np.ndarray) -> float:
    """
    The fraction of the embeddings' total variance that a linear map (least squares, with intercept) from
    ``predictors`` explains: ``1 - sum ||z - z_hat||^2 / sum ||z - mean||^2``, every dimension pooled (so each counts
    as much as it varies), adjusted for the number of predictors (``1 - (1 - R^2) (n - 1) / (n - p - 1)``: a map
    from ``p`` variables of pure noise explains about 0). The reverse of :func:`linear_probe_r2`: not "can the
    distractors be read out of z" but "how much of z is the distractors". Fitted on all rows, not held out: with a
    few predictors and thousands of rows nothing is memorised, while a held-out split would charge the map for the
    episodes' other differences (the task's state moves z's mean from one episode to the next).

    :param z: embeddings, shape ``(n, dim)``
    :param predictors: the variables that explain them (e.g. the distractors' positions), shape ``(n, p)``, with
        ``n > p + 1``
    :return: the fraction, at most 1 (nan where z does not vary)
    """
    z = np.asarray(z, dtype=np.float64).reshape(len(z), -1)
    predictors = np.asarray(predictors, dtype=np.float64).reshape(len(predictors), -1)
    n, p = predictors.shape
    if len(z) != n:
        raise ValueError(f"z and predictors must have as many rows, got {len(z)} and {n}")
    if n <= p + 1:
        raise ValueError(f"explained_variance_fraction needs more rows than predictors + 1, got {n} rows and {p}")
    design = np.concatenate([predictors - predictors.mean(axis=0), np.ones((n, 1))], axis=1)
    weights, *_ = np.linalg.lstsq(design, z, rcond=None)
    total = ((z - z.mean(axis=0)) ** 2).sum()
    if not total > 0:
        return float("nan")
    r2 = 1.0 - ((z - design @ weights) ** 2).sum() / total
    return float(1.0 - (1.0 - r2) * (n - 1) / (n - p - 1))


def distractor_centroids(distractors: np.ndarray, objects: int) -> np.ndarray:
    """
    The centroid of exchangeable distractor objects: the mean over the objects of each coordinate.

    Example: two dots, ``distractors`` rows ``[x1, y1, x2, y2]`` and ``objects=2``: each row becomes
    ``[(x1 + x2) / 2, (y1 + y2) / 2]``; a row ``[10, 0, 30, 4]`` becomes ``[20, 2]``.

    :param distractors: the distractors' variables, the objects one after another with the same coordinates each,
        shape ``(n, objects * coordinates)``
    :param objects: how many objects the variables describe (>= 1, dividing the number of variables)
    :return: shape ``(n, coordinates)``
    """
    distractors = np.asarray(distractors, dtype=np.float64).reshape(len(distractors), -1)
    if isinstance(objects, bool) or not isinstance(objects, (int, np.integer)) or objects < 1:
        raise ValueError(f"objects must be an integer >= 1, got {objects!r}")
    if distractors.shape[1] % objects:
        raise ValueError(f"objects must divide the {distractors.shape[1]} distractor variables, got {objects}")
    return distractors.reshape(len(distractors), objects, -1).mean(axis=1)


def distractor_probes(
    z: np.ndarray,
    states: np.ndarray,
    n_distractor_vars: int,
    groups: np.ndarray,
    seed: int = 0,
    exchangeable_objects: int | None = None,
) -> dict[str, float]:
    """
    What the embeddings keep of the task and of the distractors, for testbeds whose state ends with the
    distractors' variables (``info["state"]`` of the distractor testbeds: task variables, then
    ``info["distractor_state"]``).

    Where the distractors are objects that the observation does not tell apart (Two Rooms' dots, alike in one
    channel), no function of the observation predicts one object's own coordinates beyond what the set of them
    says, so ``distractor_r2`` stays low even for the raw image; ``distractor_centroid_r2`` asks for their centroid
    instead, which the image does determine (a ridge probe from Two Rooms' pixels reads it at R^2 1.00).

    :param z: embeddings, shape ``(n, dim)``
    :param states: the true states, task variables first, shape ``(n, n_vars)``
    :param n_distractor_vars: how many of the last columns are distractors (>= 1, fewer than all)
    :param groups: the episode of each row, held out whole
    :param seed: the seed of the splits
    :param exchangeable_objects: None, or how many look-alike objects the distractors' variables describe, one
        after another with the same coordinates each (``info["distractor_objects"]``)
    :return: ``task_r2`` and ``distractor_r2``, the mean held-out R^2 (:func:`linear_probe_r2`) of the task's and of
        the distractors' variables, and ``distractor_variance_fraction`` (:func:`explained_variance_fraction` of z
        from the distractors, on all rows; a linear map from every object's coordinates, so it is not hurt by the
        objects looking alike); with ``exchangeable_objects``, ``distractor_centroid_r2``, the mean held-out R^2 of
        the objects' centroid (:func:`distractor_centroids`)
    """
    states = np.asarray(states, dtype=np.float64).reshape(len(states), -1)
    if not 0 < n_distractor_vars < states.shape[1]:
        raise ValueError(f"n_distractor_vars must be in [1, {states.shape[1] - 1}], got {n_distractor_vars}")
    distractors = states[:, -n_distractor_vars:]
    # Checked before the probes' work
    centroids = None if exchangeable_objects is None else distractor_centroids(distractors, exchangeable_objects)
    r2 = linear_probe_r2(z, states, groups=groups, seed=seed)
    scores = dict(
        task_r2=float(np.mean(r2[:-n_distractor_vars])),
        distractor_r2=float(np.mean(r2[-n_distractor_vars:])),
        distractor_variance_fraction=explained_variance_fraction(z, distractors),
    )
    if centroids is not None:
        scores["distractor_centroid_r2"] = float(np.mean(linear_probe_r2(z, centroids, groups=groups, seed=seed)))
    return scores


def collect_states(
    model: BaseAlgorithm,
    env: VecEnv,
    n_steps: int,
    deterministic: bool = False,
    state_key: str = "state",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    Run the model's policy in ``env`` and keep, for every step, the embedding of the observation, the true state
    the environment reports with it (``info[state_key]``; ``env.reset_infos`` after a reset) and the episode it
    belongs to. Steps whose observation is a reset (an episode ended) pair the new observation with the reset's
    info and start a new episode.

    :param model: a trained A2CJEPA/PPOJEPA
    :param env: a VecEnv whose infos carry the state (e.g. ``PixelCartPole-v1``, with the model's wrappers)
    :param n_steps: how many VecEnv steps to collect (``n_steps * env.num_envs`` rows)
    :param deterministic: act greedily instead of sampling
    :param state_key: the info key holding the true state
    :return: ``(z, states, episodes)``, shapes ``(rows, dim)``, ``(rows, n_vars)`` and ``(rows,)``, the rows ordered
        step by step, env by env within a step; ``episodes`` numbering the episodes ``0, 1, ...`` in the order they
        start (env ``i``'s first episode is ``i``), one number per episode of every env (the ``groups`` of
        :func:`linear_probe_r2`)
    :raises NoStateError: if the environment's infos carry no ``state_key``
    """
    check_positive_int("n_steps", n_steps)
    policy: Any = model.policy
    observations: Any = env.reset()
    # The innermost VecEnv's: wrappers such as VecFrameStack have reset_infos of their own, always empty
    inner = env.unwrapped
    infos: list[dict[str, Any]] = list(getattr(inner, "reset_infos", [{}] * env.num_envs))
    embeddings, states, episode_ids = [], [], []
    episode = np.arange(env.num_envs)  # the episode of each env's current observation
    next_episode = env.num_envs
    for _ in range(n_steps):
        if any(state_key not in info for info in infos):
            raise NoStateError(f"The environment's infos have no {state_key!r} entry: it exposes no true state to probe")
        states.append(np.stack([np.asarray(info[state_key], dtype=np.float64).ravel() for info in infos]))
        episode_ids.append(episode.copy())
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
        for i in np.flatnonzero(dones):
            episode[i], next_episode = next_episode, next_episode + 1
    return np.concatenate(embeddings), np.concatenate(states), np.concatenate(episode_ids)
