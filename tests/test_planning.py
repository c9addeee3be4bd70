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
from sb3_jepa.common.jepa import JEPAPredictor, JEPARewardPredictor
from sb3_jepa.planning import METHODS, LatentPlanner
from sb3_jepa.planning.search import sequence_digits, shift

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
    np.testing.assert_array_equal(sequence_digits(th.tensor([5]), 2, [3])[0, :, 0].numpy(), [1, 2])
    # MultiDiscrete([2, 3]): joint action 4 = (1, 1); horizon 1
    np.testing.assert_array_equal(sequence_digits(th.tensor([4]), 1, [2, 3])[0, 0].numpy(), [1, 1])
    # Every sequence exactly once
    digits = sequence_digits(th.arange(36), 2, [2, 3]).reshape(36, -1).numpy()
    assert len({tuple(row) for row in digits}) == 36


def test_warm_start_shift():
    # The docstring's example: horizon 4 for steps t..t+3, 2 played: the next search starts from (t+2, t+3, t+3, t+3)
    plan = th.tensor([[[0.0], [1.0], [2.0], [3.0]]])
    np.testing.assert_array_equal(shift(plan, 2)[0, :, 0].numpy(), [2, 3, 3, 3])
    probabilities = [th.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])]
    np.testing.assert_array_equal(shift(probabilities, 1)[0][0].numpy(), [[0, 1], [1, 0], [0.5, 0.5]])
    assert shift(plan, 4) is None and shift(probabilities, 3) is None


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


def test_predict_replans_every_k_steps():
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


# -- issue 17: the fixes -------------------------------------------------------------------------------------------


def anisotropic_model(scales: tuple[float, float], dead_leak: float) -> PPOJEPA:
    """
    A Box point mass seen through an encoder ``z = (s1 x, s2 y, 0)``: the third dimension is dead (0 on every
    observation, as a dead ReLU unit), but W leaks ``dead_leak * a_x`` into it at every step
    """
    model = point_mass_model("box")
    s1, s2 = scales
    model.policy.jepa_encode = lambda obs, target=False: th.cat(  # type: ignore[method-assign,assignment]
        [th.as_tensor(obs).float() * th.tensor([s1, s2]), th.zeros(len(obs), 1)], dim=1
    )
    model.policy.jepa_predictor = AdditivePredictor(BOX, np.array([[s1, 0.0, dead_leak], [0.0, s2, 0.0]]))
    return model


def test_reference_obs_undoes_anisotropic_scales_and_leaves_dead_dimensions_out():
    model = anisotropic_model((1.0, 1e-3), dead_leak=1e-6)
    reference = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
    goal, start = np.array([2.5, -1.5], dtype=np.float32), np.zeros(2, dtype=np.float32)
    budget = dict(n_iterations=30)
    plan = LatentPlanner(model, horizon=4, method="cem", seed=0, reference_obs=reference, **budget).plan(start, goal)
    # Both axes count equally once the per-dimension spread is undone; the dead dimension plays no part (divided by
    # a floor of 1e-8, its 1e-6 leaks would be the whole cost and drive a_x to -1)
    assert np.linalg.norm(final_latent("box", plan) - goal) < 0.1, final_latent("box", plan)
    # Without reference_obs, CEM (not scale-invariant across dimensions) ignores y, scaled 1000x down
    raw = LatentPlanner(model, horizon=4, method="cem", seed=0, **budget).plan(start, goal)
    assert abs(final_latent("box", raw)[1] - goal[1]) > 0.2, final_latent("box", raw)


def test_reference_weights_worked_example():
    planner = LatentPlanner(point_mass_model("box"), horizon=2)
    stds = th.tensor([0.5, 0.0, 2.0, 1e-9])
    reference = (th.tensor([[1.0], [-1.0]]) * stds).numpy()  # two rows: per-dimension std (unbiased) = stds * sqrt(2)
    planner.policy.jepa_encode = lambda obs, target=False: th.as_tensor(obs).float() / np.sqrt(2)  # type: ignore[method-assign,assignment]
    planner.policy.observation_space = spaces.Box(-10, 10, (4,), dtype=np.float32)
    weights = planner._reference_weights(reference.astype(np.float32))
    np.testing.assert_allclose(weights.numpy(), [2.0, 0.0, 0.5, 0.0], rtol=1e-5)


