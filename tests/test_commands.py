"""The other commands a user runs: the demo and the benchmarks (smoke runs with tiny budgets)."""

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.speed import make_model, pairs

REPO = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_demo_compares_the_three_settings(tmp_path):
    pytest.importorskip("minatar")
    out = tmp_path / "demo"
    output = run("-m", "sb3_jepa.demo", "--timesteps", "2048", "--eval-episodes", "1", "--out", str(out)).stdout
    rows = [line for line in output.splitlines() if line.count("|") == 3]
    assert "effective rank" in rows[0] and "embedding std" in rows[0]
    assert [row.split(":")[0] for row in rows[1:]] == ["rl_only", "jepa_rl", "jepa_only"]
    for row in rows[1:]:
        assert all(float(cell) >= 0 for cell in row.split("|")[1:])
    # progress as lines (stdout is not a terminal here), and the curves' PNG at the printed path
    assert "3 runs: 100% (6,144/6,144 steps" in output
    image = out / "MinAtar-Breakout-v1.png"
    assert f"Curves (return, rank, scale over training): {image}" in output and image.stat().st_size > 10_000


@pytest.mark.slow
def test_speed_benchmark_smoke():
    output = run(
        "-m", "benchmarks.speed", "--pairs", "a2c-mlp", "--timesteps", "512", "--repeats", "2", "--clock", "process"
    ).stdout
    assert "clock=process" in output
    lines = [line for line in output.splitlines() if line.strip().startswith("a2c-mlp")]
    assert len(lines) == 1
    for line in lines:
        ratio = float(line.split("|")[1])
        assert 0.0 < ratio < 10.0


@pytest.mark.slow
def test_speed_benchmark_update_only_smoke():
    output = run("-m", "benchmarks.speed", "--update", "--pairs", "a2c-mlp", "--repeats", "2", "--clock", "process").stdout
    (line,) = [line for line in output.splitlines() if line.startswith("a2c-mlp: train() JEPA/plain median")]
    assert "per minibatch (1 per update): extra" in line
    assert 0.0 < float(line.split("median ")[1].split()[0]) < 10.0


@pytest.mark.parametrize("pair_name", ["a2c-mlp", "ppo-mlp"])
def test_speed_benchmark_plain_flat_optimizer_is_sb3s_with_the_flat_step(pair_name):
    """--plain-optimizer flat: the plain side gets the JEPA side's optimizer class with SB3's own settings"""
    pair = pairs("BreakoutNoFrameskip-v4")[pair_name]
    models = {}
    for choice in ("sb3", "flat"):
        args = argparse.Namespace(device="cpu", target=None, segment_length=0, plain_optimizer=choice)
        models[choice] = make_model(pair, jepa=False, args=args, seed=0)
    jepa = make_model(pair, jepa=True, args=args, seed=0)
    sb3, flat = models["sb3"].policy.optimizer, models["flat"].policy.optimizer
    assert type(flat) is type(jepa.policy.optimizer) and type(flat) is not type(sb3)
    assert isinstance(flat, type(sb3))
    settings = {key: value for key, value in sb3.defaults.items() if key != "foreach"}
    assert {key: flat.defaults[key] for key in settings} == settings


@pytest.mark.slow
def test_startup_benchmark_smoke():
    output = run("-m", "benchmarks.startup", "--repeats", "2").stdout
    assert "import of sb3_jepa_zoo_hook at start" in output and "opted out" in output


@pytest.mark.slow
def test_return_ranking_smoke(tmp_path):
    """The planning diagnostic of docs/results/planning.md, on a barely trained model with a reward predictor."""
    from sb3_jepa import PPOJEPA

    model = PPOJEPA("CnnPolicy", "TwoRoomsDiscrete-v0", n_steps=16, batch_size=16, n_epochs=1, jepa_reward_coef=0.01, seed=0)
    model.learn(16).save(tmp_path / "TwoRoomsDiscrete-v0" / "jepa_rl" / "seed0" / "zoo" / "model.zip")
    output = run("-m", "benchmarks.return_ranking", str(tmp_path), "jepa_rl/seed0", "--pairs", "2", "--candidates", "4")
    (line,) = [line for line in output.stdout.splitlines() if line.startswith("jepa_rl/seed0 | ")]
    values = [float(v) for v in line.split("|")[1:]]
    assert len(values) == 5 and all(-1.0 <= v <= 1.0 for v in (values[0], values[1], values[4]))


