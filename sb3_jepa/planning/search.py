"""
The planner's searches over action sequences, given an objective: a function from candidate sequences (as ``W``'s
input features) to their costs. The searches know the action space and nothing of the world model.

- ``cem``: the cross-entropy method (DINO-WM, TD-MPC): sample, keep the ``n_elites`` cheapest, refit.
- ``mppi``: model-predictive path integral control (PLDM, TD-MPC2): refit to all samples weighted by
  ``exp(-cost / T)``.
- ``grad``: gradient descent on the action sequence through ``W`` (the paper's "search in the action space of W"):
  Adam on ``tanh``-bounded Box actions, or on softmax-relaxed logits for discrete actions, from ``n_samples``
  random starts; the best start wins, scored on the actions it finally returns.
- ``exhaustive``: every sequence of a small discrete problem.

Box actions are sampled from per-step Gaussians clipped to the bounds; Discrete and MultiDiscrete actions from
per-step (per-dimension) categorical distributions. Every search is batched: the candidates of all problems go to
the objective in one call.

Prior candidates (TD-MPC2's policy trajectories, :class:`Candidates` given as ``prior``) join every iteration's
samples, are kept fixed across the iterations (their costs computed once), take part in the refit and can be the
plan; with no warm start, the first distribution is fit to them.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from torch.nn import functional as F

from sb3_jepa.common.utils import check_choice, check_positive_int

#: The search methods
METHODS = ("cem", "mppi", "grad", "exhaustive")
#: Each method's options and their defaults (``LatentPlanner(..., **options)``)
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    # DINO-WM: 300 samples, 30 elites, 10-30 iterations; sized down for 2 cores (DESIGN.md section 10)
    "cem": dict(n_samples=256, n_elites=32, n_iterations=10, init_std=1.0, min_std=0.05, smoothing=0.1),
    # PLDM: 2000 samples; temperature in units of the samples' cost spread (see mppi_weights)
    "mppi": dict(n_samples=256, n_iterations=10, temperature=0.1, init_std=1.0, min_std=0.05, smoothing=0.1),
    "grad": dict(n_samples=16, n_iterations=50, lr=0.1),
    "exhaustive": dict(max_sequences=2**16, chunk_size=4096),
}

#: An objective: candidates' features ``(batch, n, horizon, action_dim)`` -> their costs ``(batch, n)``
Objective = Callable[[th.Tensor], th.Tensor]


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


class Candidates(NamedTuple):
    """Candidate action sequences, ``n`` per problem, in the three forms a search needs"""

    #: env actions, ``(batch, n, horizon, *action shape)`` (Discrete: no trailing axis)
    actions: th.Tensor
    #: ``W``'s input, ``(batch, n, horizon, action_dim)``
    features: th.Tensor
    #: what a distribution is fit to: flat Box actions ``(batch, n, horizon, action_dim)``, or category indices
    #: ``(batch, n, horizon, n_dims)``
    samples: th.Tensor


class Search:
    """
    The searches of one planner: its action space, horizon, method, options and random generator.

    :param action_space: a bounded Box, a Discrete or a 1-D MultiDiscrete space
    :param horizon: the number of actions planned
    :param method: one of :data:`METHODS`
    :param options: the method's options (:func:`check_options`)
    :param generator: the random generator (seeded by the planner)
    :param device: where the candidates live
    """

    def __init__(
        self,
        action_space: spaces.Space,
        horizon: int,
        method: str,
        options: dict[str, Any],
        generator: th.Generator,
        device: th.device,
    ):
        self.action_space: Any = action_space
        space: Any = action_space
        self.horizon, self.method, self.options = horizon, method, options
        self.generator, self.device = generator, device
        self.box = isinstance(action_space, spaces.Box)
        # Derived from the action space once: the sampling loop reads them every iteration (no host-device copy there)
        self._categories: list[int] = []
        if self.box:
            self.low = th.as_tensor(space.low, dtype=th.float32, device=device).flatten()
            self.high = th.as_tensor(space.high, dtype=th.float32, device=device).flatten()
        else:
            discrete = isinstance(space, spaces.Discrete)
            self._categories = [int(space.n)] if discrete else [int(n) for n in space.nvec]
            start = getattr(space, "start", 0)
            self._starts = th.as_tensor(np.asarray(start).reshape(-1), device=device)

    def run(
        self, objective: Objective, batch: int, warm: Any, fresh: th.Tensor, prior: Candidates | None
    ) -> tuple[th.Tensor, Any]:
        """
        :param objective: the cost of candidates (see :data:`Objective`)
        :param batch: the number of problems
        :param warm: the previous search's result shifted to this plan's steps (:func:`shift`), or None
        :param fresh: ``(batch,)`` bool: the problems that ignore ``warm`` (a new episode)
        :param prior: candidates from the policy, or None
        :return: the plans ``(batch, horizon, *action shape)`` and what the next search warm-starts from
        """
        if warm is None:
            fresh = th.ones(batch, dtype=th.bool, device=self.device)
        if self.method == "exhaustive":
            return self.exhaustive(objective, batch), None
        if self.method == "grad":
            return self.grad(objective, batch, warm, fresh, prior)
        weigh = self.cem_weights if self.method == "cem" else self.mppi_weights
        return self.sampling_search(objective, batch, warm, fresh, prior, weigh)

    # -- action encodings -------------------------------------------------------------------------------------------

    def to_actions(self, indices: th.Tensor) -> th.Tensor:
        """Category indices ``(..., n_dims)`` to env actions (Discrete: no trailing axis)"""
        actions = indices + self._starts
        return actions[..., 0] if isinstance(self.action_space, spaces.Discrete) else actions

    def one_hot(self, indices: th.Tensor) -> th.Tensor:
        """``W``'s input for category indices ``(..., n_dims)``: one one-hot block per action dimension"""
        return th.cat([F.one_hot(indices[..., d], c).float() for d, c in enumerate(self._categories)], dim=-1)

    def candidates(self, actions: th.Tensor) -> Candidates:
        """
        :param actions: env actions ``(batch, n, horizon, *action shape)`` (within the space)
        :return: them as candidates
        """
        if self.box:
            flat = actions.reshape(*actions.shape[:3], -1).float()
            return Candidates(actions, flat, flat)
        indices = actions.reshape(*actions.shape[:3], -1).long() - self._starts
        return Candidates(actions, self.one_hot(indices), indices)

    # -- sampling methods (cem, mppi) -------------------------------------------------------------------------------

    def initial_distribution(self, batch: int, warm: Any, fresh: th.Tensor, prior: Candidates | None) -> Any:
        """
        Box: (mean, std) of shape (batch, horizon, action_dim); discrete: probabilities per dimension.

        :param warm: the previous search's result, already shifted to this plan's steps (see :func:`shift`): the
            Box mean (the std starts wide again, so the search can still change its mind), or the discrete
            probabilities (mixed half and half with uniform, for the same reason); ignored on ``fresh`` rows
        :param fresh: ``(batch,)`` bool: rows that start from the prior, or with no prior from the widest
            distribution (mean at the centre, or uniform)
        :param prior: the prior candidates: the mean of a fresh row is its first candidate (the policy's greedy
            rollout); its probabilities are the candidates' frequencies, mixed half and half with uniform
        """
        keep = (~fresh).reshape(-1, 1, 1)
        if self.box:
            low, high = self.low, self.high
            mean = ((low + high) / 2).expand(batch, self.horizon, -1).clone()
            std = (self.options["init_std"] * (high - low) / 2).expand(batch, self.horizon, -1).clone()
            if prior is not None:
                mean = prior.samples[:, 0].clone()
            if warm is not None:
                mean = th.where(keep, warm, mean)
            return mean, std
        probabilities = [th.full((batch, self.horizon, n), 1.0 / n, device=self.device) for n in self._categories]
        if prior is not None:
            probabilities = [
                0.5 * F.one_hot(prior.samples[..., d], n).float().mean(dim=1) + 0.5 / n for d, n in enumerate(self._categories)
            ]
        if warm is not None:
            probabilities = [th.where(keep, 0.5 * w + 0.5 / w.shape[-1], p) for w, p in zip(warm, probabilities, strict=True)]
        return probabilities

    def sample(self, distribution: Any, n: int) -> Candidates:
        """:return: ``n`` candidates per problem; candidate 0 is the distribution's mean (Box) or mode (discrete)"""
        if self.box:
            mean, std = distribution
            low, high = self.low, self.high
            noise = th.randn((*mean.shape[:1], n, *mean.shape[1:]), generator=self.generator, device=self.device)
            flat = th.maximum(th.minimum(mean[:, None] + std[:, None] * noise, high), low)
            # Candidate 0 is the mean itself: the warm start is never lost to sampling noise
            flat[:, 0] = th.maximum(th.minimum(mean, high), low)
            actions = flat.reshape(*flat.shape[:3], *self.action_space.shape)
            return Candidates(actions, flat, flat)
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
        return Candidates(self.to_actions(stacked), self.one_hot(stacked), stacked)

    def refit(self, distribution: Any, samples: th.Tensor, weights: th.Tensor) -> Any:
        """
        Fit the sampling distribution to weighted candidates (CEM: equal weights on the elites; MPPI: softmax of
        the costs), smoothed with the previous one.

        :param samples: the candidates' ``samples``
        :param weights: ``(batch, n)``, summing to 1 per row
        """
        smoothing = self.options["smoothing"]
        w = weights[:, :, None, None]
        if self.box:
            mean, std = distribution
            new_mean = (w * samples).sum(dim=1)
            new_std = ((w * (samples - new_mean[:, None]).pow(2)).sum(dim=1)).sqrt()
            new_std = new_std.clamp_min(self.options["min_std"] * (self.high - self.low) / 2)
            return smoothing * mean + (1 - smoothing) * new_mean, smoothing * std + (1 - smoothing) * new_std
        refitted = []
        for dim, (p, categories) in enumerate(zip(distribution, self._categories, strict=True)):
            frequencies = (w * F.one_hot(samples[..., dim], categories).float()).sum(dim=1)
            refitted.append(smoothing * p + (1 - smoothing) * frequencies)
        return refitted

    def cem_weights(self, costs: th.Tensor) -> th.Tensor:
        """Equal weights on the ``n_elites`` cheapest candidates of each row"""
        n_elites = min(self.options["n_elites"], costs.shape[1])
        weights = th.zeros_like(costs)
        weights.scatter_(1, costs.topk(n_elites, dim=1, largest=False).indices, 1.0 / n_elites)
        return weights

    def mppi_weights(self, costs: th.Tensor) -> th.Tensor:
        """``softmax(-cost / T)``, the temperature relative to each row's cost spread (one value for any scale)"""
        low = costs.min(dim=1, keepdim=True).values
        spread = (costs.max(dim=1, keepdim=True).values - low).clamp_min(1e-12)
        return th.softmax(-(costs - low) / (self.options["temperature"] * spread), dim=1)

    def sampling_search(
        self,
        objective: Objective,
        batch: int,
        warm: Any,
        fresh: th.Tensor,
        prior: Candidates | None,
        weigh: Callable[[th.Tensor], th.Tensor],
    ) -> tuple[th.Tensor, Any]:
        distribution = self.initial_distribution(batch, warm, fresh, prior)
        rows = th.arange(batch, device=self.device)
        best_actions, best_cost = None, None
        prior_costs = None
        with th.no_grad():
            for _ in range(self.options["n_iterations"]):
                sampled = self.sample(distribution, self.options["n_samples"])
                if prior is None:
                    candidates, costs = sampled, objective(sampled.features)
                else:
                    candidates = Candidates(*(th.cat(pair, dim=1) for pair in zip(prior, sampled, strict=True)))
                    if prior_costs is None:  # the first iteration scores the prior with the samples, then keeps it
                        costs = objective(candidates.features)
                        prior_costs = costs[:, : prior.features.shape[1]]
                    else:
                        costs = th.cat([prior_costs, objective(sampled.features)], dim=1)
                distribution = self.refit(distribution, candidates.samples, weigh(costs))
                # The cheapest sequence seen so far is the plan (the distribution's mean may not have been scored)
                cheapest = costs.argmin(dim=1)
                actions, cost = candidates.actions[rows, cheapest], costs[rows, cheapest]
                if best_actions is None or best_cost is None:
                    best_actions, best_cost = actions, cost
                else:
                    better = cost < best_cost
                    best_actions = th.where(better.reshape((-1,) + (1,) * (actions.dim() - 1)), actions, best_actions)
                    best_cost = th.where(better, cost, best_cost)
        assert best_actions is not None
        # The next search starts around the plan returned (Box: its actions as the mean; discrete: the refit)
        return best_actions, (best_actions.reshape(batch, self.horizon, -1) if self.box else distribution)

    # -- gradient descent -------------------------------------------------------------------------------------------

    def grad(
        self, objective: Objective, batch: int, warm: Any, fresh: th.Tensor, prior: Candidates | None
    ) -> tuple[th.Tensor, Any]:
        """
        Adam on unconstrained parameters of ``n_samples`` sequences per problem (plus one per prior candidate, which
        starts there): Box actions are ``center + half_range * tanh(u)``; discrete ones ``softmax(u)`` per step
        (relaxed one-hot), made hard (argmax) at the end. Every start is scored on the actions it returns; the
        cheapest wins. The warm start is start 0. Only ``u`` gets a gradient: nothing is left in the world model's
        ``.grad``.
        """
        n = self.options["n_samples"]
        width = sum(self._categories) if not self.box else int(self.low.shape[0])
        u = th.randn((batch, n, self.horizon, width), generator=self.generator, device=self.device)
        if self.box:
            center, half = (self.low + self.high) / 2, (self.high - self.low) / 2

        def parameters_of(features: th.Tensor) -> th.Tensor:
            """The ``u`` whose features are (near) the given ones"""
            if self.box:
                return th.atanh(((features - center) / half).clamp(-0.999, 0.999))
            return 3.0 * features  # one-hot -> logits whose softmax is 0.87 on the chosen category (of 9)

        if warm is not None:
            u[:, 0] = th.where((~fresh).reshape(-1, 1, 1), parameters_of(warm) if self.box else warm, u[:, 0])
        if prior is not None:
            u = th.cat([u, parameters_of(prior.features)], dim=1)
        u.requires_grad_(True)
        optimizer = th.optim.Adam([u], lr=self.options["lr"])

        def features_of(u: th.Tensor) -> th.Tensor:
            if self.box:
                return center + half * th.tanh(u)
            return th.cat([th.softmax(part, dim=-1) for part in u.split(self._categories, dim=-1)], dim=-1)

        for _ in range(self.options["n_iterations"]):
            optimizer.zero_grad()
            # autograd.grad, not backward(): the world model's parameters accumulate no .grad
            (u.grad,) = th.autograd.grad(objective(features_of(u)).sum(), [u])
            optimizer.step()
        with th.no_grad():
            if self.box:
                features = center + half * th.tanh(u)
                actions = features.reshape(*features.shape[:3], *self.action_space.shape)
            else:
                indices = th.stack([part.argmax(dim=-1) for part in u.split(self._categories, dim=-1)], dim=-1)
                features = self.one_hot(indices)
                actions = self.to_actions(indices)
            cheapest = objective(features).argmin(dim=1)
            rows = th.arange(batch, device=self.device)
            warm_next = features[rows, cheapest] if self.box else u.detach()[rows, cheapest]
        return actions[rows, cheapest], warm_next

    # -- exhaustive -------------------------------------------------------------------------------------------------

    def exhaustive(self, objective: Objective, batch: int) -> th.Tensor:
        """Every sequence (in lexicographic order; ties go to the first), scored in chunks of ``chunk_size``"""
        choices = int(np.prod(self._categories))
        total = choices**self.horizon
        if total > self.options["max_sequences"]:
            raise ValueError(
                f"method 'exhaustive' would score {choices}^{self.horizon} = {total} sequences, more than "
                f"max_sequences={self.options['max_sequences']}: lower the horizon or use cem/mppi"
            )
        best_cost = th.full((batch,), th.inf, device=self.device)
        best_index = th.zeros(batch, dtype=th.long, device=self.device)
        with th.no_grad():
            for first in range(0, total, self.options["chunk_size"]):
                index = th.arange(first, min(total, first + self.options["chunk_size"]), device=self.device)
                indices = sequence_digits(index, self.horizon, self._categories)  # (chunk, horizon, n_dims)
                features = self.one_hot(indices)
                costs = objective(features.expand(batch, *features.shape))
                chunk_cost, chunk_best = costs.min(dim=1)
                better = chunk_cost < best_cost
                best_cost = th.where(better, chunk_cost, best_cost)
                best_index = th.where(better, index[chunk_best], best_index)
        return self.to_actions(sequence_digits(best_index, self.horizon, self._categories))


def shift(warm: Any, played: int) -> Any:
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


def sequence_digits(index: th.Tensor, horizon: int, categories: list[int]) -> th.Tensor:
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
