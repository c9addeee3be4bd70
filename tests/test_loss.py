"""Unit tests of the JEPA loss module (sb3_jepa.common.loss) on real samples of a real JEPA buffer."""

import pytest
import torch as th
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_jepa import A2CJEPA, PPOJEPA
from sb3_jepa.common.loss import (
    TARGET_MODES,
    CapturedEmbeddings,
    check_target_mode,
    jepa_prediction_loss,
    masked_prediction_loss,
    one_step_ema_target,
    reward_prediction_loss,
    target_rows,
)
from tests.conftest import SMALL
from tests.helpers import CountingEnv, DropTerminalObservation


def model_and_batch(target: str, steps: int = 1, **kwargs) -> tuple[PPOJEPA, object]:
    # env 1 reports no terminal observations: its episode ends are masked rows
    venv = DropTerminalObservation(DummyVecEnv([CountingEnv, lambda: CountingEnv(1)]), envs=[1])
    model = PPOJEPA("MlpPolicy", venv, seed=0, jepa_target=target, jepa_prediction_steps=steps, **SMALL[PPOJEPA], **kwargs)
    with pytest.warns(UserWarning, match="terminal_observation"):
        model.learn(SMALL[PPOJEPA]["n_steps"])
    batch = next(model.rollout_buffer.get(16))
    assert len(batch.next_extra_observations) > 0 and batch.next_valid.min() == 0  # extras, and a masked row
    return model, batch


def by_hand(policy, observations, actions, next_observations, valid, target_encoder: bool) -> th.Tensor:
    """Eq. 1 written out: mean over valid rows of the summed squared error."""
    prediction = policy.jepa_predictor(policy.jepa_encode(observations), actions)
    target = policy.jepa_encode(next_observations, target=target_encoder)
    return ((prediction - target) ** 2).sum(dim=1).mul(valid).sum() / valid.sum()


@pytest.mark.parametrize("target", TARGET_MODES)
@pytest.mark.parametrize("ride_along", [True, False])
def test_one_step_loss_is_eq_1(target, ride_along):
    model, batch = model_and_batch(target)
    policy = model.policy
    z = policy.jepa_encode(batch.observations)
    rows = th.cat([z, policy.jepa_encode(batch.next_extra_observations)]) if ride_along else z
    captured = CapturedEmbeddings(rows, n_batch=len(z))
    result = jepa_prediction_loss(policy, batch, captured, target, prediction_steps=1)
    expected = by_hand(policy, batch.observations, batch.actions, batch.next_observations, batch.next_valid, target == "ema")
    th.testing.assert_close(result.loss, expected)
    assert result.mask is batch.next_valid
    th.testing.assert_close(result.prediction, policy.jepa_predictor(z, batch.actions))
    # The target's gradient: only the online one has it
    assert result.target.requires_grad == (target == "online")
    assert result.prediction.requires_grad


@pytest.mark.parametrize("target", TARGET_MODES)
def test_target_rows_encode_each_observation_once(target):
    model, batch = model_and_batch(target)
    policy = model.policy
    captured = CapturedEmbeddings(policy.jepa_encode(batch.observations), n_batch=len(batch.next_valid))  # no extras
    rows = target_rows(policy, batch, captured, target)
    n_rows, n_extra = len(batch.next_valid), len(batch.next_extra_observations)
    assert rows.shape[0] == n_rows + n_extra
    everything = th.cat([batch.observations, batch.next_extra_observations])
    th.testing.assert_close(rows, policy.jepa_encode(everything, target=target == "ema"))
    # online: the extras encoded here carry gradient; stop_grad and ema: no graph at all
    assert rows.requires_grad == (target == "online")


def test_one_step_ema_target_is_the_target_encoder_on_the_successors():
    model, batch = model_and_batch("ema")
    target = one_step_ema_target(model.policy, batch)
    assert not target.requires_grad and target.shape[0] == len(batch.next_valid)
    th.testing.assert_close(target, model.policy.jepa_encode(batch.next_observations, target=True))


@pytest.mark.parametrize("target", ["online", "stop_grad", "ema"])
def test_multistep_loss_is_the_mean_of_the_rolled_steps(target):
    model, batch = model_and_batch(target, steps=3)
    policy = model.policy
    captured = CapturedEmbeddings(policy.jepa_encode(batch.observations), n_batch=len(batch.next_valid))
    result = jepa_prediction_loss(policy, batch, captured, target, prediction_steps=3)
    # By hand: roll W with the actions taken, compare with E of the observations the chains point at
    everything = th.cat([batch.observations, batch.next_extra_observations])
    prediction = policy.jepa_predictor(policy.jepa_encode(batch.observations), batch.actions)
    losses = []
    for step in range(3):
        if step > 0:
            prediction = policy.jepa_predictor(prediction, batch.multistep_actions[step - 1])
        goal = policy.jepa_encode(everything[batch.multistep_index[step]], target=target == "ema")
        losses.append(masked_prediction_loss(prediction, goal, batch.multistep_valid[step]))
    th.testing.assert_close(result.loss, sum(losses) / 3)
    # The logged prediction and target are the first step's
    th.testing.assert_close(result.target, policy.jepa_encode(batch.next_observations, target=target == "ema"))
    # later steps see fewer valid transitions (chains stop at episode ends)
    assert batch.multistep_valid[2].sum() < batch.multistep_valid[0].sum()


