"""
Issue 17's control for the world model: is the planner limited by how well ``W`` fits? For each model, ``W`` alone is
fitted again, to convergence, on the trained encoder ``E`` (frozen), from transitions of the model's own stochastic
policy, and the evaluation's planners are run with it. Printed per model:

- the held-out one-step error of ``W`` as trained, of the refitted ``W``, and of the "no change" predictor
  (``z_{t+1} = z_t``), each as squared error over the embeddings' total variance, in the space ``W`` predicts in
  (:meth:`WorldModel.target`; for models trained with the squared loss and no projection head, as the planning
  report's are, the space the evaluation compares in);
- the success of each controller on the evaluation's pairs (pair seed 0, the evaluation's default planner settings
  unless given) with the refitted ``W``, to set beside the evaluation's own row for the model.

If the refitted ``W`` plans no better, the planner's shortfall is not ``W``'s fit.

Options for the fit: ``--arch`` fits a fresh residual ``W`` with these hidden widths instead of the trained one;
``--value-coef`` adds ``beta * (V(W(z_t, a_t)) - V(z_{t+1}))^2`` to its loss (the critic frozen), so that ``W`` is
accurate where the critic reads it, as TD-MPC2 trains its dynamics through the value and reward losses. The
controllers may also be :mod:`benchmarks.oracle_planner`'s ``model_return`` and ``model_distance`` (the policy's own
samples through ``W``, replanned every step; ``--horizon``).

    python -m benchmarks.predictor_refit runs/study17r jepa_rl/seed3 jepa_rl/seed4 --value-weight 10
    python -m benchmarks.predictor_refit runs/study17r jepa_rl/seed3 --arch 512 512 --value-coef 1 \
        --controllers model_return model_distance

(the runs are folders of a ``python -m sb3_jepa.study run`` output holding ``zoo/model.zip``; the result of
2026-12-04 is in docs/results/planning.md)
"""

import argparse
import copy
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.env_util import make_vec_env

import sb3_jepa  # noqa: F401  (registers the environments)
from benchmarks import study_runs
from benchmarks.oracle_planner import model_controller
from benchmarks.study_runs import ENV_ID
from sb3_jepa.common.jepa import JEPAPredictor
from sb3_jepa.planning import evaluate
from sb3_jepa.planning.evaluate import Controller
from sb3_jepa.planning.world_model import WorldModel

#: :mod:`benchmarks.oracle_planner`'s controllers that plan through ``W``: the policy's own samples, replanned every step
PRIOR_ONLY = ("model_return", "model_distance")


