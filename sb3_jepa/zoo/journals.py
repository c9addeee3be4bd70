"""
What a search's Optuna journal holds, as a Markdown table: for every study in each journal file, the trials by
state, the best trial's value and settings, and each parameter's importance (Optuna's PED-ANOVA evaluator, which
needs no scikit-learn; computed on the completed trials, ``n/a`` with fewer than 2 of them)::

    python -m sb3_jepa.zoo.journals docs/results/tuning/*.log

The values are what the searches measured (the objective of one unseeded run per trial): they rank settings, they
are not results (the campaign re-measures each best trial at fresh seeds through the study).
"""

import argparse
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class JournalSummary:
    """One study of a journal file."""

    path: str
    study_name: str
    #: trial state name -> count
    states: dict[str, int]
    best_number: int | None
    best_value: float | None
    best_params: dict[str, Any]
    #: parameter -> importance (summing to 1), empty when not computable
    importances: dict[str, float]


def summarize(path: str | Path) -> list[JournalSummary]:
    """
    :param path: an Optuna journal file (``--storage file.log`` of rl-zoo3)
    :return: one summary per study in it
    :raises FileNotFoundError: if there is no such file
    """
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if not Path(path).is_file():
        raise FileNotFoundError(f"No journal file {path}")
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    summaries = []
    for name in sorted(study.study_name for study in optuna.get_all_study_summaries(storage)):
        study = optuna.load_study(study_name=name, storage=storage)
        states: dict[str, int] = {}
        for trial in study.trials:
            states[trial.state.name] = states.get(trial.state.name, 0) + 1
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        best = study.best_trial if complete else None
        importances: dict[str, float] = {}
        if len(complete) >= 2:
            with warnings.catch_warnings():
                # the journal backend and PED-ANOVA are "experimental" in Optuna 5: said once per call otherwise
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                evaluator = optuna.importance.PedAnovaImportanceEvaluator()
                importances = dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
        summaries.append(
            JournalSummary(
                path=str(path),
                study_name=name,
                states=states,
                best_number=None if best is None else best.number,
                best_value=None if best is None else best.value,
                best_params={} if best is None else dict(best.params),
                importances=importances,
            )
        )
    return summaries


def _value(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def markdown(summaries: list[JournalSummary]) -> str:
    """:return: one table row per study: trials by state, best trial, its settings, the three most important"""
    lines = [
        "| study | trials | best (trial) | best settings | most important (PED-ANOVA) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for summary in summaries:
        states = ", ".join(f"{count} {state.lower()}" for state, count in sorted(summary.states.items()))
        best = "n/a" if summary.best_value is None else f"{summary.best_value:.3g} ({summary.best_number})"
        settings = ", ".join(f"{key} {_value(value)}" for key, value in summary.best_params.items()) or "n/a"
        top = sorted(summary.importances.items(), key=lambda item: -item[1])[:3]
        important = ", ".join(f"{key} {value:.2f}" for key, value in top) or "n/a"
        lines.append(f"| {summary.study_name} | {states} | {best} | {settings} | {important} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("journals", nargs="+", type=Path, help="Optuna journal files")
    args = parser.parse_args(argv)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        summaries = [summary for path in args.journals for summary in summarize(path)]
    except FileNotFoundError as missing:
        parser.error(str(missing))
    print(markdown(summaries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
