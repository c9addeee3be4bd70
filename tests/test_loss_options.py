"""The scale-invariant loss options (jepa_loss, jepa_embedding_norm), the pairs sampler and the linear probes."""

import json
import re

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack

from sb3_jepa import A2CJEPA, PPOJEPA, JEPAFeaturesExtractor
from sb3_jepa.common import probes
from sb3_jepa.common.jepa import SimNorm
from sb3_jepa.common.loss import TARGET_MODES, prediction_error
from sb3_jepa.common.probes import NoStateError, collect_states, linear_probe_r2
from sb3_jepa.study import runner
from sb3_jepa.study.configs import CONFIGS
from sb3_jepa.study.report import _probe_split_note
from sb3_jepa.study.runner import RunSpec, check_specs
from sb3_jepa.zoo.samplers import convert_jepa_params, sample_jepa_params
from tests.conftest import ALGOS, SMALL
from tests.helpers import CountingEnv, state_of

NEW_CONFIGS = (
    "jepa_rl_pairs",
    "jepa_rl_cosine",
    "jepa_only_cosine",
    "jepa_rl_layernorm",
    "jepa_rl_simnorm",
    "jepa_only_vicreg_fair",
    "jepa_rl_vicreg_fair",
    "jepa_rl_ema_lambda1",
)


def test_cosine_error_ignores_the_scale_of_z():
    generator = th.Generator().manual_seed(0)
    prediction, target = th.randn(6, 5, generator=generator), th.randn(6, 5, generator=generator)
    cosine = prediction_error(prediction, target, "cosine")
    th.testing.assert_close(prediction_error(1e-3 * prediction, 50.0 * target, "cosine"), cosine)
    th.testing.assert_close(cosine, 2 - 2 * th.nn.functional.cosine_similarity(prediction, target))
    # The squared error is what shrinking z lowers
    shrunk = prediction_error(1e-3 * prediction, 1e-3 * target, "mse")
    th.testing.assert_close(shrunk, 1e-6 * prediction_error(prediction, target, "mse"))


@pytest.mark.parametrize("norm", ["layernorm", "simnorm"])
def test_embedding_norm_holds_row_by_row(norm):
    space = spaces.Box(-10, 10, (7,))
    extractor = JEPAFeaturesExtractor(space, embedding_norm=norm)
    assert extractor.features_dim == 64 and not any(p.requires_grad for p in extractor.head[-1].parameters())
    z = extractor(th.randn(32, 7) * 10)
    if norm == "layernorm":
        th.testing.assert_close(z.mean(dim=1), th.zeros(32), atol=1e-5, rtol=0)
        th.testing.assert_close(z.var(dim=1, unbiased=False), th.ones(32), atol=1e-3, rtol=0)
        # every row has norm sqrt(dim), whatever the input's scale: no collapse in scale
        th.testing.assert_close(z.norm(dim=1), th.full((32,), 8.0), atol=1e-2, rtol=0)
    else:
        groups = z.reshape(32, 8, 8)
        assert (groups >= 0).all()
        th.testing.assert_close(groups.sum(dim=-1), th.ones(32, 8))
    # the state dict is the plain extractor's: the option adds no tensor
    assert extractor.state_dict().keys() == JEPAFeaturesExtractor(space).state_dict().keys()


def test_simnorm_needs_whole_groups():
    with pytest.raises(ValueError, match="multiple of 8, got 12"):
        SimNorm(12)
    with pytest.raises(ValueError, match="multiple of 8, got 12"):
        JEPAFeaturesExtractor(spaces.Box(-1, 1, (3,)), net_arch=[12], embedding_norm="simnorm")


