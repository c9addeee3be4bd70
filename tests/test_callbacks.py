"""The public collapse-metrics callback, and the TensorBoard run names of the learn() overrides."""

import inspect

import pytest
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.callbacks import StopTrainingOnMaxEpisodes

from sb3_jepa import A2CJEPA, PPOJEPA, CollapseMetricsCallback
from tests.conftest import ALGOS, SMALL

BASE = {A2CJEPA: A2C, PPOJEPA: PPO}
LOGGED = ("jepa/loss", "jepa/coef", "jepa/embedding_std", "jepa/effective_rank", "jepa/pred_cosine")


@pytest.mark.parametrize("algo_cls", ALGOS)
def test_collapse_metrics_callback_records_every_update(algo_cls):
    callback = CollapseMetricsCallback()
    model = algo_cls("MlpPolicy", "CartPole-v1", seed=0, **SMALL[algo_cls])
    model.learn(5 * SMALL[algo_cls]["n_steps"], callback=callback)
    # 5 rollouts, 5 updates: the last one recorded when training ends
    assert [row["timesteps"] for row in callback.rows] == [(i + 1) * SMALL[algo_cls]["n_steps"] for i in range(5)]
    for row in callback.rows:
        assert set(LOGGED) <= row.keys() and all(key == "timesteps" or key.startswith("jepa/") for key in row)
    assert callback.rows[-1]["jepa/loss"] == model.logger.name_to_value["jepa/loss"]


def test_collapse_metrics_callback_every_and_early_stop():
    every_other = CollapseMetricsCallback(every=2)
    A2CJEPA("MlpPolicy", "CartPole-v1", seed=0, n_steps=8).learn(5 * 8, callback=every_other)
    assert [row["timesteps"] for row in every_other.rows] == [8, 24, 40]
    # A callback that stops training during a rollout: the update before it is recorded once, not twice
    recorder = CollapseMetricsCallback()
    model = A2CJEPA("MlpPolicy", "CartPole-v1", seed=0, n_steps=64)
    model.learn(10_000, callback=[recorder, StopTrainingOnMaxEpisodes(max_episodes=3)])
    assert model.num_timesteps < 10_000 and len(recorder.rows) == model._n_updates


def test_collapse_metrics_callback_argument():
    with pytest.raises(ValueError, match="every must be a positive int, got 0"):
        CollapseMetricsCallback(every=0)


@pytest.mark.parametrize("algo_cls", ALGOS)
def test_learn_is_sb3s_but_for_the_run_name(algo_cls):
    ours = inspect.signature(algo_cls.learn).parameters
    sb3 = inspect.signature(BASE[algo_cls].learn).parameters
    assert list(ours) == list(sb3)
    assert {k: p.default for k, p in ours.items() if k != "tb_log_name"} == {
        k: p.default for k, p in sb3.items() if k != "tb_log_name"
    }
    assert ours["tb_log_name"].default == algo_cls.__name__


@pytest.mark.parametrize("algo_cls", ALGOS)
def test_tensorboard_runs_are_named_after_the_algorithm(tmp_path, algo_cls):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = algo_cls("MlpPolicy", "CartPole-v1", seed=0, tensorboard_log=str(tmp_path), **SMALL[algo_cls])
    model.learn(3 * SMALL[algo_cls]["n_steps"], log_interval=1)
    assert sorted(path.name for path in tmp_path.iterdir()) == [f"{algo_cls.__name__}_1"]
    events = EventAccumulator(str(tmp_path / f"{algo_cls.__name__}_1"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert set(LOGGED) <= set(scalars), scalars
    # One point per logged update (SB3 dumps the previous update's values with each rollout's logs)
    assert len(events.Scalars("jepa/effective_rank")) >= 2
