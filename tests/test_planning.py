"""The latent planner: on hand-made point masses (identity encoder, ``z + M a`` predictor) whose plans are known."""

import itertools
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.torch_layers import FlattenExtractor

from sb3_jepa import A2CJEPA, PPOJEPA
from sb3_jepa.common.jepa import JEPAPredictor
from sb3_jepa.planning import METHODS, LatentPlanner
from sb3_jepa.planning.planner import _sequence_digits, _shift

BOX = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
DISCRETE = spaces.Discrete(5)  # no-op, +x, -x, +y, -y
MULTI = spaces.MultiDiscrete([3, 3])  # per axis: -1, 0, +1
#: Each space's move per action feature (the predictor adds features @ MOVES to z)
MOVES = {
    "box": np.eye(2),
    "discrete": np.array([[0, 0], [1, 0], [-1, 0], [0, 1], [0, -1]]),
    "multi": np.array([[-1, 0], [0, 0], [1, 0], [0, -1], [0, 0], [0, 1]]),
}
SPACES = {"box": BOX, "discrete": DISCRETE, "multi": MULTI}


class PointMass(gym.Env):
    """Position in the plane; actions move it (by ``MOVES``), nothing else"""

    def __init__(self, action_space: spaces.Space):
        self.observation_space = spaces.Box(-100.0, 100.0, (2,), dtype=np.float32)
        self.action_space = action_space

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position = np.zeros(2, dtype=np.float32)
        return self.position.copy(), {}

    def step(self, action):
        kind = next(name for name, space in SPACES.items() if space == self.action_space)
        self.position = (self.position + final_latent(kind, np.asarray(action)[None])).astype(np.float32)
        return self.position.copy(), 0.0, False, False, {}


class AdditivePredictor(JEPAPredictor):
    """W(z, a) = z + features(a) @ moves: a point mass"""

    moves: th.Tensor

    def __init__(self, action_space: spaces.Space, moves: np.ndarray):
        super().__init__(2, action_space, net_arch=[])
        self.register_buffer("moves", th.as_tensor(moves, dtype=th.float32))

    def next(self, z: th.Tensor, action_features: th.Tensor) -> th.Tensor:
        return z + action_features @ self.moves


def point_mass_model(kind: str, encoder_scale: float = 1.0) -> PPOJEPA:
    """A PPOJEPA whose encoder is the identity (times ``encoder_scale``) and whose predictor is a point mass"""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the identity encoder has no parameters: the JEPA loss could not train it
        model = PPOJEPA(
            "MlpPolicy",
            PointMass(SPACES[kind]),
            n_steps=16,
            batch_size=16,
            policy_kwargs=dict(features_extractor_class=FlattenExtractor),
            device="cpu",
        )
    model.policy.jepa_predictor = AdditivePredictor(SPACES[kind], MOVES[kind] * encoder_scale)
    if encoder_scale != 1.0:
        model.policy.jepa_encode = lambda obs, target=False: th.as_tensor(obs).float() * encoder_scale  # type: ignore[method-assign,assignment]
    return model


def final_latent(kind: str, plan: np.ndarray) -> np.ndarray:
    """Where the point mass ends from the origin after the plan (features computed as the planner's predictor)"""
    if kind == "box":
        return np.clip(plan, -1, 1).sum(axis=0)
    if kind == "discrete":
        return MOVES[kind][plan].sum(axis=0)
    return (MOVES[kind][plan[:, 0]] + MOVES[kind][3 + plan[:, 1]]).sum(axis=0)


#: A goal reachable in 4 steps in every space (at most one unit per axis per step)
GOAL = {"box": np.array([2.5, -1.5]), "discrete": np.array([2.0, -1.0]), "multi": np.array([3.0, -2.0])}
CASES = [(kind, method) for kind in SPACES for method in METHODS if not (kind == "box" and method == "exhaustive")]


