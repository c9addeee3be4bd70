"""
A2CJEPA.train and PPOJEPA.train are copies of SB3's with a few lines marked ``# [JEPA]``. These tests fail as
soon as the installed SB3's train() differs from our copy outside those lines (sb3-contrib's copies drifted
silently from upstream fixes; ours cannot).
"""

import inspect
import textwrap

import pytest
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from sb3_jepa import A2CJEPA, PPOJEPA

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
    assert all(line.startswith(("self._jepa_", "self.policy.jepa_", "embeddings =", "loss = self._jepa_")) for line in marked)


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
