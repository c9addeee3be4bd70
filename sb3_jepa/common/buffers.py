"""
Rollout buffers whose samples carry the true next observation ``s_{t+1}`` of every transition.

SB3's rollout buffers store ``s_t`` only. For a step that did not end an episode, ``s_{t+1}`` is the next
row of the same env; for the rollout's last step it is the observation the algorithm holds after the loop
(``_last_obs``); for a step that ended an episode (terminated *or* truncated) it exists only in
``infos[env]["terminal_observation"]``: the next row is already the reset observation (a zero-padded
stack under ``VecFrameStack``), and using it would teach the predictor to predict resets.

So these buffers keep, besides what SB3 keeps:

- the terminal observations of the episodes that ended during the rollout (copied, usually a handful),
- a reference to the final observations (the same array as the algorithm's ``_last_obs``, so no copy),
- one int32 per transition saying where its next observation is.

A full ``next_observations`` array would double the observation memory (about 29 MB on Atari PPO).
"""

import warnings
from collections.abc import Callable, Generator
from typing import Any, NamedTuple

import numpy as np
import torch as th
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.type_aliases import DictRolloutBufferSamples, RolloutBufferSamples, TensorDict
from stable_baselines3.common.vec_env import VecNormalize

#: ``next_source`` value: ``s_{t+1}`` is the following row of the same env (the final observation for the last step)
NEXT_FOLLOWS = -1
#: ``next_source`` value: the episode ended and the VecEnv gave no terminal observation
NEXT_MISSING = -2


class JEPARolloutBufferSamples(NamedTuple):
    """
    A ``RolloutBufferSamples`` with the transition's next observation.

    ``next_observations[i]`` is ``s_{t+1}`` of row ``i``. The same rows are also given in the compact form the
    JEPA loss uses to avoid encoding an observation twice: ``next_observations[i]`` is row ``next_index[i]`` of
    ``cat(observations, next_extra_observations)``, where ``next_extra_observations`` holds only the next
    observations that are not already rows of this batch.
    """

    observations: th.Tensor
    actions: th.Tensor
    old_values: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    returns: th.Tensor
    #: ``s_{t+1}`` for every row
    next_observations: th.Tensor
    #: 1.0 where ``s_{t+1}`` is known, 0.0 where a VecEnv gave no terminal observation (mask those rows)
    next_valid: th.Tensor
    #: row of ``cat(observations, next_extra_observations)`` holding ``s_{t+1}`` (the row itself where not valid)
    next_index: th.Tensor
    #: the next observations that are not rows of ``observations``
    next_extra_observations: th.Tensor


class JEPADictRolloutBufferSamples(NamedTuple):
    """The ``Dict`` observation counterpart of :class:`JEPARolloutBufferSamples`."""

    observations: TensorDict
    actions: th.Tensor
    old_values: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    returns: th.Tensor
    next_observations: TensorDict
    next_valid: th.Tensor
    next_index: th.Tensor
    next_extra_observations: TensorDict


ObsArray = np.ndarray | dict[str, np.ndarray]


