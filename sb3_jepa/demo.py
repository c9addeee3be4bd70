"""
Train A2CJEPA on an Atari game from pixels, with a progress bar, and print the collapse metrics as they evolve.

    python -m sb3_jepa.demo --env BreakoutNoFrameskip-v4 --timesteps 20000

Its defaults are the paper's setting (``--jepa-coef 1.0 --jepa-target online``), not the package's (0.01,
``stop_grad``): the setting whose collapse in scale the study measured.

Needs the ``atari`` and ``examples`` extras (ale-py, opencv, tqdm, rich).
"""

import argparse
from typing import Any

import gymnasium as gym
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import VecFrameStack

from sb3_jepa import A2CJEPA
from sb3_jepa.common.callbacks import CollapseMetricsCallback

METRICS = ("jepa/loss", "jepa/embedding_std", "jepa/effective_rank", "jepa/pred_cosine", "rollout/ep_rew_mean")


class CollapseTable(CollapseMetricsCallback):
    """The collapse metrics of every ``every``-th update, with the mean training return of the last episodes."""

    def _row(self, values: dict[str, Any]) -> dict[str, Any]:
        row = super()._row(values)
        if self.model.ep_info_buffer:
            row["rollout/ep_rew_mean"] = sum(ep["r"] for ep in self.model.ep_info_buffer) / len(self.model.ep_info_buffer)
        return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="BreakoutNoFrameskip-v4", help="an ALE game id (ale-py)")
    parser.add_argument("--timesteps", type=int, default=20_000)
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--jepa-coef", type=float, default=1.0)
    parser.add_argument("--jepa-target", default="online", choices=["online", "stop_grad", "ema"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if args.timesteps <= 0 or args.n_envs <= 0:
        parser.error("--timesteps and --n-envs must be positive")
    try:
        import ale_py
    except ImportError:
        parser.error('the Atari games need ale-py: pip install "sb3-jepa[atari,examples]"')
    gym.register_envs(ale_py)

    env = VecFrameStack(make_atari_env(args.env, n_envs=args.n_envs, seed=args.seed), n_stack=4)
    model = A2CJEPA(
        "CnnPolicy",
        env,
        jepa_coef=args.jepa_coef,
        jepa_target=args.jepa_target,
        seed=args.seed,
        device=args.device,
    )
    table = CollapseTable(every=max(1, args.timesteps // (model.n_steps * args.n_envs) // 10))
    model.learn(args.timesteps, callback=table, progress_bar=True)

    header = ["timesteps", *METRICS]
    print(" | ".join(f"{name:>20}" for name in header))
    for row in table.rows:
        print(" | ".join(f"{'' if row.get(name) is None else f'{row[name]:.4g}':>20}" for name in header))


if __name__ == "__main__":
    main()