@pytest.mark.parametrize("target", TARGET_MODES)
@pytest.mark.parametrize(("loss", "norm"), [("cosine", None), ("mse", "layernorm"), ("cosine", "simnorm")])
def test_options_train_save_and_load(tmp_path, target, loss, norm):
    kwargs = dict(jepa_target=target, jepa_loss=loss, jepa_embedding_norm=norm, jepa_coef=1.0, jepa_prediction_steps=2)
    model = PPOJEPA("MlpPolicy", DummyVecEnv([CountingEnv]), seed=0, **kwargs, **SMALL[PPOJEPA])
    model.learn(2 * SMALL[PPOJEPA]["n_steps"])
    assert np.isfinite(model.logger.name_to_value["jepa/loss"])
    if loss == "cosine":
        assert 0.0 <= model.logger.name_to_value["jepa/loss"] <= 4.0
    observations = model.rollout_buffer.observations[:8]
    z = model.policy.jepa_encode(th.as_tensor(observations))
    if norm == "layernorm":
        th.testing.assert_close(z.norm(dim=1), th.full((8,), 8.0), atol=1e-2, rtol=0)
    model.save(tmp_path / "model.zip")
    loaded = PPOJEPA.load(tmp_path / "model.zip")
    assert (loaded.jepa_loss, loaded.jepa_embedding_norm) == (loss, norm)
    th.testing.assert_close(loaded.policy.jepa_encode(th.as_tensor(observations)), z)
    # the saved policy_kwargs stay the user's (none given)
    assert "jepa_embedding_norm" not in loaded.policy_kwargs


@pytest.mark.parametrize("algo_cls", ALGOS)
def test_options_with_box_actions(algo_cls):
    model = algo_cls("MlpPolicy", "Pendulum-v1", seed=0, jepa_loss="cosine", jepa_embedding_norm="simnorm", **SMALL[algo_cls])
    model.learn(2 * SMALL[algo_cls]["n_steps"])
    assert 0.0 <= model.logger.name_to_value["jepa/loss"] <= 4.0


def test_embedding_norm_needs_the_jepa_extractor():
    policy_kwargs = dict(features_extractor_class=FlattenExtractor)
    with pytest.raises(ValueError, match="FlattenExtractor is not one"):
        A2CJEPA("MlpPolicy", "CartPole-v1", jepa_embedding_norm="layernorm", policy_kwargs=policy_kwargs)
    conflicting = dict(features_extractor_kwargs=dict(embedding_norm="simnorm"))
    with pytest.raises(ValueError, match="give it once"):
        A2CJEPA("MlpPolicy", "CartPole-v1", jepa_embedding_norm="layernorm", policy_kwargs=conflicting)


