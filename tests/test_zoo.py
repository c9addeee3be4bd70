"""rl-zoo3 support, tested as users run it: the real CLI in subprocesses, after a plain ``pip install``."""

import argparse
import importlib
import inspect
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import optuna
import pytest
import yaml

import sb3_jepa_zoo_hook
from sb3_jepa import A2CJEPA, PPOJEPA
from sb3_jepa.zoo import (
    config_path,
    load_trial_zero,
    register_algorithms,
    register_config_files,
    register_samplers,
    schedule_jepa_coef,
    use_packaged_config_files,
)
from sb3_jepa.zoo.samplers import SAMPLERS, convert_onpolicy_jepa_params
from tests.postgres import find_binaries, postgres_server

REPO = Path(__file__).resolve().parents[1]
# Small and fast: 2 envs, short rollouts, no evaluation unless asked
QUICK = ["-n", "256", "--seed", "0", "--eval-freq", "-1", "--verbose", "0"]


def run(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != sb3_jepa_zoo_hook.OPT_OUT_VARIABLE}
    environment.update(MPLBACKEND="Agg", **(env or {}))
    result = subprocess.run([*args], capture_output=True, text=True, env=environment, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def saved_config(log_folder: Path, algo: str, env_id: str) -> dict:
    (run_dir,) = (log_folder / algo).glob(f"{env_id}_*")
    with open(run_dir / env_id / "config.yml") as file:
        return dict(yaml.load(file, Loader=yaml.UnsafeLoader))


@pytest.mark.slow
@pytest.mark.parametrize(("algo", "algo_cls"), [("a2c_jepa", A2CJEPA), ("ppo_jepa", PPOJEPA)])
def test_train_with_packaged_config_and_overrides(tmp_path, algo, algo_cls):
    result = run(
        sys.executable, "-m", "rl_zoo3.train", "--algo", algo, "--env", "CartPole-v1", "-f", str(tmp_path), *QUICK,
        "--hyperparams", "n_envs:2", "jepa_coef:0.25", "jepa_target:'stop_grad'",
    )  # fmt: skip
    assert f"Loading hyperparameters from: {config_path(algo)}" in result.stdout
    config = saved_config(tmp_path, algo, "CartPole-v1")
    assert config["jepa_coef"] == 0.25 and config["jepa_target"] == "stop_grad"
    (model_path,) = tmp_path.glob(f"{algo}/CartPole-v1_1/CartPole-v1.zip")
    model = algo_cls.load(model_path)
    assert isinstance(model, algo_cls)
    assert (model.jepa_coef, model.jepa_target) == (0.25, "stop_grad")


@pytest.mark.slow
def test_console_script_and_schedules(tmp_path):
    rl_zoo3 = Path(sys.executable).with_name("rl_zoo3")
    run(
        str(rl_zoo3), "train", "--algo", "ppo_jepa", "--env", "CartPole-v1", "-f", str(tmp_path), *QUICK,
        "--hyperparams", "n_envs:2", "jepa_coef:'lin_0.5'",
    )  # fmt: skip
    model = PPOJEPA.load(next(tmp_path.glob("ppo_jepa/CartPole-v1_1/CartPole-v1.zip")))
    # rl-zoo3's lin_<value> schedule: 0.5 at the start, 0 at the end
    assert model.jepa_coef(1.0) == pytest.approx(0.5) and model.jepa_coef(0.0) == 0.0


@pytest.mark.slow
def test_explicit_conf_file(tmp_path):
    run(
        sys.executable, "-m", "rl_zoo3.train", "--algo", "a2c_jepa", "--env", "Acrobot-v1", "-f", str(tmp_path), *QUICK,
        "-conf", str(config_path("a2c_jepa")), "--hyperparams", "n_envs:2",
    )  # fmt: skip
    assert saved_config(tmp_path, "a2c_jepa", "Acrobot-v1")["normalize"] is True


@pytest.mark.slow
def test_enjoy_record_video_and_plots(tmp_path):
    run(
        sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo_jepa", "--env", "PixelCartPole-v1", "-f", str(tmp_path),
        "-n", "256", "--seed", "0", "--eval-freq", "128", "--eval-episodes", "2", "--verbose", "0",
        "--hyperparams", "n_envs:2", "n_steps:64", "batch_size:64", "n_epochs:1", "policy:'CnnPolicy'", "frame_stack:2",
    )  # fmt: skip
    enjoy = run(
        sys.executable, "-m", "rl_zoo3.enjoy", "--algo", "ppo_jepa", "--env", "PixelCartPole-v1", "-f", str(tmp_path),
        "-n", "60", "--no-render",
    )  # fmt: skip
    assert "Atari Episode Score" not in enjoy.stdout and "Loading" in enjoy.stdout
    pytest.importorskip("moviepy")
    run(
        sys.executable, "-m", "rl_zoo3.record_video", "--algo", "ppo_jepa", "--env", "PixelCartPole-v1",
        "-f", str(tmp_path), "-n", "20", "-o", str(tmp_path / "videos"),
    )  # fmt: skip
    assert list((tmp_path / "videos").glob("*ppo_jepa-PixelCartPole-v1*.mp4"))
    # rl-zoo3's plots read the monitor files and evaluations of our runs
    plot = run(
        sys.executable, "-m", "rl_zoo3.plots.plot_train", "-a", "ppo_jepa", "-e", "PixelCartPole-v1", "-f", str(tmp_path),
        "-w", "1",
    )  # fmt: skip
    assert "No data available" not in plot.stdout
    run(
        sys.executable, "-m", "rl_zoo3.plots.all_plots", "-a", "ppo_jepa", "-e", "PixelCartPole-v1", "-f", str(tmp_path),
        "--no-display", "-o", str(tmp_path / "results"), "--min-timesteps", "0",
    )  # fmt: skip
    assert (tmp_path / "results.pkl").exists()


@pytest.mark.slow
def test_opt_out_and_explicit_registration(tmp_path):
    opted_out = {sb3_jepa_zoo_hook.OPT_OUT_VARIABLE: "1"}
    result = run(
        sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo_jepa", "--env", "CartPole-v1", "-f", str(tmp_path), *QUICK,
        env=opted_out, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "invalid choice: 'ppo_jepa'" in result.stderr
    wrapper = (
        "import sys, sb3_jepa.zoo; sb3_jepa.zoo.register()\n"
        "from rl_zoo3.train import train\n"
        f"sys.argv = ['train', '--algo', 'ppo_jepa', '--env', 'CartPole-v1', '-f', {str(tmp_path)!r}, *{QUICK!r},"
        " '--hyperparams', 'n_envs:2']\n"
        "train()"
    )
    run(sys.executable, "-c", wrapper, env=opted_out)
    assert saved_config(tmp_path, "ppo_jepa", "CartPole-v1")["n_envs"] == 2


@pytest.mark.slow
def test_interpreter_start_imports_nothing_heavy():
    probe = (
        "import sys; print('torch' in sys.modules, 'rl_zoo3' in sys.modules, 'sb3_jepa' in sys.modules,"
        " any(type(f).__name__ == 'ZooImportHook' for f in sys.meta_path))"
    )
    assert run(sys.executable, "-c", probe).stdout.split() == ["False", "False", "False", "True"]
    opted_out = run(sys.executable, "-c", probe, env={sb3_jepa_zoo_hook.OPT_OUT_VARIABLE: "1"})
    assert opted_out.stdout.split() == ["False", "False", "False", "False"]
    # Installing the hook loads no module (its own module is loaded either way, by the .pth line), not even typing
    modules = "import sys; print(sorted(sys.modules))"
    loaded = run(sys.executable, "-c", modules).stdout
    assert loaded == run(sys.executable, "-c", modules, env={sb3_jepa_zoo_hook.OPT_OUT_VARIABLE: "1"}).stdout
    assert "'sb3_jepa_zoo_hook'" in loaded and "'typing'" not in loaded


def test_hook_errors_become_one_warning(tmp_path, monkeypatch):
    """A failing registration must never break the import it rides on."""
    (tmp_path / "fake_zoo_module.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sb3_jepa_zoo_hook.WATCHED, "fake_zoo_module", "no_such_registration_function")
    hook = sb3_jepa_zoo_hook.ZooImportHook()
    monkeypatch.setattr(sys, "meta_path", [hook, *sys.meta_path])
    with pytest.warns(RuntimeWarning, match="sb3-jepa could not register with rl-zoo3"):
        module = importlib.import_module("fake_zoo_module")
    assert module.VALUE == 42
    sys.modules.pop("fake_zoo_module", None)


def test_existing_keys_are_never_overridden():
    utils = ModuleType("fake_utils")
    utils.ALGOS = {"ppo_jepa": dict, "ppo": list}  # type: ignore[attr-defined]
    register_algorithms(utils)
    assert {"ppo_jepa": dict, "ppo": list, "a2c_jepa": A2CJEPA} == utils.ALGOS  # type: ignore[attr-defined]


#: the methods of rl-zoo3's ExperimentManager that the patches of register_config_files wrap
PATCHED_METHODS = ("__init__", "_preprocess_schedules", "read_hyperparameters")


@pytest.fixture
def exp_manager(monkeypatch):
    """The real ``rl_zoo3.exp_manager``, its ExperimentManager back to rl-zoo3's own methods for this test."""
    import rl_zoo3.exp_manager

    manager = rl_zoo3.exp_manager.ExperimentManager
    for name in PATCHED_METHODS:  # the import hook has patched them already (unless opted out)
        original = inspect.unwrap(getattr(manager, name))
        assert not getattr(original, "_sb3_jepa", False)
        monkeypatch.setattr(manager, name, staticmethod(original) if name == "_preprocess_schedules" else original)
    return rl_zoo3.exp_manager


def assert_wrapped_once(exp_manager: ModuleType, name: str, original) -> None:
    wrapper = getattr(exp_manager.ExperimentManager, name)
    assert wrapper is not original and wrapper._sb3_jepa is True
    assert wrapper.__wrapped__ is original  # the wrapper wraps rl-zoo3's method itself, not another wrapper


def new_manager(exp_manager: ModuleType, tmp_path: Path, algo: str, **kwargs):
    return exp_manager.ExperimentManager(argparse.Namespace(), algo, "CartPole-v1", str(tmp_path), verbose=0, **kwargs)


def test_use_packaged_config_files(exp_manager, tmp_path):
    original = exp_manager.ExperimentManager.__init__
    zoo_default = Path(new_manager(exp_manager, tmp_path, "ppo_jepa").config)
    assert zoo_default.name == "ppo_jepa.yml" and not zoo_default.exists()  # what rl-zoo3 alone would read
    ppo_default = new_manager(exp_manager, tmp_path, "ppo").config
    use_packaged_config_files(exp_manager)
    use_packaged_config_files(exp_manager)
    assert_wrapped_once(exp_manager, "__init__", original)
    for algo in ("a2c_jepa", "ppo_jepa"):
        assert new_manager(exp_manager, tmp_path, algo).config == str(config_path(algo))
    # An explicit --conf-file, and other algorithms' defaults, are left alone
    explicit = str(tmp_path / "mine.yml")
    assert new_manager(exp_manager, tmp_path, "ppo_jepa", config=explicit).config == explicit
    assert new_manager(exp_manager, tmp_path, "ppo").config == ppo_default


def test_schedule_jepa_coef(exp_manager):
    manager = exp_manager.ExperimentManager
    original = manager._preprocess_schedules
    assert manager._preprocess_schedules({"jepa_coef": "lin_0.5"}) == {"jepa_coef": "lin_0.5"}  # rl-zoo3 alone
    schedule_jepa_coef(exp_manager)
    schedule_jepa_coef(exp_manager)
    assert_wrapped_once(exp_manager, "_preprocess_schedules", original)
    assert isinstance(inspect.getattr_static(manager, "_preprocess_schedules"), staticmethod)
    hyperparams = manager._preprocess_schedules({"jepa_coef": "lin_0.5", "learning_rate": "lin_0.001", "n_envs": 2})
    assert isinstance(hyperparams["jepa_coef"], exp_manager.SimpleLinearSchedule)
    assert hyperparams["jepa_coef"](1.0) == pytest.approx(0.5) and hyperparams["jepa_coef"](0.0) == 0.0
    assert hyperparams["learning_rate"](1.0) == pytest.approx(0.001) and hyperparams["n_envs"] == 2
    assert manager._preprocess_schedules({"jepa_coef": 0.25}) == {"jepa_coef": 0.25}
    with pytest.raises(ValueError, match="jepa_coef must be a number or 'lin_<initial value>'"):
        manager._preprocess_schedules({"jepa_coef": "exp_0.5"})


def test_load_trial_zero(exp_manager, tmp_path):
    import rl_zoo3.hyperparams_opt

    register_samplers(rl_zoo3.hyperparams_opt)  # the converter that reloads a trial
    storage = str(tmp_path / "study.log")
    study = optuna.create_study(
        study_name="jepa",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage)),
        sampler=optuna.samplers.RandomSampler(seed=0),
    )

    def objective(trial: optuna.Trial) -> float:
        SAMPLERS["ppo_jepa"](trial, 1, 1, {})
        return 0.0

    study.optimize(objective, n_trials=1)
    expected = convert_onpolicy_jepa_params(study.trials[0].params)
    manager = exp_manager.ExperimentManager
    original = manager.read_hyperparameters
    reload = dict(
        storage=storage, study_name="jepa", trial_id=0, config=str(config_path("ppo_jepa")), hyperparams={"n_envs": 3}
    )
    packaged, _ = new_manager(exp_manager, tmp_path, "ppo_jepa", **reload).read_hyperparameters()
    assert packaged["jepa_coef"] != pytest.approx(expected["jepa_coef"])  # rl-zoo3 alone skips trial 0
    load_trial_zero(exp_manager)
    load_trial_zero(exp_manager)
    assert_wrapped_once(exp_manager, "read_hyperparameters", original)
    hyperparams, saved = new_manager(exp_manager, tmp_path, "ppo_jepa", **reload).read_hyperparameters()
    assert hyperparams["jepa_coef"] == pytest.approx(expected["jepa_coef"])
    assert hyperparams["jepa_target"] == expected["jepa_target"]
    assert hyperparams["predictor_net_arch"] == expected["predictor_net_arch"]
    assert hyperparams["n_envs"] == 3  # --hyperparams still win over the trial
    assert list(saved) == sorted(hyperparams) and dict(saved) == hyperparams
    # Without a study, or for trials other than 0 (which rl-zoo3 loads itself), it changes nothing
    no_study = {**reload, "storage": None}
    assert new_manager(exp_manager, tmp_path, "ppo_jepa", **no_study).read_hyperparameters()[0] == packaged


def test_register_config_files_applies_each_patch_once(exp_manager):
    manager = exp_manager.ExperimentManager
    originals = {name: getattr(manager, name) for name in PATCHED_METHODS}
    register_config_files(exp_manager)
    register_config_files(exp_manager)
    for name, original in originals.items():
        assert_wrapped_once(exp_manager, name, original)


def two_workers_then_reload(tmp_path: Path, storage: str, load_storage: "optuna.storages.BaseStorage") -> None:
    """Two -optimize workers at once on one storage and study name; both trials land; every trial reloads."""
    common = [
        sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo_jepa", "--env", "CartPole-v1", "-optimize",
        "--n-trials", "1", "-n", "256", "--storage", storage, "--study-name", "jepa", "--sampler", "random",
        "--pruner", "none", "--n-startup-trials", "0", "--n-evaluations", "1", "--eval-episodes", "2",
        "--no-optim-plots", "--hyperparams", "n_envs:1", "--verbose", "0",
    ]  # fmt: skip
    # Seeds whose first random trial is cheap (n_steps 32, one epoch)
    workers = [
        subprocess.Popen([*common, "-f", str(tmp_path / f"worker{seed}"), "--seed", str(seed)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env={**os.environ, "MPLBACKEND": "Agg"})
        for seed in (2, 40)
    ]  # fmt: skip
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-3000:]
    study = optuna.load_study(study_name="jepa", storage=load_storage)
    # One trial from each worker, none duplicated, the JEPA parameters sampled
    assert [trial.state for trial in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert sorted(trial.number for trial in study.trials) == [0, 1]
    assert study.trials[0].params != study.trials[1].params
    assert {"jepa_coef", "jepa_target", "predictor_width"} <= set(study.best_trial.params)

    # Every trial reloads, the best one and trial 0 (which rl-zoo3 itself would skip) included
    for trial in study.trials:
        folder = tmp_path / f"trial{trial.number}"
        run(
            sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo_jepa", "--env", "CartPole-v1", "-f", str(folder),
            *QUICK, "--storage", storage, "--study-name", "jepa", "--trial-id", str(trial.number),
        )  # fmt: skip
        config = saved_config(folder, "ppo_jepa", "CartPole-v1")
        expected = convert_onpolicy_jepa_params(trial.params)
        assert config["jepa_coef"] == pytest.approx(expected["jepa_coef"])
        assert config["jepa_target"] == expected["jepa_target"]
        assert config["predictor_net_arch"] == expected["predictor_net_arch"] == [trial.params["predictor_width"]]


@pytest.mark.slow
def test_two_workers_share_one_study(tmp_path):
    """Distributed search: two -optimize workers on one Optuna journal file, then the best trial reloads."""
    storage = str(tmp_path / "study.log")
    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))
    two_workers_then_reload(tmp_path, storage, journal)


