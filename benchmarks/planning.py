"""
The planner's cost per environment step, per controller of the planning evaluation, with its default settings (CEM,
horizon 12, 64 samples, 8 elites, 4 iterations, replanning every 4 steps; 24 prior samples): CPU time of this
process (``time.process_time``, torch on one thread, so other processes on the machine count less than in wall
time), the controllers interleaved round-robin, the median over repeats of 20 steps each.

    python -m benchmarks.planning                       # a fresh Two Rooms CnnPolicy model (timing needs no training)
    python -m benchmarks.planning --model runs/study/TwoRoomsDiscrete-v0/jepa_rl/seed0/zoo/model.zip

The issue-17 budget is 20 ms per step on one core of these machines.
"""

import argparse
import statistics
import time
import warnings

import gymnasium as gym
import torch as th

from sb3_jepa import PPOJEPA
from sb3_jepa.planning.evaluate import PLANNERS, PlanningSettings, make_planner


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a saved PPOJEPA zip (default: a fresh model with R)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)
    th.set_num_threads(1)
    env = gym.make("TwoRoomsDiscrete-v0")
    if args.model is None:
        model = PPOJEPA("CnnPolicy", env, jepa_reward_coef=0.01, device="cpu", seed=0)
    else:
        model = PPOJEPA.load(args.model, device="cpu")
    settings = PlanningSettings(value_weight=10.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        planners = {name: make_planner(model, settings, name) for name in PLANNERS}
    times: dict[str, list[float]] = {name: [] for name in PLANNERS}
    for repeat in range(args.repeats):
        order = PLANNERS[repeat % len(PLANNERS) :] + PLANNERS[: repeat % len(PLANNERS)]
        for name in order:
            obs, _ = env.reset(seed=repeat)
            goal = env.unwrapped.goal_observation()  # type: ignore[attr-defined]
            planners[name].reset(seed=repeat)
            start = time.process_time()
            for _ in range(args.steps):
                action, _ = planners[name].predict(obs, goal)
                obs, _, terminated, _, _ = env.step(action)
                if terminated:
                    obs, _ = env.reset()
            times[name].append(1000 * (time.process_time() - start) / args.steps)
    for name in PLANNERS:
        print(
            f"{name:22s} {statistics.median(times[name]):6.1f} ms per step (CPU, median of {args.repeats} x "
            f"{args.steps} steps, range {min(times[name]):.1f}-{max(times[name]):.1f})"
        )


if __name__ == "__main__":
    main()