@pytest.mark.parametrize("algo_cls", ALGOS)
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(jepa_loss="l1"), r"jepa_loss must be one of \('mse', 'cosine'\), got 'l1'"),
        (
            dict(jepa_embedding_norm="batchnorm"),
            r"jepa_embedding_norm must be one of \(None, 'layernorm', 'simnorm'\), got 'batchnorm'",
        ),
    ],
)
def test_bad_options_fail_before_any_work(algo_cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        algo_cls("MlpPolicy", "NoSuchEnv-v0", **kwargs)


def test_pairs_encode_no_extra_observation_and_use_every_transition():
    model = PPOJEPA(
        "MlpPolicy",
        DummyVecEnv([CountingEnv, lambda: CountingEnv(1)]),
        seed=0,
        jepa_segment_length=2,
        jepa_in_minibatch_only=True,
        **SMALL[PPOJEPA],
    )
    model.learn(SMALL[PPOJEPA]["n_steps"])
    used: dict[tuple, int] = {}
    for _epoch in range(2):
        for batch in model.rollout_buffer.get(16):
            assert len(batch.next_extra_observations) == 0
            states = state_of(batch.observations)
            valid = batch.next_valid.numpy().astype(bool)
            # a valid successor is the next row of its own pair
            np.testing.assert_array_equal(state_of(batch.next_observations)[valid], states[valid] + [0, 0, 1])
            for state, ok in zip(states, valid, strict=True):
                used[tuple(state)] = used.get(tuple(state), 0) + int(ok)
    # Over two epochs (the two pairings) every transition whose successor is a buffer row is used, in its pair's
    # epoch (and in the other when the pair holding its successor lands in the same minibatch); the transitions
    # into terminal or final observations, which would need an extra encoding, never
    assert len(used) == 2 * SMALL[PPOJEPA]["n_steps"]
    inner = {s for s in used if (s[0], s[1], s[2] + 1) in used}
    assert all(used[s] >= 1 for s in inner)
    assert all(used[s] == 0 for s in used.keys() - inner)


def test_pairs_argument():
    with pytest.raises(ValueError, match="jepa_in_minibatch_only must be True or False, got 'yes'"):
        PPOJEPA("MlpPolicy", "NoSuchEnv-v0", jepa_in_minibatch_only="yes")


def test_probe_recovers_a_linear_map_and_scores_collapse_as_collapse():
    rng = np.random.default_rng(0)
    states = rng.normal(size=(400, 3))
    mixing = rng.normal(size=(3, 16))
    z = states @ mixing + 0.01 * rng.normal(size=(400, 16))
    assert (linear_probe_r2(z, states) > 0.99).all()
    # the scale of z does not matter (a collapse in scale alone keeps the information)
    np.testing.assert_allclose(linear_probe_r2(1e-6 * z, states), linear_probe_r2(z, states), atol=1e-6)
    # a collapsed (constant) encoder holds nothing; noise holds nothing either
    assert (linear_probe_r2(np.ones((400, 16)), states) <= 0.0).all()
    assert (linear_probe_r2(rng.normal(size=(400, 16)), states) < 0.2).all()
    with pytest.raises(ValueError, match="as many rows"):
        linear_probe_r2(z[:10], states)


def test_collect_states_from_pixel_cart_pole():
    env = VecFrameStack(make_vec_env("PixelCartPole-v1", n_envs=2, seed=0, env_kwargs=dict(size=36)), n_stack=4)
    model = PPOJEPA("CnnPolicy", env, seed=0, n_steps=16, batch_size=16, n_epochs=1)
    z, states, _ = collect_states(model, env, n_steps=50)
    assert z.shape == (100, model.policy.features_dim) and states.shape == (100, 4)
    # the cart's position in the state is the one drawn: it changes over the episode
    assert states[:, 0].std() > 0
    with pytest.raises(NoStateError, match="no 'state' entry"):
        collect_states(PPOJEPA("MlpPolicy", "CartPole-v1"), make_vec_env("CartPole-v1"), n_steps=5)


def test_probe_held_out_by_episode_does_not_reward_memorising_episodes():
    # The state is constant through each of 40 episodes of 20 steps and z is the episode's one-hot: z tells the
    # state only by recognising the episode. Held-out random steps come from fitted episodes (R^2 near 1); held-out
    # episodes were never seen, and their one-hot columns never fitted (R^2 near 0 or below)
    rng = np.random.default_rng(0)
    episodes = np.repeat(np.arange(40), 20)
    states = rng.normal(size=(40, 2))[episodes]
    z = np.eye(40)[episodes] + 0.01 * rng.normal(size=(800, 40))
    assert (linear_probe_r2(z, states) > 0.95).all()
    assert (linear_probe_r2(z, states, groups=episodes) < 0.1).all()
    assert (linear_probe_r2(z, states, groups=episodes, ridge=1e-3, seed=3) < 0.1).all()
    # z that holds the state linearly keeps its score on unseen episodes
    states = rng.normal(size=(800, 3))
    z = states @ rng.normal(size=(3, 16)) + 0.01 * rng.normal(size=(800, 16))
    assert (linear_probe_r2(z, states, groups=episodes) > 0.99).all()


def test_probe_groups_are_held_out_whole(monkeypatch):
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(30), rng.integers(5, 40, 30))
    rng.shuffle(groups)  # a group's rows need not be adjacent
    held, rest = probes._hold_out_groups(groups, 0.25, np.random.default_rng(0))
    assert set(groups[held]).isdisjoint(groups[rest]) and len(set(groups[held])) >= 1
    np.testing.assert_array_equal(np.sort(np.concatenate([held, rest])), np.arange(len(groups)))
    # About the fraction: within half the largest group (39 rows) of a quarter of the rows
    assert abs(len(held) - 0.25 * len(groups)) <= 39 / 2
    np.testing.assert_array_equal(probes._hold_out_groups(groups, 0.25, np.random.default_rng(0))[0], held)
    assert not np.array_equal(probes._hold_out_groups(groups, 0.25, np.random.default_rng(1))[0], held)
    # linear_probe_r2 holds out whole groups, then holds back whole groups of the fit rows to choose the ridge
    calls = []

    def spy(groups, fraction, rng):
        calls.append((groups, fraction, probes_hold_out(groups, fraction, rng)))
        return calls[-1][2]

    probes_hold_out = probes._hold_out_groups
    monkeypatch.setattr(probes, "_hold_out_groups", spy)
    z, states = rng.normal(size=(len(groups), 8)), rng.normal(size=(len(groups), 2))
    linear_probe_r2(z, states, groups=groups)
    (all_rows, holdout, (_, fit)), (fit_groups, fifth, (val, train)) = calls
    np.testing.assert_array_equal(all_rows, groups)
    np.testing.assert_array_equal(fit_groups, groups[fit])
    assert (holdout, fifth) == (0.25, 0.2) and set(fit_groups[val]).isdisjoint(fit_groups[train])
    calls.clear()
    linear_probe_r2(z, states, groups=groups, ridge=0.1)
    assert len(calls) == 1  # no ridge to choose


