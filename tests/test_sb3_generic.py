"""
The subclasses behave as SB3's own A2C and PPO do, in the spirit of SB3's generic tests: spaces, Dict
observations, images, callbacks, determinism, train/eval mode, gSDE, wrappers and the logger.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback, StopTrainingOnMaxEpisodes
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import (
    IdentityEnv,
    IdentityEnvBox,
    IdentityEnvMultiBinary,
    IdentityEnvMultiDiscrete,
    SimpleMultiObsEnv,
)
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, get_flattened_obs_dim
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack, VecNormalize, VecTransposeImage
from torch import nn

from sb3_jepa import A2CJEPA, PPOJEPA
from tests.conftest import ALGOS, SMALL
from tests.helpers import SeededImageEnv

BASE = {A2CJEPA: A2C, PPOJEPA: PPO}


@pytest.mark.parametrize("algo_cls", ALGOS)
@pytest.mark.parametrize(
    "env",
    [IdentityEnv(4), IdentityEnvBox(), IdentityEnvMultiBinary(3), IdentityEnvMultiDiscrete(3)],
    ids=["discrete", "box", "multibinary", "multidiscrete"],
)
def test_action_spaces(algo_cls, env):
    model = algo_cls("MlpPolicy", env, seed=0, **SMALL[algo_cls]).learn(2 * SMALL[algo_cls]["n_steps"])
    obs, _ = env.reset()
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(action.astype(env.action_space.dtype))
    assert model.logger.name_to_value["jepa/loss"] > 0


@pytest.mark.parametrize("algo_cls", ALGOS)
@pytest.mark.parametrize("wrapper", [None, "frame_stack", "normalize"])
def test_dict_observations(algo_cls, wrapper):
    env = DummyVecEnv([lambda: SimpleMultiObsEnv(random_start=True)])
    if wrapper == "frame_stack":
        env = VecFrameStack(env, n_stack=2)
    elif wrapper == "normalize":
        env = VecNormalize(env, norm_obs_keys=["vec"])
    model = algo_cls("MultiInputPolicy", env, seed=0, **SMALL[algo_cls]).learn(2 * SMALL[algo_cls]["n_steps"])
    evaluate_policy(model, env, n_eval_episodes=1, warn=False)
    assert np.isfinite(model.logger.name_to_value["jepa/loss"])


@pytest.mark.parametrize("algo_cls", ALGOS)
@pytest.mark.parametrize("channel_first", [False, True])
def test_images(algo_cls, channel_first):
    env = DummyVecEnv([lambda: SeededImageEnv(size=40, n_channels=2)])
    if channel_first:
        env = VecTransposeImage(env)
    model = algo_cls("CnnPolicy", env, seed=0, **SMALL[algo_cls]).learn(SMALL[algo_cls]["n_steps"])
    assert model.policy.features_dim == 512
    model.predict(env.reset(), deterministic=True)


@pytest.mark.parametrize("algo_cls", ALGOS)
def test_callbacks(tmp_path, algo_cls):
    eval_env = make_vec_env("CartPole-v1", n_envs=1)
    callbacks = [
        EvalCallback(eval_env, eval_freq=SMALL[algo_cls]["n_steps"], n_eval_episodes=1, log_path=str(tmp_path), warn=False),
        CheckpointCallback(save_freq=SMALL[algo_cls]["n_steps"], save_path=str(tmp_path), name_prefix="jepa"),
        StopTrainingOnMaxEpisodes(max_episodes=1000),
    ]
    model = algo_cls("MlpPolicy", "CartPole-v1", seed=0, **SMALL[algo_cls]).learn(
        2 * SMALL[algo_cls]["n_steps"], callback=callbacks
    )
    checkpoints = sorted(tmp_path.glob("jepa_*_steps.zip"))
    assert checkpoints
    # A checkpoint saved in the middle of a rollout loads and trains
    algo_cls.load(checkpoints[0], env=model.get_env()).learn(SMALL[algo_cls]["n_steps"])
    assert (tmp_path / "evaluations.npz").exists()


def test_stop_training_callback_ends_learn():
    model = PPOJEPA("MlpPolicy", "CartPole-v1", seed=0, **SMALL[PPOJEPA])
    model.learn(10_000, callback=StopTrainingOnMaxEpisodes(max_episodes=2))
    assert model.num_timesteps < 10_000


@pytest.mark.parametrize("algo_cls", ALGOS)
def test_deterministic_given_seed(algo_cls):
    results = []
    for _ in range(2):
        model = algo_cls("MlpPolicy", "CartPole-v1", seed=7, jepa_target="ema", **SMALL[algo_cls])
        model.learn(3 * SMALL[algo_cls]["n_steps"])
        results.append(model.policy.state_dict())
    assert all(th.equal(results[0][key], results[1][key]) for key in results[0])


class FlattenBatchNormDropoutExtractor(BaseFeaturesExtractor):
    """SB3's test_train_eval_mode extractor"""

    def __init__(self, observation_space):
        super().__init__(observation_space, get_flattened_obs_dim(observation_space))
        self.flatten = nn.Flatten()
        self.batch_norm = nn.BatchNorm1d(self._features_dim)
        self.dropout = nn.Dropout(0.5)

    def forward(self, observations):
        return self.dropout(self.batch_norm(self.flatten(observations)))


