"""
With their defaults, A2CJEPA and PPOJEPA learn SB3's identity tasks at the budgets, hyperparameters and threshold
of SB3's own tests/test_identity.py, judged on the median of three seeds rather than on SB3's one seed
(``python -m benchmarks.identity`` runs the same over more seeds and prints every reward).

MultiBinary is the exception: plain SB3 itself does not reach the threshold there (it passes on its test's seed,
3, and on 1 seed of 0-4: medians 87 for A2C and 79 for PPO), so there the JEPA algorithms are compared with plain
A2C/PPO side by side, on the same seeds.
"""

import statistics
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import pytest
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.envs import IdentityEnv, IdentityEnvBox, IdentityEnvMultiBinary, IdentityEnvMultiDiscrete
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_jepa import A2CJEPA, PPOJEPA

#: SB3's tests/test_identity.py: the action dimension and the mean reward over 20 episodes every case must reach
DIM = 4
THRESHOLD = 90
SEEDS = (0, 1, 2)
ENVS: dict[str, Callable[[], gym.Env]] = {
    "discrete": lambda: IdentityEnv(DIM),
    "multidiscrete": lambda: IdentityEnvMultiDiscrete(DIM),
    "multibinary": lambda: IdentityEnvMultiBinary(DIM),
    "box": lambda: IdentityEnvBox(eps=0.5),
}


def sb3_identity_run(algo_cls: type, case: str, seed: int) -> float:
    """Train as SB3's identity test does for this algorithm and case; return the mean reward over 20 episodes."""
    is_ppo = issubclass(algo_cls, PPO)
    kwargs: dict[str, Any]
    if case == "box":
        if is_ppo:
            kwargs, timesteps = dict(n_steps=256, n_epochs=4), 1000
        else:
            kwargs, timesteps = dict(policy_kwargs=dict(net_arch=[64, 64], log_std_init=-0.5), gamma=0.95), 2000
        kwargs["learning_rate"] = 1e-3
    else:
        kwargs = dict(gamma=0.4, learning_rate=0.002, **(dict(n_epochs=4, n_steps=256) if is_ppo else {}))
        timesteps = 1200
    env = DummyVecEnv([ENVS[case]])
    model = algo_cls("MlpPolicy", env, seed=seed, **kwargs).learn(timesteps)
    mean, _ = evaluate_policy(model, env, n_eval_episodes=20, warn=False)
    assert isinstance(mean, float)
    return mean


@pytest.mark.slow
@pytest.mark.parametrize("algo_cls", [A2CJEPA, PPOJEPA])
@pytest.mark.parametrize("case", ["discrete", "multidiscrete", "box"])
def test_defaults_reach_sb3_threshold(algo_cls, case):
    rewards = [sb3_identity_run(algo_cls, case, seed) for seed in SEEDS]
    assert statistics.median(rewards) >= THRESHOLD, rewards


@pytest.mark.slow
@pytest.mark.parametrize("algo_cls", [A2CJEPA, PPOJEPA])
def test_defaults_learn_multibinary_as_well_as_sb3(algo_cls):
    plain_cls = PPO if algo_cls is PPOJEPA else A2C
    ours = [sb3_identity_run(algo_cls, "multibinary", seed) for seed in SEEDS]
    plain = [sb3_identity_run(plain_cls, "multibinary", seed) for seed in SEEDS]
    assert statistics.median(ours) >= statistics.median(plain), (ours, plain)
