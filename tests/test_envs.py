"""The pixel testbeds: pixel Cart Pole and MinAtar, with the small-image encoder."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.torch_layers import NatureCNN
from stable_baselines3.common.vec_env import VecFrameStack

from sb3_jepa import PPOJEPA, SmallImageCNN
from sb3_jepa.envs import PIXEL_CARTPOLE_ID, PixelCartPoleEnv
from sb3_jepa.envs.pixel_cartpole import TRACK


def test_pixel_cartpole_is_cartpole():
    pixels, states = gym.make(PIXEL_CARTPOLE_ID), gym.make("CartPole-v1")
    assert pixels.spec.max_episode_steps == states.spec.max_episode_steps == 500
    obs, info = pixels.reset(seed=3)
    state, _ = states.reset(seed=3)
    assert obs.shape == (84, 84, 1) and obs.dtype == np.uint8
    np.testing.assert_array_equal(info["state"], state)
    rng = np.random.default_rng(0)
    for _ in range(200):
        action = int(rng.integers(2))
        obs, reward, terminated, truncated, info = pixels.step(action)
        state, state_reward, state_terminated, state_truncated, _ = states.step(action)
        np.testing.assert_array_equal(info["state"], state)
        assert (reward, terminated, truncated) == (state_reward, state_terminated, state_truncated)
        if terminated or truncated:
            break
    assert terminated


def test_pixel_cartpole_shows_the_state():
    env = PixelCartPoleEnv()
    env.reset(seed=0)
    frames = {}
    for name, state in {"centre": [0, 0, 0, 0], "right": [1.5, 0, 0, 0], "tilted": [0, 0, 0.2, 0]}.items():
        env.state = np.array(state, dtype=np.float64)
        frames[name] = env._pixels()[:, :, 0]
    assert not np.array_equal(frames["centre"], frames["right"])
    assert not np.array_equal(frames["centre"], frames["tilted"])
    # The cart moves right by 1.5 units (about 24 pixels): so do the cart and pole pixels (brighter than the track)
    columns = np.arange(84)
    centre_of = {name: np.nonzero(frame > TRACK)[1].mean() for name, frame in frames.items()}
    assert centre_of["right"] == pytest.approx(centre_of["centre"] + 1.5 * env.scale, abs=1.5)
    # Tilted right, the pole's top is right of the cart: the top rows' bright pixels move right
    top = slice(0, 50)
    assert (frames["tilted"][top] * columns).sum() / frames["tilted"][top].sum() > 42


def test_pixel_cartpole_options():
    env = gym.make(PIXEL_CARTPOLE_ID, size=48, rgb=True, render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (48, 48, 3)
    assert env.render().shape == (48, 48, 3)
    check_env(PixelCartPoleEnv(), skip_render_check=True)
    with pytest.raises(ValueError, match="size must be an int >= 16"):
        PixelCartPoleEnv(size=8)
    with pytest.raises(ValueError, match="render_mode must be None or 'rgb_array'"):
        PixelCartPoleEnv(render_mode="human")


def test_ppojepa_on_pixel_cartpole():
    env = VecFrameStack(make_vec_env(PIXEL_CARTPOLE_ID, n_envs=2, seed=0), n_stack=2)
    model = PPOJEPA("CnnPolicy", env, n_steps=32, batch_size=32, n_epochs=1, seed=0).learn(64)
    assert isinstance(model.policy.features_extractor.encoder, NatureCNN)
    assert model.observation_space.shape == (2, 84, 84)


@pytest.mark.parametrize("shape", [(10, 10, 4), (10, 10, 10), (4, 10, 10)])
def test_small_image_cnn(shape):
    channels_last = shape[0] == 10
    space = spaces.Box(0, 1, shape, dtype=bool)
    encoder = SmallImageCNN(space, features_dim=32, channels_last=channels_last if shape == (4, 10, 10) else None)
    assert encoder.channels_last == channels_last
    observations = th.as_tensor(np.stack([space.sample() for _ in range(5)]))
    assert encoder(observations).shape == (5, 32)
    with pytest.raises(ValueError, match="3-D Box"):
        SmallImageCNN(spaces.Box(0, 1, (10,)))


def test_ppojepa_runs_on_every_minatar_game():
    pytest.importorskip("minatar")
    games = [env_id for env_id in gym.registry if env_id.startswith("MinAtar/") and env_id.endswith("-v1")]
    assert len(games) == 5
    for env_id in games:
        env = make_vec_env(env_id, n_envs=2, seed=0)
        model = PPOJEPA("CnnPolicy", env, n_steps=16, batch_size=32, n_epochs=1, seed=0).learn(32)
        assert isinstance(model.policy.features_extractor.encoder, SmallImageCNN), env_id
        assert np.isfinite(model.logger.name_to_value["jepa/loss"])
