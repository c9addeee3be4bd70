"""
Planning toward a goal with the learned world model (PLDM, DINO-WM): encode the observation and the goal
observation with the policy's encoder E, roll the predictor W forward over candidate action sequences, and keep the
sequence whose predicted latents come closest to ``E(goal)``.

The search is batched: every candidate sequence of every observation in the batch is one row of one predictor call
per horizon step, on the model's device; there is no Python loop over candidates.

Methods (:data:`METHODS`):

- ``cem``: the cross-entropy method (DINO-WM): sample, keep the ``n_elites`` cheapest, refit.
- ``mppi``: model-predictive path integral control (PLDM): refit to all samples weighted by ``exp(-cost / T)``.
- ``grad``: gradient descent on the action sequence through W (the paper's "search in the action space of W"):
  Adam on ``tanh``-bounded Box actions, or on softmax-relaxed logits for discrete actions, from ``n_samples``
  random starts; the best start wins, scored on the actions it finally returns.
- ``exhaustive``: every sequence of a small discrete problem.

Box actions are sampled from per-step Gaussians clipped to the bounds; Discrete and MultiDiscrete actions from
per-step (per-dimension) categorical distributions.
"""

import warnings
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from torch.nn import functional as F

from sb3_jepa.common.jepa import JEPAPredictor
from sb3_jepa.common.utils import check_choice, check_positive_int

#: The search methods
METHODS = ("cem", "mppi", "grad", "exhaustive")
#: What the cost adds up: the distance to the goal at every predicted step (PLDM), or at the last one only
COSTS = ("sum", "final")
#: Each method's options and their defaults (``LatentPlanner(..., **options)``)
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    # DINO-WM: 300 samples, 30 elites, 10-30 iterations; sized down for 2 cores (DESIGN.md section 10)
    "cem": dict(n_samples=256, n_elites=32, n_iterations=10, init_std=1.0, min_std=0.05, smoothing=0.1),
    # PLDM: 2000 samples; temperature in units of the samples' cost spread (see LatentPlanner._mppi)
    "mppi": dict(n_samples=256, n_iterations=10, temperature=0.1, init_std=1.0, min_std=0.05, smoothing=0.1),
    "grad": dict(n_samples=16, n_iterations=50, lr=0.1),
    "exhaustive": dict(max_sequences=2**16, chunk_size=4096),
}


def check_options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """
    :param method: one of :data:`METHODS`
    :param options: some of the method's options
    :return: all of its options: the defaults of :data:`METHOD_DEFAULTS`, updated with ``options``
    """
    check_choice("method", method, METHODS)
    unknown = sorted(set(options) - set(METHOD_DEFAULTS[method]))
    if unknown:
        raise ValueError(f"Unknown option(s) {unknown} for method {method!r}; it takes {sorted(METHOD_DEFAULTS[method])}")
    options = {**METHOD_DEFAULTS[method], **options}
    for name in ("n_samples", "n_iterations", "n_elites", "max_sequences", "chunk_size"):
        if name in options:
            check_positive_int(name, options[name])
    if method == "cem" and options["n_elites"] > options["n_samples"]:
        raise ValueError(f"n_elites must be <= n_samples, got {options['n_elites']} > {options['n_samples']}")
    for name in ("init_std", "min_std", "temperature", "lr"):
        if name in options and not options[name] > 0:
            raise ValueError(f"{name} must be > 0, got {options[name]!r}")
    if "smoothing" in options and not 0 <= options["smoothing"] < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {options['smoothing']!r}")
    return options


