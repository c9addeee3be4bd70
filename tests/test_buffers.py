"""The rollout buffers give every transition its true next observation, with almost no extra memory."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import FakeImageEnv
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    SubprocVecEnv,
    VecEnv,
    VecFrameStack,
    VecNormalize,
)

from sb3_jepa import A2CJEPA, PPOJEPA, JEPADictRolloutBuffer, JEPARolloutBuffer
from sb3_jepa.common.buffers import JEPADictRolloutBufferSamples, JEPARolloutBufferSamples
from tests.helpers import STEP, CountingEnv, DropTerminalObservation, check_rows, state_of

N_STEPS = 8


def recording(algo_cls: type) -> type:
    """``algo_cls`` that records every sample its rollout buffer gives before each train()"""

    class Recording(algo_cls):  # type: ignore[misc, valid-type]
        def train(self) -> None:
            batch_size = getattr(self, "batch_size", None)
            self.recorded.append(list(self.rollout_buffer.get(batch_size)))
            super().train()

    return Recording


def run(algo_cls: type, venv: VecEnv, n_rollouts: int = 3, **kwargs) -> list[list[JEPARolloutBufferSamples]]:
    extra = dict(batch_size=4 * venv.num_envs, n_epochs=1) if algo_cls is PPOJEPA else {}
    policy = "MultiInputPolicy" if isinstance(venv.observation_space, spaces.Dict) else "MlpPolicy"
    model = recording(algo_cls)(policy, venv, n_steps=N_STEPS, seed=0, **extra, **kwargs)
    model.recorded = []
    model.learn(n_rollouts * N_STEPS * venv.num_envs)
    assert len(model.recorded) == n_rollouts
    return model.recorded


def identity(rows: np.ndarray) -> np.ndarray:
    return rows


@pytest.mark.parametrize("algo_cls", [A2CJEPA, PPOJEPA])
@pytest.mark.parametrize("n_envs", [1, 3])
def test_next_observations_dummy(algo_cls, n_envs):
    venv = DummyVecEnv([lambda i=i: CountingEnv(i) for i in range(n_envs)])
    rollouts = run(algo_cls, venv)
    check_rows(rollouts, identity, N_STEPS * n_envs)
    if algo_cls is A2CJEPA:
        # One batch per rollout: the only next observations to encode again are the terminal and final ones
        for (batch,) in rollouts:
            n_extra = len(batch.next_extra_observations)
            assert n_envs < n_extra < N_STEPS * n_envs


@pytest.mark.slow
@pytest.mark.parametrize("algo_cls", [A2CJEPA, PPOJEPA])
def test_next_observations_subproc(algo_cls):
    venv = SubprocVecEnv([lambda i=i: CountingEnv(i) for i in range(2)])
    try:
        check_rows(run(algo_cls, venv, n_rollouts=2), identity, N_STEPS * 2)
    finally:
        venv.close()


@pytest.mark.parametrize("algo_cls", [A2CJEPA, PPOJEPA])
def test_next_observations_frame_stack(algo_cls):
    venv = VecFrameStack(DummyVecEnv([lambda i=i: CountingEnv(i) for i in range(3)]), n_stack=2)

    def last_frame(rows: np.ndarray) -> np.ndarray:
        return rows[:, 3:]

    rollouts = run(algo_cls, venv)
    check_rows(rollouts, last_frame, N_STEPS * 3)
    for batches in rollouts:
        for batch in batches:
            # s_{t+1}'s older frame is s_t's newer frame: never the zero padding of a reset stack
            np.testing.assert_array_equal(state_of(batch.next_observations)[:, :3], state_of(batch.observations)[:, 3:])


@pytest.mark.parametrize("algo_cls", [A2CJEPA, PPOJEPA])
def test_next_observations_vec_normalize(algo_cls):
    venv = VecNormalize(DummyVecEnv([lambda i=i: CountingEnv(i) for i in range(2)]), training=False, norm_reward=False)
    # Fixed statistics: normalisation is then an exactly invertible affine map
    venv.obs_rms.mean = np.array([1.0, 2.0, 3.0])
    venv.obs_rms.var = np.array([4.0, 9.0, 16.0])
    venv.clip_obs = 1e6

    rollouts = run(algo_cls, venv)
    check_rows(rollouts, venv.unnormalize_obs, N_STEPS * 2)


@pytest.mark.parametrize("algo_cls", [A2CJEPA, PPOJEPA])
def test_next_observations_dict(algo_cls):
    venv = DummyVecEnv([lambda i=i: CountingEnv(i, dict_obs=True) for i in range(2)])
    rollouts = run(algo_cls, venv)
    check_rows(rollouts, identity, N_STEPS * 2)
    for batches in rollouts:
        for batch in batches:
            assert isinstance(batch, JEPADictRolloutBufferSamples)
            np.testing.assert_array_equal(
                batch.next_observations["parity"].cpu().numpy().ravel(), (state_of(batch.next_observations)[:, 2] % 2)
            )


def test_missing_terminal_observation_is_masked():
    venv = DropTerminalObservation(DummyVecEnv([lambda: CountingEnv(0)]))
    with pytest.warns(UserWarning, match="terminal_observation"):
        rollouts = run(A2CJEPA, venv, n_rollouts=2)
    for (batch,) in rollouts:
        valid = batch.next_valid.cpu().numpy().astype(bool)
        assert not valid.all() and valid.any()
        np.testing.assert_allclose(state_of(batch.next_observations)[valid], state_of(batch.observations)[valid] + STEP)


def test_default_buffer_classes():
    assert isinstance(A2CJEPA("MlpPolicy", DummyVecEnv([CountingEnv])).rollout_buffer, JEPARolloutBuffer)
    dict_env = DummyVecEnv([lambda: CountingEnv(dict_obs=True)])
    assert isinstance(PPOJEPA("MultiInputPolicy", dict_env, n_steps=8, batch_size=8).rollout_buffer, JEPADictRolloutBuffer)


class LongEpisodeImageEnv(FakeImageEnv):
    """Atari-shaped frames with Atari-like episode lengths (hundreds of steps)"""

    def __init__(self, ep_length: int):
        super().__init__(screen_height=84, screen_width=84, n_channels=1)
        self.ep_length = ep_length


def held_bytes(obj: object, shared_with: list[np.ndarray]) -> int:
    """
    Bytes of every numpy array and torch tensor an object's attributes reach (lists, tuples, dicts included), each
    memory once.
    """
    seen: dict[int, int] = {}

    def walk(value: object) -> None:
        if isinstance(value, th.Tensor):
            seen[value.untyped_storage().data_ptr()] = value.untyped_storage().nbytes()
        elif isinstance(value, np.ndarray):
            if not any(np.shares_memory(value, other) for other in shared_with):
                root = value
                while isinstance(root.base, np.ndarray):
                    root = root.base
                seen[id(root)] = root.nbytes
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    for attribute in vars(obj).values():
        walk(attribute)
    return sum(seen.values())


def test_extra_memory_on_atari_sized_rollout():
    # PPO's Atari setting: 8 envs x 128 steps of 4 stacked 84x84 frames (the observation array is 28.9 MB)
    venv = VecFrameStack(make_vec_env(lambda: LongEpisodeImageEnv(ep_length=400), n_envs=8), n_stack=4)
    model = PPOJEPA("CnnPolicy", venv, n_steps=128, batch_size=256, n_epochs=1, seed=0)
    _, callback = model._setup_learn(total_timesteps=128 * 8 * 2)
    buffer = model.rollout_buffer
    extra_ratios = []
    for _ in range(2):
        model.collect_rollouts(model.env, callback, buffer, n_rollout_steps=128)
        n_terminal = len(buffer.terminal_observations)
        list(buffer.get(256))
        # Terminal observations with their row index, one bool per env, and the per-rollout lookup tables (every
        # row's successor address and a scratch position, int32 each): 8 bytes per transition
        assert buffer.jepa_nbytes() == n_terminal * (4 * 84 * 84 + 8) + 8 + 128 * 8 * (4 + 4)
        # ...and that report counts everything: every array the buffer holds, against SB3's own buffer of this size
        # (the final observations are the algorithm's _last_obs, held by reference: not the buffer's memory)
        assert model._last_obs is not None
        held = held_bytes(buffer, shared_with=[model._last_obs])
        plain = RolloutBuffer(128, venv.observation_space, venv.action_space, n_envs=8)
        assert held - held_bytes(plain, shared_with=[]) == buffer.jepa_nbytes()
        extra_ratios.append(buffer.jepa_nbytes() / buffer.observations.nbytes)
    assert buffer.observations.nbytes == 128 * 8 * 4 * 84 * 84
    # A full next_observations array would be a ratio of 1.0; terminal observations + indices stay under 1%
    assert max(extra_ratios) < 0.01, extra_ratios


@pytest.mark.parametrize("segment_length", [1, 2, 3, 4, 8])
def test_segment_minibatches(segment_length):
    n_envs = 2
    venv = DummyVecEnv([lambda i=i: CountingEnv(i) for i in range(n_envs)])
    rollouts = run(PPOJEPA, venv, jepa_segment_length=segment_length)
    check_rows(rollouts, identity, N_STEPS * n_envs)
    for batches in rollouts:
        rows = np.concatenate([state_of(b.observations) for b in batches])
        # Every (env, step of the rollout) exactly once per epoch
        assert len(np.unique(rows, axis=0)) == N_STEPS * n_envs
        for batch in batches:
            states = state_of(batch.observations)
            # Rows come in runs of consecutive steps of one env, cut only at segment (or episode) boundaries
            same_run = (states[1:, 0] == states[:-1, 0]) & (
                (states[1:, 2] == states[:-1, 2] + 1) | ((states[1:, 1] == states[:-1, 1] + 1) & (states[1:, 2] == 0))
            )
            breaks = len(states) - 1 - int(same_run.sum())
            if N_STEPS % segment_length == 0:
                # whole segments, and minibatches of 8 rows hold whole segments
                assert breaks <= len(states) // segment_length - 1
            # Only segment ends (and episode ends) need an extra encoding
            terminal = int(sum(1 for i in range(len(states)) if batch.next_index[i] >= len(states)))
            assert terminal == len(batch.next_extra_observations)
            if segment_length > 1:
                assert len(batch.next_extra_observations) < len(states)


def test_segment_length_argument():
    with pytest.raises(ValueError, match="jepa_segment_length must be None or a positive int"):
        PPOJEPA("MlpPolicy", "NoSuchEnv-v0", jepa_segment_length=0)
    with pytest.raises(ValueError, match="segment_length must be None or a positive int"):
        JEPARolloutBuffer(8, spaces.Box(-1, 1, (2,)), spaces.Discrete(2), segment_length=2.5)  # type: ignore[arg-type]
    model = PPOJEPA("MlpPolicy", DummyVecEnv([CountingEnv]), n_steps=8, batch_size=4, jepa_segment_length=4)
    assert model.rollout_buffer.segment_length == 4


@pytest.mark.parametrize("algo_cls", [A2CJEPA, PPOJEPA])
@pytest.mark.parametrize("segment_length", [None, 4])
def test_multistep_successors(algo_cls, segment_length):
    if algo_cls is A2CJEPA and segment_length:
        pytest.skip("A2C samples the whole rollout at once")
    steps = 3
    venv = DummyVecEnv([lambda i=i: CountingEnv(i) for i in range(2)])
    extra = {"jepa_segment_length": segment_length} if segment_length else {}
    rollouts = run(algo_cls, venv, jepa_prediction_steps=steps, **extra)
    check_rows(rollouts, identity, N_STEPS * 2)
    seen_valid = np.zeros(steps)
    for batches in rollouts:
        for batch in batches:
            assert batch.multistep_index.shape == (steps, len(batch.next_valid))
            th.testing.assert_close(batch.multistep_index[0], batch.next_index)
            th.testing.assert_close(batch.multistep_valid[0], batch.next_valid)
            rows = state_of(th.cat([batch.observations, batch.next_extra_observations]))
            current = state_of(batch.observations)
            for k in range(steps):
                valid = batch.multistep_valid[k].cpu().numpy().astype(bool)
                seen_valid[k] += valid.sum()
                successor = rows[batch.multistep_index[k].cpu().numpy()]
                # s_{t+k+1}: same env and episode, k+1 steps later; invalid once the episode has ended
                np.testing.assert_allclose(successor[valid], current[valid] + (k + 1) * STEP)
                if k > 0:
                    assert not (valid & ~batch.multistep_valid[k - 1].cpu().numpy().astype(bool)).any()
            # (the actions along the chains are checked by test_multistep_actions_are_the_actions_taken)
            for k in range(1, steps):
                assert batch.multistep_actions[k - 1].shape == batch.actions.shape
            # Extras are encoded once, even when several chains reach them
            assert len(np.unique(state_of(batch.next_extra_observations), axis=0)) == len(batch.next_extra_observations)
    assert seen_valid[0] > seen_valid[1] > seen_valid[2] > 0


def test_multistep_actions_are_the_actions_taken():
    """A Box action env whose observation is the last action: a_{t+k} must equal the observation s_{t+k+1}."""

    class LastActionEnv(CountingEnv):
        def __init__(self):
            super().__init__()
            self.action_space = spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
            self.observation_space = spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return np.zeros(1, dtype=np.float32), {}

        def step(self, action):
            clipped = np.clip(np.asarray(action, dtype=np.float32).reshape(1), -1, 1)
            return clipped, 0.0, False, False, {}

    model = PPOJEPA("MlpPolicy", DummyVecEnv([LastActionEnv]), n_steps=16, batch_size=16, n_epochs=1, jepa_prediction_steps=3)
    model.learn(16)
    (batch,) = list(model.rollout_buffer.get(16))
    rows = th.cat([batch.observations, batch.next_extra_observations]).cpu().numpy().ravel()
    for k in range(1, 3):
        valid = batch.multistep_valid[k].cpu().numpy().astype(bool)
        taken = np.clip(batch.multistep_actions[k - 1].cpu().numpy().ravel(), -1, 1)
        np.testing.assert_allclose(rows[batch.multistep_index[k].cpu().numpy()][valid], taken[valid], rtol=1e-6)


def test_reward_rows_worked_example():
    """The docstring's example of NextObservationMixin._prepare_rewards: rows env * buffer_size + step"""
    buffer = JEPARolloutBuffer(3, spaces.Box(-1, 1, (1,)), spaces.Discrete(2), n_envs=2, with_rewards=True)
    buffer.rewards[:] = np.array([[1, 2], [3, 4], [5, 6]], dtype=np.float32)
    buffer.truncated_rows = [5]
    buffer._prepare_rewards()
    np.testing.assert_array_equal(buffer._flat_rewards, [1, 3, 5, 2, 4, 6])
    np.testing.assert_array_equal(buffer._reward_valid, [1, 1, 1, 1, 1, 0])


