"""
A numeric check of the paper's Propositions 1 and 2 on small tabular MDPs, computed exactly (no sampling).

Setting (Sections 4-5 of the paper): a tabular encoder ``Z[s] = E(s)`` in ``R^d``, a single linear policy head
``pi(a|s) = softmax(W Z[s] + b)``, an action-conditioned linear world model ``W_psi(z, a) = M_a z + c_a``, and::

    J = J_PG + lam * J_JEPA,   J_PG = -mu^T V^pi,
    J_JEPA = sum_s rho(s) sum_a pi(a|s) sum_s' P(s'|s, a) ||W_psi(Z[s], a) - Z[s']||^2,

with ``rho = mu^T (I - gamma P_pi)^-1`` the discounted state visitation (the discounted analogue of the paper's
sum over the steps of an episode).

:func:`check_proposition_1` starts from a fully collapsed encoder (``Z[s] = z_d`` for every state), builds the
paper's perturbation (a unit ``u`` in ``ker W`` orthogonal to ``z_d``; ``Z[s_D] += eps u``; ``W += k e_{a_D} u^T``)
and measures ``Delta J`` for a range of ``eps``. :func:`check_proposition_2` does the same for two collapsed states
among distinct ones, with the paper's compensated tweak ``k e_{a_D} (u + v)^T``. Both report where the proof's
dimension condition fails (``d - rank(W) < 2`` for Proposition 1): then no valid ``u`` exists.

Two findings, made explicit here:

- The JEPA loss is an expectation under the policy, so the policy tweak changes it at first order too:
  ``J = J_PG + lam J_JEPA`` is exactly ``-mu^T V`` for the reward ``R - lam g`` with ``g(s, a)`` the expected
  prediction error. The proof's first-order gain therefore needs a positive advantage for that *combined* reward,
  not for ``R`` alone. With ``(s_D, a_D)`` chosen by the RL advantage (as written in the paper), ``Delta J`` can
  be positive; chosen by the combined advantage, the argument goes through. ``choose=`` selects either.
- Moving ``Z[s_D]`` also moves the *target* of every transition into ``s_D``. The paper's bound (its Eq. 4-5)
  counts only the predictions made from ``s_D``; the target side adds another ``O(eps)`` term bounded the same way
  (``2 e eps`` per transition), so the constant becomes ``C = 2 E_max (L m_from + m_into)``.

:class:`PerturbationResult` reports the measured changes, the encoder-only part of the JEPA change (policy fixed,
the part the paper bounds) and both constants.

    python -m sb3_jepa.theory          # prints both checks on a random MDP
"""

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class TabularMDP:
    """
    :param transitions: ``P[s, a, s']``
    :param rewards: ``R[s, a]``
    :param gamma: discount factor
    :param initial: initial state distribution ``mu``
    """

    transitions: np.ndarray
    rewards: np.ndarray
    gamma: float
    initial: np.ndarray

    @property
    def n_states(self) -> int:
        return self.transitions.shape[0]

    @property
    def n_actions(self) -> int:
        return self.transitions.shape[1]


def random_mdp(n_states: int = 6, n_actions: int = 3, gamma: float = 0.9, seed: int = 0) -> TabularMDP:
    """
    :param n_states: number of states
    :param n_actions: number of actions
    :param gamma: discount factor
    :param seed: random seed
    :return: an MDP with Dirichlet transitions, uniform rewards in [0, 1] and a uniform initial distribution
    """
    rng = np.random.default_rng(seed)
    transitions = rng.dirichlet(np.ones(n_states), size=(n_states, n_actions))
    return TabularMDP(transitions, rng.uniform(size=(n_states, n_actions)), gamma, np.full(n_states, 1.0 / n_states))


