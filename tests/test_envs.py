"""The pixel testbeds: pixel Cart Pole, Two Rooms and MinAtar, with the small-image encoder."""

import re

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
from sb3_jepa.envs import PIXEL_CARTPOLE_ID, TWO_ROOMS_ID, TWO_ROOMS_STEPS, PixelCartPoleEnv, TwoRoomsEnv
from sb3_jepa.envs.pixel_cartpole import TRACK
from sb3_jepa.envs.two_rooms import SUCCESS_BONUS


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


# -- Two Rooms ----------------------------------------------------------------------------------------------------


def two_rooms(**kwargs):
    env = TwoRoomsEnv(**kwargs)
    env.reset(seed=0)
    return env


def test_two_rooms_geometry_is_pldms():
    env = two_rooms()
    assert env.observation_space.shape == (64, 64, 3)
    # Border 2 px, middle wall at columns 31-33, door rows 27-36
    assert env.walls[:2].all() and env.walls[-2:].all() and env.walls[:, :2].all() and env.walls[:, -2:].all()
    assert env.walls[10, 31:34].all() and not env.walls[10, 30] and not env.walls[10, 34]
    assert not env.walls[27:37, 31:34].any() and env.walls[26, 31:34].all() and env.walls[37, 31:34].all()
    assert gym.make(TWO_ROOMS_ID).spec.max_episode_steps == TWO_ROOMS_STEPS == 200
    check_env(TwoRoomsEnv())
    check_env(TwoRoomsEnv(discrete=True))


def test_two_rooms_walls_block_and_the_door_passes():
    env = two_rooms()
    # Left of the middle wall, away from the door: pushing right stops before column 31
    env.reset(seed=0, options=dict(start=(28.0, 10.0), goal=(10.0, 50.0)))
    for _ in range(10):
        env.step(np.array([1.0, 0.0], dtype=np.float32))
    assert 29.0 <= env.position[0] < 31.0 and env.position[1] == 10.0
    # At the door's height: pushing right walks into the other room
    env.reset(seed=0, options=dict(start=(28.0, 32.0), goal=(50.0, 50.0)))
    for _ in range(10):
        env.step(np.array([1.0, 0.0], dtype=np.float32))
    assert env.position[0] > 34.0 and env.room(env.position) == 1
    # The border blocks too
    env.reset(seed=0, options=dict(start=(5.0, 5.0), goal=(20.0, 20.0)))
    for _ in range(10):
        env.step(np.array([-1.0, -1.0], dtype=np.float32))
    assert (env.position >= 2.0).all() and env.is_free(env.position)


def test_two_rooms_moves():
    box, discrete = two_rooms(), two_rooms(discrete=True)
    np.testing.assert_allclose(np.linalg.norm(box.displacement(np.ones(2))), 2.45)
    np.testing.assert_allclose(box.displacement(np.array([5.0, 0.0])), [2.45 / np.sqrt(2), 0.0])  # clipped to [-1, 1]
    np.testing.assert_allclose(discrete.displacement(0), [0.0, 0.0])
    np.testing.assert_allclose(discrete.displacement(1), [2.45, 0.0])  # east
    np.testing.assert_allclose(discrete.displacement(3), [0.0, 2.45], atol=1e-12)  # +y (down the image)
    assert all(np.linalg.norm(discrete.displacement(a)) == pytest.approx(2.45) for a in range(1, 9))


def test_two_rooms_observation_shows_the_state():
    env = two_rooms()
    obs, info = env.reset(seed=3, options=dict(start=(12.3, 40.7), goal=(50.2, 20.4)))
    np.testing.assert_allclose(info["state"], [12.3, 40.7, 50.2, 20.4], rtol=1e-6)
    assert info["cross_room"]
    # Channels: agent dot (brightest pixel under the agent), walls, goal dot
    assert np.unravel_index(obs[:, :, 0].argmax(), (64, 64)) == (40, 12)
    np.testing.assert_array_equal(obs[:, :, 1] > 0, env.walls)
    assert np.unravel_index(obs[:, :, 2].argmax(), (64, 64)) == (20, 50)
    # The goal observation is the observation with the agent at the goal
    goal_obs = env.goal_observation()
    np.testing.assert_array_equal(goal_obs[:, :, 0], goal_obs[:, :, 2])
    np.testing.assert_array_equal(goal_obs, env.observation_at(env.goal))
    env.position = env.goal.copy()
    np.testing.assert_array_equal(env.render() if env.render_mode else env._image(env.position), goal_obs)


def test_two_rooms_reward_ends_and_success():
    env = two_rooms()
    env.reset(seed=0, options=dict(start=(10.0, 10.0), goal=(17.5, 10.0)))  # 7.5 px apart
    _, reward, terminated, _, info = env.step(np.array([1.0, 0.0], dtype=np.float32))
    assert not terminated and reward == pytest.approx(1 / np.sqrt(2))  # 1.73 px closer, in units of 2.45 px
    _, reward, terminated, _, info = env.step(np.array([1.0, 0.0], dtype=np.float32))
    assert terminated and info["is_success"] and info["distance"] < 4.5
    assert reward == pytest.approx(1 / np.sqrt(2) + SUCCESS_BONUS)


def test_two_rooms_geodesic_distance_goes_through_the_door():
    env = two_rooms()
    # The docstring's example: the straight line at y = 10 misses the door (rows 27-36), the path bends at y = 27.5
    assert env.geodesic_distance(np.array([16.0, 10.0]), np.array([48.0, 10.0])) == pytest.approx(
        np.hypot(16.5, 17.5) + np.hypot(15.5, 17.5)
    )
    # Through the door the path is straight
    assert env.geodesic_distance(np.array([16.0, 32.0]), np.array([48.0, 32.0])) == pytest.approx(32.0)
    assert env.geodesic_distance(np.array([5.0, 5.0]), np.array([8.0, 9.0])) == pytest.approx(5.0)


@pytest.mark.parametrize("layout", ["same", "cross"])
def test_two_rooms_layouts(layout):
    env = TwoRoomsEnv(layout=layout)
    for seed in range(50):
        _, info = env.reset(seed=seed)
        assert info["cross_room"] == (layout == "cross")
        assert env.is_free(env.position) and env.is_free(env.goal) and info["distance"] >= 9.0
    rooms = {env.reset(seed=s, options=dict(layout="any"))[1]["cross_room"] for s in range(20)}
    assert rooms == {True, False}


def test_two_rooms_bad_input():
    with pytest.raises(ValueError, match="layout must be one of"):
        TwoRoomsEnv(layout="both")
    with pytest.raises(ValueError, match="max_step must be > 0"):
        TwoRoomsEnv(max_step=0)
    env = TwoRoomsEnv()
    with pytest.raises(ValueError, match=re.escape("start=[32.0, 5.0] is not a free position")):
        env.reset(options=dict(start=(32.0, 5.0), goal=(10.0, 10.0)))
    with pytest.raises(ValueError, match="'start' and 'goal' go together"):
        env.reset(options=dict(goal=(10.0, 10.0)))
    with pytest.raises(ValueError, match="reset option layout must be one of"):
        env.reset(options=dict(layout="diagonal"))


def test_two_rooms_trains_with_the_cnn_policy():
    env = make_vec_env("TwoRoomsDiscrete-v0", n_envs=2, seed=0)
    model = PPOJEPA("CnnPolicy", env, n_steps=16, batch_size=16, n_epochs=1, device="cpu").learn(32)
    assert isinstance(model.policy.features_extractor.encoder, NatureCNN)
