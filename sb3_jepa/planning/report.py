"""
The planning evaluation's report: ``report.md`` (success rates per configuration with 95% intervals, same-room and
cross-room apart, final distances, planning time per step, the references, the open-loop prediction error and the
study's collapse metrics), ``results.csv`` (one row per configuration and seed) and ``planning.png``.

Intervals: a percentile bootstrap for the crossed design (every seed plays the same pairs): each repetition resamples
the training seeds and, once for all of them, the pairs, so that both the seed-to-seed spread and the finite set of
pairs are in the interval.
"""

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

#: Bootstrap repetitions
BOOTSTRAP_REPS = 2000
#: The prediction-error steps shown in the table
TABLE_STEPS = (1, 4, 16)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def load_episodes(out: Path) -> list[dict[str, Any]]:
    """:return: every episode of the evaluation, with typed fields"""
    rows = []
    for path in sorted((out / "episodes").glob("**/*.csv")):
        for row in _read_csv(path):
            rows.append(
                dict(
                    row,
                    seed=int(row["seed"]),
                    pair=int(row["pair"]),
                    cross_room=row["cross_room"] == "True",
                    success=row["success"] == "True",
                    final_distance=float(row["final_distance"]),
                    start_distance=float(row["start_distance"]),
                    steps=int(row["steps"]),
                    planning_time_s=float(row["planning_time_s"]),
                )
            )
    return rows


def bootstrap_mean(values: np.ndarray, reps: int = BOOTSTRAP_REPS, seed: int = 0) -> tuple[float, float, float]:
    """
    The mean of a ``(seeds, pairs)`` table with a 95% percentile bootstrap interval for a crossed design (every
    seed plays the same pairs): each repetition draws the pairs with replacement once, the seeds with replacement,
    and takes the mean of that seeds x pairs sub-table.

    One pair draw for all the seeds, because a pair is as hard for every seed: drawing the pairs anew within each
    seed would average the pairs' difficulty over the seeds as if it were independent, and shrink the interval by
    up to ``sqrt(n_seeds)``. The pairs are drawn first, so a table of identical seed rows gives exactly the
    one-seed interval.

    :param values: shape ``(n_seeds, n_pairs)``
    :param reps: the bootstrap repetitions
    :param seed: the bootstrap's random seed
    :return: ``(mean, low, high)``
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"values must be a non-empty (seeds, pairs) table, got shape {values.shape}")
    if isinstance(reps, bool) or not isinstance(reps, (int, np.integer)) or reps < 1:
        raise ValueError(f"reps must be a positive int, got {reps!r}")
    rng = np.random.default_rng(seed)
    n_seeds, n_pairs = values.shape
    pairs = rng.integers(n_pairs, size=(reps, n_pairs))
    seeds = rng.integers(n_seeds, size=(reps, n_seeds))
    means = values[seeds[:, :, None], pairs[:, None, :]].mean(axis=(1, 2))
    low, high = np.percentile(means, [2.5, 97.5])
    return float(values.mean()), float(low), float(high)


def _table(episodes: list[dict[str, Any]], key: str, cross: bool | None) -> np.ndarray:
    """``(seeds, pairs)`` array of ``key`` for the episodes given (one configuration and controller)"""
    chosen = [e for e in episodes if cross is None or e["cross_room"] == cross]
    seeds = sorted({e["seed"] for e in chosen})
    pairs = sorted({e["pair"] for e in chosen})
    table = np.full((len(seeds), len(pairs)), np.nan)
    for e in chosen:
        table[seeds.index(e["seed"]), pairs.index(e["pair"])] = float(e[key])
    return table


def _percent(estimate: tuple[float, float, float]) -> str:
    value, low, high = estimate
    return f"{100 * value:.0f}% [{100 * low:.0f}, {100 * high:.0f}]"


def _study_metrics(study: Path | None, env_id: str, config: str) -> dict[str, float | None]:
    """The study's final effective rank, embedding std and probe R^2, averaged over seeds"""
    values: dict[str, list[float]] = {"effective_rank": [], "embedding_std": [], "probe_r2_mean": []}
    if study is not None:
        for path in (study / env_id.replace("/", "-") / config).glob("seed*/summary.json"):
            summary = json.loads(path.read_text())
            for key in values:
                if summary.get(key) is not None:
                    values[key].append(float(summary[key]))
    return {key: float(np.mean(v)) if v else None for key, v in values.items()}


