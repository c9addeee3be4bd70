"""A2CJEPA and PPOJEPA: the loss, its options, its metrics and its errors."""

import csv
import math

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.envs import IdentityEnvBox
from stable_baselines3.common.logger import configure
from stable_baselines3.common.policies import ActorCriticCnnPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor, NatureCNN
from stable_baselines3.common.utils import LinearSchedule, obs_as_tensor
from stable_baselines3.common.vec_env import DummyVecEnv
from torch import nn

from sb3_jepa import A2CJEPA, PPOJEPA, JEPAFeaturesExtractor
from sb3_jepa.common.jepa import ActionEncoder
from sb3_jepa.common.loss import CapturedEmbeddings, jepa_prediction_loss
from sb3_jepa.common.optim import FLAT_OPTIMIZERS
from tests.conftest import ALGOS, SMALL
from tests.helpers import CountingEnv, SeededImageEnv

BASE = {A2CJEPA: A2C, PPOJEPA: PPO}
METRICS = ("loss", "coef", "embedding_std", "effective_rank", "participation_ratio", "pred_cosine")


def small_image_env() -> SeededImageEnv:
    return SeededImageEnv(size=36)


def jepa_free_params(model) -> list[th.Tensor]:
    return [p for name, p in model.policy.state_dict().items() if not name.startswith("jepa_")]


@pytest.mark.parametrize("algo_cls", ALGOS)
def test_optimizer_steps_all_tensors_at_once_unless_told(algo_cls):
    """
    SB3's optimizers with their flat step, falling back to foreach (the zero-coef tests below check it is SB3's
    arithmetic, bit for bit); a user's choice of implementation, or of a subclass, is kept.
    """
    model = algo_cls("MlpPolicy", "CartPole-v1", **SMALL[algo_cls])
    optimizer_class = th.optim.Adam if algo_cls is PPOJEPA else th.optim.RMSprop
    assert type(model.policy.optimizer) is FLAT_OPTIMIZERS[optimizer_class]
    assert model.policy.optimizer.defaults["foreach"] is True
    assert model.policy.optimizer_class is optimizer_class  # the user's own, as saved with the model
    assert "foreach" not in model.policy.optimizer_kwargs
    model.learn(2 * model.n_steps)  # the second update steps flat: every parameter is a view of one buffer
    assert len({param.untyped_storage().data_ptr() for param in model.policy.optimizer.param_groups[0]["params"]}) == 1
    # (A2C replaces optimizer_kwargs by RMSprop's unless optimizer_class is given too: SB3's behaviour)
    for choice in (dict(foreach=False), dict(fused=True)) if optimizer_class is th.optim.Adam else (dict(foreach=False),):
        policy_kwargs = dict(optimizer_class=optimizer_class, optimizer_kwargs=choice)
        told = algo_cls("MlpPolicy", "CartPole-v1", policy_kwargs=policy_kwargs, **SMALL[algo_cls])
        assert type(told.policy.optimizer) is optimizer_class
        assert {key: told.policy.optimizer.defaults[key] for key in choice} == choice
        assert told.policy.optimizer.defaults["foreach"] is not True
    subclass = algo_cls("MlpPolicy", "CartPole-v1", policy_kwargs=dict(optimizer_class=th.optim.AdamW), **SMALL[algo_cls])
    assert type(subclass.policy.optimizer) is th.optim.AdamW
    assert subclass.policy.optimizer.defaults["foreach"] is True


