"""
Issue 17, seventh session: why does the reward predictor ``R`` trained with ``jepa_reward_steps=12`` not fit what a
refit after training fits? A diagnostic, kept with its output (reward_training.txt), not a part of the package.

    python docs/results/planning/diagnostics/reward_training.py adam runs/study17rs "jepa_rl:jepa_reward_steps=12/seed3"
    python docs/results/planning/diagnostics/reward_training.py continue runs/study17rs "jepa_rl:..." --variant as_is
    python docs/results/planning/diagnostics/reward_training.py refit runs/study17rs "jepa_rl:jepa_reward_steps=12/seed3"

- ``adam``: the Adam state saved with the model: the share of each part's parameters whose ``sqrt(v_hat)`` is below
  Adam's ``eps``; then refits of ``R`` on ``W``'s 12-step rollouts (the first 36,000 of 40,000 steps of the stochastic
  policy; held out: the last 4,000, later steps of the same envs, not separate episodes) with the
  refit's optimizer and with the training's (lr 3e-4, eps 1e-5, the loss scaled by ``jepa_reward_coef`` 0.01 and by
  0.001 for the gradient clipping too), printing the held-out error along the way.
- ``continue``: PPO training goes on from the saved model for ``--updates`` updates (the real ``train()``); every 5
  updates, ``R``'s error on ``W``'s 12-step rollouts of 8,000 held-out steps (per rollout step k) and the median
  total gradient norm that the shared clipping saw. ``--variant own_clip`` clips ``R``'s gradient on its own norm
  (out of the shared clipping), ``own_clip_coef1`` also sets ``jepa_reward_coef`` to 1 (``R`` reads ``sg(z)``: its
  loss reaches only ``R``, so neither changes any other network's gradient).
- ``refit``: ``R`` refitted (lr 1e-3, 4000 Adam steps, the 40,000 steps) on rollouts of 12 and of 2 steps; per
  rollout step, the held-out error and ``R``'s mean prediction on the steps that earned the success bonus (+10).
"""

import argparse
import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

from benchmarks import study_runs
from benchmarks.predictor_refit import (
    N_ENVS,
    HeadData,
    Heads,
    Transitions,
    collect,
    encode,
    head_losses,
    rollout_latents,
    rollout_rows,
)
from sb3_jepa import PPOJEPA
from sb3_jepa.planning.world_model import WorldModel

STEPS = (0, 1, 3, 11)  # the rollout steps k whose errors are printed


def head_data(world: WorldModel, collected: Transitions, steps: int) -> HeadData:
    """:return: the collected rows, embedded by the current encoder, with rollouts of ``steps`` steps"""
    z = encode(world, collected.observations, target=False)
    with th.no_grad():
        values = world.V(z)
    rows = th.as_tensor(rollout_rows(collected.dones, N_ENVS, steps))
    rewards = th.as_tensor(collected.rewards, dtype=th.float32)
    return HeadData(z, th.as_tensor(collected.actions), rewards, values, rows)


def per_step(world: WorldModel, reward_predictor: Any, held: HeadData) -> str:
    """:return: ``R``'s squared error at each of :data:`STEPS`, and its mean prediction where the bonus was earned"""
    parts = []
    with th.no_grad():
        latents = rollout_latents(world, held, held.rows)
        for k in STEPS:
            valid = held.rows[:, k] >= 0
            rows = held.rows[valid, k]
            prediction = reward_predictor.reward(latents[valid, k], world.action_features(held.actions[rows]))
            reward = held.rewards[rows]
            bonus = reward > 5
            error = float((prediction - reward).pow(2).mean())
            parts.append(f"k={k}: {error:.2f} (bonus rows: {float(prediction[bonus].mean()):.2f})")
    return "; ".join(parts)


def fit(
    world: WorldModel,
    heads: Heads,
    data: HeadData,
    lr: float,
    eps: float,
    scale: float,
    iterations: int,
    report: Callable[[int, Any], None] | None = None,
    report_at: tuple[int, ...] = (),
) -> Any:
    """
    :return: a copy of ``heads.R`` fitted by Adam on ``scale`` times the rollouts' squared error (starts drawn among
        ``data.rows``), handed to ``report`` after each of the ``report_at`` steps
    """
    assert heads.R is not None
    reward_predictor = copy.deepcopy(heads.R).train().requires_grad_(True)
    fitted = Heads(reward_predictor, heads.V)
    optimizer = th.optim.Adam(reward_predictor.parameters(), lr=lr, eps=eps)
    generator = th.Generator().manual_seed(1)
    for step in range(iterations):
        drawn = th.randint(len(data.rows), (256,), generator=generator)
        loss, _ = head_losses(fitted, world, data, data.rows[drawn])
        assert loss is not None
        optimizer.zero_grad()
        (scale * loss).backward()
        optimizer.step()
        if report is not None and step + 1 in report_at:
            report(step + 1, reward_predictor.eval())
            reward_predictor.train()
    return reward_predictor.eval()