@pytest.mark.parametrize("algo_cls", ALGOS)
def test_train_and_eval_mode(algo_cls):
    policy_kwargs = dict(net_arch=[16, 16], features_extractor_class=FlattenBatchNormDropoutExtractor)
    model = algo_cls("MlpPolicy", "CartPole-v1", seed=1, policy_kwargs=policy_kwargs, jepa_target="ema", **SMALL[algo_cls])
    batch_norm = model.policy.features_extractor.batch_norm
    bias, mean = batch_norm.bias.clone(), batch_norm.running_mean.clone()
    model.learn(2 * SMALL[algo_cls]["n_steps"])
    assert not th.isclose(bias, batch_norm.bias).all()
    assert not th.isclose(mean, batch_norm.running_mean).all()
    # The EMA target copies the running statistics and stays in eval mode
    assert th.equal(model.policy.jepa_target_encoder.batch_norm.running_mean, batch_norm.running_mean)
    # Predictions do not train: same action, same statistics
    obs = model.get_env().reset()
    stats = batch_norm.running_mean.clone()
    first, _ = model.predict(obs, deterministic=True)
    for _ in range(3):
        np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], first)
    assert th.equal(stats, batch_norm.running_mean)


@pytest.mark.parametrize("algo_cls", ALGOS)
@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
@pytest.mark.parametrize("target", ["online", "stop_grad", "ema"])
def test_batch_norm_encoder_trains_with_sb3_defaults(algo_cls, env_id, target):
    """SB3's test_a2c_ppo_train_with_batch_norm (1 env, A2C's 5-step rollouts: one final observation per update)"""
    model = algo_cls(
        "MlpPolicy",
        env_id,
        policy_kwargs=dict(net_arch=[16, 16], features_extractor_class=FlattenBatchNormDropoutExtractor),
        seed=1,
        jepa_target=target,
        **({"n_steps": 64, "batch_size": 32} if algo_cls is PPOJEPA else {}),
    )
    batch_norm = model.policy.features_extractor.batch_norm
    bias, mean = batch_norm.bias.clone(), batch_norm.running_mean.clone()
    model.learn(200)
    assert not th.isclose(bias, batch_norm.bias).all() and not th.isclose(mean, batch_norm.running_mean).all()
    assert model._jepa_encoder_mixes_rows and np.isfinite(model.logger.name_to_value["jepa/loss"])


@pytest.mark.parametrize("algo_cls", ALGOS)
def test_gsde(algo_cls):
    model = algo_cls("MlpPolicy", "Pendulum-v1", seed=0, use_sde=True, sde_sample_freq=4, **SMALL[algo_cls])
    model.learn(2 * SMALL[algo_cls]["n_steps"])
    assert np.isfinite(model.logger.name_to_value["jepa/loss"])


@pytest.mark.parametrize("algo_cls", ALGOS)
def test_multiple_envs_from_id(algo_cls):
    env = make_vec_env("CartPole-v1", n_envs=3, seed=0)
    model = algo_cls("MlpPolicy", env, seed=0, **SMALL[algo_cls]).learn(2 * 3 * SMALL[algo_cls]["n_steps"])
    assert model.rollout_buffer.n_envs == 3
    assert model.num_timesteps == 2 * 3 * SMALL[algo_cls]["n_steps"]


