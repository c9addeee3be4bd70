"""The planning evaluation (``python -m sb3_jepa.planning``) on real, briefly trained models."""

import csv
import json
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th

from sb3_jepa import PPOJEPA
from sb3_jepa.planning import planner as planner_module
from sb3_jepa.planning.__main__ import main
from sb3_jepa.planning.evaluate import (
    CONTROLLERS,
    EPISODE_FIELDS,
    MODEL_CONTROLLERS,
    ModelTask,
    PlanningSettings,
    check_settings,
    episode_seed,
    evaluate_model,
    make_pairs,
    model_controllers,
    play,
    prediction_error,
    run_evaluation,
)
from sb3_jepa.planning.report import bootstrap_mean, write_report

ENV_ID = "TwoRoomsDiscrete-v0"
#: Settings that make an evaluation cheap: 4 pairs, 6 steps, one CEM iteration of 8 samples
TINY = PlanningSettings(
    env_id=ENV_ID,
    n_pairs=4,
    horizon=2,
    max_steps=6,
    prediction_horizon=3,
    options=dict(n_samples=8, n_elites=2, n_iterations=1),
    n_prior_samples=2,
)


def fake_study(root: Path) -> Path:
    """
    A study folder as ``python -m sb3_jepa.study run`` leaves it, holding two briefly trained models (with reward
    predictors, for planner_prior_return)
    """
    for config, coef in (("rl_only", 0.0), ("jepa_rl", 0.01)):
        run = root / ENV_ID / config / "seed0"
        (run / "zoo").mkdir(parents=True)
        model = PPOJEPA(
            "CnnPolicy",
            ENV_ID,
            n_steps=16,
            batch_size=16,
            n_epochs=1,
            jepa_coef=coef,
            jepa_reward_coef=0.01,
            seed=0,
            device="cpu",
        )
        model.learn(16).save(run / "zoo" / "model.zip")
        (run / "summary.json").write_text(json.dumps(dict(algo="ppo_jepa", effective_rank=3.0, embedding_std=0.1)))
    return root


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    return fake_study(tmp_path_factory.mktemp("study"))


def model_path(study: Path, config: str = "jepa_rl") -> Path:
    return study / ENV_ID / config / "seed0" / "zoo" / "model.zip"


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def planning(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sb3_jepa.planning", *args], capture_output=True, text=True, timeout=600, check=False
    )


class ActionRecorder(gym.Wrapper):
    """Keeps each episode's actions"""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.episodes: list[list[int]] = []

    def reset(self, **kwargs):
        self.episodes.append([])
        return self.env.reset(**kwargs)

    def step(self, action):
        self.episodes[-1].append(int(action))
        return self.env.step(action)


@pytest.mark.slow
def test_planning_evaluation_command(study, tmp_path):
    out = tmp_path / "planning"
    tiny = ["--pairs", "4", "--horizon", "2", "--max-steps", "6", "--prediction-horizon", "3", "--workers", "2"]
    tiny += ["--options", "n_samples:8", "n_elites:2", "n_iterations:1", "--n-prior-samples", "2"]
    done = planning("evaluate", "--study", str(study), "--env", ENV_ID, "--out", str(out), *tiny)
    assert done.returncode == 0, done.stderr
    assert "2 models: 100% (48/48 episodes)" in done.stdout
    rows = read_rows(out / "episodes" / "jepa_rl" / "seed0.csv")
    assert [row["controller"] for row in rows] == [name for name in MODEL_CONTROLLERS for _ in range(4)]
    assert [row["cross_room"] for row in rows[:4]] == ["False", "False", "True", "True"]
    assert all(1 <= int(row["steps"]) <= 6 and float(row["ms_per_step"]) > 0 for row in rows)
    assert len(read_rows(out / "episodes" / "random.csv")) == 4
    errors = read_rows(out / "prediction" / "rl_only" / "seed0.csv")
    assert [int(row["step"]) for row in errors] == [1, 2, 3] and all(float(row["no_change_error"]) > 0 for row in errors)
    report = (out / "report.md").read_text()
    assert (
        "| configuration | seeds | greedy | stochastic | planner | planner_prior | planner_prior_value | "
        "planner_prior_return |"
    ) in report
    assert "| jepa_rl | 1 |" in report and "| rl_only | 1 |" in report and "Random actions on the same pairs" in report
    assert "| jepa_rl | planner_prior_return |" in report and "| (none) | random |" in report
    assert "| controller | ms/step | steps |" in report and "k=3: W / no change" in report
    results = read_rows(out / "results.csv")
    assert [(row["config"], row["controller"]) for row in results] == [
        (config, name) for config in ("jepa_rl", "rl_only") for name in MODEL_CONTROLLERS
    ] + [("random", "random")]
    assert (out / "planning.png").stat().st_size > 0
    # A rerun skips the evaluated models; other settings into the same folder are refused before any work
    mtime = (out / "episodes" / "jepa_rl" / "seed0.csv").stat().st_mtime
    again = planning("evaluate", "--study", str(study), "--env", ENV_ID, "--out", str(out), *tiny)
    assert again.returncode == 0 and "episodes)" not in again.stdout
    assert (out / "episodes" / "jepa_rl" / "seed0.csv").stat().st_mtime == mtime
    other = planning("evaluate", "--study", str(study), "--env", ENV_ID, "--out", str(out), *tiny, "--value-weight", "2")
    assert other.returncode == 2 and "holds results of other settings (value_weight differ)" in other.stderr


