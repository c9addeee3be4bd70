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
from sb3_jepa.envs import (
    DISTRACTOR_CARTPOLE_IDS,
    DISTRACTOR_FREE_CARTPOLE_ID,
    DISTRACTOR_TWO_ROOMS_IDS,
    PIXEL_CARTPOLE_ID,
    TWO_ROOMS_DISCRETE_ID,
    TWO_ROOMS_ID,
    TWO_ROOMS_STEPS,
    DistractorCartPoleEnv,
    PixelCartPoleEnv,
    TwoRoomsEnv,
)
from sb3_jepa.envs.distractors import rotation_dynamics
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
    np.testing.assert_array_equal(env.walls, pldm_walls())
    # 64^2 - 60^2 = 496 border pixels, 3 columns x (60 - 10) rows of middle wall
    assert env.walls.sum() == 496 + 150
    # Border 2 px, middle wall at columns 31-33, door rows 27-36
    assert env.walls[:2].all() and env.walls[-2:].all() and env.walls[:, :2].all() and env.walls[:, -2:].all()
    assert env.walls[10, 31:34].all() and not env.walls[10, 30] and not env.walls[10, 34]
    assert not env.walls[27:37, 31:34].any() and env.walls[26, 31:34].all() and env.walls[37, 31:34].all()
    assert gym.make(TWO_ROOMS_ID).spec.max_episode_steps == TWO_ROOMS_STEPS == 200
    check_env(TwoRoomsEnv())
    check_env(TwoRoomsEnv(discrete=True))


