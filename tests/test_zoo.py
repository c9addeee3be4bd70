"""rl-zoo3 support, tested as users run it: the real CLI in subprocesses, after a plain ``pip install``."""

import argparse
import importlib
import inspect
import os
import re
import signal
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import optuna
import pytest
import yaml

import sb3_jepa_zoo_hook
from sb3_jepa import A2CJEPA, PPOJEPA
from sb3_jepa.zoo import (
    config_path,
    evaluate_with_the_entry_env_kwargs,
    heartbeats,
    load_trial_zero,
    refuse_unfinished_trials,
    register_algorithms,
    register_config_files,
    register_samplers,
    retry_lost_trials,
    samplers,
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
PATCHED_METHODS = (
    "__init__", "_preprocess_schedules", "read_hyperparameters", "hyperparameters_optimization", "load_trial",
    "_preprocess_hyperparams",
)  # fmt: skip


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


def test_evaluation_env_gets_the_entry_env_kwargs(exp_manager, tmp_path):
    pytest.importorskip("minatar")
    import sb3_jepa  # noqa: F401  (registers MinAtar's ids)

    def limits(manager) -> tuple[int | None, int | None]:
        """the time limit of the training and of the evaluation environment that ``manager`` builds"""
        manager.setup_experiment()
        found = []
        for eval_env in (False, True):
            env = manager.create_envs(1, eval_env=eval_env, no_log=True)
            found.append(env.get_attr("spec")[0].max_episode_steps)
            env.close()
        return found[0], found[1]

    def seaquest(**kwargs):
        return exp_manager.ExperimentManager(
            argparse.Namespace(), "ppo_jepa", "MinAtar/Seaquest-v1", str(tmp_path), n_timesteps=8, eval_freq=-1,
            config=str(config_path("ppo_jepa")), verbose=0, device="cpu", **kwargs,
        )  # fmt: skip

    original = exp_manager.ExperimentManager._preprocess_hyperparams
    assert limits(seaquest()) == (10_000, None)  # rl-zoo3 alone: the entry's env_kwargs never reach the evaluation
    evaluate_with_the_entry_env_kwargs(exp_manager)
    evaluate_with_the_entry_env_kwargs(exp_manager)
    assert_wrapped_once(exp_manager, "_preprocess_hyperparams", original)
    assert limits(seaquest()) == (10_000, 10_000)
    # --env-kwargs replaces the entry's for both; an explicit --eval-env-kwargs is the evaluation's own
    assert limits(seaquest(env_kwargs={"max_episode_steps": 30})) == (30, 30)
    assert limits(seaquest(eval_env_kwargs={"max_episode_steps": 20})) == (10_000, 20)
    # Other algorithms are rl-zoo3's business
    ppo = exp_manager.ExperimentManager(
        argparse.Namespace(), "ppo", "CartPole-v1", str(tmp_path), n_timesteps=8, eval_freq=-1, verbose=0,
        hyperparams={"env_kwargs": {"max_episode_steps": 40}}, device="cpu",
    )  # fmt: skip
    assert limits(ppo) == (40, 500)


def test_register_config_files_applies_each_patch_once(exp_manager):
    manager = exp_manager.ExperimentManager
    originals = {name: getattr(manager, name) for name in PATCHED_METHODS}
    register_config_files(exp_manager)
    register_config_files(exp_manager)
    for name, original in originals.items():
        assert_wrapped_once(exp_manager, name, original)


def test_heartbeat_settings():
    interval, grace, retries = (
        heartbeats.HEARTBEAT_INTERVAL_VARIABLE, heartbeats.GRACE_PERIOD_VARIABLE, heartbeats.TRIAL_RETRIES_VARIABLE
    )  # fmt: skip
    settings = heartbeats.heartbeat_settings
    assert settings({}) == heartbeats.HeartbeatSettings(60, 180, 1) == settings({interval: "", grace: " "})
    assert settings({interval: "10"}) == heartbeats.HeartbeatSettings(10, 30, 1)  # three intervals of grace
    assert settings({interval: " 1 ", grace: "3", retries: "0"}) == heartbeats.HeartbeatSettings(1, 3, 0)
    assert settings({interval: "5"}).enabled and not settings({interval: "0"}).enabled
    wrong = [
        (interval, "1.5", "a whole number of seconds, 1 or more (or 0 to turn heartbeats off)"),
        (interval, "-1", "a whole number of seconds, 1 or more"),
        (interval, "soon", "a whole number of seconds, 1 or more"),
        (grace, "60", "a whole number of seconds longer than the heartbeat interval (60 s, SB3_JEPA_HEARTBEAT_INTERVAL)"),
        (grace, "2m", "a whole number of seconds longer than the heartbeat interval"),
        (retries, "-1", "a whole number, 0 or more (0: a lost worker's trial is failed, never retried)"),
    ]
    for variable, value, allowed in wrong:
        with pytest.raises(ValueError, match=f"^{variable} must be {re.escape(allowed)}.*, got {value!r}$"):
            settings({variable: value})


def test_retry_lost_trials(exp_manager, tmp_path, monkeypatch):
    """While rl-zoo3's search runs, Optuna opens a URL storage with heartbeats, for our algorithms only."""
    seen = []

    def hyperparameters_optimization(self) -> None:  # what rl-zoo3's uses of the module's globals
        seen.append((exp_manager.optuna, exp_manager.MaxTrialsCallback))
        if self.storage is not None and not self.storage.endswith(".log"):
            study = exp_manager.optuna.create_study(storage=self.storage, study_name=self.algo, load_if_exists=True)
            seen[-1] += (study, exp_manager.MaxTrialsCallback(3, states=[optuna.trial.TrialState.COMPLETE]))
        if self.fail:
            raise RuntimeError("a search that fails")

    monkeypatch.setattr(exp_manager.ExperimentManager, "hyperparameters_optimization", hyperparameters_optimization)
    originals = exp_manager.optuna, exp_manager.MaxTrialsCallback
    retry_lost_trials(exp_manager)
    retry_lost_trials(exp_manager)
    assert_wrapped_once(exp_manager, "hyperparameters_optimization", hyperparameters_optimization)
    search = exp_manager.ExperimentManager.hyperparameters_optimization
    url = f"sqlite:///{tmp_path / 'study.db'}"
    for variable, value in [("HEARTBEAT_INTERVAL", "2"), ("GRACE_PERIOD", "5"), ("TRIAL_RETRIES", "2")]:
        monkeypatch.setenv(f"SB3_JEPA_{variable}", value)

    search(SimpleNamespace(algo="ppo_jepa", storage=url, fail=False))
    proxy, _, study, callback = seen[-1]
    assert isinstance(proxy, heartbeats.OptunaWithHeartbeats) and isinstance(callback, heartbeats.MaxTrialsCallback)
    rdb = study._storage._backend  # inside Optuna's cache
    assert isinstance(rdb, optuna.storages.RDBStorage) and (rdb.heartbeat_interval, rdb.grace_period) == (2, 5)
    assert rdb.get_heartbeat_stale_trial_callback()._max_retry == 2
    assert (exp_manager.optuna, exp_manager.MaxTrialsCallback) == originals  # put back afterwards
    # Other algorithms, journal files, no storage, heartbeats turned off: rl-zoo3's own, untouched
    monkeypatch.setenv(heartbeats.HEARTBEAT_INTERVAL_VARIABLE, "0")
    search(SimpleNamespace(algo="ppo_jepa", storage=url, fail=False))
    monkeypatch.setenv(heartbeats.HEARTBEAT_INTERVAL_VARIABLE, "2")
    for algo, storage in [("ppo", url), ("a2c_jepa", str(tmp_path / "study.log")), ("a2c_jepa", None)]:
        search(SimpleNamespace(algo=algo, storage=storage, fail=False))
    assert [entry[:2] for entry in seen[-4:]] == [originals] * 4
    assert [entry[2]._storage._backend.heartbeat_interval for entry in seen[-4:-2]] == [None, None]
    # Put back after a failure too
    with pytest.raises(RuntimeError, match="a search that fails"):
        search(SimpleNamespace(algo="a2c_jepa", storage=url, fail=True))
    assert isinstance(seen[-1][0], heartbeats.OptunaWithHeartbeats)
    assert (exp_manager.optuna, exp_manager.MaxTrialsCallback) == originals
    # A wrong setting stops the search before it starts
    monkeypatch.setenv(heartbeats.GRACE_PERIOD_VARIABLE, "1")
    calls = len(seen)
    with pytest.raises(ValueError, match=r"^SB3_JEPA_GRACE_PERIOD must be a whole number of seconds longer than"):
        search(SimpleNamespace(algo="ppo_jepa", storage=str(tmp_path / "study.log"), fail=False))
    assert len(seen) == calls


def objective(trial: optuna.Trial) -> float:
    return trial.suggest_float("x", 0.0, 1.0)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_lost_trials_are_failed_and_retried(tmp_path):
    """
    A trial whose heartbeats stopped is failed and retried: when a worker opens the study, and when
    --max-total-trials is only reached thanks to it (the worker waits for it to go stale rather than stop).
    """
    settings = heartbeats.HeartbeatSettings(heartbeat_interval=1, grace_period=2, trial_retries=1)
    with_heartbeats = heartbeats.OptunaWithHeartbeats(optuna, settings)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    retry = heartbeats._retry_callback_class()
    state = optuna.trial.TrialState
    counted = [state.COMPLETE, state.RUNNING, state.PRUNED]  # rl-zoo3's for --max-total-trials

    def study_with_a_lost_trial(name: str) -> optuna.Study:
        study = with_heartbeats.create_study(storage=url, study_name=name, direction="maximize")
        lost = study.ask()
        objective(lost)
        study._storage.record_heartbeat(lost._trial_id)  # its worker's last heartbeat, now
        return study

    opened_later = study_with_a_lost_trial("opened later")
    counted_study = study_with_a_lost_trial("counted")
    # The count is reached (the lost trial running, trial 1 complete) within the grace period: it waits (SQLite
    # counts whole seconds: 3 s at most), fails trial 0, runs its retry, and only stops at 2 complete trials
    max_trials = heartbeats.MaxTrialsCallback(2, counted, settings=settings)
    counted_study.optimize(objective, n_trials=10, callbacks=[max_trials])
    trials = counted_study.trials
    assert [trial.state for trial in trials] == [state.FAIL, state.COMPLETE, state.COMPLETE]
    assert retry.retried_trial_number(trials[2]) == 0 and trials[2].params == trials[0].params
    # The other study's lost trial is as stale by now: opening the study fails it and queues its retry
    reopened = with_heartbeats.create_study(storage=url, study_name="opened later", load_if_exists=True)
    assert [trial.state for trial in reopened.trials] == [state.FAIL, state.WAITING]
    assert reopened.trials[1].params == opened_later.trials[0].params
    # Without heartbeats (Optuna's create_study on the URL), nothing of it
    study_with_a_lost_trial("plain")
    plain = optuna.create_study(storage=url, study_name="plain", load_if_exists=True)
    plain.optimize(objective, n_trials=10, callbacks=[optuna.study.MaxTrialsCallback(2, counted)])
    assert [trial.state for trial in plain.trials] == [state.RUNNING, state.COMPLETE]


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_max_trials_waits_for_running_trials_only_so_long(tmp_path):
    """A running trial that sends no heartbeat (a worker without them) never goes stale: the wait is bounded."""
    settings = heartbeats.HeartbeatSettings(heartbeat_interval=1, grace_period=2, trial_retries=1)
    study = heartbeats.OptunaWithHeartbeats(optuna, settings).create_study(storage=f"sqlite:///{tmp_path / 'db'}")
    study.ask()
    states = [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING]
    start = time.monotonic()
    study.optimize(objective, n_trials=10, callbacks=[heartbeats.MaxTrialsCallback(2, states, settings=settings)])
    assert 3 <= time.monotonic() - start < 10  # a grace period and an interval
    assert [trial.state.name for trial in study.trials] == ["RUNNING", "COMPLETE"]


def test_refuse_unfinished_trials(exp_manager, tmp_path):
    """
    --trial-id of a trial that is not COMPLETE is refused, naming its state and its retry; and a lost trial on a
    journal file is failed by hand with the guide's snippet (docs/guide/zoo.rst).
    """
    import rl_zoo3.hyperparams_opt

    register_samplers(rl_zoo3.hyperparams_opt)
    path = str(tmp_path / "study.log")
    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))
    study = optuna.create_study(study_name="jepa", storage=journal, sampler=optuna.samplers.RandomSampler(seed=0))

    def sample(trial: optuna.Trial) -> float:
        SAMPLERS["ppo_jepa"](trial, 1, 1, {})
        return 0.0

    lost = study.ask()
    sample(lost)  # trial 0: its worker was killed, it stays RUNNING
    study.optimize(sample, n_trials=1)  # trial 1
    pruned = study.ask()
    sample(pruned)
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)  # trial 2
    manager = new_manager(exp_manager, tmp_path, "ppo_jepa")
    assert manager.load_trial(path, "jepa", 0) == convert_onpolicy_jepa_params(study.trials[0].params)  # rl-zoo3 alone
    original = exp_manager.ExperimentManager.load_trial
    refuse_unfinished_trials(exp_manager)
    refuse_unfinished_trials(exp_manager)
    assert_wrapped_once(exp_manager, "load_trial", original)
    manager = new_manager(exp_manager, tmp_path, "ppo_jepa")
    with pytest.raises(ValueError, match=r"^--trial-id 0: trial 0 of study 'jepa' is RUNNING, not COMPLETE \(its worker"):
        manager.load_trial(path, "jepa", 0)
    with pytest.raises(ValueError, match=r"^--trial-id 2: trial 2 of study 'jepa' is PRUNED, not COMPLETE$"):
        manager.load_trial(path, "jepa", 2)
    with pytest.raises(ValueError, match=r"^--trial-id 7: study 'jepa' has 3 trials$"):
        manager.load_trial(path, "jepa", 7)
    assert manager.load_trial(path, "jepa", 1) == convert_onpolicy_jepa_params(study.trials[1].params)
    assert new_manager(exp_manager, tmp_path, "ppo").load_trial(path, "jepa", 0, convert=False) == lost.params

    # The guide's snippet: fail the lost trial, and queue a run of its parameters
    from optuna.trial import TrialState

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))
    study = optuna.load_study(study_name="jepa", storage=storage)
    for trial in study.get_trials(states=[TrialState.RUNNING]):
        if trial.number in [0]:  # the lost worker's trials: make sure no worker is still running them
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            study.enqueue_trial(trial.params)

    study.optimize(sample, n_trials=1)  # the next worker's trial runs the queued parameters (trial 3)
    states = [TrialState.FAIL, TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE]
    assert [trial.state for trial in study.trials] == states
    assert study.trials[3].params == lost.params
    with pytest.raises(ValueError, match=r"^--trial-id 0: trial 0 of study 'jepa' is FAIL, not COMPLETE$"):
        manager.load_trial(path, "jepa", 0)
    # A retry after a lost heartbeat (RDB storages) is named, and suggested when complete
    retry = heartbeats._retry_callback_class()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry(max_retry=1)(study, study.trials[2])  # as if trial 2 had lost its worker: trial 4 (WAITING)
    with pytest.raises(ValueError, match=r"is PRUNED, not COMPLETE; it was retried as trial 4 \(WAITING\)$"):
        manager.load_trial(path, "jepa", 2)
    study.optimize(sample, n_trials=1)
    message = r"is PRUNED, not COMPLETE; it was retried as trial 4 \(COMPLETE\): load that one with --trial-id 4$"
    with pytest.raises(ValueError, match=message):
        manager.load_trial(path, "jepa", 2)


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
        widths = [trial.params["predictor_width"]] * trial.params["predictor_depth"]
        assert config["predictor_net_arch"] == expected["predictor_net_arch"] == widths


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


