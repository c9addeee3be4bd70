"""Test-session settings, and what the test modules share: the algorithms and their tiny budgets."""

import os
from typing import Any

import torch as th

from sb3_jepa import A2CJEPA, PPOJEPA

# pytest -n 2 runs two workers on these 2-core machines: one torch thread each, or they oversubscribe the cores
# (SB3's small networks gain nothing from intra-op threads; the identity tests ran 2x slower with torch's default)
if os.environ.get("PYTEST_XDIST_WORKER"):
    th.set_num_threads(1)

#: Both algorithms, for ``@pytest.mark.parametrize("algo_cls", ALGOS)``
ALGOS = [A2CJEPA, PPOJEPA]
#: Settings that make an update cheap: a few steps per rollout, small minibatches, two epochs
SMALL: dict[type, dict[str, Any]] = {A2CJEPA: dict(n_steps=8), PPOJEPA: dict(n_steps=32, batch_size=16, n_epochs=2)}