@pytest.mark.parametrize("algo_cls", ALGOS)
def test_zero_coef_reproduces_sb3_mlp(algo_cls):
    """jepa_coef=0 is SB3's A2C/PPO, bit for bit, given the same architecture and seed."""
    base = BASE[algo_cls](
        "MlpPolicy",
        "CartPole-v1",
        seed=3,
        policy_kwargs=dict(
            net_arch=[],
            features_extractor_class=JEPAFeaturesExtractor,
            features_extractor_kwargs=dict(encoder_class=FlattenExtractor),
            # The MlpPolicy's default for vector observations: actor and critic each get their own encoder
            share_features_extractor=False,
        ),
        **SMALL[algo_cls],
    ).learn(4 * SMALL[algo_cls]["n_steps"])
    # Built after base has learnt: SB3 seeds the global RNGs at construction
    jepa = algo_cls("MlpPolicy", "CartPole-v1", seed=3, jepa_coef=0.0, **SMALL[algo_cls])
    before = [p.clone() for p in jepa_free_params(jepa)]
    jepa.learn(4 * SMALL[algo_cls]["n_steps"])
    base_params, jepa_params = jepa_free_params(base), jepa_free_params(jepa)
    assert len(base_params) == len(jepa_params)
    for p_base, p_jepa in zip(base_params, jepa_params, strict=True):
        assert th.equal(p_base, p_jepa)
    assert any(not th.equal(p, q) for p, q in zip(jepa_params, before, strict=True))
    np.testing.assert_array_equal(base.rollout_buffer.actions, jepa.rollout_buffer.actions)


@pytest.mark.parametrize("algo_cls", ALGOS)
def test_zero_coef_reproduces_sb3_cnn(algo_cls):
    """Against SB3's own CnnPolicy (NatureCNN, linear heads): identical values, only the key names differ."""
    base = BASE[algo_cls]("CnnPolicy", small_image_env(), seed=5, **SMALL[algo_cls]).learn(2 * SMALL[algo_cls]["n_steps"])
    jepa = algo_cls("CnnPolicy", small_image_env(), seed=5, jepa_coef=0.0, **SMALL[algo_cls])
    jepa.learn(2 * SMALL[algo_cls]["n_steps"])
    for p_base, p_jepa in zip(base.policy.state_dict().values(), jepa_free_params(jepa), strict=True):
        assert th.equal(p_base, p_jepa)


@pytest.mark.parametrize("algo_cls", ALGOS)
def test_positive_coef_changes_training(algo_cls):
    runs = [algo_cls("MlpPolicy", "CartPole-v1", seed=3, jepa_coef=coef, **SMALL[algo_cls]) for coef in (0.0, 1.0)]
    for model in runs:
        model.learn(2 * SMALL[algo_cls]["n_steps"])
    encoder_params = [list(m.policy.features_extractor.parameters()) for m in runs]
    assert any(not th.equal(p, q) for p, q in zip(*encoder_params, strict=True))
    # The predictor trains only when the loss is on
    predictor_0, predictor_1 = (m.policy.jepa_predictor.state_dict() for m in runs)
    initial = algo_cls("MlpPolicy", "CartPole-v1", seed=3, **SMALL[algo_cls]).policy.jepa_predictor.state_dict()
    assert all(th.equal(predictor_0[k], initial[k]) for k in initial)
    assert any(not th.equal(predictor_1[k], initial[k]) for k in initial)


@pytest.mark.parametrize("algo_cls", ALGOS)
def test_metrics_logged(tmp_path, algo_cls):
    model = algo_cls("MlpPolicy", "CartPole-v1", seed=0, jepa_coef=LinearSchedule(1.0, 0.5, 1.0), **SMALL[algo_cls])
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(4 * SMALL[algo_cls]["n_steps"], log_interval=1)
    with open(tmp_path / "progress.csv") as file:
        rows = list(csv.DictReader(file))
    # Logged at the first dump after each train(): every row but the first
    assert len(rows) == 4
    log = {key: [float(row[key]) for row in rows[1:]] for key in rows[0] if key.startswith("jepa/")}
    assert set(log) == {f"jepa/{name}" for name in METRICS}
    assert all(value >= 0 for value in log["jepa/loss"])
    assert all(-1 <= value <= 1 for value in log["jepa/pred_cosine"])
    assert all(value >= 1 for value in log["jepa/effective_rank"])
    # The coefficient follows its schedule, from 1 towards 0.5
    assert log["jepa/coef"][0] > log["jepa/coef"][-1] >= 0.5