def brute_force_cost(
    planner: LatentPlanner,
    obs: np.ndarray,
    goal: np.ndarray,
    horizon: int,
    n: int,
    loss: str,
    target: bool,
    project: Any = None,
) -> np.ndarray:
    """
    The cheapest Discrete(n) sequence in the space W predicts: goal by the target encoder, cosine or squared, of
    ``project``'s projections where given
    """
    policy: Any = planner.policy
    project = project or (lambda z: z)
    with th.no_grad():
        z0 = policy.jepa_encode(policy.obs_to_tensor(obs)[0])
        z_goal = project(policy.jepa_encode(policy.obs_to_tensor(goal)[0], target=target))
        costs = {}
        for sequence in itertools.product(range(n), repeat=horizon):
            z, total = z0, 0.0
            for action in sequence:
                z = policy.jepa_predictor(z, th.tensor([action]))
                compared = project(z)
                if loss == "cosine":
                    total += float(2 - 2 * th.nn.functional.cosine_similarity(compared, z_goal))
                else:
                    total += float(((compared - z_goal) ** 2).sum())
            costs[sequence] = total
    return np.array(min(costs, key=costs.__getitem__))


@pytest.mark.parametrize("loss, target", [("cosine", "stop_grad"), ("mse", "ema"), ("cosine", "ema")])
def test_plans_are_measured_in_the_space_w_predicts(loss, target):
    th.manual_seed(0)
    model = PPOJEPA("MlpPolicy", "CartPole-v1", seed=3, jepa_loss=loss, jepa_target=target, device="cpu")
    policy: Any = model.policy
    if target == "ema":  # a target encoder that has drifted from the online one
        th.manual_seed(1)
        with th.no_grad():
            for parameter in policy.jepa_target_encoder.parameters():
                parameter.add_(th.randn_like(parameter))
    obs = np.array([-0.70, -1.27, -0.62, 0.04], dtype=np.float32)
    goal = np.array([-6.98, -0.66, -3.74, -2.20], dtype=np.float32)
    plan = LatentPlanner(model, horizon=6, method="exhaustive").plan(obs, goal)
    expected = brute_force_cost(LatentPlanner(model, horizon=6, method="exhaustive"), obs, goal, 6, 2, loss, target == "ema")
    np.testing.assert_array_equal(plan, expected)
    # The space matters here: the raw squared distance to the online E(goal) picks another sequence
    assert not np.array_equal(expected, brute_force_cost(LatentPlanner(model, horizon=6), obs, goal, 6, 2, "mse", False))


@pytest.mark.parametrize("loss", ["mse", "cosine"])
def test_plans_with_a_projection_head_are_measured_between_projections(loss):
    """The loss compared P(W(z, a)) with P(z'): so does the planner (then normalised, for cosine)"""
    obs = np.array([-0.70, -1.27, -0.62, 0.04], dtype=np.float32)
    goal = np.array([-6.98, -0.66, -3.74, -2.20], dtype=np.float32)
    differ = 0
    for seed in range(4):
        model = PPOJEPA("MlpPolicy", "CartPole-v1", seed=seed, jepa_loss=loss, jepa_projection_arch=[16, 3], device="cpu")
        planner = LatentPlanner(model, horizon=6, method="exhaustive")
        expected = brute_force_cost(planner, obs, goal, 6, 2, loss, False, project=model.policy.jepa_projector)
        np.testing.assert_array_equal(planner.plan(obs, goal), expected)
        # Between the unprojected latents another sequence can be cheapest
        differ += not np.array_equal(expected, brute_force_cost(planner, obs, goal, 6, 2, loss, False))
    assert differ > 0


