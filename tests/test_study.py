"""``python -m sb3_jepa.study``: runs on worker processes, report with interval estimates and plots, resumable."""

import csv
import json
import os
import shutil
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
    assert config_kwargs("rl_only") == {
        "jepa_coef": 0.0,
        "jepa_embedding_norm": None,
        "augment_observations": None,
        "jepa_vicreg_var_coef": 0.0,
        "jepa_vicreg_cov_coef": 0.0,
    }
    assert config_kwargs("jepa_rl:jepa_coef=1e-4,jepa_target=ema,predictor_net_arch=[64]") == {
        "jepa_coef": 1e-4,
        "jepa_target": "ema",
        "predictor_net_arch": [64],
    }
    with pytest.raises(ValueError, match="key=value"):
        config_kwargs("jepa_rl:jepa_coef")


@pytest.mark.parametrize(
    "config, norm, coef, vicreg",
    [
        ("rl_only", None, 0.0, (0.0, 0.0)),
        ("jepa_rl", "layernorm", 0.28, (1.2557, 0.004073)),
        ("rl_only:jepa_embedding_norm=layernorm", "layernorm", 0.0, (0.0, 0.0)),
    ],
)
def test_rl_only_is_plain_on_a_tuned_entry(tmp_path, config, norm, coef, vicreg):
    """
    The tuned A2C Acrobot-v1 entry ends its encoder with a LayerNorm and adds VICReg's terms on z (weighted on their
    own, so they train the encoder at jepa_coef=0 too): the study's ``rl_only`` takes both off (plain A2C, the
    baseline the studies' tables were recorded with), the JEPA configurations keep them, and DrQ's control names the
    norm alone.
    """
    model = tuned_entry_model(tmp_path, "a2c_jepa", "Acrobot-v1", config)
    assert model.jepa_embedding_norm == norm and model.augment_observations is None
    assert model.jepa_coef == pytest.approx(coef, abs=0.005)
    assert (model.jepa_vicreg_var_coef, model.jepa_vicreg_cov_coef) == vicreg


@pytest.mark.parametrize("config, augmentation", [("rl_only", None), ("jepa_rl", "shift")])
def test_rl_only_takes_off_a_tuned_entry_s_random_shift(tmp_path, config, augmentation):
    """The tuned PPO MinAtar/Freeway-v1 entry trains on randomly shifted frames: not the study's rl_only"""
    pytest.importorskip("minatar")
    model = tuned_entry_model(tmp_path, "ppo_jepa", "MinAtar/Freeway-v1", config)
    assert model.augment_observations == augmentation and model.jepa_embedding_norm is None


def tuned_entry_model(tmp_path: Path, algo: str, env_id: str, config: str):
    """:return: the model a study run of ``config`` builds from the packaged entry (built, not trained)"""
    from sb3_jepa.study.runner import RunSpec, _experiment_manager

    setup = _experiment_manager(RunSpec(algo, env_id, config, seed=0, timesteps=64), tmp_path).setup_experiment()
    assert setup is not None
    model = setup[0]
    model.get_env().close()
    return model


def tiny_specs(seeds: tuple[int, ...], **hyperparams: object) -> list:
    from sb3_jepa.study.runner import RunSpec

    settings = dict(n_envs=2, n_steps=64, batch_size=64, n_epochs=2, **hyperparams)
    return [RunSpec("ppo_jepa", "CartPole-v1", "jepa_rl", seed, 256, settings, 2, "cpu", 1) for seed in seeds]


def run_files(out: Path) -> dict[str, object]:
    """Every run's CSV files and summary, the wall time and the worker left out: what two backends must agree on."""
    files: dict[str, object] = {}
    for path in sorted(out.glob("*/*/seed*/*")):
        key = str(path.relative_to(out))
        if path.name == "summary.json":
            files[key] = {k: v for k, v in json.loads(path.read_text()).items() if k not in ("wall_time_s", "worker")}
        elif path.suffix == ".csv":
            files[key] = path.read_text()
    return files