@pytest.mark.parametrize("kind, method", CASES)
@pytest.mark.parametrize("cost", ["sum", "final"])
def test_every_method_reaches_a_reachable_goal(kind, method, cost):
    model = point_mass_model(kind)
    # A search budget for precision (the defaults are sized for speed): Box MPPI at 10 iterations ends ~0.2 away
    budget = {"grad": dict(n_iterations=200, lr=0.2), "cem": dict(n_iterations=30), "mppi": dict(n_iterations=30)}
    planner = LatentPlanner(model, horizon=4, method=method, seed=0, cost=cost, **budget.get(method, {}))
    start, goal = np.zeros(2, dtype=np.float32), GOAL[kind].astype(np.float32)
    plan = planner.plan(start, goal)
    assert plan.shape == (4, *SPACES[kind].shape)
    assert all(SPACES[kind].contains(action) for action in plan), plan
    assert np.linalg.norm(final_latent(kind, plan) - goal) < 0.1, (plan, final_latent(kind, plan))


@pytest.mark.parametrize("method", ["cem", "mppi", "grad"])
def test_box_plans_respect_the_bounds_when_the_goal_is_out_of_reach(method):
    planner = LatentPlanner(point_mass_model("box"), horizon=3, method=method, seed=0)
    plan = planner.plan(np.zeros(2, dtype=np.float32), np.array([30.0, -30.0], dtype=np.float32))
    assert np.all(plan >= -1) and np.all(plan <= 1)
    # The best a bounded plan can do is to push at the bounds, towards the goal
    np.testing.assert_allclose(plan, np.tile([1.0, -1.0], (3, 1)), atol=0.1)


def brute_force(planner: LatentPlanner, obs: np.ndarray, goal: np.ndarray, horizon: int, n: int) -> np.ndarray:
    """The cheapest sequence of a Discrete(n) problem, each sequence rolled through W on its own"""
    policy: Any = planner.policy
    with th.no_grad():
        z0 = policy.jepa_encode(policy.obs_to_tensor(obs)[0])
        z_goal = policy.jepa_encode(policy.obs_to_tensor(goal)[0])
        costs = {}
        for sequence in itertools.product(range(n), repeat=horizon):
            z, total = z0, 0.0
            for action in sequence:
                z = policy.jepa_predictor(z, th.tensor([action]))
                total += float(((z - z_goal) ** 2).sum())
            costs[sequence] = total
    return np.array(min(costs, key=costs.__getitem__))


def test_exhaustive_equals_brute_force():
    model = PPOJEPA("MlpPolicy", "CartPole-v1", seed=3, device="cpu")  # a random, nonlinear predictor
    obs, goal = np.array([0.1, 0.0, -0.1, 0.2], dtype=np.float32), np.array([1.0, 0.5, 0.2, -0.3], dtype=np.float32)
    planner = LatentPlanner(model, horizon=6, method="exhaustive", chunk_size=7)  # chunks that do not divide 64
    np.testing.assert_array_equal(planner.plan(obs, goal), brute_force(planner, obs, goal, 6, 2))


def test_sequence_digits_numbering():
    # Discrete(3), horizon 2: index 5 = 1 * 3 + 2 is (1, 2)
    np.testing.assert_array_equal(_sequence_digits(th.tensor([5]), 2, [3])[0, :, 0].numpy(), [1, 2])
    # MultiDiscrete([2, 3]): joint action 4 = (1, 1); horizon 1
    np.testing.assert_array_equal(_sequence_digits(th.tensor([4]), 1, [2, 3])[0, 0].numpy(), [1, 1])
    # Every sequence exactly once
    digits = _sequence_digits(th.arange(36), 2, [2, 3]).reshape(36, -1).numpy()
    assert len({tuple(row) for row in digits}) == 36