def test_planning_command_refuses_bad_arguments(tmp_path, capsys):
    study = tmp_path / "study"
    for args, message in (
        (["--horizon", "0"], "--horizon must be >= 1"),
        (["--options", "temperature:1"], "--options: Unknown option(s) ['temperature'] for method 'cem'"),
        (["--env", "CartPole-v1"], "--env must be a Two Rooms id"),
        ([], "No finished study run under"),
        (["--configs", "jepa_rl"], "configs ['jepa_rl'] have no finished run"),
        (["--controllers", "greedy", "mpc"], "argument --controllers: invalid choice: 'mpc'"),
        (["--prior", "uniform"], "argument --prior: invalid choice: 'uniform'"),
        (["--n-prior-samples", "0"], "--n-prior-samples must be >= 1, got 0"),
        (["--value-weight", "-1"], "--value-weight must be a finite number >= 0, got -1.0"),
        (["--value-weight", "nan"], "--value-weight must be a finite number >= 0, got nan"),
        (["--value-weight", "0"], "--value-weight must be > 0 with the controllers ['planner_prior_value', 'planner_"),
        (["--method", "exhaustive"], "--method exhaustive scores every sequence and cannot use the prior of"),
    ):
        with pytest.raises(SystemExit) as exited:
            main(["evaluate", "--study", str(study), "--out", str(tmp_path / "out"), *args])
        assert exited.value.code == 2 and message in capsys.readouterr().err, args
    assert not (tmp_path / "out").exists()