@pytest.mark.slow
def test_ray_backend_matches_the_process_pool(tmp_path):
    ray = pytest.importorskip("ray")
    from sb3_jepa.study.ray_backend import run_on_ray
    from sb3_jepa.study.runner import run_all

    (good,) = tiny_specs((0,))
    (bad,) = tiny_specs((2,), jepa_coef=-1.0)  # passes check_specs, raises in the run
    run_all([good], tmp_path / "pool", workers=1, show_progress=False)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=80 * 2**20)
    try:
        # Tasks that see the driver's folder write into it; a run that raises is reported, the other still finishes
        summaries, failures = run_all([good, bad], tmp_path / "ray", workers=2, show_progress=False, backend="ray")
        assert len(summaries) == 1 and [spec.seed for spec, _ in failures] == [2]
        assert isinstance(failures[0][1], ValueError) and "jepa_coef must be a finite number >= 0" in str(failures[0][1])
        assert not bad.directory(tmp_path / "ray").exists() or not (bad.directory(tmp_path / "ray") / "summary.json").exists()
        # Without a shared filesystem (forced here) the files come back to the driver, which writes them
        results: list = []
        run_on_ray([good], tmp_path / "sent", None, 0.0, lambda steps: None, lambda *r: results.append(r), False)
        assert [error for _, _, error in results] == [None]
        # A finished run is never redone
        assert run_all([good], tmp_path / "ray", workers=2, show_progress=False, backend="ray") == ([], [])
    finally:
        ray.shutdown()
    pool = run_files(tmp_path / "pool")
    assert len(pool) == 3 and pool == run_files(tmp_path / "ray") == run_files(tmp_path / "sent")
    assert (good.directory(tmp_path / "sent") / "zoo" / "model.zip").exists()


def test_config_folder():
    from sb3_jepa.study.configs import FOLDER_HASH_DIGITS, MAX_FOLDER_BYTES, config_folder

    assert config_folder("rl_only:jepa_coef=0") == "rl_only:jepa_coef=0"
    assert config_folder("a" * MAX_FOLDER_BYTES) == "a" * MAX_FOLDER_BYTES
    long = "jepa_rl:" + ",".join(f"jepa_vicreg_var_coef={i}.000157014211027205" for i in range(8))
    folder = config_folder(long)
    prefix, _, digest = folder.rpartition("~")
    assert len(folder.encode()) == MAX_FOLDER_BYTES and long.startswith(prefix) and len(digest) == FOLDER_HASH_DIGITS
    assert config_folder(long) == folder and config_folder(long + "1") != folder  # the same prefix, another name
    # a multi-byte character cut at the limit is left out; a "/" would make a folder of its own
    assert len(config_folder("a" + "é" * 200).encode()) == MAX_FOLDER_BYTES - 1  # the cut lands inside an "é"
    assert "/" not in config_folder("rl_only:features_extractor_kwargs=a/b")


@pytest.mark.slow
def test_a_configuration_too_long_for_a_folder_runs_and_reports(tmp_path):
    """A re-measured trial carries every setting it searched: its name is longer than a folder's may be"""
    from sb3_jepa.study.configs import config_folder
    from sb3_jepa.study.report import load_runs
    from sb3_jepa.study.runner import RunSpec, is_finished, run_all

    config = "jepa_rl:" + ",".join(
        ["jepa_coef=0.00015701421102720542", "jepa_target=ema", "jepa_tau=0.007382751981499335", "jepa_loss=mse"]
        + ["jepa_prediction_steps=2", "jepa_vicreg_var_coef=0.0054046235343238"] * 3
    )
    assert len(config) > 255
    settings = dict(n_envs=2, n_steps=64, batch_size=64, n_epochs=1)
    spec = RunSpec("ppo_jepa", "CartPole-v1", config, 0, 128, settings, 1, "cpu", 1)
    summaries, failures = run_all([spec], tmp_path, workers=1, show_progress=False)
    assert failures == [] and summaries[0]["config"] == config
    assert spec.directory(tmp_path).parent.name == config_folder(config) and is_finished(spec, tmp_path)
    (run,) = load_runs(tmp_path)
    assert run["config"] == config