def require_postgresql() -> None:
    """Skip (fail on CI) without PostgreSQL's binaries or its drivers."""
    if find_binaries() is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the PostgreSQL tests: .ci/run installs Debian's postgresql package")
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    pytest.importorskip("psycopg2", reason="the PostgreSQL drivers come with the zoo extra (psycopg2-binary)")
    pytest.importorskip("psycopg", reason="the PostgreSQL drivers come with the zoo extra (psycopg[binary])")


def plain_url(url: str) -> str:
    """:return: the URL as users write it, ``postgresql://``: SQLAlchemy 2 picks psycopg (3) for it"""
    return url.replace("postgresql+psycopg2://", "postgresql://")


def test_plain_postgresql_url():
    """``--storage postgresql://user@host/db`` works: SQLAlchemy 2.x reads it as psycopg 3, which the zoo extra brings."""
    require_postgresql()
    with postgres_server() as url:
        storage = optuna.storages.RDBStorage(plain_url(url))
        assert storage.engine.dialect.driver == "psycopg"
        study = optuna.create_study(storage=storage, study_name="plain")
        study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
        assert optuna.load_study(study_name="plain", storage=plain_url(url)).trials[0].state.name == "COMPLETE"
        storage.engine.dispose()


def wait_for(condition, what: str, workers: list[subprocess.Popen], logs: list[Path], timeout: float = 150.0):
    """Poll ``condition`` until it returns something true; fail if a worker exits first, or after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        for worker, log in zip(workers, logs, strict=True):
            if worker.poll() is not None:
                raise AssertionError(f"a worker exited ({worker.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout:.0f} s")
        time.sleep(0.2)
    return result


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_search_survives_a_killed_worker(tmp_path):
    """
    Two -optimize workers on one PostgreSQL study, --max-total-trials 2; one is SIGKILLed in the middle of its trial.
    Its trial fails once it has sent no heartbeat for the grace period, the other worker runs a retry of it (same
    parameters) and the search still ends with 2 complete trials, the other one neither lost nor run twice.

    The count is reached (trial 0 running, trial 1 complete) while trial 0 may still be within its grace period: the
    survivor must wait for it to go stale rather than stop with trial 0 running forever (sb3_jepa.zoo.heartbeats'
    MaxTrialsCallback), whatever the timing.
    """
    require_postgresql()
    complete, fail = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL
    retry = heartbeats._retry_callback_class()
    environment = {key: value for key, value in os.environ.items() if key != sb3_jepa_zoo_hook.OPT_OUT_VARIABLE}
    # A heartbeat a second, a trial lost after 3 s without one; one torch thread per worker on the shared cores
    environment.update({heartbeats.HEARTBEAT_INTERVAL_VARIABLE: "1", heartbeats.GRACE_PERIOD_VARIABLE: "3"})
    environment.update(MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    workers = []
    logs = [tmp_path / "lost.log", tmp_path / "survivor.log"]
    with postgres_server() as url:
        storage = optuna.storages.RDBStorage(url)  # creates the tables before two workers race to
        common = [
            sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo_jepa", "--env", "CartPole-v1", "-optimize",
            "--max-total-trials", "2", "--storage", plain_url(url), "--study-name", "jepa", "--sampler", "random",
            "--pruner", "none", "--n-startup-trials", "0", "--n-evaluations", "1", "--eval-episodes", "2",
            "--no-optim-plots", "--hyperparams", "n_envs:1", "--verbose", "0",
        ]  # fmt: skip

        def trials() -> list[optuna.trial.FrozenTrial]:
            if "jepa" not in [summary.study_name for summary in storage.get_all_studies()]:
                return []
            return optuna.load_study(study_name="jepa", storage=storage).get_trials()

        def start(name: str, timesteps: str, seed: str, log: Path) -> subprocess.Popen:
            command = [*common, "-n", timesteps, "--seed", seed, "-f", str(tmp_path / name)]
            with open(log, "w") as output:
                workers.append(subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=environment))
            return workers[-1]

        try:
            # The worker to lose starts alone and gets trial 0 (a budget it never gets through); seeds as above
            lost = start("lost", "1000000", "2", logs[0])
            wait_for(lambda: [trial for trial in trials() if trial.state.name == "RUNNING"], "trial 0", [lost], logs[:1])
            survivor = start("survivor", "256", "40", logs[1])
            # Once the survivor is searching too (trial 1 exists), kill the other one in the middle of trial 0
            wait_for(lambda: len(trials()) > 1, "trial of the second worker", workers, logs)
            before = trials()
            assert before[0].state.name == "RUNNING"
            os.kill(lost.pid, signal.SIGKILL)
            lost.wait(timeout=30)
            survivor.wait(timeout=150)
            assert survivor.returncode == 0, logs[1].read_text()[-3000:]
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait(timeout=30)
        after = trials()
        # --trial-id refuses the failed trial, naming its retry, and loads the retry
        import rl_zoo3.exp_manager

        register_config_files(rl_zoo3.exp_manager)  # what the import hook did (unless opted out)
        manager = new_manager(rl_zoo3.exp_manager, tmp_path, "ppo_jepa")
        refused = r"^--trial-id 0: trial 0 of study 'jepa' is FAIL, not COMPLETE; it was retried as trial 2 \(COMPLETE\)"
        with pytest.raises(ValueError, match=refused):
            manager.load_trial(plain_url(url), "jepa", 0)
        assert manager.load_trial(plain_url(url), "jepa", 2) == convert_onpolicy_jepa_params(after[0].params)
        storage.engine.dispose()

    states = [trial.state.name for trial in after]
    # The killed worker's trial failed, and one retry of it, with its parameters, completed
    assert after[0].state == fail, states
    retries = [trial for trial in after if retry.retried_trial_number(trial) is not None]
    assert [retry.retried_trial_number(trial) for trial in retries] == [0], states
    assert retries[0].state == complete and retries[0].params == after[0].params
    # The search reached its 2 complete trials: nothing else failed, was left running or was run twice
    assert states == ["FAIL", "COMPLETE", "COMPLETE"]
    assert after[1].params != after[0].params
    # The trials that had completed when the worker was killed are still there, as they were
    for trial in before:
        if trial.state == complete:
            assert (after[trial.number].state, after[trial.number].value) == (complete, trial.value)
    print(f"trials at the kill: {[trial.state.name for trial in before]}, at the end: {states}")


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


@pytest.mark.parametrize("algo", ["a2c_jepa", "ppo_jepa"])
def test_packaged_seaquest_entry_ends_the_episode_of_a_submarine_that_never_dives(algo):
    import gymnasium as gym
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    import sb3_jepa  # noqa: F401  (registers MinAtar's ids)

    pytest.importorskip("minatar")
    entry = yaml.safe_load(config_path(algo).read_text())["MinAtar/Seaquest-v1"]
    limit = entry["env_kwargs"]["max_episode_steps"]
    assert limit == 10_000
    noop = 0  # MinAtar's minimal action set starts with "n", no-op: the submarine stays at the surface

    class StayAtTheSurface:
        def predict(self, observation, state=None, episode_start=None, deterministic=False):
            return np.full(len(observation), noop), state

    # MinAtar alone never ends this episode
    env = gym.make("MinAtar/Seaquest-v1")
    env.reset(seed=0)
    assert not any(any(env.step(noop)[2:4]) for _ in range(2 * limit))
    # The entry's environment, built as rl-zoo3 builds it (SB3's Monitor around gym.make's TimeLimit): its evaluation
    # returns, the episode truncated at the limit
    vec_env = make_vec_env("MinAtar/Seaquest-v1", n_envs=1, seed=0, env_kwargs=entry["env_kwargs"])
    rewards, lengths = evaluate_policy(StayAtTheSurface(), vec_env, n_eval_episodes=1, return_episode_rewards=True)
    assert (rewards, lengths) == ([0.0], [limit])


def sampled(space: str, n_trials: int, monkeypatch: pytest.MonkeyPatch, algo: str = "ppo_jepa") -> list[dict]:
    """What the sampler of ``algo`` returns in ``n_trials`` random trials of the search space ``space``."""
    monkeypatch.setenv(samplers.SEARCH_SPACE_VARIABLE, space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    returned: list[dict] = []

    def objective(trial: optuna.Trial) -> float:
        returned.append(SAMPLERS[algo](trial, 2, 8, {}))
        return 0.0

    study.optimize(objective, n_trials=n_trials)
    assert [convert_onpolicy_jepa_params(trial.params) for trial in study.trials] == returned  # reloads as sampled
    return returned


@pytest.mark.parametrize("algo", ["a2c_jepa", "ppo_jepa"])
def test_jepa_search_space_samples_the_jepa_settings_only(monkeypatch, algo):
    jepa_keys = {"jepa_coef", "jepa_target", "jepa_loss", "jepa_prediction_steps", "jepa_embedding_norm",
                 "predictor_net_arch", "jepa_vicreg_var_coef", "jepa_vicreg_cov_coef", "jepa_tau"}  # fmt: skip
    trials = sampled("jepa", 60, monkeypatch, algo)
    assert all(set(trial) <= jepa_keys for trial in trials)  # no learning_rate, n_steps, policy_kwargs...
    for trial in trials:
        assert samplers.JEPA_COEF_RANGE[0] <= trial["jepa_coef"] <= samplers.JEPA_COEF_RANGE[1]
        assert 1 <= trial["jepa_prediction_steps"] <= 5
        width = trial["predictor_net_arch"][0]
        assert width in samplers.PREDICTOR_WIDTHS and trial["predictor_net_arch"] == [width] * len(trial["predictor_net_arch"])
        assert ("jepa_tau" in trial) == (trial["jepa_target"] == "ema")
    # Every value of each choice is reached, VICReg both off (weights 0) and on (both weights in their ranges)
    assert {len(trial["predictor_net_arch"]) for trial in trials} == set(samplers.PREDICTOR_DEPTHS)
    assert {trial["jepa_prediction_steps"] for trial in trials} == {1, 2, 3, 4, 5}
    vicreg = [(trial["jepa_vicreg_var_coef"], trial["jepa_vicreg_cov_coef"]) for trial in trials]
    assert (0.0, 0.0) in vicreg and all(
        (var, cov) == (0.0, 0.0) or (1e-3 <= var <= 10 and 1e-4 <= cov <= 1) for var, cov in vicreg
    )
    # The full space: rl-zoo3's own sampler's settings as well
    full = sampled("full", 3, monkeypatch, algo)
    assert all({"learning_rate", "gamma", "policy_kwargs"} <= set(trial) for trial in full)
    assert all("jepa_coef" in trial and "predictor_net_arch" in trial for trial in full)


@pytest.mark.parametrize("algo", ["a2c_jepa", "ppo_jepa"])
def test_jepa_spr_search_space_adds_augmentation_and_projection(monkeypatch, algo):
    trials = sampled("jepa_spr", 40, monkeypatch, algo)
    assert {trial["augment_observations"] for trial in trials} == {None, "shift"}
    assert {str(trial["jepa_projection_arch"]) for trial in trials} == {"None", "[128]", "[256, 128]"}
    assert all("jepa_coef" in trial and "learning_rate" not in trial for trial in trials)  # the jepa space's, plus
    # The jepa space has neither
    assert not any({"augment_observations", "jepa_projection_arch"} & set(trial) for trial in sampled("jepa", 5, monkeypatch))
    # A trial of the space builds: the sampled settings are the algorithm's arguments
    PPOJEPA("CnnPolicy", "MinAtar/Breakout-v1", n_steps=8, batch_size=8, **trials[0])


def test_search_space_variable_is_checked(monkeypatch):
    monkeypatch.setenv(samplers.SEARCH_SPACE_VARIABLE, "rl")
    with pytest.raises(ValueError, match=r"SB3_JEPA_SEARCH_SPACE must be one of \('full', 'jepa', 'jepa_spr'\), got"):
        samplers.search_space()
    monkeypatch.delenv(samplers.SEARCH_SPACE_VARIABLE)
    assert samplers.search_space() == "full"


@pytest.mark.slow
def test_jepa_search_keeps_the_entry_rl_settings(tmp_path):
    """rl-zoo3's own -optimize with the JEPA-only space: the trial's RL settings are the entry's, then it reloads."""
    storage = str(tmp_path / "study.log")
    env = {samplers.SEARCH_SPACE_VARIABLE: "jepa"}
    run(
        sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo_jepa", "--env", "CartPole-v1", "-optimize",
        "--n-trials", "1", "-n", "256", "--storage", storage, "--study-name", "jepa", "--sampler", "random",
        "--pruner", "none", "--n-evaluations", "1", "--eval-episodes", "2", "--no-optim-plots", "--seed", "3",
        "-f", str(tmp_path / "search"), "--hyperparams", "n_envs:1", "n_steps:64", "batch_size:64", "--verbose", "0",
        env=env,
    )  # fmt: skip
    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))
    (trial,) = optuna.load_study(study_name="jepa", storage=journal).trials
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert set(trial.params) <= set(samplers._JEPA_PARAMS) and "jepa_coef" in trial.params
    run(
        sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo_jepa", "--env", "CartPole-v1", "-f", str(tmp_path / "re"),
        *QUICK, "--storage", storage, "--study-name", "jepa", "--trial-id", "0", env=env,
    )  # fmt: skip
    config = saved_config(tmp_path / "re", "ppo_jepa", "CartPole-v1")
    with open(config_path("ppo_jepa")) as file:
        entry = yaml.safe_load(file)["CartPole-v1"]
    assert config["jepa_coef"] == pytest.approx(trial.params["jepa_coef"])
    assert config["jepa_prediction_steps"] == trial.params["jepa_prediction_steps"]
    for key in ("learning_rate", "n_steps", "gamma", "ent_coef"):  # the entry's, untouched by the search
        if key in entry:
            assert config[key] == entry[key], key


def test_journal_summary(tmp_path, capsys):
    """python -m sb3_jepa.zoo.journals: trials by state, the best trial and the parameters' importance"""
    from sb3_jepa.zoo import journals

    path = tmp_path / "search.log"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    sampler = optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize", sampler=sampler)

    def objective(trial: optuna.Trial) -> float:
        x, _ = trial.suggest_float("x", 0, 1), trial.suggest_float("unused", 0, 1)
        if trial.number == 3:
            raise optuna.TrialPruned()
        return x

    study.optimize(objective, n_trials=30)
    (summary,) = journals.summarize(path)
    assert summary.states == {"COMPLETE": 29, "PRUNED": 1}
    assert summary.best_number == study.best_trial.number and summary.best_params == study.best_trial.params
    assert max(summary.importances, key=summary.importances.__getitem__) == "x"
    assert journals.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "| s | 29 complete, 1 pruned |" in out and f"({study.best_trial.number}) | x " in out
    with pytest.raises(SystemExit):
        journals.main([str(tmp_path / "missing.log")])