@pytest.mark.parametrize("algo_cls", ALGOS)
def test_zero_coef_still_logs_collapse_metrics(tmp_path, algo_cls):
    model = algo_cls("MlpPolicy", "CartPole-v1", seed=0, jepa_coef=0.0, **SMALL[algo_cls])
    model.learn(2 * SMALL[algo_cls]["n_steps"])
    logged = model.logger.name_to_value
    assert logged["jepa/coef"] == 0.0
    assert logged["jepa/embedding_std"] > 0 and logged["jepa/effective_rank"] > 1
    assert "jepa/loss" not in logged


@pytest.mark.parametrize("algo_cls", ALGOS)
def test_encoder_rl_grad_false_detaches_encoder_from_rl_loss(algo_cls):
    # Without the JEPA loss, the detached encoder receives no gradient at all while the heads still learn
    model = algo_cls("MlpPolicy", "CartPole-v1", seed=0, jepa_coef=0.0, encoder_rl_grad=False, **SMALL[algo_cls])
    encoder_before = [p.clone() for p in model.policy.features_extractor.parameters()]
    heads_before = [p.clone() for p in model.policy.action_net.parameters()]
    model.learn(2 * SMALL[algo_cls]["n_steps"])
    assert all(th.equal(p, q) for p, q in zip(model.policy.features_extractor.parameters(), encoder_before, strict=True))
    assert any(not th.equal(p, q) for p, q in zip(model.policy.action_net.parameters(), heads_before, strict=True))
    # With it, only the JEPA loss trains the encoder
    model = algo_cls("MlpPolicy", "CartPole-v1", seed=0, jepa_coef=1.0, encoder_rl_grad=False, **SMALL[algo_cls])
    encoder_before = [p.clone() for p in model.policy.features_extractor.parameters()]
    model.learn(2 * SMALL[algo_cls]["n_steps"])
    assert any(not th.equal(p, q) for p, q in zip(model.policy.features_extractor.parameters(), encoder_before, strict=True))


def one_batch(model):
    model.learn(SMALL[type(model)]["n_steps"])
    return next(model.rollout_buffer.get(16))


@pytest.mark.parametrize("target", ["online", "stop_grad", "ema"])
def test_target_modes_gradient_paths(target):
    model = PPOJEPA(
        "MlpPolicy", DummyVecEnv([CountingEnv, lambda: CountingEnv(1)]), seed=0, jepa_target=target, **SMALL[PPOJEPA]
    )
    batch = one_batch(model)
    assert len(batch.next_extra_observations) > 0
    z = model.policy.jepa_encode(th.cat([batch.observations, batch.next_extra_observations]))
    n_rows = len(batch.next_valid)
    captured = CapturedEmbeddings(z, n_batch=n_rows)
    _, prediction, next_z, _ = jepa_prediction_loss(model.policy, batch, captured, target, prediction_steps=1)
    assert prediction.requires_grad
    assert next_z.requires_grad == (target == "online")
    # The target is E(s_{t+1}) (or its EMA copy) of the true next observations
    encoder_target = model.policy.jepa_encode(batch.next_observations, target=target == "ema")
    th.testing.assert_close(next_z, encoder_target)
    assert (model.policy.jepa_target_encoder is not None) == (target == "ema")


def test_ema_target_follows_encoder():
    model = A2CJEPA("MlpPolicy", "CartPole-v1", seed=0, jepa_target="ema", jepa_tau=0.5, **SMALL[A2CJEPA])
    encoder, target = model.policy.features_extractor, model.policy.jepa_target_encoder
    assert all(th.equal(p, q) for p, q in zip(encoder.parameters(), target.parameters(), strict=True))
    assert not any(p.requires_grad for p in target.parameters())
    model.learn(SMALL[A2CJEPA]["n_steps"])
    before = [p.clone() for p in target.parameters()]
    model.learn(SMALL[A2CJEPA]["n_steps"], reset_num_timesteps=False)
    # One optimizer step per A2C update: target = 0.5 * old target + 0.5 * encoder
    for p_target, p_before, p_encoder in zip(target.parameters(), before, encoder.parameters(), strict=True):
        th.testing.assert_close(p_target, 0.5 * p_before + 0.5 * p_encoder)
    assert any(not th.equal(p, q) for p, q in zip(target.parameters(), encoder.parameters(), strict=True))
    model.policy.set_training_mode(True)
    assert model.policy.training and not target.training