def adam(model: Any, world: WorldModel) -> None:
    optimizer = model.policy.optimizer
    names = {id(parameter): name for name, parameter in model.policy.named_parameters()}
    shares: dict[str, list[tuple[float, int]]] = {}
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            state = optimizer.state.get(parameter)
            if state:
                v_hat = state["exp_avg_sq"] / (1 - group["betas"][1] ** float(state["step"]))
                below = float((v_hat.sqrt() < group["eps"]).float().mean())
                part = ".".join(names[id(parameter)].split(".")[:2])
                shares.setdefault(part, []).append((below, parameter.numel()))
    print(f"eps {optimizer.param_groups[0]['eps']}: share of parameters with sqrt(v_hat) < eps")
    for part, values in shares.items():
        print(f"  {part}: {np.average([v for v, _ in values], weights=[n for _, n in values]):.2f}")
    model.policy.requires_grad_(False)
    collected = collect(model, 40_000, seed=123)
    data = head_data(world, collected, 12)
    n_fit = int(0.9 * len(data.z)) // N_ENVS * N_ENVS
    rows = data.rows.clone()
    rows[:n_fit] = th.where(rows[:n_fit] >= n_fit, -1, rows[:n_fit])  # the fit's rollouts stay in the fit's rows
    fit_data, held_rows = data._replace(rows=rows[:n_fit]), rows[n_fit:]
    heads = Heads(model.policy.jepa_reward_predictor, model.policy.value_net)

    def held_error(reward_predictor: Any) -> float:
        with th.no_grad():
            error, _ = head_losses(Heads(reward_predictor, heads.V), world, data, held_rows)
        assert error is not None
        return float(error)

    print(f"reward variance {float(data.rewards.var()):.3f}; R as trained: {held_error(heads.R):.3f}")
    for lr, eps, scale in ((1e-3, 1e-8, 1.0), (3e-4, 1e-8, 1.0), (3e-4, 1e-5, 0.01), (3e-4, 1e-5, 0.001)):
        errors: list[str] = []

        def record(step: int, reward_predictor: Any, errors: list[str] = errors) -> None:
            errors.append(f"{step}: {held_error(reward_predictor):.3f}")

        fit(world, heads, fit_data, lr, eps, scale, 4000, record, (500, 1000, 2000, 4000))
        print(f"lr {lr} eps {eps} loss scale {scale}: held-out error after " + ", ".join(errors), flush=True)


def continue_training(model: Any, world: WorldModel, updates: int, variant: str) -> None:
    if variant == "own_clip_coef1":
        model.jepa_reward_coef = 1.0
    held_collected = collect(model, 8000, seed=321)
    norms: list[float] = []
    clip = th.nn.utils.clip_grad_norm_

    def recording_clip(parameters: Any, max_norm: float, *args: Any, **kwargs: Any) -> th.Tensor:
        parameters = list(parameters)
        own = {id(p) for p in model.policy.jepa_reward_predictor.parameters()} if variant != "as_is" else set()
        total = clip([p for p in parameters if id(p) not in own], max_norm, *args, **kwargs)
        if own:
            clip([p for p in parameters if id(p) in own], max_norm)  # R on its own norm
        norms.append(float(total))
        return total

    th.nn.utils.clip_grad_norm_ = recording_clip  # PPOJEPA.train() calls it through th.nn.utils

    def report(label: str) -> None:
        model.policy.set_training_mode(False)
        held = head_data(world, held_collected, 12)  # the encoder moved: embed again
        norm = f"{np.median(norms):.2f} ({len(norms)} minibatches)" if norms else "-"
        print(f"{label}: {per_step(world, model.policy.jepa_reward_predictor, held)}; gradient norm median {norm}")
        norms.clear()

    class Report(BaseCallback):
        def _on_rollout_start(self) -> None:
            updates_done = self.num_timesteps // 1024 - start
            if updates_done % 5 == 0:
                report(f"update {updates_done}")

        def _on_step(self) -> bool:
            return True

    print(f"variant {variant}: jepa_reward_coef {model.jepa_reward_coef}, max_grad_norm {model.max_grad_norm}")
    start = model.num_timesteps // 1024
    model.learn(total_timesteps=updates * 1024, callback=Report(), reset_num_timesteps=False)
    report("end")
    th.nn.utils.clip_grad_norm_ = clip


def refit(model: Any, world: WorldModel) -> None:
    model.policy.requires_grad_(False)
    fit_collected, held = collect(model, 40_000, seed=123), head_data(world, collect(model, 8000, seed=321), 12)
    bonus = int((held.rewards > 5).sum())
    print(f"held-out reward variance {float(held.rewards.var()):.3f}; bonus on {bonus} of {len(held.rewards)} steps")
    heads = Heads(model.policy.jepa_reward_predictor, model.policy.value_net)
    print("as trained:", per_step(world, heads.R, held), flush=True)
    for steps in (12, 2):
        reward_predictor = fit(world, heads, head_data(world, fit_collected, steps), 1e-3, 1e-8, 1.0, 4000)
        print(f"refitted on {steps}-step rollouts:", per_step(world, reward_predictor, held), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("adam", "continue", "refit"))
    parser.add_argument("study", type=Path)
    parser.add_argument("run")
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--variant", choices=("as_is", "own_clip", "own_clip_coef1"), default="as_is")
    args = parser.parse_args()
    th.set_num_threads(1)
    if args.what == "continue":
        env = make_vec_env("TwoRoomsDiscrete-v0", n_envs=8, seed=7)
        path = args.study / "TwoRoomsDiscrete-v0" / args.run / "zoo" / "model.zip"
        model = PPOJEPA.load(path, env=env, device="cpu")
    else:
        model = study_runs.load(args.study, args.run)
    world = WorldModel(model.policy, getattr(model, "jepa_loss", "mse"))
    if args.what == "adam":
        adam(model, world)
    elif args.what == "continue":
        continue_training(model, world, args.updates, args.variant)
    else:
        refit(model, world)


if __name__ == "__main__":
    main()