def test_planning_runs_in_eval_mode_and_leaves_batchnorm_and_the_mode_alone():
    model = PPOJEPA("MlpPolicy", "CartPole-v1", seed=0, device="cpu")
    policy: Any = model.policy
    norm = th.nn.BatchNorm1d(4)
    encoder = policy.pi_features_extractor
    policy.jepa_encode = lambda obs, target=False: encoder(norm(th.as_tensor(obs).float()))  # type: ignore[method-assign,assignment]
    policy.add_module("test_norm", norm)  # a part of the policy, so that set_training_mode reaches it
    policy.set_training_mode(True)
    reference = np.random.default_rng(0).normal(3.0, 2.0, size=(32, 4)).astype(np.float32)
    planner = LatentPlanner(model, horizon=3, method="cem", seed=0, n_iterations=2, reference_obs=reference)
    planner.plan(reference[0], reference[1])
    np.testing.assert_array_equal(norm.running_mean.numpy(), np.zeros(4))  # not moved by the reference or the plans
    assert int(norm.num_batches_tracked) == 0
    assert policy.training and norm.training  # put back as it was


def test_grad_leaves_no_gradient_on_the_world_model():
    model = PPOJEPA("MlpPolicy", "Pendulum-v1", seed=0, device="cpu")
    LatentPlanner(model, horizon=3, method="grad", seed=0, n_iterations=3).plan(
        np.zeros(3, np.float32), np.ones(3, np.float32)
    )
    assert all(parameter.grad is None for parameter in model.policy.parameters())


def record_searches(planner: LatentPlanner) -> list[tuple[Any, Any]]:
    """Wrap the planner's search so that each call's (warm, fresh) is kept"""
    calls: list[tuple[Any, Any]] = []
    run = planner.search.run

    def recording(objective, batch, warm, fresh, prior):
        calls.append((warm, fresh.clone()))
        return run(objective, batch, warm, fresh, prior)

    planner.search.run = recording  # type: ignore[method-assign]
    return calls


def test_an_episode_start_forgets_only_that_envs_warm_start():
    planner = LatentPlanner(point_mass_model("box"), horizon=4, method="cem", seed=0, replan_every=4, n_iterations=2)
    calls = record_searches(planner)
    obs, goals = np.zeros((2, 2), dtype=np.float32), np.array([[2.0, 1.0], [-1.0, 2.0]], dtype=np.float32)
    plan = planner.plan(obs, goals)
    planner.reset()
    planner.predict(obs, goals)
    first_warm = planner._warm.clone()
    planner.predict(obs, goals, episode_start=np.array([True, False]))
    warm, fresh = calls[-1]
    assert fresh.tolist() == [True, False]
    # Env 1 starts from its previous plan shifted by the one action played; env 0 from scratch
    np.testing.assert_array_equal(warm[1].numpy(), shift(first_warm, 1)[1].numpy())
    assert plan.shape == (2, 4, 2)
    with pytest.raises(ValueError, match="episode_start must have one entry per observation"):
        planner.predict(obs, goals, episode_start=np.array([True]))


@pytest.mark.parametrize("kind", ["box", "discrete"])
def test_predict_warm_starts_from_the_plan_shifted_by_the_actions_played(kind):
    planner = LatentPlanner(point_mass_model(kind), horizon=4, method="cem", seed=0, replan_every=2, n_iterations=2)
    calls = record_searches(planner)
    obs, goal = np.zeros(2, dtype=np.float32), np.array([2.0, -1.0], dtype=np.float32)
    planner.predict(obs, goal)
    result = planner._warm
    for _ in range(2):
        planner.predict(obs, goal)  # the second call replans, 2 actions after the first plan
    warm, _ = calls[1]
    expected = shift(result, 2)
    if kind == "box":
        np.testing.assert_array_equal(warm.numpy(), expected.numpy())
        np.testing.assert_array_equal(warm[0, :2].numpy(), result[0, 2:].numpy())
    else:
        np.testing.assert_array_equal(warm[0].numpy(), expected[0].numpy())
        np.testing.assert_array_equal(warm[0][0, :2].numpy(), result[0][0, 2:].numpy())


def test_a_schedule_that_trains_w_between_its_ends_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LatentPlanner(PPOJEPA("MlpPolicy", "CartPole-v1", jepa_coef=lambda p: p * (1 - p), device="cpu"))
    with pytest.warns(UserWarning, match="never learned"):
        LatentPlanner(PPOJEPA("MlpPolicy", "CartPole-v1", jepa_coef=lambda p: 0.0, device="cpu"))


# -- issue 17: the policy prior and the value ----------------------------------------------------------------------