def test_warm_start_shift():
    # The docstring's example: horizon 4 for steps t..t+3, 2 played: the next search starts from (t+2, t+3, t+3, t+3)
    plan = th.tensor([[[0.0], [1.0], [2.0], [3.0]]])
    np.testing.assert_array_equal(_shift(plan, 2)[0, :, 0].numpy(), [2, 3, 3, 3])
    probabilities = [th.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])]
    np.testing.assert_array_equal(_shift(probabilities, 1)[0][0].numpy(), [[0, 1], [1, 0], [0.5, 0.5]])
    assert _shift(plan, 4) is None and _shift(probabilities, 3) is None


@pytest.mark.parametrize("kind", SPACES)
def test_batch_and_single_shapes(kind):
    planner = LatentPlanner(point_mass_model(kind), horizon=3, method="cem", seed=0, n_iterations=2)
    obs = np.zeros((5, 2), dtype=np.float32)
    goals = np.arange(10, dtype=np.float32).reshape(5, 2)
    shape = SPACES[kind].shape
    assert planner.plan(obs, goals).shape == (5, 3, *shape)
    assert planner.plan(obs[0], goals[0]).shape == (3, *shape)
    action, state = planner.predict(obs, goals)
    assert action.shape == (5, *shape) and state is None
    planner.reset()
    action, _ = planner.predict(obs[0], goals[0])
    assert action.shape == shape and SPACES[kind].contains(action)


def test_batched_problems_are_planned_independently():
    planner = LatentPlanner(point_mass_model("discrete"), horizon=4, method="exhaustive")
    goals = np.array([[2.0, -1.0], [-1.0, 3.0]], dtype=np.float32)
    plans = planner.plan(np.zeros((2, 2), dtype=np.float32), goals)
    for plan, goal in zip(plans, goals, strict=True):
        np.testing.assert_allclose(final_latent("discrete", plan), goal)


@pytest.mark.parametrize("method", METHODS)
def test_the_same_seed_gives_the_same_plan(method):
    model = PPOJEPA("MlpPolicy", "CartPole-v1", seed=0, device="cpu")
    obs, goal = np.zeros(4, dtype=np.float32), np.ones(4, dtype=np.float32)
    options = dict(n_iterations=3) if method != "exhaustive" else {}
    plans = [LatentPlanner(model, horizon=5, method=method, seed=7, **options).plan(obs, goal) for _ in range(2)]
    np.testing.assert_array_equal(*plans)


def test_different_seeds_sample_differently():
    planner = [LatentPlanner(point_mass_model("box"), horizon=8, method="cem", seed=s, n_iterations=1) for s in (1, 2)]
    goal = np.array([3.0, 3.0], dtype=np.float32)
    assert not np.array_equal(planner[0].plan(np.zeros(2, np.float32), goal), planner[1].plan(np.zeros(2, np.float32), goal))


def test_predict_replans_every_k_steps_and_warm_starts():
    planner = LatentPlanner(point_mass_model("discrete"), horizon=4, method="exhaustive", replan_every=2)
    obs, goal = np.zeros(2, dtype=np.float32), np.array([2.0, -1.0], dtype=np.float32)
    plan = planner.plan(obs, goal)
    played = [planner.predict(obs, goal)[0] for _ in range(2)]
    # Two actions of one plan, then a new plan (from the same observation here: the same first action again)
    np.testing.assert_array_equal(played, plan[:2])
    assert planner.predict(obs, goal)[0] == plan[0]
    # An episode start forgets the plan
    planner.predict(obs, goal, episode_start=np.array([True]))
    assert planner._played == 1


@pytest.mark.parametrize("kind, method", [("box", "cem"), ("box", "mppi"), ("box", "grad"), ("discrete", "cem")])
def test_predict_drives_the_point_mass_to_the_goal(kind, method):
    # Closed loop with the real (point-mass) environment: receding horizon, replanning every 2 steps, warm-started
    env = PointMass(SPACES[kind])
    obs, _ = env.reset()
    planner = LatentPlanner(point_mass_model(kind), horizon=4, method=method, seed=0, replan_every=2)
    goal = np.array([5.0, -3.0], dtype=np.float32)  # 5 steps away at least: more than one horizon
    for _ in range(12):
        action, _ = planner.predict(obs, goal)
        assert SPACES[kind].contains(action)
        obs, *_ = env.step(action)
    assert np.linalg.norm(obs - goal) < 0.3, obs


