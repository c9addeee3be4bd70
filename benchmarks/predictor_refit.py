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

``--fit`` chooses what is fitted again (``W`` by default). ``R`` and ``V`` fit the reward predictor and the
critic's head (``value_net``; the critic's MLP layers, if any, stay as trained) on ``W``'s own open-loop rollouts,
as TD-MPC2 trains its reward and value heads on its dynamics' latents: from each collected step, ``W`` rolls the
embedding forward along the actions actually taken for up to ``--rollout-steps`` steps (within the episode), and
``R(z_hat_k, a_k)`` is fitted to the reward the environment gave, ``V(z_hat_k)`` to the critic's value of the true
observation ``V(E(s_k))``. The planner's return estimate reads exactly these latents. Their held-out errors on the
rollouts (as trained, refitted) are printed on a line of their own.

Options for the fit: ``--arch`` fits a fresh residual ``W`` with these hidden widths instead of the trained one;
``--value-coef`` adds ``beta * (V(W(z_t, a_t)) - V(z_{t+1}))^2`` to its loss (the critic frozen), so that ``W`` is
accurate where the critic reads it, as TD-MPC2 trains its dynamics through the value and reward losses. The
controllers may also be :mod:`benchmarks.oracle_planner`'s ``model_return`` and ``model_distance`` (the policy's own
samples through ``W``, replanned every step; ``--horizon``).

    python -m benchmarks.predictor_refit runs/study17r jepa_rl/seed3 jepa_rl/seed4 --value-weight 10
    python -m benchmarks.predictor_refit runs/study17r jepa_rl/seed3 --arch 512 512 --value-coef 1 \
        --controllers model_return model_distance
    python -m benchmarks.predictor_refit runs/study17r jepa_rl/seed3 --fit R V --controllers model_return

(the runs are folders of a ``python -m sb3_jepa.study run`` output holding ``zoo/model.zip``; the result of
2026-12-04 is in docs/results/planning.md)
"""

import argparse
import copy
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.env_util import make_vec_env

import sb3_jepa  # noqa: F401  (registers the environments)
from benchmarks import study_runs
from benchmarks.oracle_planner import model_controller
from benchmarks.study_runs import ENV_ID
from sb3_jepa.common.jepa import JEPAPredictor, JEPARewardPredictor
from sb3_jepa.planning import evaluate
from sb3_jepa.planning.evaluate import Controller
from sb3_jepa.planning.world_model import WorldModel

#: :mod:`benchmarks.oracle_planner`'s controllers that plan through ``W``: the policy's own samples, replanned every step
PRIOR_ONLY = ("model_return", "model_distance")


#: What can be fitted again: the predictor, the reward predictor, the critic's head
FITTED = ("W", "R", "V")
#: The envs :func:`collect` steps (its rows are ``step * N_ENVS + env``)
N_ENVS = 8


class Transitions(NamedTuple):
    """Steps of the model's stochastic policy on :data:`N_ENVS` envs, row ``step * N_ENVS + env``"""

    observations: np.ndarray
    actions: np.ndarray
    #: the next observation (the terminal observation where an episode ended)
    successors: np.ndarray
    rewards: np.ndarray
    #: whether the episode ended at this step (terminated or truncated)
    dones: np.ndarray