def biased_discrete_model(action: int) -> PPOJEPA:
    """The discrete point mass whose actor always prefers ``action`` (its bias far above the others)"""
    model = point_mass_model("discrete")
    net: Any = model.policy.action_net
    with th.no_grad():
        net.weight.zero_()
        net.bias.copy_(th.nn.functional.one_hot(th.tensor(action), 5).float() * 10)
    return model


def test_prior_candidate_zero_is_the_policys_greedy_rollout():
    model = point_mass_model("discrete")
    planner = LatentPlanner(model, horizon=5, seed=0, prior="policy", n_prior_samples=6)
    z = th.tensor([[0.3, -0.2], [1.0, 2.0]])
    prior = planner.prior_candidates(z)
    assert prior.actions.shape == (2, 6, 5) and prior.features.shape == (2, 6, 5, 5)
    for row in range(2):
        # The identity encoder: the policy's own predict() on the point-mass position is the actor on z
        position, greedy = z[row].numpy(), []
        for _ in range(5):
            action, _ = model.predict(position.astype(np.float32), deterministic=True)
            greedy.append(int(action))
            position = position + MOVES["discrete"][int(action)]
        np.testing.assert_array_equal(prior.actions[row, 0].numpy(), greedy)


@pytest.mark.parametrize("kind", SPACES)
def test_prior_candidates_lie_in_the_action_space(kind):
    planner = LatentPlanner(point_mass_model(kind), horizon=3, seed=0, prior="policy", n_prior_samples=8)
    prior = planner.prior_candidates(th.zeros(3, 2))
    for action in prior.actions.reshape(-1, *SPACES[kind].shape).numpy():
        assert SPACES[kind].contains(action.astype(SPACES[kind].dtype))


def test_the_prior_finds_what_the_policy_knows_where_a_tiny_search_does_not():
    model = biased_discrete_model(1)  # +x every step
    goal, start = np.array([4.0, 0.0], dtype=np.float32), np.zeros(2, dtype=np.float32)
    tiny = dict(n_samples=2, n_elites=1, n_iterations=1)
    with_prior = LatentPlanner(model, horizon=4, seed=0, cost="final", prior="policy", n_prior_samples=4, **tiny)
    np.testing.assert_array_equal(final_latent("discrete", with_prior.plan(start, goal)), goal)
    without = LatentPlanner(model, horizon=4, seed=0, cost="final", **tiny)
    assert not np.array_equal(final_latent("discrete", without.plan(start, goal)), goal)


@pytest.mark.parametrize("kind, method", [(kind, m) for kind in SPACES for m in ("cem", "mppi", "grad")])
def test_every_sampling_method_with_the_prior_reaches_a_reachable_goal(kind, method):
    budget = {"grad": dict(n_iterations=200, lr=0.2), "cem": dict(n_iterations=30), "mppi": dict(n_iterations=30)}
    planner = LatentPlanner(point_mass_model(kind), horizon=4, method=method, seed=0, prior="policy", **budget[method])
    plan = planner.plan(np.zeros(2, dtype=np.float32), GOAL[kind].astype(np.float32))
    assert all(SPACES[kind].contains(action) for action in plan), plan
    assert np.linalg.norm(final_latent(kind, plan) - GOAL[kind]) < 0.1


def valued_model(value_scale: float = 1.0) -> PPOJEPA:
    """The Box point mass with one encoder for both heads and a linear critic: V(z) = value_scale * z_x"""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = PPOJEPA(
            "MlpPolicy",
            PointMass(BOX),
            n_steps=16,
            batch_size=16,
            policy_kwargs=dict(
                features_extractor_class=FlattenExtractor, share_features_extractor=True, net_arch=dict(pi=[], vf=[])
            ),
            device="cpu",
        )
    model.policy.jepa_predictor = AdditivePredictor(BOX, MOVES["box"])
    value: Any = model.policy.value_net
    with th.no_grad():
        value.weight.copy_(th.tensor([[value_scale, 0.0]]))
        value.bias.zero_()
    return model


