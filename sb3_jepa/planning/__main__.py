"""
Planning with the world models a study trained, in one command:

    python -m sb3_jepa.study run --env TwoRoomsDiscrete-v0 --configs rl_only jepa_rl jepa_only --seeds 0 1 2 \\
        --timesteps 200000 --out runs/tworooms
    python -m sb3_jepa.planning evaluate --study runs/tworooms --env TwoRoomsDiscrete-v0 --out runs/planning
    python -m sb3_jepa.planning report --out runs/planning --study runs/tworooms

``evaluate`` runs the controllers (``--controllers``, default all: ``greedy`` and ``stochastic``, the trained policy;
``planner``, the latent planner on the distance to the goal alone; ``planner_prior``, with the policy's samples among
its candidates; ``planner_prior_value``, with the critic's value in its cost too; ``random``, once) on every pair of
every finished run's model, on a fixed set of start/goal pairs, and the open-loop prediction error next to the "no
change" baseline; it skips models already evaluated in ``--out``, then writes ``report.md``, ``results.csv`` and
``planning.png``. Needs the ``study`` extra (rl-zoo3, matplotlib).
"""

import argparse
import math
import os
import sys
from pathlib import Path

from sb3_jepa.planning.evaluate import (
    CONTROLLERS,
    PRIOR_PLANNERS,
    VALUE_PLANNERS,
    PlanningSettings,
    find_models,
    run_evaluation,
)
from sb3_jepa.planning.planner import COSTS, METHODS, PRIORS, check_options


def _parser() -> argparse.ArgumentParser:
    from rl_zoo3.utils import StoreDict

    defaults = PlanningSettings()
    parser = argparse.ArgumentParser(
        prog="python -m sb3_jepa.planning", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    evaluate = commands.add_parser("evaluate", help="plan with the study's models on fixed start/goal pairs")
    evaluate.add_argument("--study", type=Path, required=True, help="the study's --out folder")
    evaluate.add_argument("--env", default=defaults.env_id, help="a Two Rooms id")
    evaluate.add_argument("--configs", nargs="+", default=None, help="configurations (default: every one found)")
    evaluate.add_argument("--seeds", nargs="+", type=int, default=None, help="training seeds (default: all)")
    evaluate.add_argument("--pairs", type=int, default=defaults.n_pairs, help="start/goal pairs (half cross-room)")
    evaluate.add_argument("--pair-seed", type=int, default=defaults.pair_seed)
    evaluate.add_argument("--method", default=defaults.method, choices=list(METHODS))
    evaluate.add_argument("--horizon", type=int, default=defaults.horizon)
    evaluate.add_argument("--replan-every", type=int, default=defaults.replan_every)
    evaluate.add_argument("--cost", default=defaults.cost, choices=list(COSTS))
    evaluate.add_argument(
        "--options",
        nargs="+",
        action=StoreDict,
        default=None,
        help=f"the method's options, as in rl-zoo3 (n_samples:64 n_iterations:4); default {defaults.options} "
        "for cem, the method's own defaults otherwise",
    )
    evaluate.add_argument(
        "--controllers",
        nargs="+",
        choices=list(CONTROLLERS),
        default=list(defaults.controllers),
        help="the controllers to run (default: all)",
    )
    evaluate.add_argument(
        "--prior",
        default=defaults.prior,
        choices=list(PRIORS),
        help="where the planners with a prior (planner_prior, planner_prior_value, planner_prior_return) draw their "
        "prior candidates from",
    )
    evaluate.add_argument(
        "--n-prior-samples",
        type=int,
        default=defaults.n_prior_samples,
        help="prior candidates per search (planner_prior, planner_prior_value, planner_prior_return)",
    )
    evaluate.add_argument(
        "--value-weight",
        type=float,
        default=defaults.value_weight,
        help="the weight of the value term in the cost of planner_prior_value (the critic's value of the last "
        "latent) and planner_prior_return (the return estimate) (> 0; the distance's weight is 1)",
    )
    evaluate.add_argument("--normalize", action="store_true", help="distances in units of the per-dimension std")
    evaluate.add_argument("--prediction-horizon", type=int, default=defaults.prediction_horizon)
    evaluate.add_argument("--max-steps", type=int, default=None, help="episode length (default: the time limit)")
    evaluate.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1) // 2))
    evaluate.add_argument("--out", type=Path, default=Path("runs/planning"))
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar")
    report = commands.add_parser("report", help="write report.md, results.csv and planning.png again")
    report.add_argument("--out", type=Path, default=Path("runs/planning"))
    report.add_argument("--study", type=Path, default=None, help="the study (for its collapse metrics)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    from sb3_jepa.planning.report import write_report

    if args.command == "report":
        print(write_report(args.out, args.study))
        return 0
    for name in ("pairs", "horizon", "replan_every", "prediction_horizon", "workers", "n_prior_samples"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.pairs < 2:
        parser.error(f"--pairs must be >= 2 (half same-room, half cross-room), got {args.pairs}")
    if args.max_steps is not None and args.max_steps < 1:
        parser.error(f"--max-steps must be >= 1, got {args.max_steps}")
    if not math.isfinite(args.value_weight) or args.value_weight < 0:
        parser.error(f"--value-weight must be a finite number >= 0, got {args.value_weight}")
    valued = [name for name in VALUE_PLANNERS if name in args.controllers]
    if valued and args.value_weight == 0:
        parser.error(f"--value-weight must be > 0 with the controllers {valued} (at 0 they are planner_prior)")
    with_prior = [name for name in PRIOR_PLANNERS if name in args.controllers]
    if args.method == "exhaustive" and with_prior:
        parser.error(
            f"--method exhaustive scores every sequence and cannot use the prior of {with_prior}: choose cem, mppi or "
            "grad, or leave them out of --controllers"
        )
    if args.options is None:
        options = PlanningSettings().options if args.method == "cem" else {}
    else:
        options = dict(args.options)
    try:
        check_options(args.method, options)
    except ValueError as invalid:
        parser.error(f"--options: {invalid}")
    if not args.env.startswith("TwoRooms"):
        parser.error(f"--env must be a Two Rooms id (TwoRooms-v0, TwoRoomsDiscrete-v0), got {args.env!r}")
    from sb3_jepa.study.runner import check_environments, check_output_folder

    try:
        check_environments([args.env])
        check_output_folder(args.out)
    except ValueError as invalid:
        parser.error(str(invalid))
    settings = PlanningSettings(
        env_id=args.env,
        n_pairs=args.pairs,
        pair_seed=args.pair_seed,
        method=args.method,
        horizon=args.horizon,
        replan_every=args.replan_every,
        cost=args.cost,
        options=options,
        normalize=args.normalize,
        prediction_horizon=args.prediction_horizon,
        max_steps=args.max_steps,
        controllers=tuple(args.controllers),
        prior=args.prior,
        n_prior_samples=args.n_prior_samples,
        value_weight=args.value_weight,
    )
    try:
        models = find_models(args.study, args.env, args.configs, args.seeds)
        failures = run_evaluation(settings, models, args.out, args.workers, show_progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as invalid:
        parser.error(str(invalid))
    for task, failure in failures:
        print(f"FAILED {task.key()}: {type(failure).__name__}: {failure}", file=sys.stderr)
    print(write_report(args.out, args.study))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