def middle_wall(walls):
    """
    The middle wall read off a walls array: its columns (the walls of the first row inside the border, but the
    border's) and its door (the rows inside the border on which those columns are free).
    """
    border = int(walls.all(axis=1).sum() // 2)
    inner = np.arange(border, len(walls) - border)
    columns = inner[walls[border, inner]]
    door = inner[~walls[inner][:, columns].any(axis=1)]
    return border, columns, door


@pytest.mark.parametrize("size", [0, 8, 15, 16, 16.0])
def test_two_rooms_refuses_sizes_without_a_middle_wall(size):
    # At 16 the middle wall's columns [round(31 / 4), round(34 / 4)) = [8, 8) are none: the two rooms are one
    with pytest.raises(ValueError, match=re.escape("size must be an int >= 17 (pixels)")):
        TwoRoomsEnv(size=size)


def test_two_rooms_every_allowed_size_has_a_wall_a_door_and_two_rooms():
    for size in range(17, 161):
        env = TwoRoomsEnv(size=size)
        border, columns, door = middle_wall(env.walls)
        assert border >= 1 and env.walls[:border].all() and env.walls[-border:].all(), size
        # A middle wall of one or more adjacent columns with free columns on both sides, a door of adjacent rows
        # with wall rows above and below it
        assert len(columns) >= 1 and np.all(np.diff(columns) == 1), size
        assert border < columns[0] and columns[-1] < size - border - 1, size
        assert len(door) >= 1 and np.all(np.diff(door) == 1), size
        assert border < door[0] and door[-1] < size - border - 1, size
        # Rooms: every drawn start and goal is free and on its side of the wall
        for seed in range(3):
            for layout in ("same", "cross"):
                _, info = env.reset(seed=seed, options=dict(layout=layout))
                for point in (env.position, env.goal):
                    assert not env.walls[int(point[1]), int(point[0])], size
                    assert not columns[0] <= point[0] < columns[-1] + 1, size
                assert info["cross_room"] == (layout == "cross"), size


def test_two_rooms_refuses_a_degenerate_door_and_moves_that_jump_the_wall():
    # 0.5 px: rows [round(31.75), round(32.25)) = [32, 32), no door; 59 px: rows [2, 62), no wall beside the door
    with pytest.raises(ValueError, match=re.escape("door_width=0.5 at size=64 makes the door rows [32, 32)")):
        TwoRoomsEnv(door_width=0.5)
    with pytest.raises(ValueError, match=re.escape("door_width=59.0 at size=64 makes the door rows [2, 62)")):
        TwoRoomsEnv(door_width=59.0)
    _, _, door = middle_wall(TwoRoomsEnv(door_width=58.0).walls)
    assert (door[0], door[-1]) == (3, 60)
    # Parts of max_step / 4 px: up to the middle wall's 3 px at 64 (max_step 12), 1 px at 32 (max_step 8)
    TwoRoomsEnv(max_step=12.0)
    with pytest.raises(ValueError, match=re.escape("max_step=12.5 at size=64 makes a move's 4 parts 3.12 px long")):
        TwoRoomsEnv(max_step=12.5)
    TwoRoomsEnv(size=32, max_step=8.0)
    with pytest.raises(ValueError, match="must be at most 8 "):
        TwoRoomsEnv(size=32, max_step=8.5)


def test_two_rooms_a_diagonal_part_can_clip_a_wall_corner():
    # The module docstring's example: only the ends of a move's 4 parts are checked, and the first part of this one
    # starts on pixel (26, 30) and ends on pixel (27, 31), in the door, passing over the wall pixel (26, 31)
    env = two_rooms()
    assert env.walls[26, 31] and not env.walls[26, 30] and not env.walls[27, 31]
    env.reset(seed=0, options=dict(start=(30.8, 26.6), goal=(50.0, 50.0)))
    env.step(np.array([1.0, 1.0], dtype=np.float32))
    step = 2.45 / np.sqrt(2)  # 1.7324 px along each axis, 0.4331 px a part
    np.testing.assert_allclose(env.position, [30.8 + step, 26.6 + step])  # not blocked: (32.53, 28.33)
    np.testing.assert_allclose(env.position, [32.5324116, 28.3324116], atol=1e-7)
    # Where the move crosses x = 31.1 (within its first part, which ends at x = 31.23) it is on the wall pixel
    on_the_way = np.array([30.8, 26.6]) + (31.1 - 30.8) * np.array([1.0, 1.0])
    assert 30.8 + step / 4 > 31.1 and env.walls[int(on_the_way[1]), int(on_the_way[0])]


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("size", [17, 27, 32, 64, 101])
def test_two_rooms_moves_never_end_on_a_wall_nor_cross_one(size, discrete):
    env = two_rooms(size=size, discrete=discrete)
    walls = env.walls
    _, columns, door = middle_wall(walls)
    wall_low, wall_high, door_low, door_high = columns[0], columns[-1] + 1, door[0], door[-1] + 1
    part = 2.45 * size / 64 / 4  # the longest part of a move
    rng = np.random.default_rng(size)
    blocked = crossings = 0
    for _ in range(3000):
        # Starts anywhere in the arena, half of them within a move of the middle wall
        low = (wall_low - 4 * part, 0) if rng.random() < 0.5 else (0, 0)
        high = (wall_high + 4 * part, size) if low[0] else (size, size)
        start = rng.uniform(low, high)
        if walls[int(start[1]), int(start[0])]:
            continue
        if discrete:
            action = rng.integers(9)
        else:  # the corners of the action square half of the time: full diagonal moves
            action = rng.choice([-1.0, 1.0], 2) if rng.random() < 0.5 else rng.uniform(-1, 1, 2)
        displacement = env.displacement(action)
        end = env.move(start, displacement)
        blocked += not np.allclose(end, start + displacement)
        # Never on a wall pixel, never outside the image
        assert (end >= 0).all() and (end < size).all() and not walls[int(end[1]), int(end[0])], (start, action)
        # Within the wall's columns, the move is on the door's rows, up to a part's clip of a corner: dense points
        # along the move (far closer than the wall's thickness, at least 1 px) find any passage through the wall
        points = start + np.linspace(0, 1, 201)[:, None] * (end - start)
        inside = points[(wall_low <= points[:, 0]) & (points[:, 0] < wall_high)]
        assert ((door_low - part < inside[:, 1]) & (inside[:, 1] < door_high + part)).all(), (start, action)
        crossings += (start[0] < wall_low) != (end[0] < wall_low)
    # The walls were met often, and the agent went into and out of the wall's columns
    assert blocked > 100 and crossings > 20


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


def pldm_walls():
    """The walls at 64 px, drawn by hand from the module docstring: border 2 px, columns 31-33 but rows 27-36."""
    walls = np.zeros((64, 64), dtype=bool)
    walls[:2], walls[-2:], walls[:, :2], walls[:, -2:] = True, True, True, True
    walls[:, 31:34] = True
    walls[27:37, 31:34] = False
    return walls


def dot_value(position, pixel):
    """The dot channel's value at pixel ``(row, col)``: 255 times a Gaussian of std 1.3 px at the pixel's centre."""
    (x, y), (row, col) = position, pixel
    return round(255 * np.exp(-((col + 0.5 - x) ** 2 + (row + 0.5 - y) ** 2) / (2 * 1.3**2)))


def test_two_rooms_observation_shows_the_state():
    env = TwoRoomsEnv(render_mode="rgb_array")
    obs, info = env.reset(seed=3, options=dict(start=(12.3, 40.7), goal=(50.2, 20.4)))
    np.testing.assert_allclose(info["state"], [12.3, 40.7, 50.2, 20.4], rtol=1e-6)
    assert info["cross_room"]
    # Channels: agent dot (brightest pixel under the agent), walls, goal dot; values from the Gaussian by hand
    # (at the agent's pixel centre (12.5, 40.5): exp(-0.08 / 3.38) * 255 = 249.0)
    assert np.unravel_index(obs[:, :, 0].argmax(), (64, 64)) == (40, 12)
    assert obs[40, 12, 0] == dot_value((12.3, 40.7), (40, 12)) == 249
    assert obs[40, 14, 0] == dot_value((12.3, 40.7), (40, 14))  # two columns right: 2.2 px from the centre
    np.testing.assert_array_equal(obs[:, :, 1], np.where(pldm_walls(), 255, 0))
    assert np.unravel_index(obs[:, :, 2].argmax(), (64, 64)) == (20, 50)
    assert obs[20, 50, 2] == dot_value((50.2, 20.4), (20, 50)) == 248
    # The goal observation is the observation with the agent at the goal: the agent's dot where the goal's is
    goal_obs = env.goal_observation()
    assert np.unravel_index(goal_obs[:, :, 0].argmax(), (64, 64)) == (20, 50)
    assert goal_obs[20, 50, 0] == 248 and goal_obs[21, 49, 0] == dot_value((50.2, 20.4), (21, 49))
    np.testing.assert_array_equal(goal_obs[:, :, 1:], obs[:, :, 1:])  # same walls, same goal
    # observation_at and render draw the given and the current position: compared with the reset's own picture
    np.testing.assert_array_equal(env.observation_at((12.3, 40.7)), obs)
    np.testing.assert_array_equal(env.render(), obs)
    assert TwoRoomsEnv().render() is None


def test_two_rooms_reward_ends_and_success():
    env = two_rooms()
    env.reset(seed=0, options=dict(start=(10.0, 10.0), goal=(17.5, 10.0)))  # 7.5 px apart
    _, reward, terminated, _, info = env.step(np.array([1.0, 0.0], dtype=np.float32))
    assert not terminated and reward == pytest.approx(1 / np.sqrt(2))  # 1.73 px closer, in units of 2.45 px
    _, reward, terminated, _, info = env.step(np.array([1.0, 0.0], dtype=np.float32))
    assert terminated and info["is_success"] and info["distance"] < 4.5
    assert reward == pytest.approx(1 / np.sqrt(2) + 10.0)  # plus the success bonus, 10
    assert SUCCESS_BONUS == 10.0


def test_two_rooms_geodesic_distance_goes_through_the_door():
    env = two_rooms()
    # The docstring's example: the straight line at y = 10 misses the door (rows 27-36), the path bends at y = 27.5
    start, goal = np.array([16.0, 10.0]), np.array([48.0, 10.0])
    assert env.geodesic_distance(start, goal) == pytest.approx(47.4, abs=0.05)
    assert env.geodesic_distance(start, goal) == pytest.approx(np.hypot(16.5, 17.5) + np.hypot(15.5, 17.5))
    # The shortest of the paths bent once on the door's opening (x = 32.5, y in [27.5, 36.5]), found by search
    door = np.stack([np.full(9001, 32.5), np.linspace(27.5, 36.5, 9001)], axis=1)
    for start, goal in (((16.0, 10.0), (48.0, 10.0)), ((5.0, 50.0), (40.0, 30.0)), ((50.0, 20.0), (10.0, 33.0))):
        paths = np.linalg.norm(door - start, axis=1) + np.linalg.norm(goal - door, axis=1)
        assert env.geodesic_distance(np.array(start), np.array(goal)) == pytest.approx(paths.min(), abs=1e-6)
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


@pytest.mark.parametrize("env_id, kind", sorted(DISTRACTOR_CARTPOLE_IDS.items()))
def test_distractor_cartpole_is_cartpole_plus_distractors(env_id, kind):
    env, plain = gym.make(env_id), gym.make("CartPole-v1")
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=5)
    assert obs.shape == (4 + 8,) and env.observation_space.contains(obs)
    np.testing.assert_array_equal(info["state"], obs)
    np.testing.assert_array_equal(info["distractor_state"], obs[4:])
    # The task part is CartPole's own dynamics: the same actions from the same state give the same states and rewards
    plain.reset()
    plain.unwrapped.state = obs[:4].astype(np.float64)
    rng = np.random.default_rng(0)
    distractors = [obs[4:]]
    for _ in range(30):
        action = int(rng.integers(2))
        obs, reward, terminated, _, info = env.step(action)
        expected, expected_reward, expected_terminated, _, _ = plain.step(action)
        np.testing.assert_allclose(obs[:4], expected, rtol=1e-6)
        assert (reward, terminated) == (expected_reward, expected_terminated)
        assert np.all(np.abs(obs[4:]) <= 1.0)
        distractors.append(obs[4:])
        if terminated:
            break
    steps = np.array(distractors, dtype=np.float64)
    if kind == "predictable":  # d_{t+1} = A d_t exactly (up to float32 rounding), whatever the actions
        dynamics = env.unwrapped.dynamics
        np.testing.assert_allclose(steps[1:], steps[:-1] @ dynamics.T, atol=1e-6)
        assert np.all(np.abs(steps[1:] - steps[:-1]).max(axis=1) > 1e-3)  # moving, not still
    else:  # i.i.d.: no linear map from d_t predicts d_{t+1}
        fit, *_ = np.linalg.lstsq(steps[:-1], steps[1:], rcond=None)
        assert np.mean((steps[1:] - steps[:-1] @ fit) ** 2) > 0.5 * np.var(steps[1:])
    # One seed fixes the task and the distractors
    again, _ = gym.make(env_id).reset(seed=5)
    first, _ = gym.make(env_id).reset(seed=5)
    np.testing.assert_array_equal(again, first)