@pytest.mark.parametrize("algo_cls", ALGOS)
def test_non_finite_jepa_loss_raises_before_the_step(algo_cls):
    model = algo_cls("MlpPolicy", "CartPole-v1", seed=0, **SMALL[algo_cls])
    model.learn(SMALL[algo_cls]["n_steps"])
    with th.no_grad():
        model.policy.jepa_predictor.net[-1].bias.fill_(math.inf)
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    optimizer_state = str(model.policy.optimizer.state_dict()["state"])
    with pytest.raises(FloatingPointError, match="JEPA loss"):
        model.learn(SMALL[algo_cls]["n_steps"], reset_num_timesteps=False)
    after = model.policy.state_dict()
    assert all(th.equal(before[k], after[k]) for k in before)
    assert str(model.policy.optimizer.state_dict()["state"]) == optimizer_state


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(jepa_coef=-0.1), "jepa_coef must be a finite number >= 0"),
        (dict(jepa_coef=math.nan), "jepa_coef must be a finite number >= 0"),
        (dict(jepa_coef=math.inf), "jepa_coef must be a finite number >= 0"),
        (dict(jepa_coef="big"), "jepa_coef must be a finite number >= 0"),
        (dict(jepa_coef=lambda progress: progress - 0.5), r"jepa_coef \(schedule at progress_remaining=0.0\)"),
        (dict(jepa_target="target"), r"jepa_target must be one of \('online', 'stop_grad', 'ema'\)"),
        (dict(jepa_tau=0.0), r"jepa_tau must be a number in \(0, 1\]"),
        (dict(jepa_tau=1.5), r"jepa_tau must be a number in \(0, 1\]"),
        (dict(encoder_rl_grad="no"), "encoder_rl_grad must be True or False"),
        (dict(predictor_net_arch=[64, 0]), "predictor_net_arch must be a list of positive ints"),
        (dict(predictor_net_arch=64), "predictor_net_arch must be a list of positive ints"),
        (dict(predictor_residual="yes"), "predictor_residual must be True or False"),
        (dict(policy_kwargs=dict(predictor_residual=True)), "Pass predictor_residual as an argument of"),
        (
            # SB3's RolloutBuffer itself is accepted (tests/test_drop_in.py); a replay buffer is not
            dict(rollout_buffer_class=__import__("stable_baselines3").common.buffers.ReplayBuffer),
            "rollout_buffer_class must be None or a subclass of RolloutBuffer or DictRolloutBuffer",
        ),
        (dict(policy_kwargs=dict(jepa_target="ema")), "Pass jepa_target as an argument of"),
        (dict(jepa_vicreg_var_coef=-1.0), "jepa_vicreg_var_coef must be a finite number >= 0"),
        (dict(jepa_vicreg_cov_coef=math.nan), "jepa_vicreg_cov_coef must be a finite number >= 0"),
    ],
)
@pytest.mark.parametrize("algo_cls", ALGOS)
def test_bad_arguments_fail_before_any_work(algo_cls, kwargs, message):
    # The env id does not exist: an error about it would mean work (env creation) happened before the check
    with pytest.raises(ValueError, match=message):
        algo_cls("MlpPolicy", "NoSuchEnv-v0", **kwargs)


def test_dict_buffer_class_mismatch():
    from sb3_jepa import JEPADictRolloutBuffer

    # DictRolloutBuffer's own check, as for SB3's A2C
    with pytest.raises(AssertionError, match="DictRolloutBuffer must be used with Dict obs space only"):
        A2CJEPA("MlpPolicy", "CartPole-v1", rollout_buffer_class=JEPADictRolloutBuffer)


