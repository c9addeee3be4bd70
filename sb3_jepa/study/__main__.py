"""
The collapse study, in one command:

    python -m sb3_jepa.study run --env PixelCartPole-v1 --seeds 0 1 2 3 4 --timesteps 100000 --workers 2
    python -m sb3_jepa.study run ... --backend ray --address auto   # the same runs as tasks of a Ray cluster
    python -m sb3_jepa.study report --out runs/study     # tables and plots again, from the files
    python -m sb3_jepa.study probe --out runs/study      # newer probe scores for finished runs, from their models
    python -m sb3_jepa.study configs                     # the named configurations

``run`` trains every (environment, configuration, seed) on worker processes, skips runs already finished in
``--out``, then writes ``report.md`` (interval estimates from rliable), ``results.csv`` and one PNG per environment.
A run whose worker dies is started again (``--retries``); the others go on. Exit status: 0 every run finished, 1 some
failed (the report covers the others; a rerun retries the failed ones), 2 bad arguments (nothing started), 3 no run
finished at all. Needs the ``study`` extra (rl-zoo3, rliable, matplotlib).
"""

import argparse
import os
import sys
from pathlib import Path

from sb3_jepa.study.configs import CONFIGS, DEFAULT_CONFIGS
from sb3_jepa.study.runner import BACKENDS, RunSpec, check_environments, check_output_folder, check_specs, run_all
from sb3_jepa.study.workers import DEFAULT_RETRIES

#: Exit statuses of ``run`` and ``report`` (2 is argparse's, for bad arguments)
EXIT_ALL_DONE, EXIT_SOME_FAILED, EXIT_NONE_FINISHED = 0, 1, 3
#: ``--ray-files``: where Ray tasks write their run folders (see :mod:`sb3_jepa.study.ray_backend`)
RAY_FILES = {"auto": None, "shared": True, "sent": False}


def _parser() -> argparse.ArgumentParser:
    from rl_zoo3.utils import StoreDict

    parser = argparse.ArgumentParser(
        prog="python -m sb3_jepa.study", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train the runs not finished yet, then write the report")
    run.add_argument("--algo", default="ppo_jepa", choices=["a2c_jepa", "ppo_jepa"])
    run.add_argument(
        "--env", nargs="+", default=["PixelCartPole-v1"], help="gymnasium ids (settings from the packaged rl-zoo3 files)"
    )
    run.add_argument(
        "--configs",
        nargs="+",
        default=list(DEFAULT_CONFIGS),
        help=f"named configurations ({', '.join(CONFIGS)}), each optionally with overrides: jepa_rl:jepa_coef=0.1",
    )
    run.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    run.add_argument("--timesteps", type=int, default=100_000)
    run.add_argument(
        "--hyperparams",
        nargs="+",
        action=StoreDict,
        default={},
        help="overrides for every configuration, as in rl-zoo3 (jepa_coef:0.1)",
    )
    run.add_argument("--eval-episodes", type=int, default=10)
    run.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1) // 2))
    run.add_argument("--threads", type=int, default=0, help="torch threads per worker (0: cores / workers)")
    run.add_argument("--device", default="cpu")
    run.add_argument("--out", type=Path, default=Path("runs/study"))
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument(
        "--backend", default="process", choices=list(BACKENDS), help="a local process pool, or Ray tasks (ray extra)"
    )
    run.add_argument(
        "--address", default=None, help="ray backend: the cluster (default: start a local one; auto; ray://host:port)"
    )
    run.add_argument("--gpus-per-run", type=float, default=0.0, help="ray backend: the GPU fraction each run asks for")
    run.add_argument(
        "--retries",
        type=int,
        default=DEFAULT_RETRIES,
        help="times a run whose worker died (killed, out of memory, node lost) is started again",
    )
    run.add_argument(
        "--ray-files",
        default="auto",
        choices=list(RAY_FILES),
        help="ray backend: tasks write into --out (shared), send their files back to the driver (sent), or "
        "whichever works (auto: shared where a task sees --out)",
    )
    report = commands.add_parser("report", help="write report.md, results.csv and the plots from finished runs")
    report.add_argument("--out", type=Path, default=Path("runs/study"))
    probe = commands.add_parser(
        "probe",
        help="add the probe scores that finished runs lack (a newer version's) from their saved models, then report",
    )
    probe.add_argument("--out", type=Path, default=Path("runs/study"))
    probe.add_argument("--threads", type=int, default=1, help="torch threads")
    commands.add_parser("configs", help="list the named configurations")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "configs":
        for name, kwargs in CONFIGS.items():
            print(f"{name:>20}: {kwargs or '(the defaults)'}")
        return 0

    if args.command == "report":
        return _report(args.out)
    if args.command == "probe":
        if args.threads <= 0:
            parser.error(f"--threads must be positive, got {args.threads}")
        return _probe(args.out, args.threads)

    if args.timesteps <= 0 or args.workers <= 0 or args.eval_episodes < 0 or args.threads < 0 or args.retries < 0:
        parser.error("--timesteps and --workers must be positive, --eval-episodes, --threads and --retries >= 0")
    if args.backend == "process" and (args.address is not None or args.gpus_per_run or args.ray_files != "auto"):
        parser.error("--address, --gpus-per-run and --ray-files are for --backend ray")
    if args.gpus_per_run < 0:
        parser.error("--gpus-per-run must be >= 0")
    if args.backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            parser.error('--backend ray needs Ray: pip install "sb3-jepa[ray]"')
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
    specs = [
        RunSpec(
            args.algo, env_id, config, seed, args.timesteps, dict(args.hyperparams), args.eval_episodes, args.device, threads
        )
        for env_id in args.env
        for config in args.configs
        for seed in args.seeds
    ]
    try:
        # Everything a worker would otherwise find out one run at a time, checked once before any starts
        check_specs(specs)
        check_environments(args.env)
        check_output_folder(args.out)
    except ValueError as invalid:
        parser.error(str(invalid))
    _, failures = run_all(
        specs,
        args.out,
        args.workers,
        show_progress=not args.no_progress,
        backend=args.backend,
        address=args.address,
        gpus_per_run=args.gpus_per_run,
        retries=args.retries,
        shared_filesystem=RAY_FILES[args.ray_files],
    )
    for spec, failure in failures:
        print(f"FAILED {spec.directory(args.out)}: {type(failure).__name__}: {failure}", file=sys.stderr)
    status = _report(args.out, failed=len(failures))
    return status if status != EXIT_ALL_DONE or not failures else EXIT_SOME_FAILED


