"""The planning evaluation command (``python -m sb3_jepa.planning``) on real, briefly trained models."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sb3_jepa import PPOJEPA
from sb3_jepa.planning.evaluate import make_pairs
from sb3_jepa.planning.report import bootstrap_mean

ENV_ID = "TwoRoomsDiscrete-v0"


def fake_study(root: Path) -> Path:
    """A study folder as ``python -m sb3_jepa.study run`` leaves it, holding two briefly trained models"""
    for config, coef in (("rl_only", 0.0), ("jepa_rl", 0.01)):
        run = root / ENV_ID / config / "seed0"
        (run / "zoo").mkdir(parents=True)
        model = PPOJEPA("CnnPolicy", ENV_ID, n_steps=16, batch_size=16, n_epochs=1, jepa_coef=coef, seed=0, device="cpu")
        model.learn(16).save(run / "zoo" / "model.zip")
        (run / "summary.json").write_text(json.dumps(dict(algo="ppo_jepa", effective_rank=3.0, embedding_std=0.1)))
    return root


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def planning(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sb3_jepa.planning", *args], capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.slow
def test_planning_evaluation_command(tmp_path):
    study, out = fake_study(tmp_path / "study"), tmp_path / "planning"
    tiny = ["--pairs", "4", "--horizon", "2", "--max-steps", "6", "--prediction-horizon", "3", "--workers", "2"]
    tiny += ["--options", "n_samples:8", "n_elites:2", "n_iterations:1"]
    done = planning("evaluate", "--study", str(study), "--env", ENV_ID, "--out", str(out), *tiny)
    assert done.returncode == 0, done.stderr
    assert "2 models: 100% (16/16 episodes)" in done.stdout
    rows = read_rows(out / "episodes" / "jepa_rl" / "seed0.csv")
    assert [row["controller"] for row in rows] == ["planner"] * 4 + ["policy"] * 4
    assert [row["cross_room"] for row in rows[:4]] == ["False", "False", "True", "True"]
    assert all(1 <= int(row["steps"]) <= 6 for row in rows)
    assert len(read_rows(out / "episodes" / "random.csv")) == 4
    errors = read_rows(out / "prediction" / "rl_only" / "seed0.csv")
    assert [int(row["step"]) for row in errors] == [1, 2, 3]
    report = (out / "report.md").read_text()
    assert "| jepa_rl | 1 |" in report and "| rl_only | 1 |" in report and "Random actions on the same pairs" in report
    assert (out / "planning.png").stat().st_size > 0
    # A rerun skips the evaluated models; other settings into the same folder are refused before any work
    mtime = (out / "episodes" / "jepa_rl" / "seed0.csv").stat().st_mtime
    again = planning("evaluate", "--study", str(study), "--env", ENV_ID, "--out", str(out), *tiny)
    assert again.returncode == 0 and "episodes)" not in again.stdout
    assert (out / "episodes" / "jepa_rl" / "seed0.csv").stat().st_mtime == mtime
    other = planning("evaluate", "--study", str(study), "--env", ENV_ID, "--out", str(out), *tiny, "--pairs", "6")
    assert other.returncode == 2 and "holds results of other settings (n_pairs differ)" in other.stderr


def test_planning_command_refuses_bad_arguments(tmp_path):
    study = tmp_path / "study"
    for args, message in (
        (["--horizon", "0"], "--horizon must be >= 1"),
        (["--options", "temperature:1"], "--options: Unknown option(s) ['temperature'] for method 'cem'"),
        (["--env", "CartPole-v1"], "--env must be a Two Rooms id"),
        ([], "No finished study run under"),
        (["--configs", "jepa_rl"], "configs ['jepa_rl'] have no finished run"),
    ):
        done = planning("evaluate", "--study", str(study), "--out", str(tmp_path / "out"), *args)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
    assert not (tmp_path / "out").exists()


def test_pairs_are_fixed_and_split_by_room():
    pairs = make_pairs(ENV_ID, 10, seed=3)
    assert pairs == make_pairs(ENV_ID, 10, seed=3)
    assert [pair["cross_room"] for pair in pairs] == [False] * 5 + [True] * 5
    assert pairs != make_pairs(ENV_ID, 10, seed=4)


def test_bootstrap_mean_interval():
    values = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]], dtype=float)
    mean, low, high = bootstrap_mean(values, reps=500)
    assert mean == pytest.approx(0.5) and 0 <= low < mean < high <= 1
    # No spread, no interval
    assert bootstrap_mean(np.ones((3, 4)), reps=50) == (1.0, 1.0, 1.0)
    # One seed of 100 pairs, half successes: the binomial interval 0.5 +- 1.96 * sqrt(0.25 / 100) = [0.40, 0.60]
    _, low, high = bootstrap_mean(np.array([[1.0, 0.0] * 50]), reps=4000)
    assert low == pytest.approx(0.402, abs=0.02) and high == pytest.approx(0.598, abs=0.02)


def test_bootstrap_mean_crossed_design():
    """Every seed plays the same pairs: seeds that agree on every pair add no information about the pairs"""
    row = (np.random.default_rng(1).random(40) < 0.5).astype(float)
    one_seed = bootstrap_mean(row[None], reps=1000)
    # Resampling the pairs independently within each seed would shrink this by about sqrt(9) = 3
    assert bootstrap_mean(np.tile(row, (9, 1)), reps=1000) == one_seed
    assert one_seed[2] - one_seed[1] > 0.2


def test_bootstrap_mean_covers_a_crossed_table():
    """95% intervals cover the true mean about 95% of the time when the pairs' difficulty dominates"""
    rng = np.random.default_rng(0)
    n_seeds, n_pairs, covered, trials = 5, 30, 0, 200
    for trial in range(trials):
        pair_effect, seed_effect = rng.normal(size=n_pairs), 0.1 * rng.normal(size=n_seeds)
        noise = 0.3 * rng.normal(size=(n_seeds, n_pairs))
        _, low, high = bootstrap_mean(seed_effect[:, None] + pair_effect[None] + noise, reps=400, seed=trial)
        covered += low <= 0.0 <= high
    # Measured: 0.96 with one pair draw per repetition, 0.67 with independent draws within each seed (0.4.0)
    assert covered / trials >= 0.88


def test_bootstrap_mean_refuses_bad_tables():
    with pytest.raises(ValueError, match=r"values must be a non-empty \(seeds, pairs\) table, got shape \(4,\)"):
        bootstrap_mean(np.ones(4))
    with pytest.raises(ValueError, match="reps must be a positive int, got 0"):
        bootstrap_mean(np.ones((2, 2)), reps=0)
