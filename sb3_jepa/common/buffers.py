"""
Rollout buffers whose samples carry the true next observation ``s_{t+1}`` of every transition.

SB3's rollout buffers store ``s_t`` only. For a step that did not end an episode, ``s_{t+1}`` is the next
row of the same env; for the rollout's last step it is the observation the algorithm holds after the loop
(``_last_obs``); for a step that ended an episode (terminated *or* truncated) it exists only in
``infos[env]["terminal_observation"]``: the next row is already the reset observation (a zero-padded
stack under ``VecFrameStack``), and using it would teach the predictor to predict resets.

So these buffers keep, besides what SB3 keeps:

- the terminal observations of the episodes that ended during the rollout (copied), with their row index,
- a reference to the final observations (the same array as the algorithm's ``_last_obs``, so no copy),
  and whether the last step ended each env's episode.

Nothing is stored per transition: SB3's ``episode_starts`` already says which steps ended an episode.

A full ``next_observations`` array would double the observation memory (about 29 MB on Atari PPO).
"""

import functools
import warnings
from collections.abc import Callable, Generator
from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.type_aliases import DictRolloutBufferSamples, RolloutBufferSamples, TensorDict
from stable_baselines3.common.vec_env import VecNormalize

from sb3_jepa.common import successors
from sb3_jepa.common.augmentation import ObservationAugmenter, check_augmentation
from sb3_jepa.common.utils import check_bool, check_optional_positive_int, check_positive_int


class JEPARolloutBufferSamples(NamedTuple):
    """
    A ``RolloutBufferSamples`` with the transitions' next observations.

    ``next_observations[i]`` is ``s_{t+1}`` of row ``i`` (built on first access). The loss uses the compact form
    it is built from, which never holds an observation twice: ``next_observations[i]`` is row ``next_index[i]``
    of ``cat(observations, next_extra_observations)``, where ``next_extra_observations`` holds only the next
    observations that are not already rows of this batch.
    """

    observations: th.Tensor
    actions: th.Tensor
    old_values: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    returns: th.Tensor
    #: 1.0 where ``s_{t+1}`` is known, 0.0 where a VecEnv gave no terminal observation (mask those rows)
    next_valid: th.Tensor
    #: row of ``cat(observations, next_extra_observations)`` holding ``s_{t+1}`` (the row itself where not valid)
    next_index: th.Tensor
    #: the next observations that are not rows of ``observations``
    next_extra_observations: th.Tensor
    #: with ``prediction_steps = K > 1``: ``(K, batch)`` rows of ``cat(observations, next_extra_observations)``
    #: holding ``s_{t+k}``, k = 1..K (``multistep_index[0]`` is ``next_index``), else None
    multistep_index: th.Tensor | None = None
    #: ``(K, batch)``: 1.0 where ``s_{t+k}`` is known and the episode did not end before ``t+k``, else None
    multistep_valid: th.Tensor | None = None
    #: ``(K - 1, batch, action_dim)``: the actions ``a_{t+k}``, k = 1..K-1, that lead there, else None
    multistep_actions: th.Tensor | None = None
    #: with ``with_rewards``: ``r_t`` as the buffer holds it (VecNormalize's scaling included), else None
    rewards: th.Tensor | None = None
    #: with ``with_rewards``: 1.0 where ``r_t`` is the environment's, 0.0 where SB3 added the bootstrapped value of a
    #: step truncated by a time limit, else None
    reward_valid: th.Tensor | None = None
    #: the embeddings of the last ``len(next_extra_embeddings)`` rows of ``next_extra_observations``, where the
    #: collection already encoded them with the current weights (the final observations, see
    #: :meth:`NextObservationMixin.add_final_observations`), so that the ``stop_grad`` target need not encode them
    #: again; else None
    next_extra_embeddings: th.Tensor | None = None
    #: with ``reward_steps = H > 1``: ``(H - 1, batch, action_dim)``, the actions ``a_{t+k}``, k = 1..H-1, taken after
    #: the row's along its episode (the reward predictor's rollout), else None
    reward_rollout_actions: th.Tensor | None = None
    #: with ``reward_steps = H > 1``: ``(H - 1, batch)``, the rewards ``r_{t+k}`` of those actions, else None
    reward_rollout_rewards: th.Tensor | None = None
    #: with ``reward_steps = H > 1``: ``(H - 1, batch)``, 1.0 where ``a_{t+k}`` was taken in the row's episode (it did
    #: not end before ``t+k``, and ``t+k`` is in the rollout) and ``r_{t+k}`` is the environment's, else None
    reward_rollout_valid: th.Tensor | None = None

    @property
    def next_observations(self) -> th.Tensor:
        """``s_{t+1}`` for every row (where ``next_valid`` is 0: the row's own observation)"""
        return th.cat([self.observations, self.next_extra_observations])[self.next_index]