def test_progress_bar(capsys):
    pytest.importorskip("tqdm")
    pytest.importorskip("rich")
    model = A2CJEPA("MlpPolicy", "CartPole-v1", **SMALL[A2CJEPA]).learn(32, progress_bar=True)
    assert model.num_timesteps == 32
    # SB3's ProgressBarCallback (tqdm.rich) drew the bar up to the budget
    captured = capsys.readouterr()
    assert "32/32" in captured.out + captured.err


class SpacesEnv(gym.Env):
    """SB3's test_spaces DummyEnv: given spaces, zero rewards, 20-step episodes."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space):
        super().__init__()
        self.observation_space, self.action_space = observation_space, action_space
        self.steps = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.observation_space.seed(seed)
        self.steps = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.steps += 1
        return self.observation_space.sample(), 0.0, False, self.steps >= 20, {}


FLOAT32 = spaces.Box(-1, 1, (2,), np.float32)
FLOAT64 = spaces.Box(-1, 1, (2,), np.float64)


@pytest.mark.parametrize("algo_cls", ALGOS)
@pytest.mark.parametrize(
    "observation_space, action_space",
    [
        (FLOAT64, FLOAT64),
        (spaces.Dict({"a": FLOAT32, "b": FLOAT64}), FLOAT64),
        (FLOAT32, spaces.Box(-1, 1, (2, 2), np.float32)),  # multi-dimensional Box actions
        (spaces.Discrete(5), spaces.Discrete(3)),  # Discrete observations (one-hot, as SB3's Taxi test)
        (spaces.MultiDiscrete([3, 4]), spaces.MultiBinary(3)),
    ],
    ids=["float64", "dict_float64", "box_2x2_actions", "discrete_obs", "multidiscrete_obs"],
)
def test_observation_and_action_space_types(algo_cls, observation_space, action_space):
    env = SpacesEnv(observation_space, action_space)
    policy = "MultiInputPolicy" if isinstance(observation_space, spaces.Dict) else "MlpPolicy"
    model = algo_cls(policy, env, seed=0, policy_kwargs=dict(net_arch=[12]), **SMALL[algo_cls])
    model.learn(2 * SMALL[algo_cls]["n_steps"])
    assert np.isfinite(model.logger.name_to_value["jepa/loss"])
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=False)
    # As SB3's own: the space's shape, and its dtype (SB3 hands MultiBinary actions out as float32)
    plain = BASE[algo_cls](policy, env, seed=0, policy_kwargs=dict(net_arch=[12]), **SMALL[algo_cls])
    assert action.dtype == plain.predict(obs)[0].dtype and action.shape == action_space.shape
    assert action.dtype == action_space.dtype or isinstance(action_space, spaces.MultiBinary)


@pytest.mark.parametrize("algo_cls", ALGOS)
def test_predict_as_sb3(algo_cls):
    """SB3's test_predict: one observation or a batch, VecEnv or not, and its error for a Gym reset tuple."""
    env = gym.make("CartPole-v1")
    model = algo_cls("MlpPolicy", env, seed=0, **SMALL[algo_cls])
    obs, _ = env.reset(seed=0)
    action, state = model.predict(obs)
    assert env.action_space.contains(action) and state is None
    vec_env = make_vec_env("CartPole-v1", n_envs=3, seed=0)
    actions, _ = model.predict(vec_env.reset(), deterministic=True)
    assert actions.shape == (3,)
    with pytest.raises(ValueError, match=r"mixing Gym API"):
        model.predict(env.reset())  # type: ignore[arg-type]


@pytest.mark.parametrize("algo_cls", ALGOS)
def test_logs_what_sb3_logs(algo_cls):
    """Every key SB3's algorithm logs is logged, with the jepa/ keys beside them."""
    keys = []
    for cls in (BASE[algo_cls], algo_cls):
        model = cls("MlpPolicy", "CartPole-v1", seed=0, **SMALL[algo_cls]).learn(2 * SMALL[algo_cls]["n_steps"])
        keys.append(set(model.logger.name_to_value))
    assert keys[0] <= keys[1]
    assert {key for key in keys[1] - keys[0] if not key.startswith("jepa/")} == set()
