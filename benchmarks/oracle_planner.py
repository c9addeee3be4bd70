"""
Issue 17's ceiling, measured: what would the policy-prior planner reach with a *perfect* world model? The planner
that picks among the policy's own sampled trajectories (``--options n_samples:1 n_elites:1 n_iterations:1
--replan-every 1``, "prior only" in docs/results/planning.md) is replayed with ``W`` and ``R`` replaced by the
environment itself: each candidate is the actor's trajectory played in a copy of the environment (the actor on the
true observations; candidate 0 takes the mode, the others sample, as
:meth:`~sb3_jepa.planning.LatentPlanner.prior_candidates` does), and the candidates are scored

- ``oracle_return``: by the true return estimate ``sum_{t<H} gamma^t r_t + gamma^H V(E(s_H))`` (the environment's
  rewards; the critic on the true last observation, 0 once the goal is reached), as ``value_estimate="return"``
  scores ``W``'s latents;
- ``oracle_distance``: by the latent distance cost ``sum_t ||E(s_t) - E(goal)||^2`` on the true observations' embeddings
  (in the space ``W`` was trained to predict in, :meth:`~sb3_jepa.planning.world_model.WorldModel.compared`), as
  the distance planner scores ``W``'s latents;

and the first action of the best is taken, at every step. Beside them, on the same pairs and seeds:

- ``model_return`` and ``model_distance``: the same search through the model itself
  (:class:`~sb3_jepa.planning.LatentPlanner` with ``prior="policy"``, one CEM iteration of one sample and one elite,
  replanning every step, and the score alone: ``distance_weight=0`` with the return, ``value_weight=0`` with the
  distance). The one candidate CEM adds beside the policy's is the only difference from the oracle's candidates: its
  one "sample" is the search distribution's most likely sequence, which after the first step is the warm start (the
  previous plan shifted by one step), so the model's search may also keep its last plan;
- ``stochastic``: the policy itself (SB3's ``predict``, reseeded per pair as the evaluation does: it reproduces the
  evaluation's figure).

If the oracle beats the stochastic policy, a better ``W`` is the way to a planner that adds to the policy; if it
does not, no world model can make this controller do so with these scores.

    python -m benchmarks.oracle_planner runs/study17r jepa_rl/seed3 rl_only/seed3 --pairs 100
    python -m benchmarks.oracle_planner runs/study17r jepa_rl/seed3 --horizon 3 --controllers model_return oracle_return

(the runs are folders of a ``python -m sb3_jepa.study run`` output holding ``zoo/model.zip``; the result of
2026-12-04 is in docs/results/planning.md)
"""

import argparse
import copy
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th

import sb3_jepa  # noqa: F401  (registers the environments)
from benchmarks import study_runs
from benchmarks.study_runs import ENV_ID
from sb3_jepa.common.utils import check_choice
from sb3_jepa.planning import LatentPlanner
from sb3_jepa.planning.evaluate import Controller, PlanningSettings, make_pairs, model_controllers, play
from sb3_jepa.planning.world_model import WorldModel

#: The scores an oracle controller can rank its candidates by
SCORES = ("return", "distance")
#: The controllers, in the order they are played
CONTROLLERS = ("stochastic", *(f"{kind}_{score}" for kind in ("oracle", "model") for score in SCORES))


def oracle_controller(model: Any, env: gym.Env, score: str, n_candidates: int = 24, horizon: int = 12) -> Controller:
    """
    The policy-prior planner with the environment as its world model (see the module).

    :param model: a trained PPOJEPA/A2CJEPA model whose critic reads ``z`` (a shared encoder)
    :param env: the environment the episodes run in (its unwrapped state is copied at every step)
    :param score: one of :data:`SCORES`
    :param n_candidates: the actor's trajectories per step (candidate 0 takes the mode)
    :param horizon: their length
    :return: the controller ``oracle_<score>``
    """
    check_choice("score", score, SCORES)
    world = WorldModel(model.policy, jepa_loss=getattr(model, "jepa_loss", "mse"))
    if score == "return":
        world.check_V()
    gamma, generator = float(model.gamma), th.Generator()
    greedy = th.arange(n_candidates) == 0

    def encode(observations: np.ndarray) -> th.Tensor:
        return world.encode(model.policy.obs_to_tensor(observations)[0])

    def act(obs: np.ndarray, goal_obs: np.ndarray) -> int:
        sims = [copy.deepcopy(env.unwrapped) for _ in range(n_candidates)]
        current = np.repeat(obs[None], n_candidates, axis=0)
        alive = np.ones(n_candidates, dtype=bool)
        returns, distances = np.zeros(n_candidates), np.zeros(n_candidates)
        with th.no_grad(), world.eval_mode():
            goal = world.compared(world.target(model.policy.obs_to_tensor(goal_obs)[0]))
            first = None
            z = encode(obs[None]).expand(n_candidates, -1)  # every candidate starts from the same observation
            for t in range(horizon):
                actions = world.pi(z, generator, deterministic=greedy).numpy()
                first = actions if first is None else first
                for i in np.flatnonzero(alive):
                    current[i], reward, terminated, _, _ = sims[i].step(int(actions[i]))
                    returns[i] += gamma**t * float(reward)
                    alive[i] = not terminated
                z = encode(current)
                if score == "distance":  # a candidate that reached the goal stays on its last observation
                    target = z if not world.ema else world.target(model.policy.obs_to_tensor(current)[0])
                    distances += (world.compared(target) - goal).pow(2).sum(dim=-1).numpy()
            if score == "return":
                returns += gamma**horizon * np.where(alive, world.V(z).numpy(), 0.0)
        assert first is not None
        best = int(np.argmax(returns)) if score == "return" else int(np.argmin(distances))
        return int(first[best])

    def start(seed: int) -> None:
        generator.manual_seed(seed)

    return Controller(f"oracle_{score}", act, start)