def test_probe_needs_enough_groups():
    rng = np.random.default_rng(0)
    z, states = rng.normal(size=(400, 8)), rng.normal(size=(400, 2))
    two = np.repeat([0, 1], 200)
    with pytest.raises(ValueError, match=re.escape("groups must have at least 3 distinct values (one held out, one held")):
        linear_probe_r2(z, states, groups=two)
    assert linear_probe_r2(z, states, groups=two, ridge=0.1).shape == (2,)  # a given ridge needs none held back
    with pytest.raises(ValueError, match=re.escape("groups must have at least 2 distinct values (one held out, one to")):
        linear_probe_r2(z, states, groups=np.zeros(400), ridge=0.1)
    with pytest.raises(ValueError, match="groups must have one entry per row of z, got 399 for 400 rows"):
        linear_probe_r2(z, states, groups=two[:-1])
    # Whole groups can leave too few fit rows: one group of 395 rows, the other 5 rows in 5 groups
    with pytest.raises(
        ValueError, match=r"at least 2 held-out and 10 fit rows, got \d+ and [0-9] from holding out whole groups"
    ):
        linear_probe_r2(z, states, groups=np.r_[np.zeros(395), np.arange(1, 6)], holdout=0.9)


class StateInInfo(gym.Wrapper):
    """CountingEnv with its ``(env_index, episode, step)`` observation also in ``info["state"]``."""

    def reset(self, **kwargs):
        observation, info = self.env.reset(**kwargs)
        return observation, {**info, "state": observation.copy()}

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        return observation, reward, terminated, truncated, {**info, "state": observation.copy()}


def counting_env_with_state():
    return DummyVecEnv([lambda i=i: StateInInfo(CountingEnv(env_index=i)) for i in range(3)])


