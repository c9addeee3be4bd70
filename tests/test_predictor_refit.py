"""Issue 17's refit of the return estimate's heads on W's own rollouts (benchmarks.predictor_refit): its parts."""

import numpy as np
import pytest
import torch as th

from benchmarks.predictor_refit import HeadData, Heads, head_losses, refit_heads, rollout_latents, rollout_rows
from sb3_jepa import PPOJEPA
from sb3_jepa.planning.world_model import WorldModel


def test_rollout_rows_worked_example():
    """The docstring's example: 2 envs, env 0's episode ends at its second step (row 2)."""
    dones = np.array([False, False, True, False, False, False])
    expected = [[0, 2, -1], [1, 3, 5], [2, -1, -1], [3, 5, -1], [4, -1, -1], [5, -1, -1]]
    assert rollout_rows(dones, n_envs=2, steps=3).tolist() == expected


def test_rollout_rows_one_env_and_one_step():
    dones = np.array([False, True, False, False])
    expected = [[0, 1, -1, -1], [1, -1, -1, -1], [2, 3, -1, -1], [3, -1, -1, -1]]
    assert rollout_rows(dones, n_envs=1, steps=4).tolist() == expected
    assert rollout_rows(dones, n_envs=1, steps=1).tolist() == [[0], [1], [2], [3]]


@pytest.fixture(scope="module")
def world():
    model = PPOJEPA("CnnPolicy", "TwoRoomsDiscrete-v0", n_steps=16, batch_size=16, n_epochs=1, jepa_reward_coef=0.01, seed=0)
    return WorldModel(model.policy)


def head_data(world, n=48, steps=3):
    generator = th.Generator().manual_seed(0)
    z = th.rand(n, world.predictor.net[0].in_features - world.predictor.action_encoder.dim, generator=generator)
    actions = th.randint(4, (n,), generator=generator)
    rows = th.as_tensor(rollout_rows(np.zeros(n, dtype=bool), n_envs=4, steps=steps))
    # Rewards and values that depend on the action taken: something the heads can learn from W's latents
    return HeadData(z, actions, actions.float() - 1.5, 0.5 * actions.float(), rows)


def test_rollout_latents_roll_w_along_the_actions_taken(world):
    data = head_data(world)
    latents = rollout_latents(world, data, data.rows[:2])
    with th.no_grad():
        one = world.next(data.z[:1], world.action_features(data.actions[:1]))
        two = world.next(one, world.action_features(data.actions[4:5]))  # row 0's next step is row 4 (4 envs)
    assert th.equal(latents[0, 0], data.z[0])
    assert th.allclose(latents[0, 1], one[0], atol=1e-6) and th.allclose(latents[0, 2], two[0], atol=1e-6)


def test_refit_heads_lowers_the_fitted_heads_errors_and_leaves_the_others(world):
    data = head_data(world)
    heads = Heads(world.policy.jepa_reward_predictor, world.policy.value_net)
    before = [p.clone() for p in heads.R.parameters()] + [p.clone() for p in heads.V.parameters()]
    with th.no_grad():
        reward_before, value_before = head_losses(heads, world, data, data.rows)
    fitted = refit_heads(heads, world, data, {"R"}, th.arange(len(data.z)), iterations=200, seed=0)
    with th.no_grad():
        reward_after, value_after = head_losses(fitted, world, data, data.rows)
    assert reward_after < 0.5 * reward_before
    assert th.equal(value_after, value_before)  # V was not in fit: the same head, the same error
    fitted = refit_heads(heads, world, data, {"V"}, th.arange(len(data.z)), iterations=200, seed=0)
    with th.no_grad():
        assert head_losses(fitted, world, data, data.rows)[1] < 0.5 * value_before
    # The heads given are left as they were (the fit trains copies)
    after = list(heads.R.parameters()) + list(heads.V.parameters())
    assert all(th.equal(a, b) for a, b in zip(before, after, strict=True))
