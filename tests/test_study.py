"""``python -m sb3_jepa.study``: runs on worker processes, report with interval estimates and plots, resumable."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sb3_jepa.study.configs import CONFIGS, config_kwargs

TINY = [
    "--env", "CartPole-v1", "--timesteps", "512", "--eval-episodes", "2", "--workers", "2", "--no-progress",
    "--hyperparams", "n_envs:2", "n_steps:64", "batch_size:64", "n_epochs:2",
]  # fmt: skip


def study(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "sb3_jepa.study", *args], capture_output=True, text=True, timeout=600,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )  # fmt: skip
    if check and result.returncode != 0:
        raise AssertionError(f"study {args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@pytest.mark.slow
def test_run_report_and_resume(tmp_path):
    out = tmp_path / "study"
    configs = ["rl_only", "jepa_rl:jepa_coef=0.5"]
    study("run", *TINY, "--configs", *configs, "--seeds", "0", "1", "--out", str(out))

    runs = sorted(out.glob("CartPole-v1/*/seed*/summary.json"))
    assert len(runs) == 4
    summary = json.loads(runs[0].read_text())
    assert summary["eval_return"] > 0 and len(summary["eval_returns"]) == 2
    for run in runs:
        with open(run.with_name("metrics.csv")) as file:
            rows = list(csv.DictReader(file))
        assert rows and {"timesteps", "ep_rew_mean", "jepa/effective_rank", "jepa/embedding_std"} <= set(rows[0])
        assert float(rows[-1]["timesteps"]) == 512
        assert (run.parent / "zoo" / "model.zip").exists()
    # Only the JEPA configuration logs a JEPA loss; both log the collapse metrics
    jepa_run = json.loads((out / "CartPole-v1" / "jepa_rl:jepa_coef=0.5" / "seed0" / "summary.json").read_text())
    assert jepa_run["jepa_loss"] is not None and jepa_run["hyperparams"]["n_envs"] == 2

    report = (out / "report.md").read_text()
    assert "## CartPole-v1 (512 timesteps, ppo_jepa)" in report
    assert "| rl_only | 2 |" in report and "| jepa_rl:jepa_coef=0.5 | 2 |" in report
    assert "95% stratified bootstrap" in report
    assert "summed over embedding dimensions and averaged over transitions" in report
    assert (out / "CartPole-v1.png").stat().st_size > 10_000
    with open(out / "results.csv") as file:
        assert len(list(csv.DictReader(file))) == 4

    # A rerun skips finished runs; a run without its summary (interrupted) runs again
    mtimes = {run: run.stat().st_mtime_ns for run in runs}
    runs[0].unlink()
    study("run", *TINY, "--configs", *configs, "--seeds", "0", "1", "--out", str(out))
    assert runs[0].exists()
    assert all(run.stat().st_mtime_ns == mtime for run, mtime in mtimes.items() if run != runs[0])

    # The report alone, from the files
    (out / "report.md").unlink()
    assert Path(study("report", "--out", str(out)).stdout.strip()) == out / "report.md"
    assert (out / "report.md").exists()


@pytest.mark.slow
def test_bad_input_fails_before_any_run(tmp_path):
    result = study("run", *TINY, "--configs", "jepa_rl", "no_such_config", "--out", str(tmp_path), check=False)
    assert result.returncode == 2 and "Unknown configuration 'no_such_config'" in result.stderr
    result = study("run", *TINY, "--algo", "a2c_jepa", "--configs", "jepa_rl_segments", "--out", str(tmp_path), check=False)
    assert result.returncode == 2 and "a2c_jepa does not accept" in result.stderr
    result = study("run", *TINY, "--timesteps", "0", "--out", str(tmp_path), check=False)
    assert result.returncode == 2
    assert not any(tmp_path.iterdir())
    result = study("report", "--out", str(tmp_path / "empty"), check=False)
    assert result.returncode != 0 and "No finished run" in result.stderr


def test_configs():
    listed = study("configs").stdout
    assert all(name in listed for name in CONFIGS)
    assert config_kwargs("rl_only") == {"jepa_coef": 0.0}
    assert config_kwargs("jepa_rl:jepa_coef=1e-4,jepa_target=ema,predictor_net_arch=[64]") == {
        "jepa_coef": 1e-4,
        "jepa_target": "ema",
        "predictor_net_arch": [64],
    }
    with pytest.raises(ValueError, match="key=value"):
        config_kwargs("jepa_rl:jepa_coef")