class JEPADictRolloutBufferSamples(NamedTuple):
    """The ``Dict`` observation counterpart of :class:`JEPARolloutBufferSamples`."""

    observations: TensorDict
    actions: th.Tensor
    old_values: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    returns: th.Tensor
    next_valid: th.Tensor
    next_index: th.Tensor
    next_extra_observations: TensorDict
    multistep_index: th.Tensor | None = None
    multistep_valid: th.Tensor | None = None
    multistep_actions: th.Tensor | None = None
    rewards: th.Tensor | None = None
    reward_valid: th.Tensor | None = None
    next_extra_embeddings: th.Tensor | None = None
    reward_rollout_actions: th.Tensor | None = None
    reward_rollout_rewards: th.Tensor | None = None
    reward_rollout_valid: th.Tensor | None = None

    @property
    def next_observations(self) -> TensorDict:
        """``s_{t+1}`` for every row, per key (where ``next_valid`` is 0: the row's own observation)"""
        return {
            key: th.cat([obs, self.next_extra_observations[key]])[self.next_index] for key, obs in self.observations.items()
        }


ObsArray = np.ndarray | dict[str, np.ndarray]

#: The arrays besides the observations that SB3's ``RolloutBuffer.get()`` and ``DictRolloutBuffer.get()`` flatten
#: before their first sample (their ``_tensor_names``)
SAMPLED_ARRAYS = ("actions", "values", "log_probs", "advantages", "returns")