def test_action_encoder():
    from gymnasium import spaces

    box = ActionEncoder(spaces.Box(low=-1.0, high=2.0, shape=(2,)))
    th.testing.assert_close(box(th.tensor([[-3.0, 5.0], [0.5, 1.0]])), th.tensor([[-1.0, 2.0], [0.5, 1.0]]))
    squashed = ActionEncoder(spaces.Box(low=-1.0, high=3.0, shape=(1,)), squash_output=True)
    th.testing.assert_close(squashed(th.tensor([[-1.0], [0.0], [1.0]])), th.tensor([[-1.0], [1.0], [3.0]]))
    discrete = ActionEncoder(spaces.Discrete(3, start=1))
    th.testing.assert_close(discrete(th.tensor([[1.0], [3.0]])), th.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    multi = ActionEncoder(spaces.MultiDiscrete([2, 3]))
    th.testing.assert_close(multi(th.tensor([[1.0, 2.0]])), th.tensor([[0.0, 1.0, 0.0, 0.0, 1.0]]))
    binary = ActionEncoder(spaces.MultiBinary(3))
    th.testing.assert_close(binary(th.tensor([[1, 0, 1]])), th.tensor([[1.0, 0.0, 1.0]]))
    assert (box.dim, discrete.dim, multi.dim, binary.dim) == (2, 3, 5, 3)
    # An action outside the space is refused, not encoded as another
    for outside in (0.0, 4.0):
        with pytest.raises(RuntimeError, match="out of bounds"):
            discrete(th.tensor([[outside]]))


@pytest.mark.parametrize("algo_cls", ALGOS)
def test_residual_predictor_starts_as_no_change_and_learns_the_change(algo_cls):
    model = algo_cls("MlpPolicy", "CartPole-v1", seed=0, predictor_residual=True, jepa_coef=1.0, **SMALL[algo_cls])
    plain = algo_cls("MlpPolicy", "CartPole-v1", seed=0, jepa_coef=1.0, **SMALL[algo_cls])
    residual_w, plain_w = model.policy.jepa_predictor, plain.policy.jepa_predictor
    z = th.randn(6, model.policy.features_dim)
    actions = th.tensor([0, 1, 1, 0, 1, 0])
    # At initialisation W is the "no change" predictor, exactly (a plain W is not)
    th.testing.assert_close(residual_w(z, actions), z, rtol=0, atol=0)
    assert not th.allclose(plain_w(z, actions), z, atol=1e-2)
    # Only the last layer differs from the plain W's initialisation: the random stream is the same
    residual_layers, plain_layers = list(residual_w.net.parameters()), list(plain_w.net.parameters())
    for residual_param, plain_param in zip(residual_layers[:-2], plain_layers[:-2], strict=True):
        th.testing.assert_close(residual_param, plain_param, rtol=0, atol=0)
    assert all(not param.any() for param in residual_layers[-2:])
    # Training moves it off the identity, and the prediction stays z plus what the MLP adds
    model.learn(4 * SMALL[algo_cls]["n_steps"])
    change = residual_w.mlp(z, residual_w.action_encoder(actions))
    assert change.abs().max() > 0
    th.testing.assert_close(residual_w(z, actions), z + change)


def test_box_actions_reach_predictor_clipped():
    model = PPOJEPA("MlpPolicy", IdentityEnvBox(-0.1, 0.1), seed=0, policy_kwargs=dict(log_std_init=2.0), **SMALL[PPOJEPA])
    batch = one_batch(model)
    stored = batch.actions
    assert stored.abs().max() > 0.1  # the Gaussian samples leave the box...
    encoded = model.policy.jepa_predictor.action_encoder(stored)
    assert encoded.abs().max() <= 0.1 + 1e-6  # ...the predictor sees what the env received


@pytest.mark.parametrize("detach", [False, True])
def test_one_encoder_pass_gives_batch_and_extra_embeddings(detach):
    # The online target: its extras ride along the encoder pass of evaluate_actions
    model = PPOJEPA(
        "MlpPolicy", DummyVecEnv([CountingEnv]), seed=0, jepa_target="online", encoder_rl_grad=not detach, **SMALL[PPOJEPA]
    )
    batch = one_batch(model)
    n_rows, n_extra = len(batch.next_valid), len(batch.next_extra_observations)
    assert n_extra > 0
    model._jepa_train_stats.coef = 1.0
    model._jepa_capture_start(batch)
    values, log_prob, _ = model.policy.evaluate_actions(batch.observations, batch.actions.long().flatten())
    captured = model.policy.jepa_capture_stop()
    assert captured is not None and captured.extra is not None
    assert captured.batch.shape[0] + captured.extra.shape[0] == n_rows + n_extra
    assert values.shape[0] == n_rows  # the heads only see their own batch
    th.testing.assert_close(captured.batch, model.policy.jepa_encode(batch.observations))
    th.testing.assert_close(captured.extra, model.policy.jepa_encode(batch.next_extra_observations))
    assert captured.batch.requires_grad and captured.extra.requires_grad
    # With encoder_rl_grad=False the policy's loss never reaches the encoder, the embeddings do (the actor's
    # log-probability: the critic of an MlpPolicy has its own encoder)
    model.policy.optimizer.zero_grad(set_to_none=True)
    log_prob.sum().backward()
    encoder_grads = [p.grad for p in model.policy.features_extractor.parameters()]
    assert all(g is None for g in encoder_grads) == detach


@pytest.mark.parametrize("algo_cls", ALGOS)
def test_vicreg_terms_train_the_encoder(algo_cls):
    # JEPA-only with VICReg: the variance hinge pushes the embeddings' spread up
    model = algo_cls(
        "MlpPolicy", "CartPole-v1", seed=0, jepa_coef=0.0, encoder_rl_grad=False, jepa_vicreg_var_coef=1.0,
        jepa_vicreg_cov_coef=0.04, **SMALL[algo_cls],
    )  # fmt: skip
    encoder_before = [p.clone() for p in model.policy.features_extractor.parameters()]
    model.learn(2 * SMALL[algo_cls]["n_steps"])
    logged = model.logger.name_to_value
    assert 0.0 < logged["jepa/vicreg_variance"] <= 1.0 and logged["jepa/vicreg_covariance"] >= 0.0
    assert "jepa/loss" not in logged
    assert any(not th.equal(p, q) for p, q in zip(model.policy.features_extractor.parameters(), encoder_before, strict=True))


@pytest.mark.parametrize("target", ["online", "stop_grad", "ema"])
def test_multistep_prediction_trains(target):
    model = PPOJEPA("MlpPolicy", "CartPole-v1", seed=0, jepa_prediction_steps=3, jepa_target=target, **SMALL[PPOJEPA])
    predictor_before = [p.clone() for p in model.policy.jepa_predictor.parameters()]
    model.learn(2 * SMALL[PPOJEPA]["n_steps"])
    assert np.isfinite(model.logger.name_to_value["jepa/loss"])
    assert model.rollout_buffer.prediction_steps == 3
    assert any(not th.equal(p, q) for p, q in zip(model.policy.jepa_predictor.parameters(), predictor_before, strict=True))
    with pytest.raises(ValueError, match="jepa_prediction_steps must be"):
        PPOJEPA("MlpPolicy", "NoSuchEnv-v0", jepa_prediction_steps=0)


@pytest.mark.parametrize("algo_cls", ALGOS)
def test_collapse_metrics_are_computed_when_read(tmp_path, monkeypatch, algo_cls):
    # Computed for the logs SB3 writes (every log_interval-th iteration) and once when learn() returns, not at every
    # update: A2C writes every 100 updates by default
    import sb3_jepa.common.on_policy_algorithm as algorithm

    calls = []
    metrics = algorithm.collapse_metrics
    monkeypatch.setattr(algorithm, "collapse_metrics", lambda z: calls.append(len(z)) or metrics(z))
    model = algo_cls("MlpPolicy", "CartPole-v1", seed=0, **SMALL[algo_cls])
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(10 * SMALL[algo_cls]["n_steps"], log_interval=4)
    # 10 updates; dumps at iterations 4 and 8 (of the updates of iterations 3 and 7); the 10th when learn() returns
    assert len(calls) == 3
    with open(tmp_path / "progress.csv") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 2 and all(float(row["jepa/effective_rank"]) >= 1 for row in rows)
    assert model.logger.name_to_value["jepa/effective_rank"] >= 1
    # Once per update: a second call records nothing
    model.logger.dump()
    model.record_jepa_metrics()
    assert not any(key.startswith("jepa/") for key in model.logger.name_to_value)
    assert len(calls) == 3


def test_capture_leaves_no_hooks():
    model = PPOJEPA("MlpPolicy", DummyVecEnv([CountingEnv]), seed=0, jepa_target="online", **SMALL[PPOJEPA])
    batch = one_batch(model)
    encoder = model.policy.jepa_encoder
    model._jepa_train_stats.coef = 1.0
    # Started twice (the first never ran), then run: one capture, and every hook removed by the encoder's pass
    model._jepa_capture_start(batch)
    model._jepa_capture_start(batch)
    assert len(encoder._forward_hooks) == 1 and len(encoder._forward_pre_hooks) == 1
    model.policy.evaluate_actions(batch.observations, batch.actions.long().flatten())
    assert not encoder._forward_hooks and not encoder._forward_pre_hooks
    captured = model.policy.jepa_capture_stop()
    assert captured is not None and captured.extra is not None
    # A later pass of the encoder is not captured, and a capture that saw no pass gives None
    model.policy.evaluate_actions(batch.observations, batch.actions.long().flatten())
    assert model.policy.jepa_capture_stop() is None
    model.policy.jepa_capture_start()
    assert model.policy.jepa_capture_stop() is None
    assert not encoder._forward_hooks and not encoder._forward_pre_hooks


class DropoutExtractor(BaseFeaturesExtractor):
    """A linear encoder ending in dropout: its output depends on the train/eval mode."""

    def __init__(self, observation_space: spaces.Box, features_dim: int = 16):
        super().__init__(observation_space, features_dim)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(observation_space.shape)), features_dim), nn.Dropout(0.5))

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.net(observations)


