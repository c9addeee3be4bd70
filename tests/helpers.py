"""Small real gymnasium environments that make the tests' expectations computable."""

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from torch import nn

from sb3_jepa.common.buffers import JEPADictRolloutBufferSamples, JEPARolloutBufferSamples


class CountingEnv(gym.Env):
    """
    The observation is ``(env_index, episode, step)``, so the true successor of any observation is known:
    the same with ``step + 1``. Episodes have varied lengths and end alternately by termination and by
    truncation, so that rollouts contain both, at every position.

    :param env_index: written into every observation
    :param dict_obs: observe ``{"state": (env_index, episode, step), "parity": step % 2}`` instead
    :param n_actions: size of the Discrete action space
    """

    def __init__(self, env_index: int = 0, dict_obs: bool = False, n_actions: int = 2):
        super().__init__()
        self.env_index = env_index
        self.dict_obs = dict_obs
        state_space = spaces.Box(low=0.0, high=1e6, shape=(3,), dtype=np.float32)
        if dict_obs:
            self.observation_space: spaces.Space = spaces.Dict({"state": state_space, "parity": spaces.Discrete(2)})
        else:
            self.observation_space = state_space
        self.action_space = spaces.Discrete(n_actions)
        self.episode = -1
        self.step_count = 0

    def _episode_length(self) -> int:
        return 2 + (self.env_index + 3 * self.episode) % 5

    def _obs(self) -> Any:
        state = np.array([self.env_index, self.episode, self.step_count], dtype=np.float32)
        if self.dict_obs:
            return {"state": state, "parity": self.step_count % 2}
        return state

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self.episode += 1
        self.step_count = 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        self.step_count += 1
        ended = self.step_count >= self._episode_length()
        terminated = ended and self.episode % 2 == 0
        truncated = ended and not terminated
        return self._obs(), float(action == 0), terminated, truncated, {}


class DropTerminalObservation(VecEnvWrapper):
    """
    A VecEnv that, unlike SB3's, does not report terminal observations (for some of its envs)

    :param venv: the VecEnv to wrap
    :param envs: the envs whose terminal observations are dropped (None: all)
    """

    def __init__(self, venv: VecEnv, envs: list[int] | None = None):
        super().__init__(venv)
        self.envs = envs

    def reset(self):
        return self.venv.reset()

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        for env_index, info in enumerate(infos):
            if self.envs is None or env_index in self.envs:
                info.pop("terminal_observation", None)
        return obs, rewards, dones, infos


def state_of(observations: Any) -> np.ndarray:
    """The ``(env_index, episode, step)`` rows of a batch of CountingEnv observations (tensor or dict of tensors)."""
    if isinstance(observations, dict):
        observations = observations["state"]
    return observations.detach().cpu().numpy().reshape(len(observations), -1)


class SeededImageEnv(gym.Env):
    """
    Random uint8 images drawn from the env's own seeded generator (SB3's FakeImageEnv samples from an unseeded
    space, so two runs with the same seed would differ). Episodes are truncated after ``ep_length`` steps.

    :param size: image height and width
    :param n_channels: channels (last axis)
    :param ep_length: steps per episode
    :param discrete: Discrete(4) actions if True, else Box(-1, 1, (2,))
    """

    def __init__(self, size: int = 36, n_channels: int = 1, ep_length: int = 10, discrete: bool = True):
        super().__init__()
        self.observation_space = spaces.Box(0, 255, (size, size, n_channels), dtype=np.uint8)
        self.action_space: spaces.Space = spaces.Discrete(4) if discrete else spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self.ep_length = ep_length
        self.current_step = 0

    def _obs(self) -> np.ndarray:
        return self.np_random.integers(0, 256, self.observation_space.shape, dtype=np.uint8)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.current_step = 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.current_step += 1
        return self._obs(), float(self.current_step % 3 == 0), False, self.current_step >= self.ep_length, {}


class ConstantValuePolicy(ActorCriticPolicy):
    """A user's own policy class (SB3's test_gae one): the value head is replaced by a constant."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.constant_value = 0.0

    def forward(self, obs: th.Tensor, deterministic: bool = False) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        actions, values, log_prob = super().forward(obs, deterministic)
        return actions, th.ones_like(values) * self.constant_value, log_prob


class SmallMlpExtractor(BaseFeaturesExtractor):
    """A user's own learned features extractor."""

    def __init__(self, observation_space: spaces.Box, features_dim: int = 16):
        super().__init__(observation_space, features_dim)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(observation_space.shape)), features_dim), nn.ReLU())

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.net(observations)


#: What one env step adds to a CountingEnv observation
STEP = np.array([0.0, 0.0, 1.0], dtype=np.float32)


def check_rows(rollouts: list, decode: Callable[[np.ndarray], np.ndarray], n_rows: int) -> None:
    """Every valid row's next observation decodes to the same (env, episode) with step + 1."""
    for batches in rollouts:
        assert sum(len(b.next_valid) for b in batches) == n_rows
        for batch in batches:
            assert isinstance(batch, (JEPARolloutBufferSamples, JEPADictRolloutBufferSamples))
            assert th.all(batch.next_valid == 1.0)
            current, following = decode(state_of(batch.observations)), decode(state_of(batch.next_observations))
            np.testing.assert_allclose(following, current + STEP, atol=1e-3)
            # The compact form the loss uses gives the same rows
            compact = (
                {
                    key: th.cat([batch.observations[key], batch.next_extra_observations[key]])[batch.next_index]
                    for key in batch.observations
                }
                if isinstance(batch.observations, dict)
                else th.cat([batch.observations, batch.next_extra_observations])[batch.next_index]
            )
            np.testing.assert_array_equal(state_of(compact), state_of(batch.next_observations))
