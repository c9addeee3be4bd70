"""
Bit-for-bit check of a speed change: train seeded A2CJEPA/PPOJEPA models (the speed benchmark's pairs, a few
updates each) and print a SHA-256 of every parameter of the trained policy, one line per (pair, target). Run it on
two commits and compare the outputs; a change that keeps results gives the same lines.

    python -m benchmarks.fingerprint > after.txt
    git stash; python -m benchmarks.fingerprint > before.txt; git stash pop; diff before.txt after.txt
"""

import argparse
import hashlib
from typing import Any

import torch as th

from benchmarks.speed import pairs
from sb3_jepa.common.loss import TARGET_MODES


def fingerprint(pair_name: str, target: str, timesteps: int, prediction_steps: int = 1) -> str:
    """
    :param pair_name: a pair of :func:`benchmarks.speed.pairs`
    :param target: the JEPA target mode
    :param timesteps: the training budget
    :param prediction_steps: ``jepa_prediction_steps``
    :return: the SHA-256 of the trained policy's parameters and buffers, in ``state_dict`` order
    """
    pair = pairs("BreakoutNoFrameskip-v4")[pair_name]
    env = pair.make_env(0)
    # jepa_coef 1: the JEPA term large enough that any change in its arithmetic shows in the weights
    settings: dict[str, Any] = dict(seed=0, jepa_target=target, jepa_coef=1.0, jepa_prediction_steps=prediction_steps)
    model = pair.jepa(pair.policy, env, **settings, **pair.kwargs)
    model.learn(timesteps)
    env.close()
    digest = hashlib.sha256()
    for name, tensor in model.policy.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", default=["a2c-mlp", "ppo-mlp", "a2c-cnn", "ppo-cnn"])
    parser.add_argument("--targets", nargs="+", default=list(TARGET_MODES), choices=TARGET_MODES)
    parser.add_argument("--timesteps", type=int, default=1024)
    args = parser.parse_args(argv)
    th.set_num_threads(1)
    for name in args.pairs:
        for target in args.targets:
            print(f"{name} {target}: {fingerprint(name, target, args.timesteps)}", flush=True)
        print(f"{name} online K=3: {fingerprint(name, 'online', args.timesteps, prediction_steps=3)}", flush=True)


if __name__ == "__main__":
    main()