def test_with_rewards_argument():
    with pytest.raises(ValueError, match="with_rewards must be True or False"):
        JEPARolloutBuffer(3, spaces.Box(-1, 1, (1,)), spaces.Discrete(2), with_rewards="yes")


@pytest.mark.parametrize("algo_cls", [A2CJEPA, PPOJEPA])
@pytest.mark.parametrize("n_envs", [1, 3])
def test_rewards_ride_with_samples(algo_cls, n_envs):
    """
    CountingEnv pays ``action == 0``; its episodes end alternately by termination and truncation. Every sample's
    reward is the env's, except the truncated steps', to which SB3 adds gamma * V(s_T): those are masked, and only
    those.
    """
    venv = DummyVecEnv([lambda i=i: CountingEnv(i) for i in range(n_envs)])
    n_truncated = n_masked = 0
    for rollout in run(algo_cls, venv, jepa_reward_coef=1.0):
        for batch in rollout:
            state = state_of(batch.observations).astype(int)
            env_index, episode, step = state.T
            length = 2 + (env_index + 3 * episode) % 5
            truncated = (step + 1 == length) & (episode % 2 == 1)
            valid = batch.reward_valid.cpu().numpy().astype(bool)
            np.testing.assert_array_equal(valid, ~truncated)
            rewards = batch.rewards.cpu().numpy()
            paid = (batch.actions.cpu().numpy().ravel() == 0).astype(np.float32)
            np.testing.assert_array_equal(rewards[valid], paid[valid])
            # The masked ones are not the env's (SB3's bootstrap was added), which is why they are masked
            assert not (~valid).any() or not np.allclose(rewards[~valid], paid[~valid])
            n_truncated += int(truncated.sum())
            n_masked += int((~valid).sum())
    assert n_truncated > 0 and n_masked == n_truncated