def test_the_distractor_free_reference_is_cartpole_reporting_its_state():
    env, plain = gym.make(DISTRACTOR_FREE_CARTPOLE_ID), gym.make("CartPole-v1")
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=5)
    assert obs.shape == (4,) and env.observation_space == plain.observation_space
    np.testing.assert_array_equal(info["state"], obs)
    assert info["distractor_state"].shape == (0,)
    plain.reset()
    plain.unwrapped.state = obs.astype(np.float64)
    for action in [0, 1, 1, 0, 1]:
        obs, reward, terminated, _, info = env.step(action)
        expected, expected_reward, expected_terminated, _, _ = plain.step(action)
        np.testing.assert_allclose(obs, expected, rtol=1e-6)
        np.testing.assert_array_equal(info["state"], obs)
        assert (reward, terminated) == (expected_reward, expected_terminated)


def test_distractor_cartpole_refuses_bad_settings():
    with pytest.raises(
        ValueError, match=r"kind must be one of \('predictable', 'noise'\) or None \(no distractors\), got 'random'"
    ):
        DistractorCartPoleEnv(kind="random")
    with pytest.raises(ValueError, match="kind=None has no distractors: n_distractors must be 0, got 8"):
        DistractorCartPoleEnv(kind=None)
    with pytest.raises(ValueError, match="n_distractors must be an integer >= 1, got 0"):
        DistractorCartPoleEnv(n_distractors=0)
    assert gym.make("CartPoleDistractorsNoise-v1", n_distractors=3).observation_space.shape == (7,)
    np.testing.assert_allclose(rotation_dynamics(3, 0)[2], [0, 0, 1])
    assert np.allclose(rotation_dynamics(4, 0) @ rotation_dynamics(4, 0).T, np.eye(4))  # rotations keep the norm