@dataclass
class Model:
    """
    :param embeddings: ``Z[s]``, shape ``(n_states, d)``
    :param head: the policy head's weights ``W``, shape ``(n_actions, d)``
    :param bias: the policy head's bias ``b``, shape ``(n_actions,)``
    :param dynamics: the world model's ``M_a``, shape ``(n_actions, d, d)``
    :param offsets: the world model's ``c_a``, shape ``(n_actions, d)``
    """

    embeddings: np.ndarray
    head: np.ndarray
    bias: np.ndarray
    dynamics: np.ndarray
    offsets: np.ndarray

    def policy(self) -> np.ndarray:
        """:return: ``pi[s, a]``"""
        logits = self.embeddings @ self.head.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)

    def predictions(self) -> np.ndarray:
        """:return: ``W_psi(Z[s], a)``, shape ``(n_states, n_actions, d)``"""
        return np.einsum("aij,sj->sai", self.dynamics, self.embeddings) + self.offsets[None]


def evaluate(
    mdp: TabularMDP, policy: np.ndarray, rewards: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    :param mdp: the MDP
    :param policy: ``pi[s, a]``
    :param rewards: ``R[s, a]`` to use instead of the MDP's
    :return: ``V[s]``, ``Q[s, a]`` and the discounted visitation ``rho[s]`` (summing to ``1 / (1 - gamma)``)
    """
    rewards = mdp.rewards if rewards is None else rewards
    p_pi = np.einsum("sa,sat->st", policy, mdp.transitions)
    inverse = np.linalg.inv(np.eye(mdp.n_states) - mdp.gamma * p_pi)
    values = inverse @ np.einsum("sa,sa->s", policy, rewards)
    q_values = rewards + mdp.gamma * mdp.transitions @ values
    return values, q_values, mdp.initial @ inverse


def prediction_costs(mdp: TabularMDP, model: Model) -> np.ndarray:
    """
    :param mdp: the MDP
    :param model: the model
    :return: ``g[s, a] = sum_s' P(s'|s, a) ||W_psi(Z[s], a) - Z[s']||^2``: ``J_JEPA = sum_s rho(s) sum_a pi g``
    """
    errors = model.predictions()[:, :, None, :] - model.embeddings[None, None, :, :]
    return np.einsum("sat,sat->sa", mdp.transitions, (errors**2).sum(axis=-1))


def losses(mdp: TabularMDP, model: Model) -> tuple[float, float]:
    """
    :param mdp: the MDP
    :param model: encoder, policy head and world model
    :return: ``J_PG`` and ``J_JEPA``
    """
    policy = model.policy()
    values, _, visitation = evaluate(mdp, policy)
    jepa = np.einsum("s,sa,sa->", visitation, policy, prediction_costs(mdp, model))
    return float(-mdp.initial @ values), float(jepa)


def null_directions(*rows: np.ndarray, tol: float = 1e-10) -> np.ndarray:
    """
    :param rows: matrices (or vectors) whose rows the directions must be orthogonal to
    :param tol: singular values below ``tol`` count as zero
    :return: an orthonormal basis (as columns) of the vectors orthogonal to every given row; shape ``(d, k)``
    """
    stacked = np.vstack([np.atleast_2d(r) for r in rows])
    _, singular, vt = np.linalg.svd(stacked)
    rank = int((singular > tol).sum())
    return vt[rank:].T


@dataclass
class PerturbationResult:
    """What a check measured. ``applicable`` is False when the proof's dimension condition fails."""

    applicable: bool
    reason: str
    d: int
    rank_head: int
    #: how ``(s_D, a_D)`` was chosen: ``"rl"`` (the paper's RL advantage) or ``"combined"`` (reward - lam * g)
    choice: str = "combined"
    state: int = -1
    action: int = -1
    #: advantages of ``(s_D, a_D)`` under the collapsed policy: for the reward, and for the combined reward
    rl_advantage: float = 0.0
    combined_advantage: float = 0.0
    k: float = 0.0
    #: ``rho(s_D) p_{a_D} A_combined(s_D, a_D)`` (times ``w^T u`` in Proposition 2): ``J`` falls by about ``k1 k eps``
    k1: float = 0.0
    #: the paper's JEPA constant ``2 m L E_max`` (prediction side only)
    c_paper: float = 0.0
    #: the JEPA constant once the target side is counted too: ``2 E_max (L m_from + m_into)``
    c_full: float = 0.0
    eps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    delta_pg: np.ndarray = field(default_factory=lambda: np.zeros(0))
    delta_jepa: np.ndarray = field(default_factory=lambda: np.zeros(0))
    delta_total: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: ``lam * Delta J_JEPA`` with the policy head left as it was: the part the paper's bound is about
    delta_jepa_encoder_only: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: largest change of any logit of a state other than ``s_D`` (0 up to rounding if the tweak isolates ``s_D``)
    other_logit_change: float = 0.0
    #: change of the logit of ``(s_D, a_D)`` divided by ``eps`` (``k``, or ``k w^T u`` in Proposition 2)
    logit_gain_per_eps: float = 0.0

    @classmethod
    def not_applicable(cls, reason: str, *, d: int, rank_head: int, choice: str) -> "PerturbationResult":
        """
        :param reason: why the proof's condition fails
        :param d: the embedding dimension
        :param rank_head: ``rank(W)``
        :param choice: how ``(s_D, a_D)`` was to be chosen
        :return: a result saying the check does not apply, and why
        """
        return cls(applicable=False, reason=reason, d=d, rank_head=rank_head, choice=choice)


def _perturb(
    mdp: TabularMDP,
    model: Model,
    state: int,
    action: int,
    u: np.ndarray,
    tweak: np.ndarray,
    k: float,
    lam: float,
    eps_values: np.ndarray,
    result: PerturbationResult,
) -> PerturbationResult:
    base_pg, base_jepa = losses(mdp, model)
    delta_pg, delta_jepa, encoder_only, other_changes, gains = [], [], [], [], []
    base_logits = model.embeddings @ model.head.T
    for eps in eps_values:
        moved = Model(model.embeddings.copy(), model.head + k * np.outer(np.eye(mdp.n_actions)[action], tweak), model.bias,
                      model.dynamics, model.offsets)  # fmt: skip
        moved.embeddings[state] += eps * u
        pg, jepa = losses(mdp, moved)
        delta_pg.append(pg - base_pg)
        delta_jepa.append(jepa - base_jepa)
        # The same encoder move, policy head untouched: (the moved state's logits change, so fix the policy too)
        fixed_policy = model.policy()
        costs = prediction_costs(mdp, Model(moved.embeddings, model.head, model.bias, model.dynamics, model.offsets))
        _, _, visitation = evaluate(mdp, fixed_policy)
        encoder_only.append(float(np.einsum("s,sa,sa->", visitation, fixed_policy, costs)) - base_jepa)
        logits = moved.embeddings @ moved.head.T
        change = np.abs(logits - base_logits)
        other_changes.append(np.delete(change, state, axis=0).max())
        gains.append((logits[state, action] - base_logits[state, action]) / eps)
    result.eps = eps_values
    result.delta_pg = np.array(delta_pg)
    result.delta_jepa = lam * np.array(delta_jepa)
    result.delta_total = result.delta_pg + result.delta_jepa
    result.delta_jepa_encoder_only = lam * np.array(encoder_only)
    result.other_logit_change = float(max(other_changes))
    result.logit_gain_per_eps = float(np.mean(gains))
    return result


def _jepa_constants(mdp: TabularMDP, model: Model, state: int, lam: float) -> tuple[float, float]:
    """The paper's JEPA constant (prediction side) and the full one (both sides), times ``lam``."""
    policy = model.policy()
    _, _, visitation = evaluate(mdp, policy)
    errors = model.predictions()[:, :, None, :] - model.embeddings[None, None, :, :]
    e_max = float(np.sqrt((errors**2).sum(axis=-1)).max())
    lipschitz = max(float(np.linalg.norm(m, 2)) for m in model.dynamics)
    # Expected (discounted) number of transitions made from s_D, and into s_D
    m_from = float(visitation[state])
    m_into = float(np.einsum("s,sa,sa->", visitation, policy, mdp.transitions[:, :, state]))
    return lam * 2 * m_from * lipschitz * e_max, lam * 2 * e_max * (lipschitz * m_from + m_into)


def _advantages(mdp: TabularMDP, model: Model, lam: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The policy, the visitation, and the advantages of the reward and of the combined reward ``R - lam g``."""
    policy = model.policy()
    values, q_values, visitation = evaluate(mdp, policy)
    combined_values, combined_q, _ = evaluate(mdp, policy, mdp.rewards - lam * prediction_costs(mdp, model))
    return policy, visitation, q_values - values[:, None], combined_q - combined_values[:, None]


def collapsed_model(mdp: TabularMDP, d: int, rank_head: int, seed: int = 0) -> Model:
    """
    A fully collapsed encoder with a random policy head of the given rank and a random world model whose
    prediction error at ``z_d`` is not zero (so the JEPA side of the argument is not trivial).

    :param mdp: the MDP
    :param d: embedding size
    :param rank_head: rank of the policy head ``W`` (at most ``min(n_actions, d)``)
    :param seed: random seed
    :return: the model
    """
    rng = np.random.default_rng(seed + 1)
    z_d = rng.normal(size=d)
    head = rng.normal(size=(mdp.n_actions, rank_head)) @ rng.normal(size=(rank_head, d))
    dynamics = 0.5 * rng.normal(size=(mdp.n_actions, d, d)) / np.sqrt(d)
    offsets = rng.normal(size=(mdp.n_actions, d))
    return Model(np.tile(z_d, (mdp.n_states, 1)), head, rng.normal(size=mdp.n_actions), dynamics, offsets)


def _start_check(
    model: Model,
    choose: str,
    eps_values: np.ndarray | None,
    is_collapsed: Callable[[np.ndarray], bool],
    not_collapsed: str,
) -> tuple[np.ndarray, int, int, np.ndarray]:
    """
    The steps both checks start with: validate the arguments, then find where the proofs' direction ``u`` may lie.

    :param model: the model to perturb; ``Z[0]`` is the collapsed embedding ``z_d``
    :param choose: how ``(s_D, a_D)`` will be chosen: ``"rl"`` or ``"combined"``
    :param eps_values: the perturbation sizes, or None for ``logspace(-6, -2, 9)``
    :param is_collapsed: whether the embeddings have the collapse the proposition starts from
    :param not_collapsed: the error message when they do not
    :return: the perturbation sizes, ``d``, ``rank(W)`` and an orthonormal basis (as columns) of ``U``, ``ker W``
        intersected with ``z_d``'s orthogonal complement: shape ``(d, dim U)``
    """
    if choose not in ("rl", "combined"):
        raise ValueError(f"choose must be 'rl' or 'combined', got {choose!r}")
    if not is_collapsed(model.embeddings):
        raise ValueError(not_collapsed)
    eps_values = np.logspace(-6, -2, 9) if eps_values is None else np.asarray(eps_values, dtype=float)
    z_d = model.embeddings[0]
    # u must leave every logit unchanged (u in ker W) and be a new direction for the encoder (u orthogonal to z_d)
    candidates = null_directions(model.head, z_d)
    return eps_values, z_d.shape[0], int(np.linalg.matrix_rank(model.head)), candidates


def check_proposition_1(
    mdp: TabularMDP,
    model: Model,
    lam: float = 1.0,
    eps_values: np.ndarray | None = None,
    k_margin: float = 2.0,
    choose: str = "combined",
) -> PerturbationResult:
    """
    Proposition 1 on a fully collapsed model: build the perturbation and measure ``Delta J``.

    :param mdp: the MDP
    :param model: a model whose embeddings are all equal (``z_d``)
    :param lam: the JEPA loss weight
    :param eps_values: the perturbation sizes
    :param k_margin: ``k = k_margin * 2 C / |k1|`` with the full JEPA constant ``C`` (the paper asks ``k > 2C / k1``)
    :param choose: pick ``(s_D, a_D)`` by the ``"rl"`` advantage (the paper) or the ``"combined"`` one
    :return: the measurements
    """
    eps_values, d, rank_head, directions = _start_check(
        model,
        choose,
        eps_values,
        lambda embeddings: np.allclose(embeddings, embeddings[0]),
        "Proposition 1 starts from a fully collapsed encoder: every embedding must be equal",
    )
    if directions.shape[1] == 0:
        return PerturbationResult.not_applicable(
            f"ker W has dimension {d - rank_head} (needs >= 2 to meet z_d's orthogonal hyperplane): no u exists",
            d=d,
            rank_head=rank_head,
            choice=choose,
        )
    u = directions[:, 0]
    policy, visitation, rl_advantage, combined_advantage = _advantages(mdp, model, lam)
    # Assumption 1: some (s_D, a_D) with a positive advantage under the collapsed policy; take the largest effect
    advantage = combined_advantage if choose == "combined" else rl_advantage
    score = visitation[:, None] * policy * advantage
    state, action = (int(i) for i in np.unravel_index(np.argmax(score), score.shape))
    if advantage[state, action] <= 0:
        return PerturbationResult.not_applicable(
            f"no action has a positive {choose} advantage (assumption 1 fails)",
            d=d,
            rank_head=rank_head,
            choice=choose,
        )
    # The first-order gain of the whole objective: the combined advantage, whatever the choice
    k1 = float(visitation[state] * policy[state, action] * combined_advantage[state, action])
    c_paper, c_full = _jepa_constants(mdp, model, state, lam)
    k = k_margin * 2 * c_full / abs(k1) + 1e-3
    result = PerturbationResult(
        applicable=True,
        reason="",
        d=d,
        rank_head=rank_head,
        choice=choose,
        state=state,
        action=action,
        rl_advantage=float(rl_advantage[state, action]),
        combined_advantage=float(combined_advantage[state, action]),
        k=k,
        k1=k1,
        c_paper=c_paper,
        c_full=c_full,
    )
    return _perturb(mdp, model, state, action, u, u, k, lam, eps_values, result)


def partially_collapsed_model(mdp: TabularMDP, d: int, seed: int = 0) -> Model:
    """
    States 0 and 1 share one embedding; the others have distinct random embeddings.

    :param mdp: the MDP
    :param d: embedding size (Proposition 2 needs ``d >= n_states - 1 + n_actions + 2`` for its slack assumption)
    :param seed: random seed
    :return: the model
    """
    model = collapsed_model(mdp, d, min(mdp.n_actions, d), seed)
    rng = np.random.default_rng(seed + 2)
    model.embeddings = rng.normal(size=(mdp.n_states, d))
    model.embeddings[1] = model.embeddings[0]
    return model


def check_proposition_2(
    mdp: TabularMDP,
    model: Model,
    lam: float = 1.0,
    eps_values: np.ndarray | None = None,
    k_margin: float = 2.0,
    choose: str = "combined",
) -> PerturbationResult:
    """
    Proposition 2: states 0 and 1 collapsed (``Z[0] = Z[1] = z_d``); move state 0 only, with the tweak
    ``k e_{a_D} (u + v)^T`` that leaves every other state's logits unchanged.

    :param mdp: the MDP
    :param model: a model with ``Z[0] == Z[1]``
    :param lam: the JEPA loss weight
    :param eps_values: the perturbation sizes
    :param k_margin: ``k = k_margin * 2 C / |k1'|``
    :param choose: pick ``a_D`` by the ``"rl"`` advantage (the paper) or the ``"combined"`` one
    :return: the measurements
    """
    # candidates: a basis of U = ker W  intersected with  z_d's orthogonal complement
    eps_values, d, rank_head, candidates = _start_check(
        model,
        choose,
        eps_values,
        lambda embeddings: np.allclose(embeddings[0], embeddings[1]),
        "Proposition 2 needs states 0 and 1 to share their embedding",
    )
    others = model.embeddings[1:]
    span_dim = int(np.linalg.matrix_rank(others))
    complement = null_directions(others)  # N = span(P)'s orthogonal complement
    # u in U but not in span(P): U's component outside span(P) must not vanish
    projections = complement @ complement.T @ candidates if candidates.size and complement.size else np.zeros((d, 0))
    usable = np.linalg.norm(projections, axis=0) > 1e-8 if projections.size else np.zeros(0, dtype=bool)
    if candidates.shape[1] == 0 or complement.shape[1] == 0 or not usable.any():
        return PerturbationResult.not_applicable(
            f"no u in ker W, orthogonal to z_d and outside span(P) (dim U = {candidates.shape[1]}, "
            f"dim span(P) = {span_dim}, d = {d})",
            d=d,
            rank_head=rank_head,
            choice=choose,
        )
    u = candidates[:, int(np.argmax(usable))]
    u /= np.linalg.norm(u)
    w = complement @ (complement.T @ u)  # the component of u in N: w^T u = |w|^2 > 0
    v = -u + w
    gain = float(w @ u)  # 1 + v^T u
    policy, visitation, rl_advantage, combined_advantage = _advantages(mdp, model, lam)
    advantage = (combined_advantage if choose == "combined" else rl_advantage)[0]
    action = int(np.argmax(policy[0] * advantage))
    if advantage[action] <= 0:
        return PerturbationResult.not_applicable(
            f"no action has a positive {choose} advantage in the collapsed state",
            d=d,
            rank_head=rank_head,
            choice=choose,
        )
    k1 = float(visitation[0] * policy[0, action] * combined_advantage[0, action] * gain)
    c_paper, c_full = _jepa_constants(mdp, model, 0, lam)
    k = k_margin * 2 * c_full / abs(k1) + 1e-3
    result = PerturbationResult(
        applicable=True,
        reason="",
        d=d,
        rank_head=rank_head,
        choice=choose,
        state=0,
        action=action,
        rl_advantage=float(rl_advantage[0, action]),
        combined_advantage=float(combined_advantage[0, action]),
        k=k,
        k1=k1,
        c_paper=c_paper,
        c_full=c_full,
    )
    return _perturb(mdp, model, 0, action, u, u + v, k, lam, eps_values, result)


def _print(title: str, result: PerturbationResult) -> None:
    print(f"\n{title}: d={result.d}, rank(W)={result.rank_head}")
    if not result.applicable:
        print(f"  not applicable: {result.reason}")
        return
    print(f"  (s_D, a_D)=({result.state}, {result.action}) chosen by the {result.choice} advantage: "
          f"RL advantage {result.rl_advantage:.4g}, combined advantage {result.combined_advantage:.4g}")  # fmt: skip
    print(f"  k1={result.k1:.4g}, C (paper)={result.c_paper:.4g}, C (both sides)={result.c_full:.4g}, k={result.k:.4g}")
    print(f"  other states' logits moved by at most {result.other_logit_change:.2e}; "
          f"logit gain per eps at (s_D, a_D) = {result.logit_gain_per_eps:.4g}")  # fmt: skip
    print(f"  {'eps':>9} {'dJ_PG':>12} {'lam dJ_JEPA':>12} {'(encoder)':>12} {'dJ':>12} {'-k1 k eps':>12}")
    rows = zip(result.eps, result.delta_pg, result.delta_jepa, result.delta_jepa_encoder_only, result.delta_total, strict=True)
    for eps, pg, jepa, encoder, total in rows:
        print(f"  {eps:9.1e} {pg:12.4e} {jepa:12.4e} {encoder:12.4e} {total:12.4e} {-result.k1 * result.k * eps:12.4e}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--states", type=int, default=6)
    parser.add_argument("--actions", type=int, default=3)
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--lam", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if min(args.states, args.actions, args.dim) < 2 or args.lam < 0:
        parser.error("--states, --actions and --dim must be >= 2, --lam >= 0")
    mdp = random_mdp(args.states, args.actions, seed=args.seed)
    rank = min(args.actions, args.dim)
    collapsed = collapsed_model(mdp, args.dim, rank, args.seed)
    for choose in ("rl", "combined"):
        _print(
            f"Proposition 1 (full collapse), {choose} advantage", check_proposition_1(mdp, collapsed, args.lam, choose=choose)
        )
    _print(
        "Proposition 1 with d - rank(W) = 1 (the condition fails)",
        check_proposition_1(mdp, collapsed_model(mdp, rank + 1, rank, args.seed), args.lam),
    )
    partial = partially_collapsed_model(mdp, args.states - 1 + args.actions + 2, args.seed)
    for choose in ("rl", "combined"):
        _print(
            f"Proposition 2 (two of {args.states} states collapsed), {choose} advantage",
            check_proposition_2(mdp, partial, args.lam, choose=choose),
        )


if __name__ == "__main__":
    main()