def image_model(algo_cls=A2CJEPA, **kwargs):
    """2 envs of 5-step episodes and 8-step rollouts: terminal (truncated) observations mid-rollout, finals not."""
    env = DummyVecEnv([lambda: SeededImageEnv(size=36, ep_length=5)] * 2)
    model = algo_cls("CnnPolicy", env, seed=0, n_steps=8, **kwargs)
    _, callback = model._setup_learn(total_timesteps=16)
    return model, callback


def collect(model, callback):
    model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=model.n_steps)
    return model.rollout_buffer


def test_a2c_takes_the_final_observations_embeddings_from_the_last_value_estimate():
    """
    A2C's update encodes the final observations once, in SB3's last value estimate of the rollout, not again for the
    stop_grad target: the encoder sees 2 rows fewer in train() (one per env) and the loss is the same to float
    rounding (the still-encoded terminal observations go through a smaller batch: not bit for bit).
    """
    runs = {}
    for reuse in (True, False):
        model, callback = image_model()
        model._jepa_final_encoding_reusable = reuse
        buffer = collect(model, callback)
        assert (buffer.final_embeddings is not None) == reuse
        if reuse:
            assert not buffer.final_dones.any() and len(buffer.terminal_observations) > 0
            final = model.policy.jepa_encode(th.as_tensor(model._last_obs))
            th.testing.assert_close(buffer.final_embeddings, final)
            assert not buffer.final_embeddings.requires_grad
        rows: list[int] = []
        handle = model.policy.jepa_encoder.register_forward_hook(lambda module, args, out, rows=rows: rows.append(len(out)))
        model.train()
        handle.remove()
        assert buffer.final_embeddings is None  # dropped after the optimizer step
        runs[reuse] = (sum(rows), model._jepa_train_stats.losses[0], jepa_free_params(model))
    assert runs[False][0] - runs[True][0] == 2
    th.testing.assert_close(runs[True][1], runs[False][1], rtol=1e-5, atol=1e-7)
    for after_reuse, after_plain in zip(runs[True][2], runs[False][2], strict=True):
        th.testing.assert_close(after_reuse, after_plain, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "algo_cls, kwargs",
    [
        (PPOJEPA, dict(batch_size=16)),  # PPO: its weights change after the first minibatch
        (A2CJEPA, dict(jepa_target="online")),  # the extras need their gradient
        (A2CJEPA, dict(jepa_target="ema")),  # the target is another encoder
        (A2CJEPA, dict(policy_kwargs=dict(share_features_extractor=False))),  # the critic's own encoder ran
        (A2CJEPA, dict(augment_observations="shift")),  # the samples carry augmented views
        (A2CJEPA, dict(policy_kwargs=dict(features_extractor_class=DropoutExtractor))),  # eval mode differs
        (A2CJEPA, dict(jepa_coef=0.0)),  # no JEPA loss
    ],
)
def test_final_observations_embeddings_are_not_reused_where_they_differ(algo_cls, kwargs):
    model, callback = image_model(algo_cls, **kwargs)
    assert collect(model, callback).final_embeddings is None
    model.train()  # and the update runs as before