@pytest.mark.slow
def test_predictor_refit_smoke(tmp_path):
    """Issue 17's world-model control: W refitted on the frozen E, then planned with (a barely trained model)."""
    from sb3_jepa import PPOJEPA

    model = PPOJEPA("CnnPolicy", "TwoRoomsDiscrete-v0", n_steps=16, batch_size=16, n_epochs=1, jepa_reward_coef=0.01, seed=0)
    model.learn(16).save(tmp_path / "TwoRoomsDiscrete-v0" / "jepa_rl" / "seed0" / "zoo" / "model.zip")
    tiny = ["--transitions", "40", "--iterations", "3", "--pairs", "1", "--max-steps", "2", "--controllers", "planner"]
    output = run("-m", "benchmarks.predictor_refit", str(tmp_path), "jepa_rl/seed0", *tiny, "--fit", "W", "R", "V")
    assert "R and V on W's rollouts of 12 steps" in output.stdout
    (line,) = [line for line in output.stdout.splitlines() if line.startswith("jepa_rl/seed0 | ")]
    _, no_change, as_trained, refitted, successes = line.split(" | ")
    assert all(float(value) >= 0.0 for value in (no_change, as_trained, refitted))
    assert successes.startswith("planner ") and 0.0 <= float(successes.split()[1]) <= 1.0
    (heads,) = [line for line in output.stdout.splitlines() if line.startswith("jepa_rl/seed0 heads on W's held-out")]
    errors = [float(word.rstrip(",;")) for word in heads.split(": ", 1)[1].split() if word[0].isdigit()]
    assert len(errors) == 4 and all(error >= 0.0 for error in errors)  # R and V, as trained and refitted


@pytest.mark.parametrize(
    "options, message",
    [
        (["--fit", "R", "--arch", "8"], "--arch and --value-coef are options of W's fit: add W to --fit"),
        (["--fit", "R", "--rollout-steps", "1"], "--rollout-steps must be >= 2"),
    ],
)
def test_predictor_refit_refuses_bad_options_before_any_work(options, message):
    command = ["-m", "benchmarks.predictor_refit", "runs/no-such-study", "jepa_rl/seed0", *options]
    result = subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 2 and message in result.stderr


@pytest.mark.slow
def test_oracle_planner_smoke(tmp_path):
    """Issue 17's ceiling: the policy-prior planner with the environment as its world model (a barely trained model)."""
    from sb3_jepa import PPOJEPA

    model = PPOJEPA("CnnPolicy", "TwoRoomsDiscrete-v0", n_steps=16, batch_size=16, n_epochs=1, jepa_reward_coef=0.01, seed=0)
    model.learn(16).save(tmp_path / "TwoRoomsDiscrete-v0" / "jepa_rl" / "seed0" / "zoo" / "model.zip")
    tiny = ["--pairs", "2", "--candidates", "3", "--horizon", "2", "--max-steps", "3"]
    output = run("-m", "benchmarks.oracle_planner", str(tmp_path), "jepa_rl/seed0", *tiny)
    lines = [line.split(" | ") for line in output.stdout.splitlines() if line.startswith("jepa_rl/seed0 | ")]
    assert [line[1] for line in lines] == ["stochastic", "oracle_return", "oracle_distance", "model_return", "model_distance"]
    for line in lines:
        assert all(cell.endswith("%") or cell == "nan%" for cell in line[2:5]) and float(line[5]) >= 0.0


@pytest.mark.slow
def test_predictor_refit_fresh_w_with_value_term_smoke(tmp_path):
    """The refit's options: a fresh residual W with a value term, planned with the policy's samples only."""
    from sb3_jepa import PPOJEPA

    model = PPOJEPA("CnnPolicy", "TwoRoomsDiscrete-v0", n_steps=16, batch_size=16, n_epochs=1, jepa_reward_coef=0.01, seed=0)
    model.learn(16).save(tmp_path / "TwoRoomsDiscrete-v0" / "jepa_rl" / "seed0" / "zoo" / "model.zip")
    tiny = ["--transitions", "40", "--iterations", "3", "--pairs", "1", "--max-steps", "2", "--horizon", "2"]
    options = ["--arch", "8", "8", "--value-coef", "1", "--controllers", "model_return", "model_distance"]
    output = run("-m", "benchmarks.predictor_refit", str(tmp_path), "jepa_rl/seed0", *tiny, *options)
    assert "a fresh residual W of [8, 8], value term 1.0" in output.stdout
    assert "model_return, model_distance: horizon 2, replanned every step" in output.stdout
    (line,) = [line for line in output.stdout.splitlines() if line.startswith("jepa_rl/seed0 | ")]
    successes = line.split(" | ")[4]
    assert successes.startswith("model_return ") and ", model_distance " in successes


@pytest.mark.slow
def test_predictor_refit_refuses_the_value_term_for_a_cosine_model(tmp_path):
    """W of a cosine-loss model predicts only a direction: the critic's value of it is refused before any work."""
    from sb3_jepa import PPOJEPA

    model = PPOJEPA("CnnPolicy", "TwoRoomsDiscrete-v0", n_steps=16, batch_size=16, n_epochs=1, jepa_loss="cosine", seed=0)
    model.learn(16).save(tmp_path / "TwoRoomsDiscrete-v0" / "jepa_rl" / "seed0" / "zoo" / "model.zip")
    command = ["-m", "benchmarks.predictor_refit", str(tmp_path), "jepa_rl/seed0", "--value-coef", "1", "--pairs", "1"]
    result = subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode != 0
    assert "--value-coef needs W to predict the embedding the critic reads" in result.stderr
    assert "jepa_rl/seed0 | " not in result.stdout  # nothing was fitted