def play_two_rooms(env_id: str, seed: int, actions: list[int]) -> tuple[list[np.ndarray], list[dict], list[float]]:
    env = gym.make(env_id)
    obs, info = env.reset(seed=seed)
    observations, infos, rewards = [obs], [info], []
    for action in actions:
        obs, reward, terminated, _, info = env.step(action)
        observations.append(obs)
        infos.append(info)
        rewards.append(float(reward))
        if terminated:
            break
    return observations, infos, rewards


@pytest.mark.parametrize("env_id, kind", sorted(DISTRACTOR_TWO_ROOMS_IDS.items()))
def test_two_rooms_distractors_leave_the_task_as_it_is(env_id, kind):
    """The same seed and actions: the same agent, goal, rewards and three first channels as TwoRoomsDiscrete-v0"""
    actions = list(np.random.default_rng(0).integers(9, size=60))
    plain, with_distractors = play_two_rooms(TWO_ROOMS_DISCRETE_ID, 3, actions), play_two_rooms(env_id, 3, actions)
    assert plain[2] == with_distractors[2]
    for obs, distracted in zip(plain[0], with_distractors[0], strict=True):
        assert distracted.shape == (64, 64, 4)
        np.testing.assert_array_equal(distracted[..., :3], obs)
    for info, distracted in zip(plain[1], with_distractors[1], strict=True):
        np.testing.assert_array_equal(distracted["state"][:4], info["state"])
        np.testing.assert_array_equal(distracted["state"][4:], distracted["distractor_state"])
        assert "distractor_state" not in info and len(distracted["distractor_state"]) == 4  # 2 dots