def test_runs_without_a_saved_model_are_refused_by_name(tmp_path, capsys):
    """A finished run whose model was not kept is named, before any work (not SB3's "model.zip.zip")"""
    for seed in (0, 1):
        run = tmp_path / "study" / ENV_ID / "jepa_rl" / f"seed{seed}"
        run.mkdir(parents=True)
        (run / "summary.json").write_text(json.dumps(dict(algo="ppo_jepa")))
    (tmp_path / "study" / ENV_ID / "jepa_rl" / "seed1" / "zoo").mkdir()
    (tmp_path / "study" / ENV_ID / "jepa_rl" / "seed1" / "zoo" / "model.zip").write_bytes(b"")
    with pytest.raises(SystemExit) as exited:
        main(["evaluate", "--study", str(tmp_path / "study"), "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert exited.value.code == 2 and "runs without a saved model (zoo/model.zip)" in error
    assert "jepa_rl/seed0;" in error and "seed1" not in error.split("under")[1]
    assert not (tmp_path / "out").exists()


def test_settings_refuse_bad_controllers():
    assert PlanningSettings(controllers=("random", "greedy", "greedy")).controllers == ("greedy", "random")
    assert PlanningSettings().controllers == CONTROLLERS
    for keywords, message in (
        (dict(controllers=("planner", "mpc")), "controllers must be a non-empty selection of"),
        (dict(controllers=()), "controllers must be a non-empty selection of"),
        (dict(prior="uniform"), "prior must be one of ('policy',), got 'uniform'"),
        (dict(n_prior_samples=0), "n_prior_samples must be a positive int, got 0"),
        (dict(value_weight=0.0), "value_weight must be > 0 for the controllers ['planner_prior_value', 'planner_pr"),
        (dict(value_weight=float("inf")), "value_weight must be a finite number >= 0, got inf"),
        (dict(method="exhaustive"), "sample a prior, which method 'exhaustive' cannot use"),
    ):
        with pytest.raises(ValueError) as refused:
            PlanningSettings(**keywords)
        assert message in str(refused.value), keywords
    # Without the controllers that use them, the prior's settings do not matter
    PlanningSettings(controllers=("planner",), value_weight=0.0, method="exhaustive", options={})


def test_results_of_an_older_version_are_refused(tmp_path):
    """0.4.0's settings.json lacks the controllers' keys: its folder is not mixed with new results"""
    new_keys = ("controllers", "prior", "n_prior_samples", "value_weight")
    saved = {key: value for key, value in json.loads(json.dumps(asdict(PlanningSettings()))).items() if key not in new_keys}
    (tmp_path / "settings.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"other settings \(controllers, n_prior_samples, prior, value_weight differ\)"):
        check_settings(PlanningSettings(), tmp_path)
    with pytest.raises(ValueError, match="written by an older version of the evaluation"):
        write_report(tmp_path)


def test_planners_refused_before_any_work(tmp_path):
    """value_weight > 0 needs a critic that reads the actor's embedding: refused before any episode or file"""
    path = tmp_path / "model.zip"
    PPOJEPA(
        "CnnPolicy", ENV_ID, n_steps=16, batch_size=16, policy_kwargs=dict(share_features_extractor=False), device="cpu"
    ).save(path)
    with pytest.raises(ValueError, match=r"x/seed0 \(.*\) cannot run the controller planner_prior_value: value_weight > 0"):
        run_evaluation(TINY, [("x", 0, path, "ppo_jepa")], tmp_path / "out", workers=1, show_progress=False)
    assert not (tmp_path / "out").exists()


def test_the_return_planner_is_refused_for_a_model_without_reward_predictor(tmp_path):
    path = tmp_path / "model.zip"
    PPOJEPA("CnnPolicy", ENV_ID, n_steps=16, batch_size=16, device="cpu").save(path)
    with pytest.raises(ValueError, match=r"cannot run the controller planner_prior_return: .*no reward predictor.*leave"):
        run_evaluation(TINY, [("x", 0, path, "ppo_jepa")], tmp_path / "out", workers=1, show_progress=False)
    assert not (tmp_path / "out").exists()
    # Without that controller, the same model is evaluated
    others = replace(TINY, controllers=tuple(name for name in CONTROLLERS if name != "planner_prior_return"))
    assert run_evaluation(others, [("x", 0, path, "ppo_jepa")], tmp_path / "out", workers=1, show_progress=False) == []


def test_normalize_references_are_the_observations_the_controllers_see(study, tmp_path, monkeypatch):
    """Each pair's first observation and its goal observation, both with the goal dot"""
    seen = []

    class Built(Exception):
        pass

    def recorder(model, **keywords):
        seen.append(keywords["reference_obs"])
        raise Built

    monkeypatch.setattr(planner_module, "LatentPlanner", recorder)
    task = ModelTask("jepa_rl", 0, str(model_path(study)), "ppo_jepa", replace(TINY, normalize=True))
    with pytest.raises(Built):
        evaluate_model(task, tmp_path)
    reference = seen[0]
    assert reference.shape == (8, 64, 64, 3)
    assert (reference[..., 2].reshape(8, -1).sum(axis=1) > 0).all()  # the goal channel: the goal dot
    env = gym.make(ENV_ID)
    for index, pair in enumerate(make_pairs(ENV_ID, 4, seed=0)):
        obs, _ = env.reset(options=dict(start=pair["start"], goal=pair["goal"]))
        np.testing.assert_array_equal(reference[2 * index], obs)
        np.testing.assert_array_equal(reference[2 * index + 1], env.unwrapped.goal_observation())


def test_planner_controllers_keywords(study, monkeypatch):
    built = []
    real = planner_module.LatentPlanner

    def recorder(model, **keywords):
        built.append(keywords)
        return real(model, **keywords)

    monkeypatch.setattr(planner_module, "LatentPlanner", recorder)
    settings = replace(TINY, n_prior_samples=3, value_weight=0.5)
    controllers = model_controllers(PPOJEPA.load(model_path(study), device="cpu"), settings)
    assert [controller.name for controller in controllers] == list(MODEL_CONTROLLERS)
    with pytest.raises(ValueError, match=r"names must be some of .* got \['random'\]"):
        model_controllers(PPOJEPA.load(model_path(study), device="cpu"), settings, names=("random",))
    assert [(k["prior"], k.get("n_prior_samples"), k["value_weight"], k.get("value_estimate")) for k in built] == [
        (None, None, 0.0, None),
        ("policy", 3, 0.0, None),
        ("policy", 3, 0.5, "terminal"),
        ("policy", 3, 0.5, "return"),
    ]
    for keywords in built:
        assert {key: keywords[key] for key in ("horizon", "method", "cost", "replan_every", "seed", "n_samples")} == dict(
            horizon=2, method="cem", cost="sum", replan_every=4, seed=0, n_samples=8
        )


@pytest.mark.parametrize("name", ["stochastic", "planner", "planner_prior_value", "planner_prior_return"])
def test_a_pair_plays_the_same_alone_or_after_others(study, name):
    """Each pair's episode is seeded by the pair: the pairs played before it change nothing"""
    model = PPOJEPA.load(model_path(study), device="cpu")
    pairs = make_pairs(ENV_ID, 4, seed=0)
    env = ActionRecorder(gym.make(ENV_ID))
    [after_others] = model_controllers(model, TINY, names=(name,))
    played = play(after_others, env, pairs, [0, 1, 2], max_steps=6, pair_seed=0)
    actions = env.episodes[-1]
    [fresh] = model_controllers(model, TINY, names=(name,))
    alone = play(fresh, env, pairs, [2], max_steps=6, pair_seed=0)
    assert env.episodes[-1] == actions and len(set(map(tuple, env.episodes))) > 1
    timing = ("planning_time_s", "ms_per_step")
    assert {k: v for k, v in alone[0].items() if k not in timing} == {k: v for k, v in played[-1].items() if k not in timing}


def test_prediction_error_against_no_change(study, monkeypatch):
    model = PPOJEPA.load(model_path(study), device="cpu")
    pairs = make_pairs(ENV_ID, 4, seed=0)
    rows = prediction_error(model, gym.make(ENV_ID), pairs, TINY)
    assert [row["step"] for row in rows] == [1, 2, 3] and all(row["no_change_error"] > 0 for row in rows)
    # A W that predicts that nothing moves is the baseline
    monkeypatch.setattr(model.policy.jepa_predictor, "next", lambda z, features: z)
    for row in prediction_error(model, gym.make(ENV_ID), pairs, TINY):
        assert row["relative_error"] == pytest.approx(row["no_change_error"], rel=1e-6)


def write_episodes(path: Path, config: str, seed: int, controller: str, successes: list[bool], seconds: float) -> None:
    """Episodes of 5 steps when they succeed, 10 when not, ``seconds`` per step; pairs 2 and 3 cross the wall"""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with open(path, "a", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(EPISODE_FIELDS))
        if new:
            writer.writeheader()
        for pair, success in enumerate(successes):
            steps = 5 if success else 10
            writer.writerow(
                dict(
                    config=config,
                    seed=seed,
                    controller=controller,
                    pair=pair,
                    cross_room=pair >= 2,
                    success=success,
                    final_distance=1.0 if success else 20.0,
                    start_distance=30.0,
                    steps=steps,
                    planning_time_s=seconds * steps,
                    ms_per_step=1000 * seconds,
                )
            )


def test_report_layout(tmp_path):
    """Success per configuration x controller with intervals, details, time per step, W against no change"""
    settings = replace(TINY, controllers=("greedy", "planner", "random"))
    (tmp_path / "settings.json").write_text(json.dumps(asdict(settings)))
    for seed in (0, 1):
        path = tmp_path / "episodes" / "a" / f"seed{seed}.csv"
        write_episodes(path, "a", seed, "greedy", [True] * 4, 0.001)
        write_episodes(path, "a", seed, "planner", [True, True, False, False], 0.02)
        prediction = tmp_path / "prediction" / "a" / f"seed{seed}.csv"
        prediction.parent.mkdir(parents=True, exist_ok=True)
        prediction.write_text("step,relative_error,no_change_error,n\n1,0.1,0.5,4\n2,0.2,0.6,4\n3,0.3,0.7,4\n")
    write_episodes(tmp_path / "episodes" / "random.csv", "random", 0, "random", [False, True, False, False], 1e-5)
    report = write_report(tmp_path).read_text()
    planner = bootstrap_mean(np.array([[1.0, 1.0, 0.0, 0.0]] * 2))
    assert f"| a | 2 | 100% [100, 100] | 50% [{100 * planner[1]:.0f}, {100 * planner[2]:.0f}] |" in report
    assert "| a | planner | 100% [100, 100] | 0% [0, 0] | 10.5 [" in report and "| 20.0 |" in report
    assert "| (none) | random | 50% [" in report and "Random actions on the same pairs (one run, no model): 25% [" in report
    assert "| greedy | 1.00 | 40 |" in report and "| planner | 20.00 | 60 |" in report
    assert "| a | 2 | 0.10 / 0.50 | 0.30 / 0.70 | n/a | n/a | n/a |" in report
    results = read_rows(tmp_path / "results.csv")
    assert [(r["config"], r["seed"], r["controller"], r["success"]) for r in results] == [
        ("a", "0", "greedy", "1.0"),
        ("a", "1", "greedy", "1.0"),
        ("a", "0", "planner", "0.5"),
        ("a", "1", "planner", "0.5"),
        ("random", "0", "random", "0.25"),
    ]
    assert (tmp_path / "planning.png").stat().st_size > 0


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


def test_prediction_error_is_measured_in_the_space_w_predicts(monkeypatch):
    # An ema model whose target encoder has drifted: W's predictions are compared with E_ema(o_k), not E(o_k)
    model = PPOJEPA("CnnPolicy", gym.make(ENV_ID), n_steps=8, batch_size=8, jepa_target="ema", device="cpu", seed=0)
    policy: Any = model.policy
    th.manual_seed(0)
    with th.no_grad():
        for parameter in policy.jepa_target_encoder.parameters():
            parameter.mul_(1.5)
    monkeypatch.setattr(policy.jepa_predictor, "next", lambda z, features: z)  # W(z, a) = z: the prediction is E(o_0)
    pairs = make_pairs(ENV_ID, 4, seed=0)
    rows = prediction_error(model, gym.make(ENV_ID), pairs, TINY)
    env = gym.make(ENV_ID)
    first, last = [], []
    for index, pair in enumerate(pairs):  # the episodes prediction_error plays: random actions seeded by the pair
        obs, _ = env.reset(options=dict(start=pair["start"], goal=pair["goal"]))
        env.action_space.seed(episode_seed(TINY.pair_seed, index))
        first.append(obs)
        for _ in range(TINY.prediction_horizon):
            obs, *_ = env.step(env.action_space.sample())
        last.append(obs)
    with th.no_grad():
        online = policy.jepa_encode(policy.obs_to_tensor(np.stack(first))[0])
        target = policy.jepa_encode(policy.obs_to_tensor(np.stack(last))[0], target=True)
    expected = float((online - target).pow(2).sum(dim=1).mean())
    ratio = rows[-1]["relative_error"] / rows[-1]["no_change_error"]
    moved = float(
        (policy.jepa_encode(policy.obs_to_tensor(np.stack(first))[0], target=True) - target).pow(2).sum(dim=1).mean()
    )
    assert ratio == pytest.approx(expected / moved, rel=1e-4)


@pytest.mark.parametrize("env_id", ["TwoRoomsDiscreteDistractorsPredictable-v0", "TwoRoomsDiscreteDistractorsNoise-v0"])
def test_pairs_with_distractor_dots(env_id):
    """``info["state"]`` has the dots after the goal: a pair is still two positions, the same as without dots"""
    pairs = make_pairs(env_id, 4, seed=0)
    assert pairs == make_pairs(ENV_ID, 4, seed=0)  # the dots draw from a generator of their own
    env = gym.make(env_id)
    for pair in pairs:
        assert len(pair["start"]) == len(pair["goal"]) == 2
        _, info = env.reset(options=dict(start=pair["start"], goal=pair["goal"]))
        np.testing.assert_allclose(info["state"][:4], pair["start"] + pair["goal"])
        assert len(info["state"]) == 4 + len(info["distractor_state"])


def test_find_models_takes_the_full_name_of_a_shortened_configuration(tmp_path):
    from sb3_jepa.planning.evaluate import find_models
    from sb3_jepa.study.configs import config_folder

    long = "jepa_rl:" + ",".join(["jepa_coef=0.00015701421102720542", "jepa_tau=0.007382751981499335"] * 6)
    run = tmp_path / ENV_ID / config_folder(long) / "seed0"
    (run / "zoo").mkdir(parents=True)
    (run / "zoo" / "model.zip").write_bytes(b"")
    (run / "summary.json").write_text(json.dumps(dict(algo="ppo_jepa", config=long)))
    [(config, seed, path, algo)] = find_models(tmp_path, ENV_ID, [long], None)
    assert (config, seed, path, algo) == (config_folder(long), 0, run / "zoo" / "model.zip", "ppo_jepa")