def _prediction(out: Path, config: str) -> dict[int, list[float]]:
    """step -> the relative open-loop errors of the configuration's seeds"""
    errors: dict[int, list[float]] = {}
    for path in sorted((out / "prediction" / config).glob("seed*.csv")):
        for row in _read_csv(path):
            errors.setdefault(int(row["step"]), []).append(float(row["relative_error"]))
    return errors


def write_report(out: Path, study: Path | None = None) -> Path:
    """
    :param out: the evaluation's output folder
    :param study: the study the models came from (for its collapse metrics), or None
    :return: the report's path
    """
    settings = json.loads((out / "settings.json").read_text())
    episodes = load_episodes(out)
    if not episodes:
        raise FileNotFoundError(f"No evaluated episode under {out}/episodes")
    configs = sorted({e["config"] for e in episodes if e["controller"] != "random"})
    random_episodes = [e for e in episodes if e["controller"] == "random"]
    header = (
        ["configuration", "seeds", "planner success", "same room", "cross room", "final distance (px)"]
        + ["planning ms/step", "greedy policy success", "same / cross"]
        + [f"pred. error k={k}" for k in TABLE_STEPS]
        + ["effective rank", "embedding std", "probe R^2"]
    )
    limit = f"after {settings['max_steps']} steps" if settings["max_steps"] else "at the environment's time limit"
    lines = [
        "# Planning evaluation",
        "",
        f"Environment `{settings['env_id']}`; {settings['n_pairs']} fixed start/goal pairs (seed {settings['pair_seed']};"
        f" the first half in the same room, the rest across the wall). Planner: `{settings['method']}`, horizon "
        f"{settings['horizon']}, replanning every {settings['replan_every']} steps, cost `{settings['cost']}`, "
        f"options {settings['options']}, normalised distances: {settings['normalize']}. Success: the agent within "
        f"4.5 px of the goal (the episode ends there); else the final distance is read {limit}. Intervals: 95% "
        f"bootstrap over training seeds and, shared by the seeds, pairs ({BOOTSTRAP_REPS} repetitions). Prediction "
        "error: "
        "open-loop, random actions, "
        "squared error over the embeddings' total variance (1 = as far as a typical embedding from their mean).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * len(header),
    ]
    rows_csv = []
    summary: dict[str, dict[str, Any]] = {}
    for config in configs:
        planner = [e for e in episodes if e["config"] == config and e["controller"] == "planner"]
        policy = [e for e in episodes if e["config"] == config and e["controller"] == "policy"]
        seeds = sorted({e["seed"] for e in planner})
        success = {
            name: bootstrap_mean(_table(planner, "success", cross))
            for name, cross in (("all", None), ("same", False), ("cross", True))
        }
        greedy = {
            name: bootstrap_mean(_table(policy, "success", cross))
            for name, cross in (("all", None), ("same", False), ("cross", True))
        }
        distance = bootstrap_mean(_table(planner, "final_distance", None))
        ms_per_step = 1000 * sum(e["planning_time_s"] for e in planner) / max(1, sum(e["steps"] for e in planner))
        errors = _prediction(out, config)
        metrics = _study_metrics(study, settings["env_id"], config)
        summary[config] = dict(success=success, greedy=greedy, errors=errors)
        error_cells = [f"{np.mean(errors[k]):.2f}" if k in errors else "n/a" for k in TABLE_STEPS]
        metric_cells = [
            "n/a" if metrics[key] is None else f"{metrics[key]:.3g}"
            for key in ("effective_rank", "embedding_std", "probe_r2_mean")
        ]
        lines.append(
            f"| {config} | {len(seeds)} | {_percent(success['all'])} | {_percent(success['same'])} "
            f"| {_percent(success['cross'])} | {distance[0]:.1f} [{distance[1]:.1f}, {distance[2]:.1f}] "
            f"| {ms_per_step:.0f} | {_percent(greedy['all'])} | {100 * greedy['same'][0]:.0f}% / "
            f"{100 * greedy['cross'][0]:.0f}% | " + " | ".join(error_cells) + " | " + " | ".join(metric_cells) + " |"
        )
        for seed in seeds:
            mine = [e for e in planner if e["seed"] == seed]
            theirs = [e for e in policy if e["seed"] == seed]
            rows_csv.append(
                dict(
                    config=config,
                    seed=seed,
                    planner_success=np.mean([e["success"] for e in mine]),
                    planner_success_same=np.mean([e["success"] for e in mine if not e["cross_room"]]),
                    planner_success_cross=np.mean([e["success"] for e in mine if e["cross_room"]]),
                    planner_final_distance=np.mean([e["final_distance"] for e in mine]),
                    policy_success=np.mean([e["success"] for e in theirs]),
                    planning_ms_per_step=1000
                    * sum(e["planning_time_s"] for e in mine)
                    / max(1, sum(e["steps"] for e in mine)),
                )
            )
    if random_episodes:
        same = np.mean([e["success"] for e in random_episodes if not e["cross_room"]])
        cross = np.mean([e["success"] for e in random_episodes if e["cross_room"]])
        lines += [
            "",
            f"Random actions on the same pairs: {100 * np.mean([e['success'] for e in random_episodes]):.0f}% success "
            f"({100 * same:.0f}% same room, {100 * cross:.0f}% cross room), mean final distance "
            f"{np.mean([e['final_distance'] for e in random_episodes]):.1f} px.",
        ]
    lines += ["", "![planning](planning.png)", ""]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    with open(out / "results.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows_csv[0]) if rows_csv else ["config"])
        writer.writeheader()
        writer.writerows(rows_csv)
    _plot(out / "planning.png", summary, random_episodes)
    return out / "report.md"


def _plot(path: Path, summary: dict[str, dict[str, Any]], random_episodes: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, (bars, curves) = plt.subplots(1, 2, figsize=(13, 4.5))
    configs = list(summary)
    x = np.arange(len(configs))
    for offset, (name, label) in zip((-0.2, 0.2), (("same", "same room"), ("cross", "cross room")), strict=True):
        values = np.array([summary[c]["success"][name] for c in configs]).reshape(-1, 3)
        bars.bar(
            x + offset,
            100 * values[:, 0],
            width=0.38,
            label=f"planner, {label}",
            yerr=100 * np.abs(values[:, 1:].T - values[:, 0]),
            capsize=3,
        )
        greedy = np.array([summary[c]["greedy"][name][0] for c in configs])
        bars.scatter(
            x + offset, 100 * greedy, marker="x", color="black", zorder=3, label="greedy policy" if name == "same" else None
        )
    if random_episodes:
        for name, cross, style in (("same", False, "--"), ("cross", True, ":")):
            rate = np.mean([e["success"] for e in random_episodes if e["cross_room"] == cross])
            bars.axhline(100 * rate, color="gray", linestyle=style, label=f"random actions, {name} room")
    bars.set_xticks(x, [c.split(":")[0] for c in configs], rotation=15, fontsize=8)
    bars.set_ylabel("success rate (%)")
    bars.set_ylim(0, 100)
    bars.set_title("MPC with the learned world model (95% bootstrap CI)")
    bars.legend(fontsize=7)
    for config in configs:
        errors = summary[config]["errors"]
        if not errors:
            continue
        steps = sorted(errors)
        mean = np.array([np.mean(errors[k]) for k in steps])
        (line,) = curves.plot(steps, mean, label=config.split(":")[0])
        low = np.array([np.min(errors[k]) for k in steps])
        high = np.array([np.max(errors[k]) for k in steps])
        curves.fill_between(steps, low, high, color=line.get_color(), alpha=0.2)
    curves.set_xlabel("open-loop prediction step k")
    curves.set_ylabel("error / embedding variance")
    curves.set_yscale("log")
    curves.set_title("open-loop latent prediction error (mean, band: min-max over seeds)")
    curves.legend(fontsize=8)
    curves.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