def test_the_value_alone_drives_the_plan_to_the_highest_value():
    planner = LatentPlanner(valued_model(), horizon=3, seed=0, value_weight=1.0, distance_weight=0.0, n_iterations=20)
    plan = planner.plan(np.zeros(2, dtype=np.float32), np.zeros(2, dtype=np.float32))
    np.testing.assert_allclose(plan[:, 0], 1.0, atol=0.05)  # V = x: push +x at the bound


def test_the_weights_are_unit_free_when_distance_and_value_mix():
    start, goal = np.zeros(2, dtype=np.float32), np.array([-1.0, 2.0], dtype=np.float32)
    plans = [
        LatentPlanner(valued_model(scale), horizon=3, seed=0, value_weight=0.5, n_iterations=5).plan(start, goal)
        for scale in (1.0, 1000.0)
    ]
    np.testing.assert_allclose(plans[0], plans[1], atol=1e-4)
    # ... and the value does change the plan: toward +x, against the goal's -x
    distance_only = LatentPlanner(valued_model(), horizon=3, seed=0, n_iterations=5).plan(start, goal)
    assert final_latent("box", plans[0])[0] > final_latent("box", distance_only)[0] + 0.1


def test_the_weights_weigh_the_terms():
    """
    Each term is divided by its own spread, the weight applied after: a larger value weight moves the plan further
    toward the value's +x and away from the goal's -x (dividing the weighted terms by their spreads cancelled the
    weights: every weight gave the same plan)
    """
    start, goal = np.zeros(2, dtype=np.float32), np.array([-1.0, 2.0], dtype=np.float32)
    final_x = [
        final_latent(
            "box",
            LatentPlanner(valued_model(), horizon=3, seed=0, value_weight=weight, n_iterations=10).plan(start, goal),
        )[0]
        for weight in (0.1, 1.0, 10.0)
    ]
    assert final_x[0] < final_x[1] - 0.1 and final_x[1] < final_x[2] - 0.1, final_x


def test_the_value_needs_a_critic_that_reads_z():
    with pytest.raises(ValueError, match="share_features_extractor=True"):
        # The default MlpPolicy gives the critic its own encoder
        LatentPlanner(PPOJEPA("MlpPolicy", "Pendulum-v1", device="cpu"), value_weight=1.0)


def test_prior_and_value_plan_on_images():
    env = gym.make("TwoRoomsDiscrete-v0")
    model = PPOJEPA("CnnPolicy", env, n_steps=8, batch_size=8, device="cpu", seed=0)
    obs, _ = env.reset(seed=0)
    planner = LatentPlanner(
        model, horizon=3, seed=0, prior="policy", n_prior_samples=4, value_weight=1.0, n_samples=8, n_elites=2, n_iterations=2
    )
    action, _ = planner.predict(obs, env.unwrapped.goal_observation())
    assert env.action_space.contains(int(action))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(prior="value"), "prior must be one of"),
        (dict(prior="policy", n_prior_samples=0), "n_prior_samples must be a positive int"),
        (dict(value_weight=-1.0), "value_weight must be a finite number >= 0"),
        (dict(distance_weight=0.0), "value_weight and distance_weight are both 0"),
    ],
)
def test_bad_prior_and_value_arguments_are_refused_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LatentPlanner(point_mass_model("box"), **kwargs)


def test_the_prior_is_refused_where_it_cannot_work():
    with pytest.raises(ValueError, match="prior='policy' needs a search that samples"):
        LatentPlanner(point_mass_model("discrete"), method="exhaustive", prior="policy")
    sde = PPOJEPA("MlpPolicy", "Pendulum-v1", use_sde=True, device="cpu")
    with pytest.raises(ValueError, match="StateDependentNoiseDistribution"):
        LatentPlanner(sde, prior="policy")


class LinearReward(JEPARewardPredictor):
    """R(z, a) = features(a) . weights + z_weight * z_x"""

    weights: th.Tensor

    def __init__(self, action_space: spaces.Space, weights: list[float], z_weight: float):
        super().__init__(2, action_space, net_arch=[])
        self.register_buffer("weights", th.tensor(weights))
        self.z_weight = z_weight

    def reward(self, z: th.Tensor, action_features: th.Tensor) -> th.Tensor:
        return action_features @ self.weights + self.z_weight * z[:, 0]