def test_collect_states_numbers_the_episodes():
    # CountingEnv's episodes last 2 to 6 steps and end alternately by termination and by truncation
    env = counting_env_with_state()
    model = PPOJEPA("MlpPolicy", env, seed=0, n_steps=16, batch_size=16, n_epochs=1)
    z, states, episodes = collect_states(model, env, n_steps=40)
    assert z.shape == (120, model.policy.features_dim) and states.shape == (120, 3) and episodes.shape == (120,)
    # Rows step by step, env by env: one id per (env, episode) of the true state, and each its own
    pairs = [(int(env_index), int(episode)) for env_index, episode, _ in states]
    ids = dict(zip(pairs, episodes.tolist(), strict=True))
    assert all(ids[pair] == episode for pair, episode in zip(pairs, episodes, strict=True))
    assert len(set(ids.values())) == len(ids) > 3 * 40 / 6
    # The first rows are the envs' first episodes, 0, 1, 2; then new ids in the order the episodes start, a new
    # episode exactly where the true step count is back at 0
    np.testing.assert_array_equal(episodes[:3], [0, 1, 2])
    first = np.unique(episodes, return_index=True)[1]
    np.testing.assert_array_equal(np.sort(first), first)
    np.testing.assert_array_equal(np.sort(first), np.flatnonzero(states[:, 2] == 0))


def test_the_study_probes_hold_out_episodes(monkeypatch):
    class Manager:  # the one ExperimentManager method _probe_scores uses
        def create_envs(self, n_envs, eval_env=False):
            return counting_env_with_state()

    monkeypatch.setattr(runner, "PROBE_STEPS", 60)
    model = PPOJEPA("MlpPolicy", counting_env_with_state(), seed=0, n_steps=16, batch_size=16, n_epochs=1)
    z, states, episodes = collect_states(model, counting_env_with_state(), 60)
    scores, parts = runner._probe_scores(model, Manager())
    assert parts is None  # no distractors
    np.testing.assert_allclose(scores, linear_probe_r2(z, states, groups=episodes))
    assert not np.allclose(scores, linear_probe_r2(z, states), equal_nan=True)
    # Too few episodes for a probe: a warning and no scores, not a failed run after its training
    monkeypatch.setattr(runner, "PROBE_STEPS", 2)
    with pytest.warns(UserWarning, match="No probe on 3 episodes of 2 steps: linear_probe_r2 needs at least"):
        assert runner._probe_scores(model, Manager()) == (None, None)


def test_distractor_probes_split_the_task_from_the_distractors():
    """
    z holds the task's variables and, as much as ``kept``, the distractors': the distractors' R^2 and their share
    of z's variance follow ``kept``, the task's R^2 stays high
    """
    rng = np.random.default_rng(0)
    n, episodes = 2000, np.repeat(np.arange(40), 50)
    task, distractors = rng.normal(size=(n, 3)), rng.normal(size=(n, 4))
    states = np.concatenate([task, distractors], axis=1)
    mixing = rng.normal(size=(7, 16))
    scores = {}
    for kept in (0.0, 1.0):
        z = np.concatenate([task, kept * distractors], axis=1) @ mixing + 0.05 * rng.normal(size=(n, 16))
        scores[kept] = probes.distractor_probes(z, states, n_distractor_vars=4, groups=episodes)
        assert scores[kept]["task_r2"] > 0.99
    assert scores[1.0]["distractor_r2"] > 0.99 and scores[0.0]["distractor_r2"] < 0.05
    # 4 of 7 unit-variance sources: about 4/7 of z's variance (the mixing weighs them unequally)
    assert 0.3 < scores[1.0]["distractor_variance_fraction"] < 0.9
    assert abs(scores[0.0]["distractor_variance_fraction"]) < 0.02
    with pytest.raises(ValueError, match=r"n_distractor_vars must be in \[1, 6\]"):
        probes.distractor_probes(z, states, n_distractor_vars=7, groups=episodes)
    assert "distractor_centroid_r2" not in scores[1.0]