def test_a_normalizing_entry_is_evaluated_and_probed_with_its_training_statistics(tmp_path, monkeypatch):
    """
    The Acrobot-v1 entry says ``normalize: true``: the final evaluation and the probes see observations normalized
    with the training run's statistics (rl-zoo3's evaluation env alone holds fresh ones: mean 0, variance 1), and the
    run keeps them for ``study probe``
    """
    import pickle

    import numpy as np
    from stable_baselines3.common.vec_env import unwrap_vec_normalize

    from sb3_jepa.study import runner

    used = []

    def spy(manager, normalization=None):
        env = runner_evaluation_env(manager, normalization)
        used.append((normalization, unwrap_vec_normalize(env)))
        return env

    runner_evaluation_env = runner.evaluation_env
    monkeypatch.setattr(runner, "evaluation_env", spy)
    spec = runner.RunSpec("a2c_jepa", "Acrobot-v1", "rl_only", 0, 160, dict(n_envs=2), eval_episodes=1)
    runner.execute(spec, tmp_path)
    run_dir = spec.directory(tmp_path)
    with open(run_dir / runner.VEC_NORMALIZE_FILE, "rb") as file:
        saved = pickle.load(file)
    assert saved.obs_rms.count > 160  # the training steps' statistics (a fresh VecNormalize's count is 1e-4)
    assert len(used) == 2  # the evaluation, then the probes
    for normalization, evaluated in used:
        np.testing.assert_array_equal(normalization.obs_rms.mean, saved.obs_rms.mean)
        np.testing.assert_array_equal(evaluated.obs_rms.mean, saved.obs_rms.mean)
        assert evaluated.obs_rms.count == saved.obs_rms.count and not evaluated.training
    used.clear()
    # study probe reads them back from the run's file
    assert runner.add_probes(run_dir) == []  # Acrobot reports no state: nothing to add, and nothing refused
    ((normalization, probed),) = used
    np.testing.assert_array_equal(probed.obs_rms.mean, saved.obs_rms.mean)
    assert probed.obs_rms.count == saved.obs_rms.count
    monkeypatch.undo()

    manager = runner._experiment_manager(spec, tmp_path / "again")
    manager.setup_experiment()
    with pytest.raises(ValueError, match="normalization: no VecNormalize statistics"):
        runner.evaluation_env(manager, None)  # fresh statistics would be the bug: refused
    # The run's own config.yml says how its environment was built: a model is not probed in another one
    (config,) = run_dir.glob("zoo/*/*/*/config.yml")
    written = config.read_text()
    config.write_text(written.replace("- - n_envs", "- - frame_stack\n    - 4\n  - - n_envs"))
    with pytest.raises(ValueError, match="frame_stack: 4 in the run, None now"):
        runner.add_probes(run_dir)
    config.write_text(written)
    (run_dir / runner.VEC_NORMALIZE_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=r"vecnormalize\.pkl: the entry normalizes"):
        runner.add_probes(run_dir)


def test_probe_adds_the_scores_a_run_lacks_from_its_model(tmp_path, monkeypatch, capsys):
    """
    ``study probe`` on runs recorded before distractor_centroid_r2 existed: the score is added from the saved model,
    everything the summary had stays, a run without its model is named and the exit status says so
    """
    from sb3_jepa.study import __main__ as cli
    from sb3_jepa.study import runner

    monkeypatch.setattr(runner, "PROBE_STEPS", 800)  # 4 episodes of Two Rooms' 200 steps
    small = dict(n_envs=2, n_steps=32, batch_size=64, n_epochs=1)
    env_id = "TwoRoomsDiscreteDistractorsPredictable-v0"
    specs = [runner.RunSpec("ppo_jepa", env_id, "jepa_rl", seed, 64, small, eval_episodes=0) for seed in (0, 1)]
    runner.execute(specs[0], tmp_path)
    shutil.copytree(specs[0].directory(tmp_path), specs[1].directory(tmp_path))  # a second run, to lose its model
    paths = [spec.directory(tmp_path) / "summary.json" for spec in specs]
    older = []
    for path in paths:  # as an earlier version wrote them
        summary = json.loads(path.read_text())
        assert isinstance(summary["distractor_centroid_r2"], float)
        del summary["distractor_centroid_r2"]
        path.write_text(json.dumps(summary))
        older.append(summary)
    (specs[1].directory(tmp_path) / runner.MODEL_FILE).unlink()

    assert cli.main(["probe", "--out", str(tmp_path)]) == 1
    printed = capsys.readouterr()
    assert "added distractor_centroid_r2" in printed.out and "seed1/zoo/model.zip: the run kept no model" in printed.err
    added = json.loads(paths[0].read_text())
    assert {key: added[key] for key in older[0]} == older[0] and added["probes_added"] == ["distractor_centroid_r2"]
    assert isinstance(added["distractor_centroid_r2"], float)
    assert json.loads(paths[1].read_text()) == older[1]
    assert "distractors' centroid R^2" in (tmp_path / "report.md").read_text()
    assert "(1 of 2)" in (tmp_path / "report.md").read_text()
    # An older summary's probe_r2 (random held-out steps, no probe_split) is not relabelled by a later probe
    del added["probe_split"]
    paths[0].write_text(json.dumps(added))
    assert "probe_split" not in json.loads(paths[0].read_text()) and runner.add_probes(paths[0].parent) == []
    added = json.loads(paths[0].read_text())
    assert "probe_split" not in added
    # Nothing missing any more: nothing rewritten
    assert runner.add_probes(paths[0].parent) == [] and json.loads(paths[0].read_text()) == added