def collect(model: Any, n_transitions: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    :param model: a trained PPOJEPA on Two Rooms
    :param n_transitions: how many transitions (rounded up to whole steps of the 8 envs)
    :param seed: the envs' seed and torch's (the policy samples from torch's generator)
    :return: observations, actions and next observations (the terminal observation where an episode ended) of
        ``n_transitions`` steps of the model's stochastic policy on 8 envs
    """
    env = make_vec_env(ENV_ID, n_envs=8, seed=seed)
    th.manual_seed(seed)
    obs = np.asarray(env.reset())  # Two Rooms: one image array (not a dict)
    observations: list[np.ndarray] = []
    actions: list[np.ndarray] = []
    successors: list[np.ndarray] = []
    for _ in range(-(-n_transitions // env.num_envs)):
        action, _ = model.predict(obs, deterministic=False)
        stepped, _, dones, infos = env.step(action)
        next_obs = np.asarray(stepped)
        successor = next_obs.copy()
        for index in np.flatnonzero(dones):
            successor[index] = infos[index]["terminal_observation"]
        observations.append(obs)
        actions.append(action)
        successors.append(successor)
        obs = next_obs
    env.close()
    return np.concatenate(observations), np.concatenate(actions), np.concatenate(successors)


def encode(world: WorldModel, observations: np.ndarray, target: bool, chunk: int = 512) -> th.Tensor:
    """
    :param world: the model's world model
    :param observations: observations, a batch
    :param target: encode into the space ``W`` predicts in (:meth:`WorldModel.target`) instead of with ``E``
    :param chunk: observations per encoder pass
    :return: ``E(o)`` (or the target's) of every observation, no gradient
    """
    out = []
    with th.no_grad(), world.eval_mode():
        for start in range(0, len(observations), chunk):
            tensor, _ = world.policy.obs_to_tensor(observations[start : start + chunk])
            out.append(world.target(tensor) if target else world.encode(tensor))
    return th.cat(out)


def relative_error(prediction: th.Tensor, target: th.Tensor, variance: th.Tensor) -> float:
    """
    :param prediction: predicted embeddings, shape ``(n, dim)``
    :param target: the true ones, the same shape
    :param variance: the embeddings' total variance (summed over dimensions)
    :return: the mean squared error over it (1: as far as a typical embedding from their mean)
    """
    return float((prediction - target).pow(2).sum(dim=1).mean() / variance)


def refit(
    predictor: th.nn.Module,
    z: th.Tensor,
    actions: th.Tensor,
    z_next: th.Tensor,
    iterations: int,
    seed: int,
    value: Callable[[th.Tensor], th.Tensor] | None = None,
    value_coef: float = 0.0,
) -> th.nn.Module:
    """
    :param predictor: the ``W`` to start from (left unchanged)
    :param z: embeddings ``z_t`` to fit on
    :param actions: the actions taken from them
    :param z_next: the targets ``z_{t+1}``
    :param iterations: Adam steps
    :param seed: seed of the minibatches' draw
    :param value: the critic ``V`` on embeddings (its parameters are not trained), needed when ``value_coef > 0``
    :param value_coef: the weight ``beta`` of ``(V(W(z, a)) - V(z_next))^2`` in the loss
    :return: a copy of ``predictor`` trained by Adam (lr 1e-3, minibatches of 256) on the squared error
        ``||W(z, a) - z_next||^2`` (plus the value term) for ``iterations`` steps
    """
    fitted = copy.deepcopy(predictor).train().requires_grad_(True)
    optimizer = th.optim.Adam(fitted.parameters(), lr=1e-3)
    generator = th.Generator().manual_seed(seed)
    value_next = None
    if value_coef > 0:
        assert value is not None
        with th.no_grad():
            value_next = value(z_next)
    for _ in range(iterations):
        rows = th.randint(len(z), (256,), generator=generator)
        prediction = fitted(z[rows], actions[rows])
        loss = (prediction - z_next[rows]).pow(2).sum(dim=1).mean()
        if value_next is not None and value is not None:
            loss = loss + value_coef * (value(prediction) - value_next[rows]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return fitted.eval()


def controller(model: Any, settings: evaluate.PlanningSettings, name: str, horizon: int) -> Controller:
    """
    :param model: the model, with the refitted ``W`` in place
    :param settings: the evaluation's settings
    :param name: one of the evaluation's planners or :data:`PRIOR_ONLY`
    :param horizon: the horizon of :data:`PRIOR_ONLY`'s controllers
    :return: the controller
    """
    if name in PRIOR_ONLY:
        return model_controller(model, name.removeprefix("model_"), horizon=horizon)
    (planner,) = evaluate.model_controllers(model, settings, names=(name,))
    return planner


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    study_runs.add_arguments(parser)
    parser.add_argument("--transitions", type=int, default=40_000, help="transitions collected (90%% fit, 10%% held out)")
    parser.add_argument("--iterations", type=int, default=4000, help="Adam steps of the refit")
    parser.add_argument("--controllers", nargs="+", default=["planner", "planner_prior", "planner_prior_value"])
    parser.add_argument("--value-weight", type=float, default=10.0)
    parser.add_argument("--max-steps", type=int, default=100)
    parser.add_argument("--arch", type=int, nargs="+", help="fit a fresh residual W with these hidden widths")
    parser.add_argument("--value-coef", type=float, default=0.0, help="beta of the value term in the refit's loss")
    parser.add_argument("--horizon", type=int, default=12, help="the horizon of model_return and model_distance")
    args = parser.parse_args(argv)
    if args.transitions < 20 or args.iterations < 1 or args.pairs < 1 or args.horizon < 1:
        parser.error("--transitions must be >= 20, --iterations, --pairs and --horizon >= 1")
    if args.value_coef < 0 or (args.arch is not None and min(args.arch) < 1):
        parser.error("--value-coef must be >= 0 and every --arch width >= 1")
    unknown = sorted(set(args.controllers) - set(evaluate.PLANNERS) - set(PRIOR_ONLY))
    if unknown:
        parser.error(f"--controllers must be some of {evaluate.PLANNERS + PRIOR_ONLY}; got {unknown}")
    settings = evaluate.PlanningSettings(env_id=ENV_ID, value_weight=args.value_weight, max_steps=args.max_steps)
    pairs = evaluate.make_pairs(ENV_ID, args.pairs, settings.pair_seed)
    env, limit = gym.make(ENV_ID), args.max_steps
    fit = f"{args.iterations} Adam steps" + ("" if args.arch is None else f", a fresh residual W of {args.arch}")
    fit += f", value term {args.value_coef}" if args.value_coef else ""
    planned = []
    if set(args.controllers) - set(PRIOR_ONLY):
        planned.append(
            f"planners with cem {settings.options}, horizon {settings.horizon}, replan every {settings.replan_every}, "
            f"value weight {args.value_weight}"
        )
    if set(args.controllers) & set(PRIOR_ONLY):
        planned.append(f"{', '.join(PRIOR_ONLY)}: horizon {args.horizon}, replanned every step")
    print(
        f"{ENV_ID}: W refitted on the frozen E from {args.transitions} transitions of the model's stochastic policy "
        f"({fit}); {'; '.join(planned)}; {args.pairs} pairs"
    )
    print("run | held-out error: no change | W as trained | W refitted | success with the refitted W per controller")
    for run in args.runs:
        began = time.perf_counter()
        model = study_runs.load(args.study, run)
        world = WorldModel(model.policy, getattr(model, "jepa_loss", "mse"))
        if args.value_coef > 0:  # before any transition is collected
            world.check_V()  # V(W(z, a)) needs a critic that reads z
            if world.ema or world.jepa_loss == "cosine":
                raise ValueError(
                    f"--value-coef needs W to predict the embedding the critic reads: {run} was trained with an ema "
                    "target or the cosine loss (W predicts the target encoder's embedding, or only its direction)"
                )
        observations, actions, successors = collect(model, args.transitions, seed=123)
        z, z_next = encode(world, observations, target=False), encode(world, successors, target=True)
        action_tensor = th.as_tensor(actions)
        n_fit = int(0.9 * len(z))
        variance = z.var(dim=0).sum()
        held_out = slice(n_fit, None)
        with th.no_grad():
            trained_prediction = model.policy.jepa_predictor(z[held_out], action_tensor[held_out])
            as_trained = relative_error(trained_prediction, z_next[held_out], variance)
        start = model.policy.jepa_predictor
        if args.arch is not None:
            squash = bool(model.policy.squash_output)
            start = JEPAPredictor(z.shape[1], model.action_space, args.arch, squash_output=squash, residual=True)
            start = start.to(model.policy.device)
        model.policy.requires_grad_(False)  # only W's parameters learn; the critic of the value term stays as trained
        data = (z[:n_fit], action_tensor[:n_fit], z_next[:n_fit])
        fitted = refit(start, *data, args.iterations, seed=0, value=world.V, value_coef=args.value_coef)
        with th.no_grad():
            refitted = relative_error(fitted(z[held_out], action_tensor[held_out]), z_next[held_out], variance)
        no_change = relative_error(z[held_out], z_next[held_out], variance)
        model.policy.jepa_predictor = fitted  # the planners read it from the policy
        successes = []
        for name in args.controllers:
            played = controller(model, settings, name, args.horizon)
            rows = evaluate.play(played, env, pairs, list(range(args.pairs)), limit, settings.pair_seed)
            successes.append(f"{name} {np.mean([row['success'] for row in rows]):.2f}")
        print(
            f"{run} | {no_change:.3f} | {as_trained:.3f} | {refitted:.3f} | {', '.join(successes)} "
            f"({time.perf_counter() - began:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
