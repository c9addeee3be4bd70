"""
Planning toward a goal with the learned world model (PLDM, DINO-WM), with the policy and the critic inside the search
(TD-MPC2): encode the observation and the goal observation, roll the predictor ``W`` forward over candidate action
sequences, and keep the sequence with the best score.

The score of a candidate (lower is better; :meth:`LatentPlanner.objective`)::

    cost = distance_weight * D / s_D - value_weight * G / s_G

- ``D``: the squared distance of the predicted latents to the goal's embedding, summed over the horizon (``cost=
  "sum"``, PLDM) or at its last step (``"final"``), in the space ``W`` was trained to predict in (see
  :mod:`~sb3_jepa.planning.world_model`), optionally per dimension in units of a reference spread;
- ``G``: the value of the plan, one of :data:`VALUE_ESTIMATES`:

  - ``"terminal"``: ``V(z_H)``, the critic's value of the last predicted latent (with one discount for every
    candidate, ``gamma^H`` changes no ranking, so it is left out). It ranks plans toward a goal only where ``V``
    rises toward the goal: on Two Rooms, whose RL reward is shaped by the geodesic distance (the reward of a step is
    the distance it gains), ``V`` measures the reward still to collect and *falls* as the agent nears the goal
    (measured on a trained PPO model: 14.4 at 20 px, 8.4 at the goal), so the terminal value alone steers away;
  - ``"return"``: TD-MPC2's estimate ``sum_{t<H} gamma^t R(z_t, a_t) + gamma^H V(z_H)``, with the reward predictor
    ``R`` (models trained with ``jepa_reward_coef > 0``) on ``z_0 = E(s)`` and the predicted latents. Under a
    shaped reward the rewards collected along the plan make up for the value it leaves behind;
- ``s_D``, ``s_G``: when both terms are on, each one's spread (std) over the first scored candidates of the search,
  so that the two weights are unit-free; with one term on, no division (the cost of 0.4.0 when ``value_weight=0``).

With ``prior="policy"``, ``n_prior_samples`` trajectories are drawn from the actor on the predicted latents and
rolled through ``W`` once per search (the first one the actor's greedy rollout); they join every iteration's
candidates, unchanged, and a search with no warm start begins around them (see :mod:`~sb3_jepa.planning.search`).

The search is batched: every candidate sequence of every observation in the batch is one row of one predictor call
per horizon step, on the model's device; there is no Python loop over candidates.
"""

import warnings
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_jepa.common.utils import check_choice, check_finite_nonnegative, check_positive_int
from sb3_jepa.planning.search import METHOD_DEFAULTS, METHODS, Candidates, Objective, Search, check_options, shift
from sb3_jepa.planning.world_model import WorldModel

__all__ = ["COSTS", "METHODS", "METHOD_DEFAULTS", "PRIORS", "VALUE_ESTIMATES", "LatentPlanner", "check_options"]

#: What the distance adds up: the distance to the goal at every predicted step (PLDM), or at the last one only
COSTS = ("sum", "final")
#: Where prior candidates come from: the policy's actor on the predicted latents (TD-MPC2)
PRIORS = ("policy",)
#: What the value term ``G`` of the cost is: the critic's value of the last latent, or TD-MPC2's return estimate
VALUE_ESTIMATES = ("terminal", "return")
#: A reference dimension whose spread is below this fraction of the embedding's RMS spread is dead (left out)
DEAD_DIMENSION = 1e-3