class LatentPlanner:
    """
    Goal-reaching by search through a trained JEPA's world model: ``E`` encodes, ``W`` predicts, and the cost of an
    action sequence is the squared L2 distance of its predicted latents to ``E(goal_obs)``.

    :param model: a trained A2CJEPA/PPOJEPA (or its policy): anything whose policy has ``jepa_encode`` and
        ``jepa_predictor``
    :param horizon: the number of actions planned
    :param method: one of :data:`METHODS`
    :param seed: seed of the planner's own random generator (None: drawn from torch's); the same seed gives the
        same plans
    :param cost: one of :data:`COSTS`
    :param reference_obs: a batch of observations; when given, distances are measured in units of the embedding's
        per-dimension standard deviation over it (a collapsed scale then no longer makes every plan look good)
    :param replan_every: :meth:`predict` plans anew every this many steps and plays the plan's next action in
        between (1: replan every step, as PLDM does)
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
        **options: Any,
    ):
        self.horizon = check_positive_int("horizon", horizon)
        self.method = check_choice("method", method, METHODS)
        self.cost = check_choice("cost", cost, COSTS)
        self.replan_every = check_positive_int("replan_every", replan_every)
        self.options = check_options(method, options)
        policy = model.policy if isinstance(model, BaseAlgorithm) else model
        predictor = getattr(policy, "jepa_predictor", None)
        if not (hasattr(policy, "jepa_encode") and isinstance(predictor, JEPAPredictor)):
            raise ValueError(
                f"model must be an A2CJEPA/PPOJEPA model or a JEPA policy (with jepa_encode and jepa_predictor); "
                f"{type(model).__name__} has no JEPA predictor"
            )
        if isinstance(model, BaseAlgorithm) and _predictor_never_trained(model):
            warnings.warn(
                "This model was trained with jepa_coef=0: its predictor W never learned and plans through it are "
                "meaningless (a floor for comparisons, not a planner)",
                UserWarning,
                stacklevel=2,
            )
        self.policy: Any = policy
        self.predictor = predictor
        self.action_space: Any = policy.action_space
        self._check_action_space()
        self.device = policy.device
        # Derived from the action space once: the sampling loop reads them every iteration (no host-device copy there)
        self._categories: list[int] = []
        space: Any = self.action_space
        if isinstance(space, spaces.Box):
            self._low = th.as_tensor(space.low, dtype=th.float32, device=self.device).flatten()
            self._high = th.as_tensor(space.high, dtype=th.float32, device=self.device).flatten()
        else:
            discrete = isinstance(space, spaces.Discrete)
            self._categories = [int(space.n)] if discrete else [int(n) for n in space.nvec]
            start = getattr(space, "start", 0)
            self._starts = th.as_tensor(np.asarray(start).reshape(-1), device=self.device)
        self.generator = th.Generator(device=self.device)
        self.generator.manual_seed(int(seed) if seed is not None else int(th.randint(2**62, (1,)).item()))
        self.scale: th.Tensor | None = None
        if reference_obs is not None:
            z = self.encode(reference_obs)
            if z.shape[0] < 2:
                raise ValueError("reference_obs must hold a batch of at least 2 observations (a leading batch axis)")
            self.scale = z.std(dim=0).clamp_min(1e-8)
        self._plan: np.ndarray | None = None  # the last plan, (batch, horizon, *action shape), for predict()
        self._warm: Any = None  # the search distribution predict() starts from (shifted by one step)
        self._played = 0

    # -- arguments --------------------------------------------------------------------------------------------------

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

    # -- the world model --------------------------------------------------------------------------------------------

    def encode(self, obs: np.ndarray | dict[str, np.ndarray]) -> th.Tensor:
        """
        :param obs: one observation or a batch (as ``model.predict`` takes them)
        :return: ``E(obs)``, shape ``(batch, dim(z))`` (batch 1 for one observation)
        """
        tensor, _ = self.policy.obs_to_tensor(obs)
        with th.no_grad():
            return self.policy.jepa_encode(tensor)

    def rollout(self, z: th.Tensor, action_features: th.Tensor) -> th.Tensor:
        """
        Roll W forward from each embedding along its action sequence.

        :param z: start embeddings, shape ``(n, dim(z))``
        :param action_features: encoded actions, shape ``(n, horizon, action_dim)``
        :return: the predicted latents after each action, shape ``(n, horizon, dim(z))``
        """
        latents = []
        for step in range(action_features.shape[1]):
            z = self.predictor.next(z, action_features[:, step])
            latents.append(z)
        return th.stack(latents, dim=1)

    def latent_cost(self, latents: th.Tensor, z_goal: th.Tensor) -> th.Tensor:
        """
        :param latents: predicted latents, shape ``(..., horizon, dim(z))``
        :param z_goal: the goal embeddings, broadcastable to ``(..., 1, dim(z))``
        :return: the squared distance to the goal, summed over the horizon (or its last step), shape ``(...)``
        """
        difference = latents - z_goal
        if self.scale is not None:
            difference = difference / self.scale
        per_step = difference.pow(2).sum(dim=-1)
        return per_step[..., -1] if self.cost == "final" else per_step.sum(dim=-1)

    def sequence_cost(self, z: th.Tensor, z_goal: th.Tensor, action_features: th.Tensor) -> th.Tensor:
        """
        :param z: start embeddings, shape ``(batch, dim(z))``
        :param z_goal: goal embeddings, shape ``(batch, dim(z))``
        :param action_features: candidates, shape ``(batch, n, horizon, action_dim)``
        :return: each candidate's cost, shape ``(batch, n)``
        """
        batch, n = action_features.shape[:2]
        starts = z.repeat_interleave(n, dim=0)
        latents = self.rollout(starts, action_features.flatten(0, 1)).unflatten(0, (batch, n))
        return self.latent_cost(latents, z_goal[:, None, None])

    # -- action encodings -------------------------------------------------------------------------------------------

    def _features(self, actions: th.Tensor) -> th.Tensor:
        """:return: W's input for env actions of shape ``(batch, n, horizon, *action shape)``"""
        lead = actions.shape[:3]
        flat = actions.reshape(-1, *self.action_space.shape) if self.action_space.shape else actions.reshape(-1)
        return self.predictor.action_encoder.from_env_actions(flat).reshape(*lead, -1)

    def _to_actions(self, indices: th.Tensor) -> th.Tensor:
        """Category indices ``(..., n_dims)`` to env actions (Discrete: no trailing axis)"""
        actions = indices + self._starts
        return actions[..., 0] if isinstance(self.action_space, spaces.Discrete) else actions

    def _one_hot(self, indices: th.Tensor) -> th.Tensor:
        """W's input for category indices ``(..., n_dims)``: one one-hot block per action dimension"""
        return th.cat([F.one_hot(indices[..., d], c).float() for d, c in enumerate(self._categories)], dim=-1)

    # -- planning ---------------------------------------------------------------------------------------------------

    def plan(self, obs: np.ndarray | dict[str, np.ndarray], goal_obs: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
        """
        Search for the action sequence whose predicted latents reach ``E(goal_obs)``.

        :param obs: one observation, or a batch
        :param goal_obs: the goal observation(s): the same shape as ``obs``
        :return: the actions, shape ``(horizon, *action_space.shape)`` for one observation and
            ``(batch, horizon, *action_space.shape)`` for a batch, in the action space's dtype
        """
        obs_tensor, vectorized = self.policy.obs_to_tensor(obs)
        actions, _ = self._search(obs_tensor, vectorized, goal_obs, warm=None)
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
        :param episode_start: a VecEnv's ``dones`` from the previous step (any True: forget the previous plan), as
            for SB3's ``predict``
        :return: the action(s) and None (SB3's ``predict`` returns ``(actions, state)``)
        """
        if episode_start is not None and np.any(episode_start):
            self.reset()
        # One conversion (and host-device copy) of the observation per step, shared with the search
        obs_tensor, vectorized = self.policy.obs_to_tensor(obs)
        if self._plan is None or self._played >= min(self.replan_every, self.horizon):
            warm = None if self._warm is None else _shift(self._warm, self._played)
            plan, self._warm = self._search(obs_tensor, vectorized, goal_obs, warm=warm)
            self._plan = plan if vectorized else plan[None]
            self._played = 0
        assert self._plan is not None
        n_obs = _batch_size(obs_tensor)
        if self._plan.shape[0] != n_obs:
            raise ValueError(
                f"obs holds {n_obs} observations but the current plan was made for {self._plan.shape[0]}: call "
                "reset() between problems of different batch sizes"
            )
        action = self._plan[:, self._played]
        self._played += 1
        return (action if vectorized else action[0]), None

    def reset(self) -> None:
        """Forget the previous plan and its warm start (a new episode or a new goal)."""
        self._plan, self._warm, self._played = None, None, 0

    def _search(self, obs_tensor: Any, vectorized: bool, goal_obs: Any, warm: Any) -> tuple[np.ndarray, Any]:
        goal_tensor = _goal_tensor(self.policy, goal_obs, obs_tensor, vectorized)
        with th.no_grad():
            z, z_goal = self.policy.jepa_encode(obs_tensor), self.policy.jepa_encode(goal_tensor)
        batch = z.shape[0]
        if warm is not None and _warm_batch(warm) != batch:
            warm = None
        search = {"cem": self._cem, "mppi": self._mppi, "grad": self._grad, "exhaustive": self._exhaustive}
        actions, next_warm = search[self.method](z, z_goal, warm)
        result = actions.cpu().numpy().astype(self.action_space.dtype or np.int64)
        return (result if vectorized else result[0]), next_warm

    # -- sampling methods (cem, mppi) -------------------------------------------------------------------------------

    def _initial_distribution(self, batch: int, warm: Any) -> Any:
        """
        Box: (mean, std) of shape (batch, horizon, action_dim); discrete: probabilities per dimension.

        :param warm: the previous search's result, already shifted to this plan's steps (see :func:`_shift`): the
            Box mean (the std starts wide again, so the search can still change its mind), or the discrete
            probabilities (mixed half and half with uniform, for the same reason)
        """
        if isinstance(self.action_space, spaces.Box):
            low, high = self._low, self._high
            mean = ((low + high) / 2).expand(batch, self.horizon, -1).clone()
            std = (self.options["init_std"] * (high - low) / 2).expand(batch, self.horizon, -1).clone()
            return (mean if warm is None else warm.clone()), std
        if warm is not None:
            return [0.5 * p + 0.5 / p.shape[-1] for p in warm]
        return [th.full((batch, self.horizon, n), 1.0 / n, device=self.device) for n in self._categories]

    def _sample(self, distribution: Any, n: int) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """
        :return: ``n`` candidates per batch row: the env actions ``(batch, n, horizon, *shape)``, W's input
            features ``(batch, n, horizon, action_dim)``, and what the distribution is refit to: the flat Box
            actions ``(batch, n, horizon, action_dim)`` or the category indices ``(batch, n, horizon, n_dims)``
        """
        if isinstance(self.action_space, spaces.Box):
            mean, std = distribution
            low, high = self._low, self._high
            noise = th.randn((*mean.shape[:1], n, *mean.shape[1:]), generator=self.generator, device=self.device)
            flat = th.maximum(th.minimum(mean[:, None] + std[:, None] * noise, high), low)
            # Candidate 0 is the mean itself: the warm start is never lost to sampling noise
            flat[:, 0] = th.maximum(th.minimum(mean, high), low)
            actions = flat.reshape(*flat.shape[:3], *self.action_space.shape)
            return actions, self._features(actions), flat
        indices = []
        for p in distribution:
            batch = p.shape[0]
            draws = th.multinomial(p.reshape(-1, p.shape[-1]), n, replacement=True, generator=self.generator)
            # (batch * horizon, n) -> (batch, n, horizon)
            draws = draws.reshape(batch, self.horizon, n).transpose(1, 2)
            # Candidate 0 is the most likely sequence
            draws[:, 0] = p.argmax(dim=-1)
            indices.append(draws)
        stacked = th.stack(indices, dim=-1)  # (batch, n, horizon, n_dims)
        return self._to_actions(stacked), self._one_hot(stacked), stacked

    def _refit(self, distribution: Any, samples: th.Tensor, weights: th.Tensor) -> Any:
        """
        Fit the sampling distribution to weighted candidates (CEM: equal weights on the elites; MPPI: softmax of
        the costs), smoothed with the previous one.

        :param samples: the third output of :meth:`_sample`
        :param weights: ``(batch, n)``, summing to 1 per row
        """
        smoothing = self.options["smoothing"]
        w = weights[:, :, None, None]
        if isinstance(self.action_space, spaces.Box):
            mean, std = distribution
            new_mean = (w * samples).sum(dim=1)
            new_std = ((w * (samples - new_mean[:, None]).pow(2)).sum(dim=1)).sqrt()
            low, high = self._low, self._high
            new_std = new_std.clamp_min(self.options["min_std"] * (high - low) / 2)
            return smoothing * mean + (1 - smoothing) * new_mean, smoothing * std + (1 - smoothing) * new_std
        refitted = []
        for dim, (p, categories) in enumerate(zip(distribution, self._categories, strict=True)):
            frequencies = (w * F.one_hot(samples[..., dim], categories).float()).sum(dim=1)
            refitted.append(smoothing * p + (1 - smoothing) * frequencies)
        return refitted

    def _sampling_search(self, z: th.Tensor, z_goal: th.Tensor, warm: Any, weigh: Any) -> tuple[th.Tensor, Any]:
        distribution = self._initial_distribution(z.shape[0], warm)
        best_actions, best_cost = None, None
        with th.no_grad():
            for _ in range(self.options["n_iterations"]):
                actions, features, samples = self._sample(distribution, self.options["n_samples"])
                costs = self.sequence_cost(z, z_goal, features)
                distribution = self._refit(distribution, samples, weigh(costs))
                # The cheapest sequence seen so far is the plan (the distribution's mean may not have been scored)
                cheapest = costs.argmin(dim=1)
                rows = th.arange(z.shape[0], device=self.device)
                if best_actions is None or best_cost is None:
                    best_actions, best_cost = actions[rows, cheapest], costs[rows, cheapest]
                else:
                    better = costs[rows, cheapest] < best_cost
                    shape = (-1,) + (1,) * (actions.dim() - 2)
                    best_actions = th.where(better.reshape(shape), actions[rows, cheapest], best_actions)
                    best_cost = th.where(better, costs[rows, cheapest], best_cost)
        assert best_actions is not None
        return best_actions, self._warm_from(best_actions, distribution)

    def _warm_from(self, best_actions: th.Tensor, distribution: Any) -> Any:
        """The next search starts around the plan returned (Box: its actions as the mean; discrete: the refit)"""
        if isinstance(self.action_space, spaces.Box):
            return best_actions.reshape(*best_actions.shape[:2], -1)
        return distribution

    def _cem(self, z: th.Tensor, z_goal: th.Tensor, warm: Any) -> tuple[th.Tensor, Any]:
        n_elites = self.options["n_elites"]

        def elites(costs: th.Tensor) -> th.Tensor:
            weights = th.zeros_like(costs)
            weights.scatter_(1, costs.topk(n_elites, dim=1, largest=False).indices, 1.0 / n_elites)
            return weights

        return self._sampling_search(z, z_goal, warm, elites)

    def _mppi(self, z: th.Tensor, z_goal: th.Tensor, warm: Any) -> tuple[th.Tensor, Any]:
        temperature = self.options["temperature"]

        def softmin(costs: th.Tensor) -> th.Tensor:
            # The temperature is relative to each row's cost spread, so one value works whatever the latent scale
            spread = (costs.max(dim=1, keepdim=True).values - costs.min(dim=1, keepdim=True).values).clamp_min(1e-12)
            return th.softmax(-(costs - costs.min(dim=1, keepdim=True).values) / (temperature * spread), dim=1)

        return self._sampling_search(z, z_goal, warm, softmin)

    # -- gradient descent -------------------------------------------------------------------------------------------

    def _grad(self, z: th.Tensor, z_goal: th.Tensor, warm: Any) -> tuple[th.Tensor, Any]:
        """
        Adam on unconstrained parameters of ``n_samples`` sequences per problem: Box actions are
        ``center + half_range * tanh(u)``; discrete ones ``softmax(u)`` per step (relaxed one-hot), made hard
        (argmax) at the end. Every start is scored on the actions it returns; the cheapest wins.
        """
        batch, n = z.shape[0], self.options["n_samples"]
        box = isinstance(self.action_space, spaces.Box)
        width = int(self.predictor.action_encoder.dim)
        u = th.randn((batch, n, self.horizon, width), generator=self.generator, device=self.device)
        if box:
            low, high = self._low, self._high
            center, half = (low + high) / 2, (high - low) / 2
            if warm is not None:
                u[:, 0] = th.atanh(((warm - center) / half).clamp(-0.999, 0.999))
        elif warm is not None:
            u[:, 0] = warm
        u.requires_grad_(True)
        optimizer = th.optim.Adam([u], lr=self.options["lr"])
        # W's weights are not trained here: only u is in the optimizer, and the graph is freed every iteration

        def features_of(u: th.Tensor) -> th.Tensor:
            if box:
                return center + half * th.tanh(u)
            return th.cat([th.softmax(part, dim=-1) for part in u.split(self._categories, dim=-1)], dim=-1)

        for _ in range(self.options["n_iterations"]):
            optimizer.zero_grad()
            cost = self.sequence_cost(z, z_goal, features_of(u)).sum()
            cost.backward()
            optimizer.step()
        with th.no_grad():
            if box:
                features = center + half * th.tanh(u)
                actions = features.reshape(batch, n, self.horizon, *self.action_space.shape)
            else:
                indices = th.stack([part.argmax(dim=-1) for part in u.split(self._categories, dim=-1)], dim=-1)
                features = self._one_hot(indices)
                actions = self._to_actions(indices)
            cheapest = self.sequence_cost(z, z_goal, features).argmin(dim=1)
            rows = th.arange(batch, device=self.device)
            warm_next = features[rows, cheapest] if box else u.detach()[rows, cheapest]
        return actions[rows, cheapest], warm_next

    # -- exhaustive -------------------------------------------------------------------------------------------------

    def _exhaustive(self, z: th.Tensor, z_goal: th.Tensor, warm: Any) -> tuple[th.Tensor, Any]:
        """Every sequence (in lexicographic order; ties go to the first), scored in chunks of ``chunk_size``"""
        choices = int(np.prod(self._categories))
        total = choices**self.horizon
        if total > self.options["max_sequences"]:
            raise ValueError(
                f"method 'exhaustive' would score {choices}^{self.horizon} = {total} sequences, more than "
                f"max_sequences={self.options['max_sequences']}: lower the horizon or use cem/mppi"
            )
        batch = z.shape[0]
        best_cost = th.full((batch,), th.inf, device=self.device)
        best_index = th.zeros(batch, dtype=th.long, device=self.device)
        with th.no_grad():
            for first in range(0, total, self.options["chunk_size"]):
                index = th.arange(first, min(total, first + self.options["chunk_size"]), device=self.device)
                indices = _sequence_digits(index, self.horizon, self._categories)  # (chunk, horizon, n_dims)
                features = self._one_hot(indices)
                costs = self.sequence_cost(z, z_goal, features.expand(batch, *features.shape))
                chunk_cost, chunk_best = costs.min(dim=1)
                better = chunk_cost < best_cost
                best_cost = th.where(better, chunk_cost, best_cost)
                best_index = th.where(better, index[chunk_best], best_index)
        return self._to_actions(_sequence_digits(best_index, self.horizon, self._categories)), None


def _shift(warm: Any, played: int) -> Any:
    """
    Align a search's result with the next plan, ``played`` actions later: drop the first ``played`` steps and fill
    the end (Box means and ``grad``'s parameters: the last step repeated; discrete probabilities: uniform).

    Example: a plan of horizon 4 for steps (t, t+1, t+2, t+3), 2 actions played: the next plan covers
    (t+2, ..., t+5) and starts from steps (t+2, t+3, t+3, t+3).

    :param warm: a tensor ``(batch, horizon, ...)`` or a list of probability tensors ``(batch, horizon, n)``
    :param played: the actions played since that search, >= 1
    :return: the shifted warm start, or None when every planned step was played
    """
    if isinstance(warm, list):
        horizon = warm[0].shape[1]
        if played >= horizon:
            return None
        return [th.cat([p[:, played:], th.full_like(p[:, :played], 1.0 / p.shape[-1])], dim=1) for p in warm]
    horizon = warm.shape[1]
    if played >= horizon:
        return None
    return th.cat([warm[:, played:], warm[:, -1:].expand(-1, played, *warm.shape[2:])], dim=1)


def _sequence_digits(index: th.Tensor, horizon: int, categories: list[int]) -> th.Tensor:
    """
    The sequences numbered by ``index`` in lexicographic order: one joint action per step (``prod(categories)``
    choices, the last dimension fastest), the first step most significant.

    Example: ``categories=[3]``, ``horizon=2``: index 5 = 1 * 3 + 2 is the sequence (1, 2).
    With ``categories=[2, 3]`` (6 joint actions), joint action 4 is (4 // 3, 4 % 3) = (1, 1).

    :param index: sequence numbers, shape ``(n,)``
    :return: category indices, shape ``(n, horizon, len(categories))``
    """
    choices = int(np.prod(categories))
    steps = []
    for power in reversed(range(horizon)):
        steps.append((index // choices**power) % choices)
    joint = th.stack(steps, dim=1)  # (n, horizon)
    digits = []
    for position in range(len(categories)):
        inner = int(np.prod(categories[position + 1 :]))
        digits.append((joint // inner) % categories[position])
    return th.stack(digits, dim=-1)


def _predictor_never_trained(model: BaseAlgorithm) -> bool:
    """:return: whether the model's jepa_coef is 0 throughout (a constant 0, or a schedule at 0 at both ends)"""
    coef = getattr(model, "jepa_coef", None)
    if coef is None:
        return False
    if callable(coef):
        return coef(1.0) == 0 and coef(0.0) == 0
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
