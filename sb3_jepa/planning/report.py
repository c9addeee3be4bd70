"""
The planning evaluation's report:

- ``report.md``: success per configuration and controller with 95% intervals; per configuration and controller
  the same-room and cross-room success, the final distance and the time per environment step; the time per step
  of each controller; the random reference; the world model's open-loop prediction error next to the "no change"
  baseline, and the study's collapse metrics;
- ``results.csv``: one row per configuration, seed and controller (and one for the random reference);
- ``planning.png``: each controller's success per configuration, and the prediction errors against the horizon.

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
#: The prediction-error steps shown in the table (those evaluated, and the last one)
TABLE_STEPS = (1, 4, 16)
#: What each controller is, for the report
DESCRIPTIONS = {
    "greedy": "the trained policy, deterministic",
    "stochastic": "the trained policy, sampling",
    "planner": "the latent planner, distance to the goal only",
    "planner_prior": "the planner with policy samples among its candidates",
    "planner_prior_value": "the planner with policy samples and the critic's value of its last latent in its cost",
    "planner_prior_return": "the planner with policy samples and TD-MPC2's return estimate (predicted rewards and "
    "the discounted value of the last latent) in its cost",
    "random": "random actions (no model; one run on the same pairs)",
}
#: ``(name, cross_room)``: all pairs, the same-room ones, the cross-room ones
SPLITS = (("all", None), ("same", False), ("cross", True))


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def load_episodes(out: Path) -> list[dict[str, Any]]:
    """
    :param out: the evaluation's output folder
    :return: every episode of the evaluation, with typed fields
    """
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


def _pixels(estimate: tuple[float, float, float]) -> str:
    value, low, high = estimate
    return f"{value:.1f} [{low:.1f}, {high:.1f}]"


def _ms_per_step(episodes: list[dict[str, Any]]) -> float:
    """Time in the controller per environment step, over all the episodes given (long episodes weigh more)"""
    return 1000 * sum(e["planning_time_s"] for e in episodes) / max(1, sum(e["steps"] for e in episodes))


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


def _prediction(out: Path, config: str) -> dict[str, dict[int, list[float]]]:
    """``W`` (``relative_error``) and ``no_change`` (``no_change_error``): step -> the configuration's seeds' errors"""
    errors: dict[str, dict[int, list[float]]] = {"W": {}, "no_change": {}}
    for path in sorted((out / "prediction" / config).glob("seed*.csv")):
        for row in _read_csv(path):
            errors["W"].setdefault(int(row["step"]), []).append(float(row["relative_error"]))
            errors["no_change"].setdefault(int(row["step"]), []).append(float(row["no_change_error"]))
    return errors


def _summary(episodes: list[dict[str, Any]]) -> dict[str, Any]:
    """Success (all, same room, cross room) and final distance with intervals, and the time per step"""
    summary: dict[str, Any] = {name: bootstrap_mean(_table(episodes, "success", cross)) for name, cross in SPLITS}
    summary["distance"] = bootstrap_mean(_table(episodes, "final_distance", None))
    summary["ms_per_step"] = _ms_per_step(episodes)
    summary["seeds"] = len({e["seed"] for e in episodes})
    return summary


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _results_row(config: str, seed: int, controller: str, episodes: list[dict[str, Any]]) -> dict[str, Any]:
    def rate(chosen: list[dict[str, Any]]) -> float:
        return float(np.mean([e["success"] for e in chosen])) if chosen else float("nan")

    return dict(
        config=config,
        seed=seed,
        controller=controller,
        episodes=len(episodes),
        success=rate(episodes),
        success_same=rate([e for e in episodes if not e["cross_room"]]),
        success_cross=rate([e for e in episodes if e["cross_room"]]),
        final_distance=float(np.mean([e["final_distance"] for e in episodes])),
        ms_per_step=_ms_per_step(episodes),
    )


def write_report(out: Path, study: Path | None = None) -> Path:
    """
    :param out: the evaluation's output folder
    :param study: the study the models came from (for its collapse metrics), or None
    :return: the report's path
    """
    settings = json.loads((out / "settings.json").read_text())
    if "controllers" not in settings:
        raise ValueError(
            f"{out} was written by an older version of the evaluation (its settings.json has no controllers, and its "
            "prediction errors no no-change baseline): evaluate again into a new --out"
        )
    episodes = load_episodes(out)
    if not episodes:
        raise FileNotFoundError(f"No evaluated episode under {out}/episodes")
    controllers = [name for name in settings["controllers"] if name != "random"]
    configs = sorted({e["config"] for e in episodes if e["controller"] != "random"})
    random_episodes = [e for e in episodes if e["controller"] == "random"]
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    results: list[dict[str, Any]] = []
    for config in configs:
        summary[config] = {}
        for controller in controllers:
            mine = [e for e in episodes if e["config"] == config and e["controller"] == controller]
            if not mine:
                continue
            summary[config][controller] = _summary(mine)
            for seed in sorted({e["seed"] for e in mine}):
                results.append(_results_row(config, seed, controller, [e for e in mine if e["seed"] == seed]))
    random_summary = _summary(random_episodes) if random_episodes else None
    if random_episodes:
        results.append(_results_row("random", 0, "random", random_episodes))

    limit = f"after {settings['max_steps']} steps" if settings["max_steps"] else "at the environment's time limit"
    described = "; ".join(f"`{name}`: {DESCRIPTIONS[name]}" for name in settings["controllers"])
    lines = [
        "# Planning evaluation",
        "",
        f"Environment `{settings['env_id']}`; {settings['n_pairs']} fixed start/goal pairs (seed {settings['pair_seed']};"
        f" the first half in the same room, the rest across the wall), every controller on every pair of every model. "
        f"Controllers: {described}. Planner: `{settings['method']}`, horizon {settings['horizon']}, replanning every "
        f"{settings['replan_every']} steps, cost `{settings['cost']}`, options {settings['options']}, normalised "
        f"distances: {settings['normalize']}; prior `{settings['prior']}` with {settings['n_prior_samples']} samples "
        f"(planner_prior, planner_prior_value, planner_prior_return), value weight {settings['value_weight']} "
        "(planner_prior_value, planner_prior_return). "
        f"Every episode is seeded by its pair. Success: the agent within 4.5 px of the goal (the episode ends there); "
        f"else the final distance is read {limit}. Intervals: 95% bootstrap over training seeds and, shared by the "
        f"seeds, pairs ({BOOTSTRAP_REPS} repetitions).",
        "",
        "## Success per configuration and controller",
        "",
    ]
    lines += _markdown_table(
        ["configuration", "seeds", *controllers],
        [
            [config, str(max((s["seeds"] for s in summary[config].values()), default=0))]
            + [_percent(summary[config][c]["all"]) if c in summary[config] else "n/a" for c in controllers]
            for config in configs
        ],
    )
    if random_summary is not None:
        lines += [
            "",
            f"Random actions on the same pairs (one run, no model): {_percent(random_summary['all'])} success "
            f"({100 * random_summary['same'][0]:.0f}% same room, {100 * random_summary['cross'][0]:.0f}% cross room), "
            f"mean final distance {random_summary['distance'][0]:.1f} px.",
        ]
    lines += ["", "## Same room, cross room, final distance, time per step", ""]
    detail_rows = [
        [config, controller, _percent(c["same"]), _percent(c["cross"]), _pixels(c["distance"]), f"{c['ms_per_step']:.1f}"]
        for config in configs
        for controller, c in summary[config].items()
    ]
    if random_summary is not None:
        r = random_summary
        detail_rows.append(
            ["(none)", "random", _percent(r["same"]), _percent(r["cross"]), _pixels(r["distance"]), f"{r['ms_per_step']:.2f}"]
        )
    lines += _markdown_table(
        ["configuration", "controller", "same room", "cross room", "final distance (px)", "ms/step"], detail_rows
    )
    lines += [
        "",
        "## Time per environment step",
        "",
        "Wall time in the controller per environment step (the planner's search, the policy's forward pass), over "
        "every model's episodes; other processes sharing the machine inflate it.",
        "",
    ]
    timed = [name for name in settings["controllers"] if any(e["controller"] == name for e in episodes)]
    lines += _markdown_table(
        ["controller", "ms/step", "steps"],
        [
            [name, f"{_ms_per_step(chosen):.2f}", str(sum(e["steps"] for e in chosen))]
            for name in timed
            for chosen in [[e for e in episodes if e["controller"] == name]]
        ],
    )
    errors = {config: _prediction(out, config) for config in configs}
    available = sorted({k for config in configs for k in errors[config]["W"]})
    steps = sorted({k for k in TABLE_STEPS if k in available} | ({available[-1]} if available else set()))
    lines += [
        "",
        '## World model: open-loop prediction error against "no change"',
        "",
        f"From each pair's start, {settings['prediction_horizon']} random actions; `W` rolled open-loop from `E(o_0)`. "
        "Each cell: `W`'s squared error / the no-change baseline's (`z_k = E(o_0)`: how far `E(o_k)` moved), both over "
        "the embeddings' total variance (1 = as far as a typical embedding from their mean), mean over seeds. `W` "
        "has learned dynamics where its error is below the baseline's.",
        "",
    ]
    world_rows = []
    for config in configs:
        metrics = _study_metrics(study, settings["env_id"], config)
        cells = [
            f"{np.mean(errors[config]['W'][k]):.2f} / {np.mean(errors[config]['no_change'][k]):.2f}"
            if k in errors[config]["W"]
            else "n/a"
            for k in steps
        ]
        metric_cells = ["n/a" if value is None else f"{value:.3g}" for value in metrics.values()]
        world_rows.append([config, str(len(errors[config]["W"].get(1, []))), *cells, *metric_cells])
    step_columns = [f"k={k}: W / no change" for k in steps]
    metric_columns = ["effective rank", "embedding std", "probe R^2"]
    lines += _markdown_table(["configuration", "seeds", *step_columns, *metric_columns], world_rows)
    lines += ["", "![planning](planning.png)", ""]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    with open(out / "results.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(results[0]) if results else ["config"])
        writer.writeheader()
        writer.writerows(results)
    _plot(out / "planning.png", summary, controllers, random_summary, errors)
    return out / "report.md"


def _plot(
    path: Path,
    summary: dict[str, dict[str, dict[str, Any]]],
    controllers: list[str],
    random_summary: dict[str, Any] | None,
    errors: dict[str, dict[str, dict[int, list[float]]]],
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, (bars, curves) = plt.subplots(1, 2, figsize=(14, 4.8))
    configs = list(summary)
    x = np.arange(len(configs))
    width = 0.8 / max(1, len(controllers))
    for position, controller in enumerate(controllers):
        values = np.array([summary[c][controller]["all"] if controller in summary[c] else (np.nan,) * 3 for c in configs])
        bars.bar(
            x - 0.4 + width * (position + 0.5),
            100 * values[:, 0],
            width=width,
            label=controller,
            yerr=100 * np.abs(values[:, 1:].T - values[:, 0]),
            capsize=2,
        )
    if random_summary is not None:
        bars.axhline(100 * random_summary["all"][0], color="gray", linestyle="--", label="random actions")
    bars.set_xticks(x, [c.split(":")[0] for c in configs], rotation=15, fontsize=8)
    bars.set_ylabel("success rate (%)")
    bars.set_ylim(0, 100)
    bars.set_title("success per controller (95% bootstrap CI)")
    bars.legend(fontsize=7)
    for config in configs:
        w_errors, baseline = errors[config]["W"], errors[config]["no_change"]
        if not w_errors:
            continue
        steps = sorted(w_errors)
        (line,) = curves.plot(steps, [np.mean(w_errors[k]) for k in steps], label=f"{config.split(':')[0]}: W")
        low = np.array([np.min(w_errors[k]) for k in steps])
        high = np.array([np.max(w_errors[k]) for k in steps])
        curves.fill_between(steps, low, high, color=line.get_color(), alpha=0.2)
        curves.plot(steps, [np.mean(baseline[k]) for k in steps], color=line.get_color(), linestyle="--")
    curves.plot([], [], color="black", linestyle="--", label="no change (z_k = z_0)")
    curves.set_xlabel("open-loop prediction step k")
    curves.set_ylabel("error / embedding variance")
    curves.set_yscale("log")
    curves.set_title("open-loop prediction error (mean, band: min-max over seeds) vs no change")
    curves.legend(fontsize=7)
    curves.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