class NextObservationMixin:
    """
    The bookkeeping shared by :class:`JEPARolloutBuffer` and :class:`JEPADictRolloutBuffer`.
    Observation arrays are either one array or a dict of arrays; ``_map_obs`` applies a function to each.
    """

    buffer_size: int
    n_envs: int
    pos: int
    device: th.device
    observations: Any
    obs_shape: Any
    generator_ready: bool

    next_source: np.ndarray
    terminal_observations: list[ObsArray]
    final_observations: ObsArray | None
    _next_flat: np.ndarray | None
    _row_lookup: np.ndarray | None
    _terminal_stack: ObsArray | None
    _n_terminal: int

    # Provided by SB3's BaseBuffer (annotated only, so that the mixin does not shadow it)
    to_torch: Callable[..., th.Tensor]

    def _map_obs(self, fn: Any, *trees: Any) -> Any:
        raise NotImplementedError

    def _reset_next(self) -> None:
        self.next_source = np.full((self.buffer_size, self.n_envs), NEXT_FOLLOWS, dtype=np.int32)
        self.terminal_observations = []
        self.final_observations = None
        self._next_flat = None
        self._row_lookup = None
        self._terminal_stack = None
        self._n_terminal = 0
        self._warned_missing = getattr(self, "_warned_missing", False)

    def add_terminal_observations(self, infos: list[dict[str, Any]], dones: np.ndarray) -> None:
        """
        Record where ``s_{t+1}`` is for the envs whose episode ended at this step. Call it once per step,
        before ``add()`` (the algorithm does it from ``_update_info_buffer``).

        :param infos: the VecEnv's infos for this step
        :param dones: the VecEnv's dones for this step (terminated or truncated)
        """
        for env_idx in np.flatnonzero(dones):
            terminal_obs = infos[env_idx].get("terminal_observation")
            if terminal_obs is None:
                self.next_source[self.pos, env_idx] = NEXT_MISSING
                if not self._warned_missing:
                    self._warned_missing = True
                    warnings.warn(
                        "An episode ended without infos['terminal_observation'] (is this VecEnv SB3-compatible?): "
                        "the JEPA loss masks such transitions.",
                        UserWarning,
                        stacklevel=2,
                    )
                continue
            self.next_source[self.pos, env_idx] = len(self.terminal_observations)
            # Copied: some envs hand out the same array again after reset
            self.terminal_observations.append(self._map_obs(lambda o, s: np.array(o).reshape(s), terminal_obs, self.obs_shape))

    def add_final_observations(self, final_observations: ObsArray) -> None:
        """
        Record ``s_{t+1}`` for the rollout's last step: the observations after the loop. Kept by reference:
        it is the algorithm's ``_last_obs``, which no env step changes before ``train()`` reads this buffer.

        :param final_observations: one observation per env
        """
        self.final_observations = self._map_obs(
            lambda o, s: np.asarray(o).reshape((self.n_envs, *s)), final_observations, self.obs_shape
        )

    def jepa_nbytes(self) -> int:
        """:return: the bytes this buffer holds beyond SB3's own buffer (terminal observations and index arrays)"""
        total = self.next_source.nbytes
        for array in (self._next_flat, self._row_lookup):
            if array is not None:
                total += array.nbytes
        stored = self.terminal_observations if self._terminal_stack is None else [self._terminal_stack]
        for obs in stored:
            total += sum(a.nbytes for a in (obs.values() if isinstance(obs, dict) else [obs]))
        return total

    def _prepare_next_index(self) -> None:
        """Turn ``next_source`` into flat indices, in the order ``swap_and_flatten`` gives the rows."""
        n_steps, n_envs = self.buffer_size, self.n_envs
        n_rows, n_terminal = n_steps * n_envs, len(self.terminal_observations)
        step = np.arange(n_steps)[:, None]
        env = np.arange(n_envs)[None, :]
        follows_in_buffer = env * n_steps + step + 1
        if self.final_observations is None:
            # Filled by hand, without the algorithm's final observations: the last step's successor is unknown
            follows_final = np.full((1, n_envs), -1)
        else:
            follows_final = n_rows + n_terminal + env
        follows = np.where(step < n_steps - 1, follows_in_buffer, follows_final)
        flat = np.where(
            self.next_source == NEXT_FOLLOWS,
            follows,
            np.where(self.next_source >= 0, n_rows + self.next_source, -1),
        )
        self._next_flat = flat.swapaxes(0, 1).reshape(-1).astype(np.int64)
        self._row_lookup = np.full(n_rows, -1, dtype=np.int64)
        self._n_terminal = n_terminal
        if n_terminal > 0:
            self._terminal_stack = self._map_obs(lambda *obs: np.stack(obs), *self.terminal_observations)
            self.terminal_observations = []

    def _gather_observations(self, flat_indices: np.ndarray) -> Any:
        """Observations at flat indices: buffer rows, then terminal observations, then final observations."""
        n_rows = self.buffer_size * self.n_envs
        n_terminal = self._n_terminal
        in_buffer = flat_indices < n_rows
        in_terminal = ~in_buffer & (flat_indices < n_rows + n_terminal)
        in_final = flat_indices >= n_rows + n_terminal

        def gather(observations: np.ndarray, terminal: np.ndarray | None, final: np.ndarray | None) -> np.ndarray:
            out = np.empty((len(flat_indices), *observations.shape[1:]), dtype=observations.dtype)
            out[in_buffer] = observations[flat_indices[in_buffer]]
            if terminal is not None:
                out[in_terminal] = terminal[flat_indices[in_terminal] - n_rows]
            if final is not None:
                out[in_final] = final[flat_indices[in_final] - n_rows - n_terminal]
            return out

        return self._map_obs(gather, self.observations, self._terminal_stack, self.final_observations)

    def _next_fields(self, observations: Any, batch_inds: np.ndarray) -> dict[str, Any]:
        """The ``next_*`` fields of a sample whose rows are ``batch_inds`` (observations already on the device)."""
        assert self._next_flat is not None and self._row_lookup is not None
        batch_size = len(batch_inds)
        next_flat = self._next_flat[batch_inds]
        valid = next_flat >= 0
        in_buffer = valid & (next_flat < len(self._row_lookup))
        # Which row of this batch (if any) holds each next observation
        self._row_lookup[batch_inds] = np.arange(batch_size)
        next_row = np.full(batch_size, -1, dtype=np.int64)
        next_row[in_buffer] = self._row_lookup[next_flat[in_buffer]]
        self._row_lookup[batch_inds] = -1
        needs_extra = valid & (next_row < 0)
        next_index = np.arange(batch_size, dtype=np.int64)
        next_index[valid] = next_row[valid]
        next_index[needs_extra] = batch_size + np.arange(int(needs_extra.sum()))

        extra = self._map_obs(self.to_torch, self._gather_observations(next_flat[needs_extra]))
        next_index_t = th.as_tensor(next_index, device=self.device)
        return dict(
            next_observations=self._map_obs(lambda obs, ext: th.cat([obs, ext])[next_index_t], observations, extra),
            next_valid=self.to_torch(valid.astype(np.float32)),
            next_index=next_index_t,
            next_extra_observations=extra,
        )