def test_reference_obs_makes_the_plan_independent_of_the_embedding_scale():
    goal = np.array([2.5, -1.5], dtype=np.float32)
    reference = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
    plans = []
    for scale in (1.0, 1e-3):
        planner = LatentPlanner(point_mass_model("box", scale), horizon=4, method="mppi", seed=0, reference_obs=reference)
        plans.append(planner.plan(np.zeros(2, dtype=np.float32), goal))
    np.testing.assert_allclose(plans[0], plans[1], atol=1e-4)


def test_model_plan_shortcut():
    model = point_mass_model("discrete")
    plan = model.plan(np.zeros(2, dtype=np.float32), np.array([2.0, -1.0], dtype=np.float32), horizon=4, method="exhaustive")
    np.testing.assert_allclose(final_latent("discrete", plan), [2.0, -1.0])


def test_planning_works_on_images_and_a2c():
    # Channels-last images as the environment gives them; the policy transposes them as predict() does
    env = gym.make("TwoRoomsDiscrete-v0")
    model = A2CJEPA("CnnPolicy", env, n_steps=4, device="cpu", seed=0)
    obs, _ = env.reset(seed=0)
    plan = LatentPlanner(model, horizon=3, method="cem", seed=0, n_samples=8, n_elites=2, n_iterations=2).plan(
        obs, env.unwrapped.goal_observation()
    )
    assert plan.shape == (3,) and plan.dtype == np.int64


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(horizon=0), "horizon must be a positive int"),
        (dict(method="random_shooting"), "method must be one of"),
        (dict(cost="mean"), "cost must be one of"),
        (dict(replan_every=0), "replan_every"),
        (dict(n_elites=300), "n_elites must be <= n_samples"),
        (dict(temperature=0.1), r"Unknown option\(s\) \['temperature'\] for method 'cem'"),
        (dict(method="mppi", temperature=0), "temperature must be > 0"),
        (dict(method="exhaustive"), "exhaustive' needs discrete actions"),
    ],
)
def test_bad_arguments_are_refused_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LatentPlanner(point_mass_model("box"), **kwargs)


def test_exhaustive_refuses_too_many_sequences():
    planner = LatentPlanner(point_mass_model("discrete"), horizon=12, method="exhaustive")
    with pytest.raises(ValueError, match="5\\^12 = 244140625 sequences, more than max_sequences"):
        planner.plan(np.zeros(2, dtype=np.float32), np.ones(2, dtype=np.float32))


def test_goals_of_another_shape_or_space_are_refused():
    planner = LatentPlanner(point_mass_model("box"), horizon=2, seed=0)
    obs = np.zeros(2, dtype=np.float32)
    with pytest.raises(ValueError, match="goal_obs"):
        planner.plan(obs, np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="goal_obs must have the shape of obs"):
        planner.plan(obs, np.zeros((4, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="goal_obs"):
        planner.plan(obs, {"state": obs})


def test_a_model_without_predictor_is_refused():
    with pytest.raises(ValueError, match="model must be an A2CJEPA/PPOJEPA model or a JEPA policy"):
        LatentPlanner(PPO("MlpPolicy", "CartPole-v1", device="cpu"))


def test_an_untrained_predictor_warns():
    with pytest.warns(UserWarning, match="jepa_coef=0: its predictor W never learned"):
        LatentPlanner(PPOJEPA("MlpPolicy", "CartPole-v1", jepa_coef=0.0, device="cpu"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LatentPlanner(PPOJEPA("MlpPolicy", "CartPole-v1", device="cpu"))