@pytest.mark.parametrize("env_id, kind", sorted(DISTRACTOR_TWO_ROOMS_IDS.items()))
def test_two_rooms_distractors_ignore_the_actions_and_follow_their_motion(env_id, kind):
    rng = np.random.default_rng(1)
    runs = [play_two_rooms(env_id, 5, list(rng.integers(9, size=150))) for _ in range(2)]
    length = min(len(runs[0][1]), len(runs[1][1]))
    tracks = [np.array([info["distractor_state"] for info in run[1][:length]]).reshape(length, 2, 2) for run in runs]
    assert runs[0][1][length - 1]["state"][:2].tolist() != runs[1][1][length - 1]["state"][:2].tolist()
    np.testing.assert_array_equal(tracks[0], tracks[1])  # other actions, the same distractors
    track = tracks[0]
    low, high = 2.0, 62.0  # inside the border
    assert track.min() >= low and track.max() <= high
    steps = np.linalg.norm(np.diff(track, axis=0), axis=2)
    assert steps.max() <= 2.45 + 1e-5
    if kind == "predictable":
        # Constant speed, straight lines between bounces: where no coordinate was reflected, the move repeats
        far = ((track[1:-1] > low + 2.5) & (track[1:-1] < high - 2.5)).all(axis=2)
        moves = np.diff(track, axis=0)
        np.testing.assert_allclose(moves[1:][far], moves[:-1][far], atol=1e-4)
        np.testing.assert_allclose(steps[1:][far], 2.45, atol=1e-4)
    else:
        # A random walk: its moves vary in length and do not repeat
        assert steps.std() > 0.3 and not np.allclose(np.diff(track, axis=0)[1:], np.diff(track, axis=0)[:-1])
    other_seed = play_two_rooms(env_id, 6, [0] * 5)[1]
    assert not np.allclose(other_seed[0]["distractor_state"], track[0].ravel())


