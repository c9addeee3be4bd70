"""
A2CJEPA.train and PPOJEPA.train are copies of SB3's with a few lines marked ``# [JEPA]``. These tests fail as
soon as the installed SB3's train() differs from our copy outside those lines (sb3-contrib's copies drifted
silently from upstream fixes; ours cannot). Likewise the buffers' ``_flatten_for_sampling``, which does what the
first call of SB3's ``get()`` does.
"""

import inspect
import textwrap

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from sb3_jepa import A2CJEPA, PPOJEPA
from sb3_jepa.common.buffers import JEPADictRolloutBuffer, JEPARolloutBuffer

MARK = "# [JEPA]"


def upstream_from_copy(source: str) -> str:
    """Our copy with the marked lines removed: what SB3's method must be."""
    kept = [line for line in source.splitlines() if not line.rstrip().endswith(MARK)]
    return textwrap.dedent("\n".join(kept))


def method_source(method: object) -> str:
    return textwrap.dedent(inspect.getsource(method)).rstrip()  # type: ignore[arg-type]


@pytest.mark.parametrize(("ours", "upstream"), [(A2CJEPA.train, A2C.train), (PPOJEPA.train, PPO.train)])
def test_train_is_upstream_plus_marked_lines(ours, upstream):
    ours_source = method_source(ours)
    assert upstream_from_copy(ours_source) == method_source(upstream)
    marked = [line.strip() for line in ours_source.splitlines() if line.rstrip().endswith(MARK)]
    # start, capture (2), loss, target update, log
    assert len(marked) == 6
    assert all(line.startswith(("self._jepa_", "self.policy.jepa_", "captured =", "loss = self._jepa_")) for line in marked)


def test_drift_would_be_detected():
    changed = method_source(A2CJEPA.train).replace("self.policy.optimizer.step()", "self.policy.optimizer.step()  # fix")
    assert upstream_from_copy(changed) != method_source(A2C.train)


def test_collect_rollouts_seams_still_exist():
    """The uncopied collect_rollouts must still call _update_info_buffer before buffer.add and end on _last_obs."""
    source = inspect.getsource(OnPolicyAlgorithm.collect_rollouts)
    info = source.index("self._update_info_buffer(infos, dones)")
    add = source.index("rollout_buffer.add(")
    last_obs = source.index("self._last_obs = new_obs")
    assert info < add < last_obs


@pytest.mark.parametrize(("ours", "sb3"), [(JEPARolloutBuffer, RolloutBuffer), (JEPADictRolloutBuffer, DictRolloutBuffer)])
def test_flatten_for_sampling_is_what_sb3_get_does(ours, sb3):
    # The segment sampler flattens the arrays as SB3's get() does before its first sample: every array equal after
    if sb3 is DictRolloutBuffer:
        space: spaces.Space = spaces.Dict({"a": spaces.Box(-1, 1, (3,)), "b": spaces.Box(-1, 1, (2, 2))})
    else:
        space = spaces.Box(-1, 1, (3,))
    buffers = [cls(4, space, spaces.Box(-1, 1, (2,)), n_envs=3) for cls in (ours, sb3)]
    rng = np.random.default_rng(0)
    for buffer in buffers:
        buffer.reset()
    for _ in range(4):
        obs = space.sample()
        obs = {k: np.stack([v] * 3) for k, v in obs.items()} if isinstance(obs, dict) else np.stack([obs] * 3)
        step = dict(action=rng.normal(size=(3, 2)), reward=rng.normal(size=3), episode_start=rng.random(3) < 0.3)
        step.update(value=th.as_tensor(rng.normal(size=3)), log_prob=th.zeros(3))
        for buffer in buffers:
            buffer.add(obs, **step)
    ours_buffer, sb3_buffer = buffers
    ours_buffer._flatten_for_sampling()
    next(sb3_buffer.get(1))
    assert ours_buffer.generator_ready and sb3_buffer.generator_ready
    sb3_arrays = {k: v for k, v in vars(sb3_buffer).items() if isinstance(v, (np.ndarray, dict))}
    for name, value in sb3_arrays.items():
        mine = getattr(ours_buffer, name)
        if isinstance(value, dict):
            for key in value:
                np.testing.assert_array_equal(mine[key], value[key], err_msg=f"{name}[{key}]")
        else:
            np.testing.assert_array_equal(mine, value, err_msg=name)
