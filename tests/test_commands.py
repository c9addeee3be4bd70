"""The other commands a user runs: the Atari demo and the benchmarks (smoke runs with tiny budgets)."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_demo_trains_on_atari_and_prints_the_metrics():
    pytest.importorskip("ale_py")
    pytest.importorskip("cv2")
    output = run("-m", "sb3_jepa.demo", "--env", "BreakoutNoFrameskip-v4", "--timesteps", "160", "--n-envs", "2").stdout
    header, *rows = [line for line in output.splitlines() if "|" in line and "━" not in line]
    assert "jepa/effective_rank" in header and "jepa/embedding_std" in header
    assert len(rows) >= 2 and all(float(row.split("|")[0]) > 0 for row in rows)


@pytest.mark.slow
def test_speed_benchmark_smoke():
    output = run("-m", "benchmarks.speed", "--pairs", "a2c-mlp", "--timesteps", "512", "--repeats", "2").stdout
    lines = [line for line in output.splitlines() if line.strip().startswith("a2c-mlp")]
    assert len(lines) == 1
    for line in lines:
        ratio = float(line.split("|")[1])
        assert 0.0 < ratio < 10.0


@pytest.mark.slow
def test_startup_benchmark_smoke():
    output = run("-m", "benchmarks.startup", "--repeats", "2").stdout
    assert "import of sb3_jepa_zoo_hook at start" in output and "opted out" in output