@pytest.mark.parametrize("algo_cls", [A2CJEPA, PPOJEPA])
def test_reward_rollouts_are_the_steps_that_followed(algo_cls):
    """
    ``reward_rollout_*`` of a row at step t: the action, reward and validity of step t + k of the same episode in the
    same rollout, k = 1..H-1, as the samples of that step give them; masked where the episode ended before, where the
    rollout did, and where the step's reward was truncated (not the env's).
    """
    horizon = 4
    venv = DummyVecEnv([lambda i=i: CountingEnv(i) for i in range(2)])
    n_checked = np.zeros(horizon - 1)
    for rollout in run(algo_cls, venv, jepa_reward_coef=1.0, jepa_reward_steps=horizon):
        # Every row of the rollout, by its state (env, episode, step): its action, reward and validity
        rows = {}
        for batch in rollout:
            for state, action, reward, valid in zip(
                state_of(batch.observations).astype(int), batch.actions, batch.rewards, batch.reward_valid, strict=True
            ):
                rows[tuple(state)] = (float(action), float(reward), float(valid))
        for batch in rollout:
            assert batch.reward_rollout_actions.shape == (horizon - 1, *batch.actions.shape)
            for i, (env_index, episode, step) in enumerate(state_of(batch.observations).astype(int)):
                for k in range(1, horizon):
                    later = rows.get((env_index, episode, step + k))
                    valid = float(batch.reward_rollout_valid[k - 1, i])
                    assert valid == (0.0 if later is None else later[2])
                    if valid:
                        assert float(batch.reward_rollout_actions[k - 1, i]) == later[0]
                        assert float(batch.reward_rollout_rewards[k - 1, i]) == later[1]
                        n_checked[k - 1] += 1
    assert (n_checked > 0).all()


