"""
The study's report: for each environment, a PNG of return, effective rank and embedding scale against timesteps
(mean over seeds, with a band of one standard error), and a markdown table with interval estimates from rliable
(stratified bootstrap confidence intervals of the IQM and the mean over seeds).
"""

import csv
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from sb3_jepa.study.runner import check_run_files

#: the curves drawn for each environment: (column of metrics.csv, axis label, log scale)
CURVES = (
    ("ep_rew_mean", "training return (last 100 episodes)", False),
    ("jepa/effective_rank", "effective rank (RankMe, centred)", False),
    ("jepa/embedding_std", "embedding std (mean over dims)", True),
)
#: bootstrap repetitions of the interval estimates
BOOTSTRAP_REPS = 2000
#: The distractor testbeds' probe columns: summary key -> column title
DISTRACTOR_COLUMNS = {
    "task_r2": "task R^2",
    "distractor_r2": "distractor R^2",
    "distractor_variance_fraction": "z from distractors",
    "distractor_centroid_r2": "distractors' centroid R^2",
}


class NoFinishedRunError(FileNotFoundError):
    """The output folder holds no finished run."""


def load_runs(out: Path) -> list[dict[str, Any]]:
    """
    :param out: the study's output folder
    :return: the finished runs: their summary, with their metrics as ``"metrics"`` (column -> array)
    :raises ~sb3_jepa.study.runner.CorruptRunError: naming a run file that does not parse (no report is built from
        half a file; ``study run`` moves it aside and does that run again)
    """
    runs = []
    for summary_path in sorted(out.glob("*/*/seed*/summary.json")):
        summary = check_run_files(summary_path.parent)
        metrics: dict[str, list[float]] = {}
        metrics_path = summary_path.with_name("metrics.csv")
        if metrics_path.exists():
            with open(metrics_path) as file:
                for row in csv.DictReader(file):
                    for key, value in row.items():
                        metrics.setdefault(key, []).append(float(value) if value not in ("", None) else np.nan)
        summary["metrics"] = {key: np.asarray(values) for key, values in metrics.items()}
        runs.append(summary)
    return runs


def interval_estimates(scores: dict[str, np.ndarray], seed: int = 0) -> dict[str, dict[str, tuple[float, float, float]]]:
    """
    IQM and mean of each configuration's scores, with 95% stratified bootstrap intervals (rliable).

    :param scores: configuration -> scores, shape ``(n_runs,)``
    :param seed: seed of the bootstrap
    :return: configuration -> ``{"iqm": (value, low, high), "mean": (value, low, high)}``
    """
    from rliable import library as rly
    from rliable import metrics

    def aggregate(x: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x)])

    score_dict = {name: values.reshape(-1, 1) for name, values in scores.items() if len(values) > 0}
    point, intervals = rly.get_interval_estimates(
        score_dict, aggregate, reps=BOOTSTRAP_REPS, random_state=np.random.RandomState(seed)
    )
    return {
        name: {
            stat: (float(point[name][i]), float(intervals[name][0, i]), float(intervals[name][1, i]))
            for i, stat in enumerate(("iqm", "mean"))
        }
        for name in score_dict
    }