@pytest.mark.slow
def test_two_workers_share_one_study_on_postgresql(tmp_path):
    """The same across machines: the workers share a real PostgreSQL server's URL (Optuna's RDB storage)."""
    if find_binaries() is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the PostgreSQL test: .ci/run installs Debian's postgresql package")
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    pytest.importorskip("psycopg2", reason="the PostgreSQL driver comes with the zoo extra (psycopg2-binary)")
    with postgres_server() as url:
        two_workers_then_reload(tmp_path, url, optuna.storages.RDBStorage(url))


@pytest.mark.slow
def test_wheel_ships_hook_and_configs(tmp_path):
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO))
    (wheel,) = tmp_path.glob("sb3_jepa-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"sb3_jepa_zoo.pth", "sb3_jepa_zoo.start", "sb3_jepa_zoo_hook.py"} <= names
    assert {"sb3_jepa/hyperparams/a2c_jepa.yml", "sb3_jepa/hyperparams/ppo_jepa.yml"} <= names
    assert zipfile.ZipFile(wheel).read("sb3_jepa_zoo.start").decode().strip().endswith("sb3_jepa_zoo_hook:install")
    # The build step writes into the build tree, never into the source tree
    assert not (REPO / "sb3_jepa_zoo.pth").exists() and not (REPO / "sb3_jepa_zoo.start").exists()


@pytest.mark.parametrize("algo", ["a2c_jepa", "ppo_jepa"])
def test_packaged_configs_cover_the_testbeds_and_say_how_they_were_obtained(algo):
    import gymnasium as gym

    import sb3_jepa  # noqa: F401  (registers PixelCartPole-v1 and MinAtar's ids)

    text = config_path(algo).read_text()
    entries = yaml.safe_load(text)
    minatar = {env_id for env_id in gym.registry if env_id.startswith("MinAtar/") and env_id.endswith("-v1")}
    expected = {"default", "atari", "CartPole-v1", "Acrobot-v1", "LunarLander-v3", "PixelCartPole-v1", *minatar}
    assert expected <= set(entries), f"{algo}.yml lacks {sorted(expected - set(entries))}"
    lines = text.splitlines()
    for key, settings in entries.items():
        # The line after each top-level key is a comment: "Tuned ..." with its search, or "Not tuned ..."
        (position,) = [i for i, line in enumerate(lines) if line == f"{key}:"]
        comment = lines[position + 1].strip()
        assert comment.startswith(("# Tuned", "# Not tuned")), f"{algo}.yml {key}: {comment!r}"
        assert "jepa_coef" in settings or key == "default", f"{algo}.yml {key} sets no jepa_coef"