def test_masked_rows_do_not_count():
    prediction, target = th.zeros(3, 2), th.tensor([[1.0, 1.0], [2.0, 0.0], [100.0, 0.0]])
    th.testing.assert_close(masked_prediction_loss(prediction, target, th.tensor([1.0, 1.0, 0.0])), th.tensor(3.0))


def test_check_target_mode():
    assert check_target_mode("ema") == "ema"
    with pytest.raises(ValueError, match=r"jepa_target must be one of \('online', 'stop_grad', 'ema'\), got 'EMA'"):
        check_target_mode("EMA")


def reward_model(algo_cls: type = PPOJEPA, **kwargs) -> PPOJEPA:
    return algo_cls("MlpPolicy", DummyVecEnv([CountingEnv, lambda: CountingEnv(1)]), seed=0, **SMALL[algo_cls], **kwargs)


def test_reward_loss_is_the_masked_squared_error_and_does_not_train_the_encoder():
    model = reward_model(jepa_reward_coef=1.0)
    model.learn(SMALL[PPOJEPA]["n_steps"] * 2)
    batch = next(model.rollout_buffer.get(16))
    policy = model.policy
    z = policy.jepa_encode(batch.observations)
    loss = reward_prediction_loss(policy, batch, CapturedEmbeddings(z, n_batch=len(z)))
    prediction = policy.jepa_reward_predictor(z, batch.actions)
    expected = ((prediction - batch.rewards) ** 2 * batch.reward_valid).sum() / batch.reward_valid.sum()
    th.testing.assert_close(loss, expected)
    policy.zero_grad(set_to_none=True)
    loss.backward()
    assert all(p.grad is None for p in policy.jepa_encoder.parameters())  # z is detached
    assert all(p.grad is not None for p in policy.jepa_reward_predictor.parameters())


def test_reward_loss_over_w_rollout_reads_w_predictions_and_trains_only_r():
    """jepa_reward_steps = H: the mean over k = 0..H-1 of R(z_hat_{t+k}, a_{t+k})'s masked error, W rolled along"""
    horizon = 3
    model = reward_model(jepa_reward_coef=1.0, jepa_reward_steps=horizon)
    model.learn(SMALL[PPOJEPA]["n_steps"] * 2)
    batch = next(model.rollout_buffer.get(16))
    policy = model.policy
    z = policy.jepa_encode(batch.observations)
    loss = reward_prediction_loss(policy, batch, CapturedEmbeddings(z, n_batch=len(z)))
    R, W = policy.jepa_reward_predictor, policy.jepa_predictor
    expected, latent, actions = [], z, batch.actions
    rewards, valid = batch.rewards, batch.reward_valid
    for k in range(horizon):
        if k > 0:
            latent, actions = W(latent, actions), batch.reward_rollout_actions[k - 1]
            rewards, valid = batch.reward_rollout_rewards[k - 1], batch.reward_rollout_valid[k - 1]
        expected.append(((R(latent, actions) - rewards) ** 2 * valid).sum() / valid.sum())
    assert all(v.sum() > 0 for v in batch.reward_rollout_valid)
    th.testing.assert_close(loss, th.stack(expected).mean())
    # R's error at W's latents differs from its error at the true z_t alone: the rollout is read, not skipped
    assert not th.isclose(loss, expected[0])
    policy.zero_grad(set_to_none=True)
    loss.backward()
    assert all(p.grad is None for p in policy.jepa_encoder.parameters())
    assert all(p.grad is None for p in W.parameters())  # W's rollout has no gradient
    assert all(p.grad is not None for p in R.parameters())


def test_reward_steps_default_carries_no_rollout():
    one = reward_model(jepa_reward_coef=1.0)
    assert one.jepa_reward_steps == 1 and "reward_steps" not in one.rollout_buffer_kwargs
    one.learn(SMALL[PPOJEPA]["n_steps"] * 2)
    batch = next(one.rollout_buffer.get(16))
    assert batch.reward_rollout_actions is None and batch.reward_rollout_valid is None