def rewarded_model(gamma: float = 0.9, z_weight: float = 0.0) -> PPOJEPA:
    """
    valued_model (V(z) = z_x) with a reward predictor paying -a_x (+ z_weight * z_x): with z_weight 0, Two Rooms'
    shape, V falls toward the reward
    """
    model = valued_model()
    model.gamma = gamma
    model.policy.jepa_reward_predictor = LinearReward(BOX, [-1.0, 0.0], z_weight)
    return model


def test_return_estimate_worked_example():
    """
    The docstring's example of LatentPlanner.value: G = R(z0, a0) + 0.9 R(z1, a1) + 0.81 V(z2), each reward read on
    the latent its action is taken from (R = -a_x + z_x here, V = z_x)
    """
    planner = LatentPlanner(rewarded_model(0.9, z_weight=1.0), horizon=2, seed=0, value_weight=1.0, value_estimate="return")
    z = th.tensor([[0.5, 0.0]])
    actions = th.tensor([[[[0.3, 0.1], [-0.2, 0.4]]]])  # (batch 1, candidate 1, horizon 2, 2)
    latents = th.stack([z + actions[0, 0, 0], z + actions[0, 0, 0] + actions[0, 0, 1]], dim=1)[None]
    # x: 0.5, then 0.8, then 0.6
    expected = (-0.3 + 0.5) + 0.9 * (0.2 + 0.8) + 0.81 * 0.6
    th.testing.assert_close(planner.value(z, actions, latents), th.tensor([[expected]]))
    terminal = LatentPlanner(rewarded_model(0.9), horizon=2, seed=0, value_weight=1.0)
    th.testing.assert_close(terminal.value(z, actions, latents), th.tensor([[0.5 + 0.3 - 0.2]]))


def test_the_return_estimate_turns_a_falling_value_into_progress():
    """
    V = x falls toward the reward (paid for moving -x): the terminal value drives +x, away from it; the return
    estimate ``sum gamma^t R + gamma^H V`` pays the moves sooner than V takes them back, so it drives -x
    """
    start = np.zeros(2, dtype=np.float32)
    plans = {
        estimate: LatentPlanner(
            rewarded_model(0.9),
            horizon=3,
            seed=0,
            value_weight=1.0,
            distance_weight=0.0,
            value_estimate=estimate,
            n_iterations=20,
        ).plan(start, start)
        for estimate in ("terminal", "return")
    }
    np.testing.assert_allclose(plans["terminal"][:, 0], 1.0, atol=0.05)
    np.testing.assert_allclose(plans["return"][:, 0], -1.0, atol=0.05)


def test_the_return_estimate_is_refused_without_a_reward_predictor_or_a_discount():
    with pytest.raises(ValueError, match="no reward predictor: train it with jepa_reward_coef > 0"):
        LatentPlanner(valued_model(), value_weight=1.0, value_estimate="return")
    with pytest.raises(ValueError, match="value_estimate must be one of"):
        LatentPlanner(rewarded_model(), value_weight=1.0, value_estimate="q")
    with pytest.raises(ValueError, match="needs gamma"):
        LatentPlanner(rewarded_model().policy, value_weight=1.0, value_estimate="return")
    with pytest.raises(ValueError, match="gamma must be a number in"):
        LatentPlanner(rewarded_model(), value_weight=1.0, value_estimate="return", gamma=1.5)
    # The policy alone, with its discount given
    LatentPlanner(rewarded_model().policy, value_weight=1.0, value_estimate="return", gamma=0.9)


def test_return_estimate_plans_on_a_trained_image_model():
    env = gym.make("TwoRoomsDiscrete-v0")
    model = PPOJEPA("CnnPolicy", env, n_steps=8, batch_size=8, device="cpu", seed=0, jepa_reward_coef=0.01)
    model.learn(8)
    obs, _ = env.reset(seed=0)
    planner = LatentPlanner(
        model,
        horizon=3,
        seed=0,
        prior="policy",
        n_prior_samples=4,
        value_weight=1.0,
        value_estimate="return",
        n_samples=8,
        n_elites=2,
        n_iterations=2,
    )
    action, _ = planner.predict(obs, env.unwrapped.goal_observation())
    assert env.action_space.contains(int(action))