def test_distractor_centroids_worked_example():
    np.testing.assert_array_equal(probes.distractor_centroids(np.array([[10, 0, 30, 4]]), 2), [[20, 2]])
    np.testing.assert_array_equal(probes.distractor_centroids(np.array([[1, 2, 3]]), 1), [[1, 2, 3]])
    for objects, message in (
        (0, "be an integer >= 1"),
        (True, "be an integer >= 1"),
        (3, "divide the 4 distractor variables, got 3"),
    ):
        with pytest.raises(ValueError, match=f"objects must {message}"):
            probes.distractor_centroids(np.zeros((2, 4)), objects)


def test_distractor_probes_read_the_centroid_of_look_alike_objects():
    """
    z holds what an image of two look-alike dots holds, the set of their positions (here: their centroid and their
    spread), or nothing of them: the per-dot R^2 cannot tell the two apart, the centroid's R^2 can
    """
    rng = np.random.default_rng(0)
    n, episodes = 2000, np.repeat(np.arange(40), 50)
    task, dots = rng.normal(size=(n, 2)), rng.uniform(0, 64, size=(n, 4))
    states = np.concatenate([task, dots], axis=1)
    symmetric = np.concatenate([probes.distractor_centroids(dots, 2), np.abs(dots[:, :2] - dots[:, 2:])], axis=1)
    mixing = rng.normal(size=(6, 16))
    scores = {}
    for kept in (0.0, 1.0):
        z = np.concatenate([task, kept * symmetric / 64], axis=1) @ mixing + 0.01 * rng.normal(size=(n, 16))
        scores[kept] = probes.distractor_probes(z, states, 4, groups=episodes, exchangeable_objects=2)
    assert scores[1.0]["distractor_centroid_r2"] > 0.99 and scores[0.0]["distractor_centroid_r2"] < 0.05
    assert scores[1.0]["distractor_r2"] < 0.6  # each dot's own coordinates: about half their variance at best
    with pytest.raises(ValueError, match="objects must divide the 4 distractor variables, got 3"):
        probes.distractor_probes(z, states, 4, groups=episodes, exchangeable_objects=3)


def test_explained_variance_fraction_is_the_pooled_adjusted_r2():
    rng = np.random.default_rng(1)
    d = rng.normal(size=(600, 2))
    # One dimension is d's, one is noise of the same variance: half the variance
    z = np.stack([d[:, 0] + d[:, 1], np.sqrt(2) * rng.normal(size=600)], axis=1)
    assert probes.explained_variance_fraction(z, d) == pytest.approx(0.5, abs=0.05)
    # Scaling z's noise dimension up makes it most of the variance: pooled, not averaged over dimensions
    assert probes.explained_variance_fraction(z * [1, 10], d) < 0.05
    # Predictors of pure noise explain about nothing (adjusted for their number), many of them included
    noise = rng.normal(size=(600, 50))
    assert abs(probes.explained_variance_fraction(z, noise)) < 0.03
    with pytest.raises(ValueError, match="needs more rows than predictors"):
        probes.explained_variance_fraction(z[:3], d[:3])


def test_the_study_probes_the_distractors_where_the_env_has_them(monkeypatch):
    def seeded_env():
        return make_vec_env("CartPoleDistractorsNoise-v1", n_envs=1, seed=0)

    class Manager:
        def create_envs(self, n_envs, eval_env=False):
            return seeded_env()

    monkeypatch.setattr(runner, "PROBE_STEPS", 300)
    model = PPOJEPA("MlpPolicy", seeded_env(), seed=0, n_steps=16, batch_size=16, n_epochs=1)
    th.manual_seed(0)
    scores, parts = runner._probe_scores(model, Manager())
    th.manual_seed(0)
    z, states, episodes = collect_states(model, seeded_env(), 300)
    assert states.shape[1] == 12 and len(scores) == 12
    assert parts == probes.distractor_probes(z, states, n_distractor_vars=8, groups=episodes)