def _probe(out: Path, threads: int) -> int:
    """
    Add the probe scores that the finished runs under ``out`` lack, from their saved models, and report again.

    :param out: the study's output folder
    :param threads: torch threads
    :return: the exit status (:data:`EXIT_SOME_FAILED` if a run kept no model or could not be probed)
    """
    from sb3_jepa.study.runner import add_probes

    failed = 0
    # No run at all: the report says so (and returns EXIT_NONE_FINISHED)
    for summary in sorted(out.glob("*/*/seed*/summary.json")):
        run_dir = summary.parent
        try:
            added = add_probes(run_dir, threads)
        except Exception as error:  # one run that cannot be probed (no model, a corrupt file) must not stop the rest
            failed += 1
            print(f"not probed: {run_dir}: {type(error).__name__}: {error}", file=sys.stderr)
            continue
        # Nothing added: every score was there, or the environment and policy give none (no state, too few episodes)
        print(f"{run_dir}: added {', '.join(added)}" if added else f"{run_dir}: nothing added")
    status = _report(out)
    return EXIT_SOME_FAILED if failed and status == EXIT_ALL_DONE else status


def _report(out: Path, failed: int = 0) -> int:
    """
    Write the report of the finished runs and print its path; where no run finished, say so in one line.

    :param out: the study's output folder
    :param failed: how many runs failed just now (for the message)
    :return: the exit status
    """
    from sb3_jepa.study.report import NoFinishedRunError, write_report
    from sb3_jepa.study.runner import CorruptRunError

    try:
        print(write_report(out))
    except NoFinishedRunError as nothing:
        suffix = f" ({failed} failed, see above; a rerun tries them again)" if failed else ""
        print(f"{nothing}{suffix}", file=sys.stderr)
        return EXIT_NONE_FINISHED
    except CorruptRunError as corrupt:
        print(f"{corrupt}; `study run` with the same arguments moves it aside and does that run again", file=sys.stderr)
        return EXIT_SOME_FAILED
    return EXIT_ALL_DONE


if __name__ == "__main__":
    sys.exit(main())
