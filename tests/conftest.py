"""Test-session settings."""

import os

import torch as th

# pytest -n 2 runs two workers on these 2-core machines: one torch thread each, or they oversubscribe the cores
# (SB3's small networks gain nothing from intra-op threads; the identity tests ran 2x slower with torch's default)
if os.environ.get("PYTEST_XDIST_WORKER"):
    th.set_num_threads(1)