class LatentPlanner:
    """
    Goal-reaching by search through a trained JEPA's world model: ``E`` encodes, ``W`` predicts, and a candidate's
    cost weighs the distance of its predicted latents to the goal against the critic's value (see the module).

    :param model: a trained A2CJEPA/PPOJEPA (or its policy): anything whose policy has ``jepa_encode`` and
        ``jepa_predictor``
    :param horizon: the number of actions planned
    :param method: one of :data:`METHODS`
    :param seed: seed of the planner's own random generator (None: drawn from torch's); the same seed gives the
        same plans
    :param cost: one of :data:`COSTS`
    :param reference_obs: a batch of observations; when given, distances are measured per dimension in units of
        the embedding's standard deviation over them (a collapsed scale then no longer makes every plan look good).
        Dimensions whose spread is below :data:`DEAD_DIMENSION` of the RMS spread (dead ReLU units: zero on every
        reference) are left out of the distance, rather than divided by a near-zero std
    :param replan_every: :meth:`predict` plans anew every this many steps and plays the plan's next action in
        between (1: replan every step, as PLDM does)
    :param prior: None, or one of :data:`PRIORS`: candidates sampled from the policy
    :param n_prior_samples: the number of prior candidates per problem (TD-MPC2: 24 of 512)
    :param value_weight: the weight of the critic's value in the cost (0: no value); needs a critic that reads the
        actor's embedding (CnnPolicy; MlpPolicy with ``share_features_extractor=True``)
    :param distance_weight: the weight of the latent distance to the goal (0: the value alone)
    :param value_estimate: one of :data:`VALUE_ESTIMATES`: ``"return"`` needs a model trained with a reward
        predictor (``jepa_reward_coef > 0``)
    :param gamma: the discount of ``value_estimate="return"`` (None: the model's ``gamma``; needed for a bare policy)
    :param jepa_loss: the loss ``W`` was trained with (None: the model's, ``"mse"`` for a bare policy)
    :param options: the method's options, see :data:`METHOD_DEFAULTS`: ``n_samples``, ``n_iterations``,
        ``n_elites`` (cem), ``temperature`` (mppi), ``init_std`` and ``min_std`` (Gaussian std in units of the
        Box's half-range), ``smoothing`` (the weight of the previous iteration's distribution when refitting),
        ``lr`` (grad), ``max_sequences`` and ``chunk_size`` (exhaustive)
    """

    def __init__(
        self,
        model: Any,
        horizon: int = 16,
        method: str = "cem",
        seed: int | None = None,
        cost: str = "sum",
        reference_obs: np.ndarray | dict[str, np.ndarray] | None = None,
        replan_every: int = 1,
        prior: str | None = None,
        n_prior_samples: int = 24,
        value_weight: float = 0.0,
        distance_weight: float = 1.0,
        value_estimate: str = "terminal",
        gamma: float | None = None,
        jepa_loss: str | None = None,
        **options: Any,
    ):
        self.horizon = check_positive_int("horizon", horizon)
        self.method = check_choice("method", method, METHODS)
        self.cost = check_choice("cost", cost, COSTS)
        self.replan_every = check_positive_int("replan_every", replan_every)
        self.prior = check_choice("prior", prior, (None, *PRIORS))
        self.n_prior_samples = check_positive_int("n_prior_samples", n_prior_samples)
        self.value_weight = check_finite_nonnegative("value_weight", value_weight)
        self.distance_weight = check_finite_nonnegative("distance_weight", distance_weight)
        self.value_estimate = check_choice("value_estimate", value_estimate, VALUE_ESTIMATES)
        if gamma is None:
            gamma = getattr(model, "gamma", None)
        if gamma is None and self.value_estimate == "return":
            raise ValueError("value_estimate='return' needs gamma: pass it (the model's), or pass the model, not its policy")
        if gamma is not None and not (isinstance(gamma, (int, float)) and 0.0 < gamma <= 1.0):
            raise ValueError(f"gamma must be a number in (0, 1], got {gamma!r}")
        self.gamma = None if gamma is None else float(gamma)
        if self.value_weight == 0 and self.distance_weight == 0:
            raise ValueError("value_weight and distance_weight are both 0: the cost would be 0 for every plan")
        if self.prior is not None and method == "exhaustive":
            raise ValueError("prior='policy' needs a search that samples (cem, mppi, grad); exhaustive scores them all")
        self.options = check_options(method, options)
        policy = model.policy if isinstance(model, BaseAlgorithm) else model
        if jepa_loss is None:
            jepa_loss = getattr(model, "jepa_loss", "mse")
        self.world = WorldModel(policy, jepa_loss)
        if self.prior is not None:
            self.world.check_pi()
        if self.value_weight > 0:
            self.world.check_V()
            if self.value_estimate == "return":
                self.world.check_R()
        if isinstance(model, BaseAlgorithm) and _predictor_never_trained(model):
            warnings.warn(
                "This model was trained with jepa_coef=0: its predictor W never learned and plans through it are "
                "meaningless (a floor for comparisons, not a planner)",
                UserWarning,
                stacklevel=2,
            )
        self.policy: Any = policy
        self.action_space: Any = policy.action_space
        self._check_action_space()
        self.device = policy.device
        self.generator = th.Generator(device=self.device)
        self.generator.manual_seed(int(seed) if seed is not None else int(th.randint(2**62, (1,)).item()))
        self.search = Search(self.action_space, self.horizon, method, self.options, self.generator, self.device)
        #: per-dimension weights of the distance (1 / std, 0 for dead dimensions), or None
        self.weights: th.Tensor | None = None
        if reference_obs is not None:
            self.weights = self._reference_weights(reference_obs)
        self._plan: np.ndarray | None = None  # the last plan, (batch, horizon, *action shape), for predict()
        self._warm: Any = None  # the search distribution predict() starts from (shifted by the actions played)
        self._played = 0

    def _check_action_space(self) -> None:
        space = self.action_space
        if isinstance(space, spaces.Box):
            if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
                raise ValueError(f"Planning needs a bounded Box action space, got {space}")
            if self.method == "exhaustive":
                raise ValueError("method 'exhaustive' needs discrete actions (Discrete or MultiDiscrete), got a Box")
        elif isinstance(space, spaces.MultiDiscrete):
            if space.nvec.ndim != 1:
                raise ValueError(f"Only 1-D MultiDiscrete action spaces can be planned over, got {space}")
        elif not isinstance(space, spaces.Discrete):
            raise ValueError(f"Planning supports Box, Discrete and MultiDiscrete actions, got {space}")

    def _reference_weights(self, reference_obs: Any) -> th.Tensor:
        """
        1 / std of each dimension of the compared embeddings over ``reference_obs``; 0 for the dead dimensions.

        Example: stds (0.5, 0.0, 2.0, 1e-9): RMS spread sqrt((0.25 + 4) / 4) = 1.03, threshold 1.03e-3, weights
        (2, 0, 0.5, 0): the dead ReLU unit and the one at 1e-9 take no part (divided by 1e-9, its tiny residuals
        would make up the whole cost).
        """
        tensor, _ = self.policy.obs_to_tensor(reference_obs)
        with self.world.eval_mode():
            z = self.world.compared(self.world.target(tensor))
        if z.shape[0] < 2:
            raise ValueError("reference_obs must hold a batch of at least 2 observations (a leading batch axis)")
        std = z.std(dim=0)
        live = std > DEAD_DIMENSION * std.pow(2).mean().sqrt()
        if not live.any():
            raise ValueError("reference_obs: the embedding is constant over these observations (no spread to measure)")
        return th.where(live, 1.0 / std.clamp_min(1e-30), th.zeros_like(std))

    # -- the cost ---------------------------------------------------------------------------------------------------

    def distance(self, latents: th.Tensor, z_goal: th.Tensor) -> th.Tensor:
        """
        :param latents: predicted latents, shape ``(..., horizon, dim(z))``
        :param z_goal: the goal, as :meth:`~sb3_jepa.planning.world_model.WorldModel.compared` gives it,
            broadcastable to ``(..., 1, dim(z))``
        :return: the squared distance to the goal, summed over the horizon (or its last step), shape ``(...)``
        """
        difference = self.world.compared(latents) - z_goal
        if self.weights is not None:
            difference = difference * self.weights
        per_step = difference.pow(2).sum(dim=-1)
        return per_step[..., -1] if self.cost == "final" else per_step.sum(dim=-1)

    def objective(self, z: th.Tensor, z_goal: th.Tensor) -> Objective:
        """
        :param z: start embeddings, shape ``(batch, dim(z))``
        :param z_goal: goals, as :meth:`~sb3_jepa.planning.world_model.WorldModel.compared` gives them
        :return: the cost of candidates (see the module): features ``(batch, n, horizon, action_dim)`` -> ``(batch, n)``
        """
        both = self.distance_weight > 0 and self.value_weight > 0
        scales: list[th.Tensor] = []

        def cost(features: th.Tensor) -> th.Tensor:
            batch, n = features.shape[:2]
            latents = self.world.rollout(z.repeat_interleave(n, dim=0), features.flatten(0, 1)).unflatten(0, (batch, n))
            # (weight, term): the distance, and the value with its sign (a higher value is a lower cost)
            terms = []
            if self.distance_weight > 0:
                terms.append((self.distance_weight, self.distance(latents, z_goal[:, None, None])))
            if self.value_weight > 0:
                terms.append((self.value_weight, -self.value(z, features, latents)))
            if not both:
                weight, term = terms[0]
                return weight * term
            if not scales:  # each term's own spread over the first candidates scored, fixed for the whole search
                scales.extend(term.detach().std(dim=1, keepdim=True).clamp_min(1e-12) for _, term in terms)
            # The spreads are the unweighted terms': dividing a weighted term by its own spread would cancel the weight
            (distance_weight, distance), (value_weight, value) = terms
            return distance_weight * distance / scales[0] + value_weight * value / scales[1]

        return cost

    def value(self, z: th.Tensor, features: th.Tensor, latents: th.Tensor) -> th.Tensor:
        """
        The value term ``G`` of candidates (see the module), read by the actor's and the critic's heads (and ``R``) on
        :meth:`~sb3_jepa.planning.world_model.WorldModel.readout` of the latents.

        Example (``"return"``, horizon 2, gamma 0.9): latents ``z_1 = W(z_0, a_0)``, ``z_2 = W(z_1, a_1)``; ``G =
        R(z_0, a_0) + 0.9 R(z_1, a_1) + 0.81 V(z_2)``: the reward of each action is read on the latent it is taken
        from, ``z_0`` being the start's own embedding.

        :param z: start embeddings, shape ``(batch, dim(z))``
        :param features: the candidates' encoded actions, shape ``(batch, n, horizon, action_dim)``
        :param latents: their predicted latents ``z_1..z_H``, shape ``(batch, n, horizon, dim(z))``
        :return: ``G``, shape ``(batch, n)``
        """
        start = z[:, None, None]  # (batch, 1, 1, dim)
        terminal = self.world.V(self.world.readout(latents[:, :, -1], start[:, :, 0]))
        if self.value_estimate == "terminal":
            return terminal
        assert self.gamma is not None
        batch, n, horizon = features.shape[:3]
        # z_t, the latent each action a_t is taken from: z_0 then the predictions z_1..z_{H-1}
        before = th.cat([start.expand(batch, n, 1, -1), latents[:, :, :-1]], dim=2)
        rewards = self.world.R(self.world.readout(before, start).flatten(0, 2), features.flatten(0, 2)).unflatten(
            0, (batch, n, horizon)
        )
        discounts = self.gamma ** th.arange(horizon + 1, device=z.device, dtype=rewards.dtype)
        return (rewards * discounts[:horizon]).sum(dim=-1) + discounts[horizon] * terminal

    def prior_candidates(self, z: th.Tensor) -> Candidates:
        """
        The policy's trajectories through ``W``: at each step an action from the actor on the predicted latent
        (:meth:`~sb3_jepa.planning.world_model.WorldModel.pi`), then ``W``'s step. Candidate 0 of each problem
        acts greedily (the distribution's mode); the others sample.

        :param z: start embeddings, shape ``(batch, dim(z))``
        :return: ``n_prior_samples`` candidates per problem
        """
        k = self.n_prior_samples
        starts = z.repeat_interleave(k, dim=0)  # rows (problem 0: k rows, problem 1: k rows, ...)
        greedy = th.arange(len(starts), device=self.device) % k == 0  # the first row of each problem
        current, actions = starts, []
        with th.no_grad():
            for _ in range(self.horizon):
                action = self.world.pi(self.world.readout(current, starts), self.generator, deterministic=greedy)
                actions.append(action)
                current = self.world.next(current, self.world.action_features(action))
        stacked = th.stack(actions, dim=1)  # (batch * k, horizon, *action shape)
        return self.search.candidates(stacked.unflatten(0, (z.shape[0], k)))

    # -- planning ---------------------------------------------------------------------------------------------------

    def plan(self, obs: np.ndarray | dict[str, np.ndarray], goal_obs: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
        """
        Search for the best action sequence toward ``goal_obs``.

        :param obs: one observation, or a batch
        :param goal_obs: the goal observation(s): the same shape as ``obs``
        :return: the actions, shape ``(horizon, *action_space.shape)`` for one observation and
            ``(batch, horizon, *action_space.shape)`` for a batch, in the action space's dtype
        """
        obs_tensor, vectorized = self.policy.obs_to_tensor(obs)
        actions, _ = self._search(obs_tensor, vectorized, goal_obs, warm=None, fresh=None)
        return actions

    def predict(
        self,
        obs: np.ndarray | dict[str, np.ndarray],
        goal_obs: np.ndarray | dict[str, np.ndarray],
        episode_start: np.ndarray | None = None,
    ) -> tuple[np.ndarray, None]:
        """
        Receding-horizon control: plan, play the plan's first action; with ``replan_every=k``, play its next actions
        for ``k - 1`` more steps, then plan again, starting the search from the previous plan shifted by the ``k``
        actions played (the warm start).

        :param obs: one observation, or a batch (one per environment of a VecEnv)
        :param goal_obs: the goal observation(s), the same shape as ``obs``
        :param episode_start: a VecEnv's ``dones`` from the previous step, as for SB3's ``predict``: every env
            whose episode starts forgets its warm start, and all are planned anew now (the others from their warm
            starts)
        :return: the action(s) and None (SB3's ``predict`` returns ``(actions, state)``)
        """
        # One conversion (and host-device copy) of the observation per step, shared with the search
        obs_tensor, vectorized = self.policy.obs_to_tensor(obs)
        n_obs = _batch_size(obs_tensor)
        starts = np.zeros(n_obs, dtype=bool)
        if episode_start is not None:
            starts = np.asarray(episode_start, dtype=bool).reshape(-1)
            if len(starts) != n_obs:
                raise ValueError(f"episode_start must have one entry per observation ({n_obs}), got {len(starts)}")
        if self._plan is None or self._played >= min(self.replan_every, self.horizon) or starts.any():
            warm = None if self._warm is None else shift(self._warm, self._played)
            fresh = th.as_tensor(starts, device=self.device)
            plan, self._warm = self._search(obs_tensor, vectorized, goal_obs, warm=warm, fresh=fresh)
            self._plan = plan if vectorized else plan[None]
            self._played = 0
        assert self._plan is not None
        if self._plan.shape[0] != n_obs:
            raise ValueError(
                f"obs holds {n_obs} observations but the current plan was made for {self._plan.shape[0]}: call "
                "reset() between problems of different batch sizes"
            )
        action = self._plan[:, self._played]
        self._played += 1
        return (action if vectorized else action[0]), None

    def reset(self, seed: int | None = None) -> None:
        """
        Forget the previous plan and its warm start (a new episode or a new goal).

        :param seed: if given, also reseed the planner's generator (as gymnasium's ``reset(seed=...)``): the plans
            that follow are then the same whatever was planned before
        """
        self._plan, self._warm, self._played = None, None, 0
        if seed is not None:
            self.generator.manual_seed(int(seed))

    def _search(
        self, obs_tensor: Any, vectorized: bool, goal_obs: Any, warm: Any, fresh: th.Tensor | None
    ) -> tuple[np.ndarray, Any]:
        goal_tensor = _goal_tensor(self.policy, goal_obs, obs_tensor, vectorized)
        with self.world.eval_mode():
            z, z_goal = self.world.encode(obs_tensor), self.world.compared(self.world.target(goal_tensor))
            batch = z.shape[0]
            if warm is not None and _warm_batch(warm) != batch:
                warm = None
            if fresh is None:
                fresh = th.zeros(batch, dtype=th.bool, device=self.device)
            prior = self.prior_candidates(z) if self.prior is not None else None
            actions, next_warm = self.search.run(self.objective(z, z_goal), batch, warm, fresh, prior)
        result = actions.cpu().numpy().astype(self.action_space.dtype or np.int64)
        return (result if vectorized else result[0]), next_warm


def _predictor_never_trained(model: BaseAlgorithm, points: int = 1001) -> bool:
    """
    :param model: a JEPA model
    :param points: where a ``jepa_coef`` schedule is read: this many evenly spaced values of progress_remaining in
        [0, 1] (a schedule at 0 at both ends may still train W in between)
    :return: whether the model's jepa_coef is 0 throughout
    """
    coef = getattr(model, "jepa_coef", None)
    if coef is None:
        return False
    if callable(coef):
        return all(float(coef(float(progress))) == 0.0 for progress in np.linspace(0.0, 1.0, points))
    return float(coef) == 0.0


def _batch_size(tensor: Any) -> int:
    first = next(iter(tensor.values())) if isinstance(tensor, dict) else tensor
    return int(first.shape[0])


def _warm_batch(warm: Any) -> int:
    first = warm[0] if isinstance(warm, list) else warm
    return int(first.shape[0])


def _goal_tensor(policy: Any, goal_obs: Any, obs_tensor: Any, vectorized: bool) -> Any:
    """Check ``goal_obs`` against the observation space and ``obs`` (the same layout and batch), then convert it."""
    try:
        goal_tensor, goal_vectorized = policy.obs_to_tensor(goal_obs)
    except (ValueError, KeyError, TypeError, AttributeError, AssertionError) as error:
        raise ValueError(f"goal_obs does not fit the observation space {policy.observation_space}: {error}") from error
    shapes = {
        key: tuple(value.shape)
        for key, value in (goal_tensor.items() if isinstance(goal_tensor, dict) else [("obs", goal_tensor)])
    }
    expected = {
        key: tuple(value.shape)
        for key, value in (obs_tensor.items() if isinstance(obs_tensor, dict) else [("obs", obs_tensor)])
    }
    if goal_vectorized != vectorized or shapes != expected:
        raise ValueError(f"goal_obs must have the shape of obs: got {shapes}, obs has {expected}")
    return goal_tensor