def test_reward_steps_survive_save_and_load_and_can_be_changed_at_load(tmp_path):
    model = reward_model(jepa_reward_coef=1.0, jepa_reward_steps=3)
    model.save(tmp_path / "model.zip")
    loaded = PPOJEPA.load(tmp_path / "model.zip", env=model.get_env())
    assert loaded.jepa_reward_steps == 3 and loaded.rollout_buffer.reward_steps == 3
    # SB3 saves rollout_buffer_kwargs: a shorter rollout asked for at load time must reach the buffer, which the loss reads
    shorter = PPOJEPA.load(tmp_path / "model.zip", env=model.get_env(), jepa_reward_steps=1)
    assert shorter.jepa_reward_steps == 1 and shorter.rollout_buffer.reward_steps == 1


@pytest.mark.parametrize("algo_cls", [A2CJEPA, PPOJEPA])
def test_reward_predictor_changes_no_other_initialisation(algo_cls):
    plain, with_reward = reward_model(algo_cls), reward_model(algo_cls, jepa_reward_coef=1.0)
    assert plain.policy.jepa_reward_predictor is None
    reward_state = with_reward.policy.state_dict()
    assert {k for k in reward_state if k.startswith("jepa_reward_predictor.")}
    for key, value in plain.policy.state_dict().items():
        th.testing.assert_close(reward_state[key], value, rtol=0, atol=0)


@pytest.mark.parametrize("algo_cls", [A2CJEPA, PPOJEPA])
def test_reward_predictor_learns_the_reward(algo_cls):
    """
    CountingEnv pays 1 for action 0 and 0 for action 1, in every state: R must learn just that (a large entropy bonus
    keeps the policy playing both)
    """
    model = reward_model(algo_cls, jepa_reward_coef=1.0, learning_rate=3e-3, ent_coef=1.0)
    model.learn(4000)
    assert "jepa/reward_loss" in model.logger.name_to_value
    batch = next(model.rollout_buffer.get(None))
    with th.no_grad():
        z = model.policy.jepa_encode(batch.observations)
        for action, paid in ((0, 1.0), (1, 0.0)):
            actions = th.full((len(z),), action, device=z.device)
            predicted = model.policy.jepa_reward_predictor(z, actions)
            assert predicted.sub(paid).abs().max() < 0.25, (action, predicted)


def test_reward_coef_argument():
    with pytest.raises(ValueError, match="jepa_reward_coef"):
        reward_model(jepa_reward_coef=-1.0)
    with pytest.raises(ValueError, match="Pass jepa_reward as an argument"):
        reward_model(policy_kwargs=dict(jepa_reward=True))


@pytest.mark.parametrize("target", TARGET_MODES)
@pytest.mark.parametrize("steps", [1, 3])
def test_projection_head_compares_projections(target, steps):
    """||P(W(z_t, a_t)) - P(z_{t+1})||^2, P's target side without gradient unless the target is online"""
    model, batch = model_and_batch(target, steps=steps, jepa_projection_arch=[16, 8])
    policy = model.policy
    project = policy.jepa_projector
    captured = CapturedEmbeddings(policy.jepa_encode(batch.observations), n_batch=len(batch.next_valid))
    result = jepa_prediction_loss(policy, batch, captured, target, prediction_steps=steps)
    everything = th.cat([batch.observations, batch.next_extra_observations])
    prediction = policy.jepa_predictor(policy.jepa_encode(batch.observations), batch.actions)
    losses = []
    for step in range(steps):
        if step > 0:
            prediction = policy.jepa_predictor(prediction, batch.multistep_actions[step - 1])
        index = batch.next_index if steps == 1 else batch.multistep_index[step]
        valid = batch.next_valid if steps == 1 else batch.multistep_valid[step]
        goal = project(policy.jepa_encode(everything[index], target=target == "ema"))
        losses.append(masked_prediction_loss(project(prediction), goal, valid))
    th.testing.assert_close(result.loss, sum(losses) / steps)
    assert result.prediction.shape[1] == 8 and result.target.shape[1] == 8
    assert result.target.requires_grad == (target == "online")
    # P learns from the prediction's side: its gradient is there, whatever the target
    policy.zero_grad(set_to_none=True)
    result.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in project.parameters())


def test_projection_head_changes_no_other_initialisation_and_is_refused_empty():
    fresh = [
        PPOJEPA("MlpPolicy", DummyVecEnv([CountingEnv]), seed=0, **SMALL[PPOJEPA], **kwargs).policy.state_dict()
        for kwargs in ({}, dict(jepa_projection_arch=[8]))
    ]
    assert {key for key in fresh[1] if key.startswith("jepa_projector.")}
    for key, value in fresh[0].items():
        th.testing.assert_close(fresh[1][key], value, rtol=0, atol=0)
    for bad in ([], [0], "8"):
        with pytest.raises(ValueError, match="jepa_projection_arch"):
            PPOJEPA("MlpPolicy", DummyVecEnv([CountingEnv]), jepa_projection_arch=bad)
