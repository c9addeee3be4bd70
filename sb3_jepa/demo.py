"""
The paper's claim side by side, in a few minutes on 2 cores: plain RL, JEPA + RL and JEPA alone on one small pixel
task, then a table of return, effective rank and embedding scale, and a PNG of the curves.

    python -m sb3_jepa.demo                                  # MinAtar Breakout, 100k steps, 1 seed
    python -m sb3_jepa.demo --env MinAtar/SpaceInvaders-v1 --timesteps 200000 --seeds 0 1 2

Each configuration is one of the study's (``python -m sb3_jepa.study configs``), trained as ``rl_zoo3.train``
would with the packaged hyperparameters: ``rl_only`` (``jepa_coef=0``, plain PPO), ``jepa_rl`` (the JEPA loss
and the RL gradient both train the encoder; the paper's online target at the zoo's lambda) and ``jepa_only``
(``encoder_rl_grad=False``: only the JEPA loss trains the encoder, the heads learn on its output). What to see:
JEPA alone collapses (rank and scale fall to 0, the return with them); with the RL gradient the embeddings keep
their rank, as the paper's Proposition 1 says.

Needs the ``study`` and ``minatar`` extras.
"""

import argparse
import os
import sys
from pathlib import Path

from sb3_jepa.study.runner import RunSpec, check_specs, run_all

#: The three configurations compared, and what each one is
CONFIGS = {
    "rl_only": "plain RL (jepa_coef=0)",
    "jepa_rl": "JEPA + RL (the paper)",
    "jepa_only": "JEPA alone (encoder_rl_grad=False)",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="MinAtar/Breakout-v1", help="a gymnasium id with a packaged zoo entry")
    parser.add_argument("--algo", default="ppo_jepa", choices=["a2c_jepa", "ppo_jepa"])
    parser.add_argument("--timesteps", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1) // 2))
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="where the runs and the PNG go")
    args = parser.parse_args(argv)
    if args.timesteps <= 0 or args.workers <= 0 or args.eval_episodes <= 0:
        parser.error("--timesteps, --workers and --eval-episodes must be positive")
    if args.env.startswith("MinAtar/"):
        try:
            import minatar  # noqa: F401
        except ImportError:
            parser.error('MinAtar games need the minatar package: pip install "sb3-jepa[study,minatar]"')
    specs = [
        RunSpec(args.algo, args.env, config, seed, args.timesteps, eval_episodes=args.eval_episodes, threads=1)
        for config in CONFIGS
        for seed in args.seeds
    ]
    try:
        check_specs(specs)
    except ValueError as invalid:
        parser.error(str(invalid))

    print(f"Training {len(specs)} runs on {args.env} ({args.timesteps:,} steps each) into {args.out}", flush=True)
    _, failures = run_all(specs, args.out, args.workers)
    for spec, failure in failures:
        print(f"FAILED {spec.directory(args.out)}: {type(failure).__name__}: {failure}", file=sys.stderr)
    if failures:
        return 1

    from sb3_jepa.study.report import load_runs, plot_environment

    runs = [run for run in load_runs(args.out) if run["env_id"] == args.env and run["config"] in CONFIGS]
    header = f"{'configuration':<46} | {'eval return':>11} | {'effective rank':>14} | {'embedding std':>13}"
    print("\n" + header + "\n" + "-" * len(header))
    for config, meaning in CONFIGS.items():
        config_runs = [run for run in runs if run["config"] == config and run["timesteps"] == args.timesteps]
        if not config_runs:
            continue

        def mean(key: str, runs: list = config_runs) -> float:
            values = [run[key] for run in runs if run.get(key) is not None]
            return sum(values) / len(values) if values else float("nan")

        print(
            f"{config + ': ' + meaning:<46} | {mean('eval_return'):>11.2f} | {mean('effective_rank'):>14.1f} "
            f"| {mean('embedding_std'):>13.3g}"
        )
    image = args.out / f"{args.env.replace('/', '-')}.png"
    plot_environment(args.env, runs, image)
    print(f"\nCurves (return, rank, scale over training): {image}")
    print("Rank and std are the last update's, on its minibatch; rank 0 and std 0 mean every state has one embedding.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