def test_reward_steps_argument():
    with pytest.raises(ValueError, match="reward_steps must be"):
        JEPARolloutBuffer(3, spaces.Box(-1, 1, (1,)), spaces.Discrete(2), with_rewards=True, reward_steps=0)
    with pytest.raises(ValueError, match=r"reward_steps > 1 .* needs with_rewards=True"):
        JEPARolloutBuffer(3, spaces.Box(-1, 1, (1,)), spaces.Discrete(2), reward_steps=2)
    with pytest.raises(ValueError, match="jepa_reward_steps=3 trains the reward predictor on W's rollouts"):
        PPOJEPA("MlpPolicy", "CartPole-v1", jepa_reward_steps=3)
    with pytest.raises(ValueError, match="jepa_reward_steps must be"):
        PPOJEPA("MlpPolicy", "CartPole-v1", jepa_reward_coef=0.01, jepa_reward_steps=0)


def test_no_rewards_without_the_reward_predictor():
    for rollout in run(PPOJEPA, DummyVecEnv([CountingEnv])):
        assert all(batch.rewards is None and batch.reward_valid is None for batch in rollout)


def filled_buffer(n_steps: int = 3, n_envs: int = 2, **kwargs) -> JEPARolloutBuffer:
    """Observation ``10 * env + step`` at each row, no episode end; the final observations ``100 + env``."""
    buffer = JEPARolloutBuffer(n_steps, spaces.Box(-1000, 1000, (1,)), spaces.Discrete(2), n_envs=n_envs, **kwargs)
    for step in range(n_steps):
        obs = (10.0 * np.arange(n_envs) + step)[:, None]
        buffer.add(obs, np.zeros((n_envs, 1)), np.zeros(n_envs), np.zeros(n_envs), th.zeros(n_envs), th.zeros(n_envs))
    return buffer