def model_controller(model: Any, score: str, n_candidates: int = 24, horizon: int = 12) -> Controller:
    """
    The same search through the model's own ``W`` (and ``R``, ``V`` on its latents): the planner picks among the
    actor's trajectories through ``W`` (see the module).

    :param model: a trained PPOJEPA/A2CJEPA model (with a reward predictor for ``score="return"``)
    :param score: one of :data:`SCORES`
    :param n_candidates: the actor's trajectories per step (candidate 0 takes the mode)
    :param horizon: their length
    :return: the controller ``model_<score>``
    """
    by_return = check_choice("score", score, SCORES) == "return"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*predictor W never learned.*")  # rl_only: the floor, on purpose
        planner = LatentPlanner(
            model, horizon=horizon, replan_every=1, prior="policy", n_prior_samples=n_candidates,
            value_estimate="return", n_samples=1, n_elites=1, n_iterations=1,
            value_weight=float(by_return), distance_weight=float(not by_return),
        )  # fmt: skip

    def start(seed: int) -> None:
        planner.reset(seed=seed)
        th.manual_seed(seed)

    return Controller(f"model_{score}", lambda obs, goal_obs: planner.predict(obs, goal_obs)[0], start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    study_runs.add_arguments(parser)
    parser.add_argument("--candidates", type=int, default=24, help="the actor's trajectories per step (>= 1)")
    parser.add_argument("--horizon", type=int, default=12, help="their length (>= 1)")
    parser.add_argument("--max-steps", type=int, default=100, help="the episode length (the evaluation's)")
    parser.add_argument("--controllers", nargs="+", choices=CONTROLLERS, default=list(CONTROLLERS))
    args = parser.parse_args(argv)
    if args.pairs < 1 or args.candidates < 1 or args.horizon < 1 or args.max_steps < 1:
        parser.error("--pairs, --candidates, --horizon and --max-steps must be >= 1")
    th.set_num_threads(1)
    pairs = make_pairs(ENV_ID, args.pairs, seed=0)  # the evaluation's pairs (pair seed 0)
    print(f"{ENV_ID}, {args.pairs} pairs, {args.candidates} candidates of {args.horizon} steps, replanned every step")
    print("run | controller | success | same room | cross room | ms/step")
    for run in args.runs:
        model = study_runs.load(args.study, run)
        env = gym.make(ENV_ID)
        for name in args.controllers:
            kind, _, score = name.partition("_")
            if kind == "oracle":
                controller = oracle_controller(model, env, score, args.candidates, args.horizon)
            elif kind == "model":
                controller = model_controller(model, score, args.candidates, args.horizon)
            else:  # the evaluation's own stochastic controller, reseeded per pair as there
                (controller,) = model_controllers(model, PlanningSettings(env_id=ENV_ID), names=("stochastic",))
            rows = play(controller, env, pairs, list(range(len(pairs))), args.max_steps, pair_seed=0)
            success = np.array([row["success"] for row in rows], dtype=float)
            cross = np.array([row["cross_room"] for row in rows])
            ms = 1000 * sum(row["planning_time_s"] for row in rows) / sum(row["steps"] for row in rows)
            print(
                f"{run} | {controller.name} | {success.mean():.0%} | {success[~cross].mean():.0%} "
                f"| {success[cross].mean() if cross.any() else float('nan'):.0%} | {ms:.1f}",
                flush=True,
            )
        env.close()


if __name__ == "__main__":
    main()
