"""
Does it learn where SB3 does? SB3's identity tests (tests/test_identity.py: the environments, budgets,
hyperparameters and the threshold of a mean reward of 90 over 20 episodes) run for plain A2C/PPO and for
A2CJEPA/PPOJEPA over several seeds, so that a default is judged on more than SB3's one seed.

    python -m benchmarks.identity                                  # defaults, seeds 0-4
    python -m benchmarks.identity --seeds 0 1 2 --algos ppo --jepa-kwargs '{"jepa_coef": 1.0}'
    python -m benchmarks.identity --jepa-policy-kwargs '{"net_arch": []}'

It prints, per (algorithm, environment), the mean reward of each seed and how many seeds reached 90.
"""

import argparse
import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.envs import IdentityEnv, IdentityEnvBox, IdentityEnvMultiBinary, IdentityEnvMultiDiscrete
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_jepa import A2CJEPA, PPOJEPA

#: SB3's tests/test_identity.py: ``DIM``, and the reward every case must reach
DIM = 4
THRESHOLD = 90.0
ALGOS: dict[str, tuple[type[BaseAlgorithm], type[BaseAlgorithm]]] = {"a2c": (A2C, A2CJEPA), "ppo": (PPO, PPOJEPA)}


@dataclass
class Case:
    """One of SB3's identity tests: its environment, budget and the arguments it gives each algorithm."""

    name: str
    make_env: Callable[[], gym.Env]
    timesteps: dict[str, int]
    kwargs: dict[str, dict[str, Any]]


DISCRETE_KWARGS = {
    "a2c": dict(gamma=0.4, learning_rate=0.002),
    "ppo": dict(gamma=0.4, learning_rate=0.002, n_epochs=4, n_steps=256),
}
CASES = [
    Case("discrete", lambda: IdentityEnv(DIM), {"a2c": 1200, "ppo": 1200}, DISCRETE_KWARGS),
    Case("multidiscrete", lambda: IdentityEnvMultiDiscrete(DIM), {"a2c": 1200, "ppo": 1200}, DISCRETE_KWARGS),
    Case("multibinary", lambda: IdentityEnvMultiBinary(DIM), {"a2c": 1200, "ppo": 1200}, DISCRETE_KWARGS),
    Case(
        "box",
        lambda: IdentityEnvBox(eps=0.5),
        {"a2c": 2000, "ppo": 1000},
        {
            "a2c": dict(learning_rate=1e-3, gamma=0.95, policy_kwargs=dict(net_arch=[64, 64], log_std_init=-0.5)),
            "ppo": dict(learning_rate=1e-3, n_steps=256, n_epochs=4),
        },
    ),
]


def run_case(
    algo_cls: type[BaseAlgorithm], algo: str, case: Case, seed: int, extra: dict[str, Any], policy_extra: dict[str, Any]
) -> float:
    """
    :param algo_cls: the algorithm to train
    :param algo: ``"a2c"`` or ``"ppo"``, which of the case's arguments to use
    :param case: the identity test
    :param seed: the run's seed
    :param extra: further keyword arguments for the algorithm
    :param policy_extra: further ``policy_kwargs``
    :return: the mean reward over 20 evaluation episodes
    """
    env = DummyVecEnv([case.make_env])
    kwargs = {**case.kwargs[algo], **extra}
    policy_kwargs = {**kwargs.pop("policy_kwargs", {}), **policy_extra}
    model = algo_cls("MlpPolicy", env, seed=seed, policy_kwargs=policy_kwargs or None, **kwargs)
    model.learn(case.timesteps[algo])
    mean, _ = evaluate_policy(model, env, n_eval_episodes=20, warn=False)
    assert isinstance(mean, float)
    return mean


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", choices=sorted(ALGOS), default=sorted(ALGOS))
    parser.add_argument("--cases", nargs="+", choices=[case.name for case in CASES], default=[case.name for case in CASES])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--jepa-kwargs", type=json.loads, default={}, help="JSON: extra arguments of the JEPA algorithm")
    parser.add_argument("--jepa-policy-kwargs", type=json.loads, default={}, help="JSON: extra policy_kwargs (JEPA only)")
    parser.add_argument("--no-plain", action="store_true", help="skip plain SB3 (its results do not change)")
    args = parser.parse_args(argv)
    print(f"JEPA arguments: {args.jepa_kwargs or 'defaults'}; policy_kwargs: {args.jepa_policy_kwargs or 'defaults'}")
    print(f"{'algorithm':<10} {'case':<14} {'passed':>7} {'median':>7}  rewards per seed {args.seeds}")
    for algo in args.algos:
        plain_cls, jepa_cls = ALGOS[algo]
        for case in (case for case in CASES if case.name in args.cases):
            runs = [(jepa_cls, args.jepa_kwargs, args.jepa_policy_kwargs)]
            if not args.no_plain:
                runs.insert(0, (plain_cls, {}, {}))
            for algo_cls, extra, policy_extra in runs:
                rewards = [run_case(algo_cls, algo, case, seed, extra, policy_extra) for seed in args.seeds]
                passed = sum(reward >= THRESHOLD for reward in rewards)
                median = statistics.median(rewards)
                row = f"{algo_cls.__name__:<10} {case.name:<14} {passed:>3}/{len(rewards):<3} {median:>7.1f}  "
                print(row + " ".join(f"{reward:.0f}" for reward in rewards), flush=True)


if __name__ == "__main__":
    main()