class ScaledInputPolicy(ActorCriticCnnPolicy):
    """A user's policy whose critic sees the observations halved: its encoder's input is not jepa_encode's."""

    def predict_values(self, obs):  # type: ignore[no-untyped-def,override]
        return super().predict_values(obs / 2)


class MyNatureCNN(NatureCNN):
    """A user's encoder: only its author knows whether its forward pass reads ``self.training``."""


@pytest.mark.parametrize(
    "kwargs",
    [dict(policy=ScaledInputPolicy), dict(policy_kwargs=dict(features_extractor_class=MyNatureCNN))],
    ids=["own-preprocessing", "own-encoder-class"],
)
def test_final_observations_embeddings_not_taken_from_a_users_own_parts(kwargs):
    env = DummyVecEnv([lambda: SeededImageEnv(size=36, ep_length=5)] * 2)
    model = A2CJEPA(kwargs.get("policy", "CnnPolicy"), env, seed=0, n_steps=8, policy_kwargs=kwargs.get("policy_kwargs"))
    _, callback = model._setup_learn(total_timesteps=16)
    assert collect(model, callback).final_embeddings is None


def test_final_observations_embeddings_dropped_when_the_weights_changed_before_train():
    model, callback = image_model()
    buffer = collect(model, callback)
    assert buffer.final_embeddings is not None
    with th.no_grad():
        next(model.policy.jepa_encoder.parameters()).mul_(0.5)  # e.g. a callback, or set_parameters()
    rows: list[int] = []
    handle = model.policy.jepa_encoder.register_forward_hook(lambda module, args, out: rows.append(len(out)))
    model.train()
    handle.remove()
    assert buffer.final_embeddings is None
    assert sum(rows) == 16 + len(buffer._terminal_rows_sorted) + 2  # the 16 rows, the terminals, the 2 finals again


def test_final_observations_embeddings_only_from_a_pass_on_them():
    """A callback's value estimate after SB3's (at the rollout's end, on other observations) is not taken for it."""

    class ValuesAtRolloutEnd(BaseCallback):
        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            assert isinstance(self.model._last_obs, np.ndarray)
            one_env = obs_as_tensor(self.model._last_obs[:1], self.model.device)
            self.model.policy.predict_values(one_env)  # type: ignore[operator]

    model, _ = image_model()
    _, callback = model._setup_learn(total_timesteps=16, callback=ValuesAtRolloutEnd())
    assert collect(model, callback).final_embeddings is None
    _, callback = model._setup_learn(total_timesteps=16)
    assert collect(model, callback).final_embeddings is not None