def test_two_rooms_distractor_channel_draws_the_dots():
    env = gym.make("TwoRoomsDiscreteDistractorsNoise-v0").unwrapped
    obs, info = env.reset(seed=0)
    grid = np.arange(64) + 0.5
    dots = []
    for x, y in info["distractor_state"].reshape(2, 2):
        column, row = np.exp(-((grid - x) ** 2) / (2 * 1.3**2)), np.exp(-((grid - y) ** 2) / (2 * 1.3**2))
        dots.append(np.round(255 * np.outer(row, column)))
    np.testing.assert_array_equal(obs[..., 3], np.max(dots, axis=0).astype(np.uint8))
    # The goal observation shows the distractors where they are now
    np.testing.assert_array_equal(env.goal_observation()[..., 3], obs[..., 3])


def test_two_rooms_reflection_worked_example():
    """The docstring's example of TwoRoomsEnv._reflect (64 px, arena [2, 62])"""
    env = TwoRoomsEnv(distractors="predictable")
    positions, velocities = env._reflect(np.array([[63.5, 1.0]]), np.array([[2.0, -1.0]]))
    np.testing.assert_allclose(positions, [[60.5, 3.0]])
    np.testing.assert_allclose(velocities, [[-2.0, 1.0]])


@pytest.mark.parametrize("env_id", sorted(DISTRACTOR_TWO_ROOMS_IDS))
def test_two_rooms_dots_are_exchangeable_and_their_centroid_is_in_the_image(env_id):
    """
    The image does not say which dot is which (info["distractor_objects"]): from the raw pixels a linear probe reads
    the dots' centroid, not one dot's own coordinates (what the study's distractor_centroid_r2 is for)
    """
    from sb3_jepa.common.probes import distractor_centroids, linear_probe_r2

    env = gym.make(env_id)
    rng = np.random.default_rng(0)
    images, dots, episodes = [], [], []
    for episode in range(30):
        obs, info = env.reset(seed=episode)
        assert info["distractor_objects"] == 2
        for _ in range(100):  # random actions: the dots move as they would under any policy
            images.append(obs[..., 3]), dots.append(info["distractor_state"]), episodes.append(episode)
            obs, _, terminated, truncated, info = env.step(int(rng.integers(9)))
            if terminated or truncated:
                break
    pixels = th.nn.functional.avg_pool2d(th.as_tensor(np.array(images), dtype=th.float32)[:, None], 4).flatten(1)
    dots, groups = np.array(dots), np.array(episodes)
    centroid_r2 = linear_probe_r2(pixels.numpy(), distractor_centroids(dots, 2), groups=groups)
    each_dot_r2 = linear_probe_r2(pixels.numpy(), dots, groups=groups)
    assert centroid_r2.min() > 0.8 and each_dot_r2.max() < 0.5


def test_two_rooms_distractors_refuse_bad_settings():
    with pytest.raises(ValueError, match=r"distractors must be None or one of \('predictable', 'noise'\)"):
        TwoRoomsEnv(distractors="bouncing")
    with pytest.raises(ValueError, match="n_distractors must be an integer >= 1"):
        TwoRoomsEnv(distractors="noise", n_distractors=0)
    check_env(TwoRoomsEnv(discrete=True, distractors="noise", n_distractors=3))


@pytest.mark.parametrize("algo", ["a2c_jepa", "ppo_jepa"])
def test_distractor_testbeds_have_the_zoo_settings_of_their_task(algo):
    import yaml

    from sb3_jepa.zoo import config_path

    entries = yaml.safe_load(config_path(algo).read_text())
    for env_id in DISTRACTOR_TWO_ROOMS_IDS:
        assert entries[env_id] == entries[TWO_ROOMS_DISCRETE_ID], env_id
    for env_id in [*DISTRACTOR_CARTPOLE_IDS, DISTRACTOR_FREE_CARTPOLE_ID]:
        assert entries[env_id] == entries["CartPole-v1"], env_id
