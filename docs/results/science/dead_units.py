"""
Why VICReg did not stop the collapse: dead ReLU units? Reads the trained study models under a folder (argument) and
their metrics: python docs/results/science/dead_units.py /tmp/study11_vicreg
"""

import csv
import sys
from pathlib import Path

import numpy as np
import torch as th
from stable_baselines3.common.env_util import make_vec_env

from sb3_jepa import PPOJEPA


def inspect(run: Path) -> None:
    model = PPOJEPA.load(run / "zoo" / "model.zip", device="cpu")
    env = make_vec_env("MinAtar/SpaceInvaders-v1", n_envs=1, seed=123)
    pre = []
    linear = model.policy.pi_features_extractor.encoder.linear[0]
    handle = linear.register_forward_hook(lambda m, i, o: pre.append(o.detach()))
    obs = env.reset()
    zs = []
    for _ in range(1000):
        with th.no_grad():
            zs.append(model.policy.jepa_encode(th.as_tensor(obs)).numpy())
        action, _ = model.predict(obs)
        obs, *_ = env.step(action)
    handle.remove()
    z = np.concatenate(zs)
    a = th.cat(pre).numpy()
    dead = z.max(axis=0) <= 0
    with open(run / "metrics.csv") as file:
        rows = list(csv.DictReader(file))
    var = [float(r["jepa/vicreg_variance"]) for r in rows if r.get("jepa/vicreg_variance")]
    rank = [float(r["jepa/effective_rank"]) for r in rows]
    first_zero = next((int(float(r["timesteps"])) for r in rows if float(r["jepa/effective_rank"]) < 0.5), None)
    print(
        f"{run}: dims {z.shape[1]}, dead (zero on all 1000 states) {dead.sum()}, "
        f"pre-activation max over states: median {np.median(a.max(axis=0)):.3g}, max {a.max():.3g}; "
        f"z std mean {z.std(axis=0).mean():.3g}; vicreg variance term first {var[0]:.3f} last {var[-1]:.3f}; "
        f"rank first {rank[0]:.1f} last {rank[-1]:.1f}, rank < 0.5 from step {first_zero}"
    )


for run in sorted(Path(sys.argv[1]).glob("*/*/seed*")):
    if (run / "summary.json").exists():
        inspect(run)