def collect(model: Any, n_transitions: int, seed: int) -> Transitions:
    """
    :param model: a trained PPOJEPA on Two Rooms
    :param n_transitions: how many transitions (rounded up to whole steps of the :data:`N_ENVS` envs)
    :param seed: the envs' seed and torch's (the policy samples from torch's generator)
    :return: ``n_transitions`` steps of the model's stochastic policy
    """
    env = make_vec_env(ENV_ID, n_envs=N_ENVS, seed=seed)
    th.manual_seed(seed)
    obs = np.asarray(env.reset())  # Two Rooms: one image array (not a dict)
    observations: list[np.ndarray] = []
    actions: list[np.ndarray] = []
    successors: list[np.ndarray] = []
    rewards: list[np.ndarray] = []
    ended: list[np.ndarray] = []
    for _ in range(-(-n_transitions // env.num_envs)):
        action, _ = model.predict(obs, deterministic=False)
        stepped, reward, dones, infos = env.step(action)
        next_obs = np.asarray(stepped)
        successor = next_obs.copy()
        for index in np.flatnonzero(dones):
            successor[index] = infos[index]["terminal_observation"]
        observations.append(obs)
        actions.append(action)
        successors.append(successor)
        rewards.append(reward)
        ended.append(dones)
        obs = next_obs
    env.close()
    return Transitions(*(np.concatenate(part) for part in (observations, actions, successors, rewards, ended)))


def rollout_rows(dones: np.ndarray, n_envs: int, steps: int) -> np.ndarray:
    """
    The rows of the steps that follow each row in its episode, for open-loop rollouts along the actions taken.

    Rows are ``step * n_envs + env``, so the next step of the same env is ``row + n_envs``; a rollout stops at the
    episode's end (``dones``) and at the end of the data. Worked example, 2 envs, 3 steps (rows 0-5), env 0's
    episode ending at its second step (row 2)::

        dones = [F, F, T, F, F, F], n_envs = 2, steps = 3
        -> [[0, 2, -1], [1, 3, 5], [2, -1, -1], [3, 5, -1], [4, -1, -1], [5, -1, -1]]

    :param dones: whether each row's episode ended at it, shape ``(n,)``, ``n`` a multiple of ``n_envs``
    :param n_envs: the number of envs
    :param steps: the rollout's length ``K`` (column 0 is the row itself)
    :return: ``(n, steps)`` int64: column ``k`` is the row ``k`` steps later in the same episode, or -1
    """
    n = len(dones)
    rows = np.full((n, steps), -1, dtype=np.int64)
    rows[:, 0] = np.arange(n)
    for k in range(1, steps):
        previous = rows[:, k - 1]
        follows = (previous >= 0) & (previous + n_envs < n)
        follows[follows] &= ~dones[previous[follows]]
        rows[follows, k] = previous[follows] + n_envs
    return rows


class Heads(NamedTuple):
    """The heads the return estimate reads: the reward predictor ``R`` (None without one) and the critic's head ``V``"""

    R: JEPARewardPredictor | None
    #: the critic's head ``value_net`` (the critic's MLP layers, if any, are not a part of it)
    V: th.nn.Module


class HeadData(NamedTuple):
    """What the heads are fitted on, one entry per collected row"""

    z: th.Tensor
    actions: th.Tensor
    rewards: th.Tensor
    #: the critic's value of each row's true embedding, ``V(E(s))``: the value head's target
    values: th.Tensor
    #: :func:`rollout_rows`, as a tensor
    rows: th.Tensor


def rollout_latents(world: WorldModel, data: HeadData, rows: th.Tensor) -> th.Tensor:
    """
    :param world: the world model (its ``W``, not trained)
    :param data: the rows' embeddings and actions
    :param rows: ``(batch, K)`` from :func:`rollout_rows` (column 0 the start rows)
    :return: ``(batch, K, dim)``: ``z_hat_0 = z[rows[:, 0]]``, ``z_hat_k = W(z_hat_{k-1}, a[rows[:, k-1]])``, as the
        actor and the critic read them (:meth:`WorldModel.readout`); past an episode's end the rollout goes on with
        row 0's action: those steps are masked by whoever reads them
    """
    with th.no_grad():
        start = data.z[rows[:, 0]]
        features = world.action_features(data.actions[rows[:, :-1].clamp_min(0).flatten()])
        later = world.rollout(start, features.reshape(len(rows), rows.shape[1] - 1, -1))
        return world.readout(th.cat([start[:, None], later], dim=1), start[:, None])


def critic_value(world: WorldModel, value_net: th.nn.Module, z: th.Tensor) -> th.Tensor:
    """:return: the critic's value of embeddings ``(n, dim)`` with ``value_net`` as its head, shape ``(n,)``"""
    return value_net(world.policy.mlp_extractor.forward_critic(z)).squeeze(-1)


def head_losses(heads: Heads, world: WorldModel, data: HeadData, rows: th.Tensor) -> tuple[th.Tensor | None, th.Tensor]:
    """
    :param heads: the heads
    :param world: the world model
    :param data: the rows
    :param rows: rollouts, ``(batch, K)`` from :func:`rollout_rows`
    :return: the mean squared error of ``R`` (against the rewards; None without ``R``) and of ``V`` (against
        ``V(E(s))``) over every valid step of ``W``'s rollouts along ``rows``
    """
    valid = rows >= 0
    latents = rollout_latents(world, data, rows)[valid]
    taken = rows[valid]
    value_error = (critic_value(world, heads.V, latents) - data.values[taken]).pow(2).mean()
    if heads.R is None:
        return None, value_error
    features = world.action_features(data.actions[taken])
    return (heads.R.reward(latents, features) - data.rewards[taken]).pow(2).mean(), value_error


def refit_heads(
    heads: Heads, world: WorldModel, data: HeadData, fit: set[str], starts: th.Tensor, iterations: int, seed: int
) -> Heads:
    """
    :param heads: the heads to start from (left unchanged)
    :param world: the model's world model (its ``W`` and its critic's MLP layers are read, not trained)
    :param data: the rows
    :param fit: ``{"R", "V"}`` or one of them: the heads to fit (the other is returned as it is)
    :param starts: the rows rollouts may start from (the fit's; a rollout stays within them, see ``data.rows``)
    :param iterations: Adam steps (lr 1e-3, 256 starts each)
    :param seed: seed of the starts' draw
    :return: copies of the heads, those in ``fit`` trained on the squared error of every valid step of ``W``'s
        rollouts (see :func:`head_losses`)
    """
    fitted = Heads(None if heads.R is None else copy.deepcopy(heads.R), copy.deepcopy(heads.V))
    trained = [head for name, head in zip(Heads._fields, fitted, strict=True) if name in fit and head is not None]
    for head in trained:
        head.train().requires_grad_(True)
    optimizer = th.optim.Adam([p for head in trained for p in head.parameters()], lr=1e-3)
    generator = th.Generator().manual_seed(seed)
    for _ in range(iterations):
        drawn = starts[th.randint(len(starts), (256,), generator=generator)]
        reward_loss, value_loss = head_losses(fitted, world, data, data.rows[drawn])
        loss = value_loss if "V" in fit else th.zeros(())
        if "R" in fit and reward_loss is not None:
            loss = loss + reward_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for head in trained:
        head.eval().requires_grad_(False)
    return fitted


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
    predictor: JEPAPredictor,
    z: th.Tensor,
    actions: th.Tensor,
    z_next: th.Tensor,
    iterations: int,
    seed: int,
    value: Callable[[th.Tensor], th.Tensor] | None = None,
    value_coef: float = 0.0,
) -> JEPAPredictor:
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


def fit_heads(
    world: WorldModel,
    z: th.Tensor,
    collected: Transitions,
    n_fit: int,
    fit: set[str],
    steps: int,
    iterations: int,
    seed: int,
) -> str:
    """
    Fit ``R`` and/or ``V`` on ``W``'s rollouts from the first ``n_fit`` rows and put them in the model's policy, where
    the planners read them.

    :param world: the model's world model (its ``W`` as the planners will use it)
    :param z: the embedding of every collected row
    :param collected: the rows
    :param n_fit: the rows of the fit (the others are held out)
    :param fit: ``{"R", "V"}`` or one of them
    :param steps: the rollouts' length (see :func:`rollout_rows`)
    :param iterations: Adam steps
    :param seed: the fit's seed
    :return: the heads' held-out errors on ``W``'s rollouts from the other rows, as trained and refitted
    """
    rows = rollout_rows(collected.dones, N_ENVS, steps)
    rows[:n_fit] = np.where(rows[:n_fit] >= n_fit, -1, rows[:n_fit])  # a rollout of the fit stays within the fit's rows
    policy = world.policy
    with th.no_grad():
        values = world.V(z)
    rewards = th.as_tensor(collected.rewards, dtype=th.float32)
    data = HeadData(z, th.as_tensor(collected.actions), rewards, values, th.as_tensor(rows))
    heads = Heads(policy.jepa_reward_predictor, policy.value_net)
    fitted = refit_heads(heads, world, data, fit, th.arange(n_fit), iterations, seed)
    with th.no_grad():
        errors = [head_losses(h, world, data, data.rows[n_fit:]) for h in (heads, fitted)]
    policy.jepa_reward_predictor, policy.value_net = fitted
    r_errors = ["-" if error is None else f"{float(error):.4f}" for error, _ in errors]
    return (
        f"R error {r_errors[0]} as trained, {r_errors[1]} refitted; "
        f"V error {float(errors[0][1]):.4f} as trained, {float(errors[1][1]):.4f} refitted"
    )


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
    parser.add_argument("--fit", nargs="+", choices=FITTED, default=["W"], help="what is fitted again (see above)")
    parser.add_argument("--rollout-steps", type=int, default=12, help="the length of W's rollouts that R and V fit on")
    args = parser.parse_args(argv)
    if args.transitions < 20 or args.iterations < 1 or args.pairs < 1 or args.horizon < 1:
        parser.error("--transitions must be >= 20, --iterations, --pairs and --horizon >= 1")
    if args.rollout_steps < 2:
        parser.error("--rollout-steps must be >= 2 (1 would fit on the true embeddings only, as the model was trained)")
    fit = set(args.fit)
    if (args.arch is not None or args.value_coef > 0) and "W" not in fit:
        parser.error("--arch and --value-coef are options of W's fit: add W to --fit")
    if args.value_coef < 0 or (args.arch is not None and min(args.arch) < 1):
        parser.error("--value-coef must be >= 0 and every --arch width >= 1")
    unknown = sorted(set(args.controllers) - set(evaluate.PLANNERS) - set(PRIOR_ONLY))
    if unknown:
        parser.error(f"--controllers must be some of {evaluate.PLANNERS + PRIOR_ONLY}; got {unknown}")
    settings = evaluate.PlanningSettings(env_id=ENV_ID, value_weight=args.value_weight, max_steps=args.max_steps)
    pairs = evaluate.make_pairs(ENV_ID, args.pairs, settings.pair_seed)
    env, limit = gym.make(ENV_ID), args.max_steps
    described = f"{args.iterations} Adam steps" + ("" if args.arch is None else f", a fresh residual W of {args.arch}")
    described += f", value term {args.value_coef}" if args.value_coef else ""
    described = f"W ({described})" if "W" in fit else "W as trained"
    if fit & {"R", "V"}:
        described += f"; {' and '.join(sorted(fit & {'R', 'V'}))} on W's rollouts of {args.rollout_steps} steps"
    planned = []
    if set(args.controllers) - set(PRIOR_ONLY):
        planned.append(
            f"planners with cem {settings.options}, horizon {settings.horizon}, replan every {settings.replan_every}, "
            f"value weight {args.value_weight}"
        )
    if set(args.controllers) & set(PRIOR_ONLY):
        prior_only = [name for name in args.controllers if name in PRIOR_ONLY]
        planned.append(f"{', '.join(prior_only)}: horizon {args.horizon}, replanned every step")
    print(
        f"{ENV_ID}: refitted on the frozen E from {args.transitions} transitions of the model's stochastic policy: "
        f"{described}; {'; '.join(planned)}; {args.pairs} pairs"
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
        if "R" in fit:
            world.check_R()
        if "V" in fit:
            world.check_V()
        collected = collect(model, args.transitions, seed=123)
        z, z_next = encode(world, collected.observations, target=False), encode(world, collected.successors, target=True)
        action_tensor = th.as_tensor(collected.actions)
        n_fit = int(0.9 * len(z)) // N_ENVS * N_ENVS  # whole steps: the held-out rows are the last steps of every env
        variance = z.var(dim=0).sum()
        held_out = slice(n_fit, None)
        with th.no_grad():
            trained_prediction = model.policy.jepa_predictor(z[held_out], action_tensor[held_out])
            as_trained = relative_error(trained_prediction, z_next[held_out], variance)
        no_change = relative_error(z[held_out], z_next[held_out], variance)
        refitted = "-"
        model.policy.requires_grad_(False)  # only what is fitted learns; the critic of the value term stays as trained
        if "W" in fit:
            start = model.policy.jepa_predictor
            if args.arch is not None:
                squash = bool(model.policy.squash_output)
                start = JEPAPredictor(z.shape[1], model.action_space, args.arch, squash_output=squash, residual=True)
                start = start.to(model.policy.device)
            data = (z[:n_fit], action_tensor[:n_fit], z_next[:n_fit])
            fitted = refit(start, *data, args.iterations, seed=0, value=world.V, value_coef=args.value_coef)
            with th.no_grad():
                refitted = f"{relative_error(fitted(z[held_out], action_tensor[held_out]), z_next[held_out], variance):.3f}"
            model.policy.jepa_predictor = world.predictor = fitted  # the planners read it from the policy
        if fit & {"R", "V"}:
            heads = fit_heads(world, z, collected, n_fit, fit, args.rollout_steps, args.iterations, seed=1)
            print(f"{run} heads on W's held-out rollouts of {args.rollout_steps} steps: {heads}", flush=True)
        successes = []
        for name in args.controllers:
            played = controller(model, settings, name, args.horizon)
            rows = evaluate.play(played, env, pairs, list(range(args.pairs)), limit, settings.pair_seed)
            successes.append(f"{name} {np.mean([row['success'] for row in rows]):.2f}")
        print(
            f"{run} | {no_change:.3f} | {as_trained:.3f} | {refitted} | {', '.join(successes)} "
            f"({time.perf_counter() - began:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