def test_samples_carry_the_known_final_embeddings_after_the_other_extras():
    buffer = filled_buffer()
    finals = (100.0 + np.arange(2))[:, None]
    embeddings = th.tensor([[1000.0, 1.0], [1001.0, 1.0]])  # one row per env
    buffer.add_final_observations(finals, np.zeros(2, dtype=bool), embeddings)
    assert buffer.jepa_nbytes() >= embeddings.nelement() * 4
    n_known_seen = 0
    for batch in buffer.get(2):  # 3 minibatches of 2 shuffled rows
        extra = batch.next_extra_observations[:, 0]
        known = batch.next_extra_embeddings
        n_known = 0 if known is None else len(known)
        n_known_seen += n_known
        # the known extras are the last ones: final observations, each with its env's embedding
        assert (extra[: len(extra) - n_known] < 100).all()
        if known is not None:
            envs = (extra[len(extra) - n_known :] - 100).long()
            th.testing.assert_close(known, embeddings[envs])
        # and next_observations still names every row's successor: the next step of its env, or its final
        obs = batch.observations[:, 0]
        expected = th.where(obs % 10 == 2, 100 + obs // 10, obs + 1)
        th.testing.assert_close(batch.next_observations[:, 0], expected)
    assert n_known_seen == 2  # each env's last step has its final observation as successor
    # without them: all extras to be encoded, as before
    buffer = filled_buffer()
    buffer.add_final_observations(finals, np.zeros(2, dtype=bool))
    assert all(batch.next_extra_embeddings is None for batch in buffer.get(2))


def test_final_embeddings_checked():
    buffer = filled_buffer()
    finals = np.zeros((2, 1))
    with pytest.raises(ValueError, match=r"final_embeddings must have shape \(n_envs=2, dim\), got \(3, 4\)"):
        buffer.add_final_observations(finals, np.zeros(2, dtype=bool), th.zeros(3, 4))
    images = spaces.Box(0, 255, (1, 36, 36), dtype=np.uint8)
    augmented = JEPARolloutBuffer(3, images, spaces.Discrete(2), n_envs=2, augment="shift")
    with pytest.raises(ValueError, match="final_embeddings cannot be used with augment='shift'"):
        augmented.add_final_observations(np.zeros((2, 1, 36, 36)), np.zeros(2, dtype=bool), th.zeros(2, 4))
