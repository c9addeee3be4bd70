"""
What ``augment_observations="shift"`` costs: the time of PPOJEPA's update (``train()``: 4 epochs over a rollout of
8 envs x 128 steps, minibatches of 256, CnnPolicy) with the random shift against without it, on the same rollout,
the two interleaved (A B, B A, ...) so that a shared machine's noise hits both alike.

    python -m benchmarks.augmentation                         # ALE Breakout (84x84x4), CPU
    python -m benchmarks.augmentation --env TwoRoomsDiscrete-v0 --repeats 7
    python -m benchmarks.augmentation --device cuda

Prints the median ratio (with augmentation / without) over the repeats, its range, and the time of the shift
alone on one minibatch relative to one update.
"""

import argparse
import statistics
import time
from typing import Any

import gymnasium as gym
import torch as th
from stable_baselines3.common.env_util import make_atari_env, make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack

from sb3_jepa import PPOJEPA
from sb3_jepa.common.augmentation import random_shift, shift_pad


def make_env(env_id: str, seed: int) -> VecEnv:
    """:return: 8 envs of ``env_id`` (an ALE id gets SB3's Atari wrappers and a 4-frame stack)"""
    if env_id.startswith("ALE/"):
        import ale_py

        gym.register_envs(ale_py)
        return VecFrameStack(make_atari_env(env_id, n_envs=8, seed=seed), n_stack=4)
    return make_vec_env(env_id, n_envs=8, seed=seed)


def timed_update(model: PPOJEPA) -> float:
    """:return: the seconds of one ``train()`` on the model's current rollout"""
    start = time.perf_counter()
    model.train()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="ALE/Breakout-v5")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    th.set_num_threads(args.threads)
    settings: dict[str, Any] = dict(n_steps=128, batch_size=256, n_epochs=4, seed=0, device=args.device)
    models = {
        augment: PPOJEPA("CnnPolicy", make_env(args.env, 0), augment_observations=augment, **settings)
        for augment in (None, "shift")
    }
    for model in models.values():  # one rollout each, then the same update timed again and again
        model.learn(128 * 8)
    ratios, plain_times = [], []
    for repeat in range(args.repeats):
        order = (None, "shift") if repeat % 2 == 0 else ("shift", None)
        times = {augment: timed_update(models[augment]) for augment in order}
        ratios.append(times["shift"] / times[None])
        plain_times.append(times[None])
    # The shift alone, on one minibatch of the rollout's frames
    shape = models["shift"].rollout_buffer.obs_shape
    frames = th.as_tensor(models["shift"].rollout_buffer.observations).reshape(-1, *shape)[:256].to(args.device)
    pad = shift_pad(*frames.shape[2:])
    start = time.perf_counter()
    for _ in range(20):
        random_shift(frames, pad)
    shift_s = (time.perf_counter() - start) / 20
    minibatches = 4 * 128 * 8 // 256
    print(
        f"{args.env} ({tuple(frames.shape[1:])}, pad {pad}, {args.device}): update with / without the shift, median "
        f"{statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f}, {args.repeats} interleaved "
        f"repeats); the shift alone: {1000 * shift_s:.2f} ms per minibatch of 256, x{minibatches} minibatches = "
        f"{100 * shift_s * minibatches / statistics.median(plain_times):.1f}% of one update"
    )


if __name__ == "__main__":
    main()