def _curve(runs: list[dict[str, Any]], column: str, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    series = []
    for run in runs:
        steps, values = run["metrics"].get("timesteps"), run["metrics"].get(column)
        if steps is None or values is None or len(steps) < 2:
            continue
        keep = np.isfinite(values)
        if keep.sum() < 2:
            continue
        series.append(np.interp(grid, steps[keep], values[keep], left=np.nan, right=np.nan))
    if not series:
        return None
    stacked = np.vstack(series)
    count = np.sum(np.isfinite(stacked), axis=0)
    mean = np.nanmean(np.where(count > 0, stacked, 0.0), axis=0)
    with warnings.catch_warnings():
        # grid points before any run's first update are all-NaN columns: their error is NaN, as it should be
        warnings.simplefilter("ignore", RuntimeWarning)
        error = np.nanstd(stacked, axis=0) / np.sqrt(np.maximum(count, 1))
    return np.where(count > 0, mean, np.nan), error


def plot_environment(env_id: str, runs: list[dict[str, Any]], path: Path) -> None:
    """
    :param env_id: the environment
    :param runs: its finished runs (all configurations)
    :param path: the PNG to write
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    configs = sorted({run["config"] for run in runs})
    budget = max(run["timesteps"] for run in runs)
    grid = np.linspace(0, budget, 200)
    figure, axes = plt.subplots(1, len(CURVES), figsize=(6 * len(CURVES), 4.2))
    for axis, (column, label, log_scale) in zip(axes, CURVES, strict=True):
        for config in configs:
            curve = _curve([run for run in runs if run["config"] == config], column, grid)
            if curve is None:
                continue
            mean, error = curve
            n_seeds = sum(run["config"] == config for run in runs)
            (line,) = axis.plot(grid, mean, label=f"{config} ({n_seeds} seeds)")
            axis.fill_between(grid, mean - error, mean + error, color=line.get_color(), alpha=0.2)
        axis.set_xlabel("timesteps")
        axis.set_ylabel(label)
        if log_scale:
            axis.set_yscale("log")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(f"{env_id}: mean over seeds, band = 1 standard error")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _format(estimate: tuple[float, float, float] | None) -> str:
    if estimate is None:
        return "n/a"
    value, low, high = estimate
    return f"{value:.1f} [{low:.1f}, {high:.1f}]"


def _mean_of(runs: list[dict[str, Any]], key: str) -> str:
    values = [run[key] for run in runs if run.get(key) is not None]
    if not values:
        return "n/a"
    return f"{np.mean(values):.3g} (min {np.min(values):.3g})"


def _mean_interval(runs: list[dict[str, Any]], key: str) -> str:
    """
    :return: the mean of ``key`` over the runs (seeds) with its 95% percentile bootstrap interval (over seeds,
        :data:`BOOTSTRAP_REPS` repetitions, a fixed generator), then ``(k of n)`` where only k of the n runs have
        it; or ``n/a``
    """
    values = np.array([run[key] for run in runs if run.get(key) is not None], dtype=np.float64)
    if len(values) == 0:
        return "n/a"
    means = np.random.default_rng(0).choice(values, size=(BOOTSTRAP_REPS, len(values))).mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    # Runs recorded before a score existed (and whose model is gone) lack it: say over how many it is
    fewer = f" ({len(values)} of {len(runs)})" if len(values) < len(runs) else ""
    return f"{values.mean():.3f} [{low:.3f}, {high:.3f}]{fewer}"


def _probe_split_note(runs: list[dict[str, Any]]) -> str:
    """:return: a sentence on the probed runs recorded before whole episodes were held out, if any, else ``""``"""
    probed = [run for run in runs if run.get("probe_r2") is not None]
    random_rows = [run for run in probed if run.get("probe_split") != "episodes"]
    if not random_rows:
        return ""
    return (
        f" {len(random_rows)} of the {len(probed)} probed runs were recorded by an earlier version, which held out "
        "random steps instead: nearly alike steps of one episode on both sides score higher than unseen episodes."
    )


def write_report(out: Path) -> Path:
    """
    Draw the plots and write ``report.md`` (and ``results.csv``, one row per run) from the finished runs.

    :param out: the study's output folder
    :return: the report's path
    """
    runs = load_runs(out)
    if not runs:
        raise NoFinishedRunError(f"No finished run under {out} (runs write <env>/<config>/seed<N>/summary.json)")
    lines = [
        "# Study report",
        "",
        "Returns: IQM and mean over seeds with 95% stratified bootstrap intervals (rliable, "
        f"{BOOTSTRAP_REPS} repetitions). *Eval* is the final policy's mean return over the evaluation episodes; "
        "*train* is the mean return of the training episodes that ended in the last 10% of the budget. "
        "Effective rank (RankMe of the centred batch) and embedding std (mean per-dimension std) are the final "
        "update's, averaged over seeds (min over seeds in brackets). The JEPA loss is the squared error summed "
        "over embedding dimensions and averaged over transitions (the paper's ||W(z_t, a_t) - z_{t+1}||^2), so "
        "`jepa_coef` weighs it against the RL loss per transition, not per dimension (the `cosine` loss is "
        "2 - 2 cos instead). Probe R^2: R^2 of linear probes from the final policy's embeddings to each true "
        "state variable on held-out episodes (whole episodes, so that no test step is a near copy of a fitted one), "
        "averaged over variables (environments that report their state only). On the distractor testbeds, task "
        "R^2 and distractor R^2 split that mean between the task's variables and the distractors' (which the reward "
        "never depends on), and *z from distractors* is the fraction of the embedding's variance that a linear map "
        "from the distractors' state explains (adjusted R^2 on all rows; means over seeds, 95% bootstrap intervals over "
        "seeds)." + _probe_split_note(runs),
        "",
    ]
    rows_csv = []
    for env_id in sorted({run["env_id"] for run in runs}):
        env_runs = [run for run in runs if run["env_id"] == env_id]
        configs = sorted({run["config"] for run in env_runs})
        image = out / f"{env_id.replace('/', '-')}.png"
        plot_environment(env_id, env_runs, image)
        estimates: dict[str, dict[str, dict[str, tuple[float, float, float]]]] = {}
        for kind in ("eval_return", "train_return"):
            scores = {
                config: np.array([run[kind] for run in env_runs if run["config"] == config and run[kind] is not None])
                for config in configs
            }
            estimates[kind] = interval_estimates(scores)
        budget = max(run["timesteps"] for run in env_runs)
        # The distractor testbeds' probes, where the runs have them
        parts = [key for key in DISTRACTOR_COLUMNS if any(run.get(key) is not None for run in env_runs)]
        lines += [
            f"## {env_id} ({budget:,} timesteps, {env_runs[0]['algo']})",
            "",
            f"![{env_id}]({image.name})",
            "",
            "| configuration | seeds | eval return IQM [95% CI] | eval return mean [95% CI] | train return IQM [95% CI] "
            "| effective rank | embedding std | probe R^2 |" + "".join(f" {DISTRACTOR_COLUMNS[key]} |" for key in parts),
            "| --- | --- | --- | --- | --- | --- | --- | --- |" + " --- |" * len(parts),
        ]
        for config in configs:
            config_runs = [run for run in env_runs if run["config"] == config]
            eval_estimate = estimates["eval_return"].get(config, {})
            train_estimate = estimates["train_return"].get(config, {})
            lines.append(
                f"| {config} | {len(config_runs)} | {_format(eval_estimate.get('iqm'))} "
                f"| {_format(eval_estimate.get('mean'))} | {_format(train_estimate.get('iqm'))} "
                f"| {_mean_of(config_runs, 'effective_rank')} | {_mean_of(config_runs, 'embedding_std')} "
                f"| {_mean_of(config_runs, 'probe_r2_mean')} |"
                + "".join(f" {_mean_interval(config_runs, key)} |" for key in parts)
            )
        lines.append("")
        for run in env_runs:
            rows_csv.append(
                {key: value for key, value in run.items() if key not in ("metrics", "hyperparams", "eval_returns")}
            )
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    with open(out / "results.csv", "w", newline="") as file:
        # Runs recorded by earlier versions lack the newer columns (left empty)
        fieldnames = list(dict.fromkeys(key for row in rows_csv for key in row))
        writer = csv.DictWriter(file, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows_csv)
    return report