class JEPARolloutBuffer(NextObservationMixin, RolloutBuffer):
    """
    SB3's ``RolloutBuffer`` whose samples (:class:`JEPARolloutBufferSamples`) carry ``next_observations``
    and ``next_valid``. Arguments are those of ``RolloutBuffer``.

    :param buffer_size: Max number of element in the buffer
    :param observation_space: Observation space
    :param action_space: Action space
    :param device: PyTorch device
    :param gae_lambda: Factor for trade-off of bias vs variance for Generalized Advantage Estimator
    :param gamma: Discount factor
    :param n_envs: Number of parallel environments
    """

    def reset(self) -> None:
        super().reset()
        self._reset_next()

    def _map_obs(self, fn: Any, *trees: Any) -> Any:
        return fn(*trees)

    def get(self, batch_size: int | None = None) -> Generator[JEPARolloutBufferSamples, None, None]:  # type: ignore[override]
        if not self.generator_ready:
            self._prepare_next_index()
        yield from super().get(batch_size)  # type: ignore[misc]

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> JEPARolloutBufferSamples:  # type: ignore[override]
        samples: RolloutBufferSamples = super()._get_samples(batch_inds, env)
        return JEPARolloutBufferSamples(*samples, **self._next_fields(samples.observations, batch_inds))


class JEPADictRolloutBuffer(NextObservationMixin, DictRolloutBuffer):
    """
    SB3's ``DictRolloutBuffer`` whose samples (:class:`JEPADictRolloutBufferSamples`) carry
    ``next_observations`` and ``next_valid``. Arguments are those of ``DictRolloutBuffer``.

    :param buffer_size: Max number of element in the buffer
    :param observation_space: Observation space
    :param action_space: Action space
    :param device: PyTorch device
    :param gae_lambda: Factor for trade-off of bias vs variance for Generalized Advantage Estimator
    :param gamma: Discount factor
    :param n_envs: Number of parallel environments
    """

    def reset(self) -> None:
        super().reset()
        self._reset_next()

    def _map_obs(self, fn: Any, *trees: Any) -> Any:
        keys = self.observation_space.spaces.keys()  # type: ignore[attr-defined]
        return {key: fn(*(None if tree is None else tree[key] for tree in trees)) for key in keys}

    def get(self, batch_size: int | None = None) -> Generator[JEPADictRolloutBufferSamples, None, None]:  # type: ignore[override]
        if not self.generator_ready:
            self._prepare_next_index()
        yield from super().get(batch_size)  # type: ignore[misc]

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> JEPADictRolloutBufferSamples:  # type: ignore[override]
        samples: DictRolloutBufferSamples = super()._get_samples(batch_inds, env)
        return JEPADictRolloutBufferSamples(*samples, **self._next_fields(samples.observations, batch_inds))


#: The buffer classes the JEPA algorithms accept (subclasses included)
JEPA_BUFFER_CLASSES = (JEPARolloutBuffer, JEPADictRolloutBuffer)
