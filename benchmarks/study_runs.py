"""
What the planning diagnostics (:mod:`benchmarks.return_ranking`, :mod:`benchmarks.predictor_refit`) share: their
command line names models as runs of a ``python -m sb3_jepa.study run`` output folder on Two Rooms, and takes the
planning evaluation's first pairs (``--pairs``).
"""

import argparse
from pathlib import Path
from typing import Any

#: The environment the diagnostics read (the planning evaluation's)
ENV_ID = "TwoRoomsDiscrete-v0"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the positional ``study`` and ``runs`` and the option ``--pairs`` to ``parser``"""
    parser.add_argument("study", type=Path, help="a `python -m sb3_jepa.study run` --out folder")
    parser.add_argument("runs", nargs="+", help="runs in it, as <configuration>/seed<N> (with zoo/model.zip)")
    parser.add_argument("--pairs", type=int, default=100, help="the evaluation's first pairs (pair seed 0)")


def load(study: Path, run: str) -> Any:
    """
    :param study: the study's output folder
    :param run: ``<configuration>/seed<N>``
    :return: the run's PPOJEPA model, on the CPU
    """
    from sb3_jepa import PPOJEPA

    return PPOJEPA.load(study / ENV_ID / run / "zoo" / "model.zip", device="cpu")