def test_the_study_report_says_which_runs_held_out_random_steps():
    runs = [dict(probe_r2=[0.5], probe_split="episodes"), dict(probe_r2=None, probe_split=None)]
    assert _probe_split_note(runs) == ""
    note = _probe_split_note([*runs, dict(probe_r2=[0.9])])  # a summary of an earlier version
    assert note.startswith(" 1 of the 2 probed runs were recorded by an earlier version, which held out random steps")


@pytest.mark.parametrize("config", NEW_CONFIGS)
def test_new_study_configurations(config):
    check_specs([RunSpec("ppo_jepa", "MinAtar/Breakout-v1", config, 0, 1000)])
    if "jepa_segment_length" in CONFIGS[config]:
        with pytest.raises(ValueError, match="a2c_jepa does not accept"):
            check_specs([RunSpec("a2c_jepa", "MinAtar/Breakout-v1", config, 0, 1000)])
    else:
        check_specs([RunSpec("a2c_jepa", "MinAtar/Breakout-v1", config, 0, 1000)])


def test_vicreg_fair_is_vicregs_balance():
    # 25 : 25 : 1 (invariance on the MSE averaged over d = 128 dims, i.e. jepa_coef * 128, variance, covariance)
    for name in ("jepa_only_vicreg_fair", "jepa_rl_vicreg_fair"):
        kwargs = CONFIGS[name]
        invariance = kwargs["jepa_coef"] * 128
        np.testing.assert_allclose(
            [invariance / kwargs["jepa_vicreg_cov_coef"], kwargs["jepa_vicreg_var_coef"] / kwargs["jepa_vicreg_cov_coef"]],
            [25.0, 25.0],
        )


def test_sampler_searches_the_new_options():
    optuna = pytest.importorskip("optuna")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        params = sample_jepa_params(trial)
        kwargs = convert_jepa_params(params)
        assert kwargs["jepa_loss"] in ("mse", "cosine")
        assert kwargs["jepa_embedding_norm"] in (None, "layernorm", "simnorm")
        seen.add(kwargs["jepa_embedding_norm"])
        study.tell(trial, 0.0)
    assert seen == {None, "layernorm", "simnorm"}


def test_the_study_report_shows_the_distractor_probes_with_intervals(tmp_path):
    from sb3_jepa.study.report import write_report

    for config, distractor_r2 in (("jepa_rl", (0.1, 0.2, 0.3)), ("rl_only", (0.6, 0.6, 0.6))):
        for seed, value in enumerate(distractor_r2):
            run = tmp_path / "CartPoleDistractorsNoise-v1" / config / f"seed{seed}"
            run.mkdir(parents=True)
            summary = dict(
                algo="ppo_jepa", env_id="CartPoleDistractorsNoise-v1", config=config, seed=seed, timesteps=100,
                eval_return=10.0 + seed, train_return=9.0, probe_r2=[0.9, value], probe_r2_mean=(0.9 + value) / 2,
                probe_split="episodes", task_r2=0.9, distractor_r2=value, distractor_variance_fraction=value / 2,
            )  # fmt: skip
            (run / "summary.json").write_text(json.dumps(summary))
    report = write_report(tmp_path).read_text()
    assert "| probe R^2 | task R^2 | distractor R^2 | z from distractors |" in report
    row = next(line for line in report.splitlines() if line.startswith("| jepa_rl |"))
    # the mean over seeds, and a bootstrap interval inside the seeds' range
    assert row.endswith("| 0.900 [0.900, 0.900] | 0.200 [0.100, 0.300] | 0.100 [0.050, 0.150] |")
    # Environments without distractors get no such columns
    plain = tmp_path / "plain"
    run = plain / "CartPole-v1" / "rl_only" / "seed0"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(
        json.dumps(dict(algo="ppo_jepa", env_id="CartPole-v1", config="rl_only", seed=0, timesteps=100, eval_return=1.0,
                        train_return=1.0))
    )  # fmt: skip
    assert "distractor R^2" not in write_report(plain).read_text().split("## CartPole-v1")[1]