class NextObservationMixin:
    """
    The next-observation bookkeeping, mixed into SB3's ``RolloutBuffer`` (:class:`JEPARolloutBuffer`), its
    ``DictRolloutBuffer`` (:class:`JEPADictRolloutBuffer`) or a user's subclass of either (:func:`as_jepa_buffer`).

    Nothing is stored per transition: whether step ``t`` of env ``e`` ended an episode is SB3's own
    ``episode_starts[t + 1, e]`` (``final_dones[e]`` for the last step), and the terminal observations are kept
    with their flat row index. Observation arrays are either one array or, for ``Dict`` spaces, a dict of arrays;
    ``_map_obs`` applies a function to each.
    """

    buffer_size: int
    n_envs: int
    pos: int
    device: th.device
    observations: Any
    actions: np.ndarray
    episode_starts: np.ndarray
    obs_shape: Any
    generator_ready: bool

    terminal_observations: list[ObsArray]
    terminal_rows: list[int]
    truncated_rows: list[int]
    rewards: np.ndarray
    final_observations: ObsArray | None
    final_dones: np.ndarray | None
    final_embeddings: th.Tensor | None
    _terminal_stack: ObsArray | None
    _terminal_rows_sorted: np.ndarray

    # Provided by SB3's BaseBuffer (annotated only, so that the mixin does not shadow it)
    to_torch: Callable[..., th.Tensor]

    def __init__(
        self,
        *args: Any,
        segment_length: int | None = None,
        prediction_steps: int = 1,
        successors_in_minibatch: bool = False,
        with_rewards: bool = False,
        reward_steps: int = 1,
        augment: str | None = None,
        **kwargs: Any,
    ):
        self.segment_length = check_optional_positive_int("segment_length", segment_length)
        self.prediction_steps = check_positive_int("prediction_steps", prediction_steps)
        self.successors_in_minibatch = check_bool("successors_in_minibatch", successors_in_minibatch)
        self.with_rewards = check_bool("with_rewards", with_rewards)
        self.reward_steps = check_positive_int("reward_steps", reward_steps)
        if self.reward_steps > 1 and not self.with_rewards:
            raise ValueError(f"reward_steps > 1 (got {reward_steps}) needs with_rewards=True: the rollout carries rewards")
        self.augment = check_augmentation(augment)
        self._segment_epoch = 0
        super().__init__(*args, **kwargs)
        # Built once the observation space is known (SB3's __init__ sets it), refusing a space without images
        self._augmenter = None if self.augment is None else ObservationAugmenter(self.observation_space, self.augment)  # type: ignore[attr-defined]

    def reset(self) -> None:
        super().reset()  # type: ignore[misc]
        self._reset_next()

    def _map_obs(self, fn: Any, *trees: Any) -> Any:
        """Apply ``fn`` to one observation array per tree, or per key for ``Dict`` observations (None stays None)."""
        space = self.observation_space  # type: ignore[attr-defined]
        if not isinstance(space, spaces.Dict):
            return fn(*trees)
        return {key: fn(*(None if tree is None else tree[key] for tree in trees)) for key in space.spaces}

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> Any:
        samples = super()._get_samples(batch_inds, env)  # type: ignore[misc]
        # Exact types: a user's buffer whose samples carry fields of their own cannot be extended field by field
        if type(samples) is RolloutBufferSamples:
            return self._augmented(JEPARolloutBufferSamples(*samples, **self._next_fields(batch_inds)))
        if type(samples) is DictRolloutBufferSamples:
            return self._augmented(JEPADictRolloutBufferSamples(*samples, **self._next_fields(batch_inds)))
        raise TypeError(
            f"{type(self).__name__}._get_samples returned {type(samples).__name__}: the JEPA buffers extend SB3's "
            "RolloutBufferSamples / DictRolloutBufferSamples with next observations, and cannot extend other sample "
            "types. Return one of SB3's sample types from the buffer class given as rollout_buffer_class."
        )

    def _augmented(self, samples: Any) -> Any:
        """
        With ``augment``: the sample's observations and next extra observations, each image with its own random
        shift (:mod:`sb3_jepa.common.augmentation`), so that the RL loss and the JEPA loss of this minibatch see
        the same augmented views, and a transition's target ``s_{t+1}`` another view than its ``s_t``.
        """
        if self._augmenter is None:
            return samples
        return samples._replace(
            observations=self._augmenter(samples.observations),
            next_extra_observations=self._augmenter(samples.next_extra_observations),
        )

    def get(self, batch_size: int | None = None) -> Generator[Any, None, None]:
        """
        SB3's ``get()``: minibatches of ``batch_size`` rows, each row once. With ``segment_length`` (and a
        ``batch_size``), minibatches are made of shuffled time-contiguous segments of ``segment_length`` steps of
        one env instead of independently shuffled rows, so that most next observations are rows of the same
        minibatch and need no extra encoding.

        :param batch_size: rows per minibatch (``None``: the whole buffer in one batch)
        :return: a generator of samples
        """
        if not self.generator_ready:
            self._prepare_successors()
        if self.segment_length is None or batch_size is None:
            yield from super().get(batch_size)  # type: ignore[misc]
            return
        if not self.generator_ready:
            self._flatten_for_sampling()
        offset = 0
        if self.successors_in_minibatch:
            # Alternate where the segments are cut, epoch after epoch, so that every transition is in-segment in some
            offset = self._segment_epoch % self.segment_length
            self._segment_epoch += 1
        starts, ends = successors.segment_bounds(self.buffer_size, self.n_envs, self.segment_length, offset)
        order = np.random.permutation(len(starts))
        indices = successors.segment_rows(starts[order], ends[order])
        for start in range(0, len(indices), batch_size):
            yield self._get_samples(indices[start : start + batch_size])  # type: ignore[attr-defined]

    def _flatten_for_sampling(self) -> None:
        """
        What SB3's ``get()`` does on its first call before it samples: ``swap_and_flatten`` of the arrays it samples
        from, so that row ``env * n_steps + step`` is step ``step`` of env ``env``. The segment sampler draws its
        own rows and needs just that. ``tests/test_upstream_drift.py`` checks it against SB3's ``get()``.
        """
        if isinstance(self.observations, dict):
            for key, obs in self.observations.items():
                self.observations[key] = self.swap_and_flatten(obs)  # type: ignore[attr-defined]
            names: tuple[str, ...] = SAMPLED_ARRAYS
        else:
            names = ("observations", *SAMPLED_ARRAYS)
        for name in names:
            setattr(self, name, self.swap_and_flatten(getattr(self, name)))  # type: ignore[attr-defined]
        self.generator_ready = True

    def _reset_next(self) -> None:
        self.terminal_observations = []
        self.terminal_rows = []
        self.truncated_rows = []
        self.final_observations = None
        self.final_dones = None
        self.final_embeddings = None
        self._terminal_stack = None
        self._terminal_rows_sorted = np.zeros(0, dtype=np.int64)
        # Per rollout, built by _prepare_successors: the successor chains of every row (a minibatch's are a slice)
        self._all_chains: np.ndarray | None = None
        self._row_positions: np.ndarray | None = None  # scratch space of locate_in_minibatch
        self._flat_rewards: np.ndarray | None = None  # with_rewards: r of every row, and whether it is the env's
        self._reward_valid: np.ndarray | None = None
        # reward_steps > 1: the rows of a_{t+k}, k = 1..H-1, of every row, and whether each is valid (with its reward)
        self._reward_rollout_rows: np.ndarray | None = None
        self._reward_rollout_valid: np.ndarray | None = None
        self._warned_missing = getattr(self, "_warned_missing", False)

    def add_terminal_observations(self, infos: list[dict[str, Any]], dones: np.ndarray) -> None:
        """
        Keep the terminal observations of the envs whose episode ended at this step. Call it once per step,
        before ``add()`` (the algorithm does it from ``_update_info_buffer``).

        :param infos: the VecEnv's infos for this step
        :param dones: the VecEnv's dones for this step (terminated or truncated)
        """
        for env_idx in np.flatnonzero(dones):
            terminal_obs = infos[env_idx].get("terminal_observation")
            if terminal_obs is None:
                if not self._warned_missing:
                    self._warned_missing = True
                    warnings.warn(
                        "An episode ended without infos['terminal_observation'] (is this VecEnv SB3-compatible?): "
                        "the JEPA loss masks such transitions.",
                        UserWarning,
                        stacklevel=2,
                    )
                continue
            # The row this step will have once swap_and_flatten has put each env's steps together
            row = int(env_idx) * self.buffer_size + self.pos
            self.terminal_rows.append(row)
            # SB3's collect_rollouts adds gamma * V(terminal_observation) to this step's reward under exactly this
            # condition (a time limit): that reward is no longer the env's
            if infos[env_idx].get("TimeLimit.truncated", False):
                self.truncated_rows.append(row)
            # Copied: some envs hand out the same array again after reset
            self.terminal_observations.append(self._map_obs(lambda o, s: np.array(o).reshape(s), terminal_obs, self.obs_shape))

    def add_final_observations(
        self, final_observations: ObsArray, final_dones: np.ndarray, final_embeddings: th.Tensor | None = None
    ) -> None:
        """
        Record ``s_{t+1}`` for the rollout's last step: the observations after the loop. Kept by reference:
        it is the algorithm's ``_last_obs``, which no env step changes before ``train()`` reads this buffer.

        :param final_observations: one observation per env
        :param final_dones: whether the last step ended each env's episode (its successor is then terminal)
        :param final_embeddings: their embeddings ``E(s)`` under the current weights, shape ``(n_envs, dim)``, no
            gradient, where they are known (SB3's last value estimate of the rollout encodes them): samples then
            carry them as ``next_extra_embeddings`` instead of asking the loss to encode those observations
            again, until the caller drops them (``final_embeddings = None``: the weights changed); None: not known
        """
        self.final_observations = self._map_obs(
            lambda o, s: np.asarray(o).reshape((self.n_envs, *s)), final_observations, self.obs_shape
        )
        self.final_dones = np.asarray(final_dones, dtype=bool).reshape(self.n_envs).copy()
        if final_embeddings is not None and self.augment is not None:
            raise ValueError(
                f"final_embeddings cannot be used with augment={self.augment!r}: the samples carry augmented views "
                "of the final observations, and these are the embeddings of the observations themselves"
            )
        if final_embeddings is not None and (final_embeddings.ndim != 2 or len(final_embeddings) != self.n_envs):
            raise ValueError(
                f"final_embeddings must have shape (n_envs={self.n_envs}, dim), got {tuple(final_embeddings.shape)}"
            )
        self.final_embeddings = None if final_embeddings is None else final_embeddings.detach()

    def jepa_nbytes(self) -> int:
        """
        :return: the bytes this buffer holds beyond SB3's own buffer: terminal observations and their row indices,
            and (once sampling started) the rollout's lookup tables, 4 bytes per row and prediction step plus 4
            (with ``with_rewards``, 8 more per row for the rewards' copy, and with ``reward_steps = H > 1``, 8 per row
            and rollout step for the rollout's rows and validity)
        """
        stored = self.terminal_observations if self._terminal_stack is None else [self._terminal_stack]
        total = 8 * max(len(self.terminal_rows), len(self._terminal_rows_sorted))
        # the per-rollout lookup tables, and the rewards' copy in row order
        tables = (self._all_chains, self._row_positions, self._flat_rewards, self._reward_valid)
        for index_array in (*tables, self._reward_rollout_rows, self._reward_rollout_valid):
            total += 0 if index_array is None else index_array.nbytes
        total += 0 if self.final_dones is None else self.final_dones.nbytes
        if self.final_embeddings is not None:
            total += self.final_embeddings.element_size() * self.final_embeddings.nelement()
        for obs in stored:
            total += sum(a.nbytes for a in (obs.values() if isinstance(obs, dict) else [obs]))
        return total

    def _prepare_successors(self) -> None:
        """
        Before the first sample of a rollout: stack the terminal observations in the order of their rows (address
        ``n_rows + k`` is the k-th, see :mod:`sb3_jepa.common.successors`), for vectorised lookups while sampling.
        """
        order = np.argsort(np.asarray(self.terminal_rows, dtype=np.int64), kind="stable")
        self._terminal_rows_sorted = np.asarray(self.terminal_rows, dtype=np.int64)[order]
        if len(order) > 0:
            stacked = self._map_obs(lambda *obs: np.stack(obs), *self.terminal_observations)
            self._terminal_stack = self._map_obs(lambda obs: obs[order], stacked)
        self.terminal_observations, self.terminal_rows = [], []
        # Every row's successors at once (each row's are computed on their own, so a minibatch's slice of these is
        # what successor_chains would give for its rows): one numpy pass per rollout instead of one per minibatch
        n_rows = self.buffer_size * self.n_envs
        # int32: 4 bytes per row and step instead of 8 (addresses stay below n_rows + n_terminal + n_envs)
        index_type = np.int32 if 2 * n_rows + self.n_envs < np.iinfo(np.int32).max else np.int64
        self._all_chains = successors.successor_chains(
            np.arange(n_rows), self.prediction_steps, self.episode_starts, self.final_dones, self._terminal_rows_sorted
        ).astype(index_type)
        self._row_positions = np.full(n_rows, successors.UNKNOWN, dtype=index_type)
        if self.with_rewards:
            self._prepare_rewards()

    def _prepare_rewards(self) -> None:
        """
        The reward and its validity of every row, in the sampled rows' order: row ``env * buffer_size + step``, as
        ``swap_and_flatten`` orders the arrays SB3 samples (``rewards`` is not one of them).

        Example: 2 envs, buffer_size 3, ``rewards[step, env]`` = [[1, 2], [3, 4], [5, 6]]: the rows' rewards are
        (1, 3, 5, 2, 4, 6); env 1 truncated at step 2 (row 1 * 3 + 2 = 5): validity (1, 1, 1, 1, 1, 0).
        """
        self._flat_rewards = self.rewards.swapaxes(0, 1).reshape(-1).astype(np.float32)
        self._reward_valid = np.ones(len(self._flat_rewards), dtype=np.float32)
        self._reward_valid[np.asarray(self.truncated_rows, dtype=np.int64)] = 0.0
        if self.reward_steps > 1:
            # Every row's H - 1 successors, and of those the buffer rows (where an action was taken and rewarded)
            n_rows = len(self._flat_rewards)
            chains = successors.successor_chains(
                np.arange(n_rows), self.reward_steps - 1, self.episode_starts, self.final_dones, self._terminal_rows_sorted
            )
            rows, taken = successors.taken_rows(chains, n_rows)
            self._reward_rollout_rows = rows.astype(np.int32 if n_rows < np.iinfo(np.int32).max else np.int64)
            self._reward_rollout_valid = taken * self._reward_valid[rows]

    def _next_fields(self, batch_inds: np.ndarray) -> dict[str, Any]:
        """The ``next_*`` (and ``multistep_*``) fields of a sample whose rows are ``batch_inds``."""
        n_rows = self.buffer_size * self.n_envs
        if self._all_chains is not None:
            chains = self._all_chains[:, batch_inds]
        else:  # sampled without get() (a test, a user's loop): computed for these rows
            chains = successors.successor_chains(
                batch_inds, self.prediction_steps, self.episode_starts, self.final_dones, self._terminal_rows_sorted
            )
        if self.successors_in_minibatch:
            chains = successors.in_minibatch_only(chains, batch_inds)
        index, extra_addresses = successors.locate_in_minibatch(chains, batch_inds, n_rows, self._row_positions)
        n_known = 0
        if self.final_embeddings is not None:
            # The final observations' embeddings are known: those extras go last, and the sample carries them
            first_final = n_rows + len(self._terminal_rows_sorted)
            index, extra_addresses, n_known = successors.known_last(index, extra_addresses, len(batch_inds), first_final)
        valid = chains >= 0
        extra = self._map_obs(
            lambda rows, terminal, final: successors.gather_addressed(extra_addresses, rows, terminal, final),
            self.observations,
            self._terminal_stack,
            self.final_observations,
        )
        # copy=False: these arrays are new, made for this sample (on CPU the tensors share their memory)
        fields: dict[str, Any] = dict(
            next_valid=self.to_torch(valid[0].astype(np.float32), copy=False),
            next_index=self.to_torch(index[0], copy=False),
            next_extra_observations=self._map_obs(lambda array: self.to_torch(array, copy=False), extra),
        )
        if n_known > 0:
            assert self.final_embeddings is not None
            known_envs = extra_addresses[len(extra_addresses) - n_known :] - first_final
            known_envs_tensor = th.as_tensor(known_envs, dtype=th.long, device=self.final_embeddings.device)
            fields.update(next_extra_embeddings=self.final_embeddings.index_select(0, known_envs_tensor))
        if self.prediction_steps > 1:
            actions = self.actions[successors.action_rows(chains, n_rows)]
            fields.update(
                multistep_index=self.to_torch(index, copy=False),
                multistep_valid=self.to_torch(valid.astype(np.float32), copy=False),
                multistep_actions=self.to_torch(actions.astype(np.float32), copy=False),
            )
        if self.with_rewards:
            if self._flat_rewards is None or self._reward_valid is None:  # sampled without get()
                self._prepare_rewards()
            assert self._flat_rewards is not None and self._reward_valid is not None
            fields.update(
                rewards=self.to_torch(self._flat_rewards[batch_inds], copy=False),
                reward_valid=self.to_torch(self._reward_valid[batch_inds], copy=False),
            )
            if self._reward_rollout_rows is not None and self._reward_rollout_valid is not None:
                rows = self._reward_rollout_rows[:, batch_inds]
                fields.update(
                    reward_rollout_actions=self.to_torch(self.actions[rows].astype(np.float32, copy=False), copy=False),
                    reward_rollout_rewards=self.to_torch(self._flat_rewards[rows], copy=False),
                    reward_rollout_valid=self.to_torch(self._reward_rollout_valid[:, batch_inds], copy=False),
                )
        return fields


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
    :param segment_length: draw minibatches as shuffled time-contiguous segments of this many steps of one env
        (``None``: SB3's independently shuffled rows); see :meth:`NextObservationMixin.get`
    :param prediction_steps: K, how many successors ``s_{t+1}..s_{t+K}`` each sample carries (multi-step latent
        prediction); 1 gives only ``s_{t+1}``
    :param successors_in_minibatch: mark a transition's successor as unknown (masked) unless it is a row of the same
        minibatch, so that no extra observation is ever encoded; with ``segment_length``, where the segments are cut
        then alternates from one ``get()`` (epoch) to the next, so that every transition is in-segment in some epoch
    :param with_rewards: samples also carry ``rewards`` and ``reward_valid`` (for the reward predictor's loss)
    :param reward_steps: H; with ``with_rewards`` and H > 1, samples also carry ``reward_rollout_*``: the actions and
        rewards of the H - 1 steps that follow each row in its episode (the reward predictor's rollout through ``W``)
    :param augment: None, or one of :data:`~sb3_jepa.common.augmentation.AUGMENTATIONS`: every sample's images are
        augmented as they are handed out (its observations and next extra observations, each image on its own)
    """


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
    :param segment_length: draw minibatches as shuffled time-contiguous segments of this many steps of one env
        (``None``: SB3's independently shuffled rows); see :meth:`NextObservationMixin.get`
    :param prediction_steps: K, how many successors ``s_{t+1}..s_{t+K}`` each sample carries (multi-step latent
        prediction); 1 gives only ``s_{t+1}``
    :param successors_in_minibatch: mark a transition's successor as unknown (masked) unless it is a row of the same
        minibatch, so that no extra observation is ever encoded; with ``segment_length``, where the segments are cut
        then alternates from one ``get()`` (epoch) to the next, so that every transition is in-segment in some epoch
    :param with_rewards: samples also carry ``rewards`` and ``reward_valid`` (for the reward predictor's loss)
    :param reward_steps: H; with ``with_rewards`` and H > 1, samples also carry ``reward_rollout_*``: the actions and
        rewards of the H - 1 steps that follow each row in its episode (the reward predictor's rollout through ``W``)
    :param augment: None, or one of :data:`~sb3_jepa.common.augmentation.AUGMENTATIONS`: every sample's images are
        augmented as they are handed out (its observations and next extra observations, each image on its own)
    """


@functools.cache
def as_jepa_buffer(buffer_class: type[RolloutBuffer]) -> type[RolloutBuffer]:
    """
    The JEPA version of a rollout buffer class, as :func:`~sb3_jepa.common.policies.as_jepa_policy` is for policies:
    :class:`JEPARolloutBuffer` for SB3's ``RolloutBuffer``, :class:`JEPADictRolloutBuffer` for its
    ``DictRolloutBuffer``, the class itself if it already carries next observations, else a subclass mixing
    :class:`NextObservationMixin` into it (the user's buffer keeps its behaviour; its samples gain the ``next_*``
    fields).

    :param buffer_class: a ``RolloutBuffer`` subclass (``DictRolloutBuffer`` is one)
    :return: a buffer class whose samples carry next observations
    """
    if not (isinstance(buffer_class, type) and issubclass(buffer_class, RolloutBuffer)):
        raise ValueError(
            f"rollout_buffer_class must be None or a subclass of RolloutBuffer or DictRolloutBuffer, got {buffer_class!r}"
        )
    if issubclass(buffer_class, NextObservationMixin):
        return buffer_class
    if buffer_class is RolloutBuffer:
        return JEPARolloutBuffer
    if buffer_class is DictRolloutBuffer:
        return JEPADictRolloutBuffer
    return type(
        f"JEPA{buffer_class.__name__}",
        (NextObservationMixin, buffer_class),
        {
            "__module__": buffer_class.__module__,
            "__doc__": f"{buffer_class.__name__} whose samples carry next observations (sb3-jepa).",
        },
    )
