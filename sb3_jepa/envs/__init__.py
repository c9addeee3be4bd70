"""
Pixel testbeds, registered as gymnasium ids when ``sb3_jepa`` is imported:

- ``PixelCartPole-v1``: CartPole-v1 from 84x84 grayscale frames (``gym.make("PixelCartPole-v1", rgb=True)`` for
  RGB, ``size=`` for another resolution). Stack frames with ``VecFrameStack``.
- ``MinAtar/<Game>-v1``: the MinAtar games, when the optional ``minatar`` package is installed (its ids are
  registered here if MinAtar has not done it).
"""

import gymnasium as gym

from sb3_jepa.envs.pixel_cartpole import PixelCartPoleEnv

PIXEL_CARTPOLE_ID = "PixelCartPole-v1"


def register_envs() -> None:
    """Register the pixel testbeds with gymnasium (idempotent)."""
    if PIXEL_CARTPOLE_ID not in gym.registry:
        gym.register(
            id=PIXEL_CARTPOLE_ID,
            entry_point="sb3_jepa.envs.pixel_cartpole:PixelCartPoleEnv",
            max_episode_steps=500,
            reward_threshold=475.0,
        )
    if not any(env_id.startswith("MinAtar/") for env_id in gym.registry):
        try:
            import minatar.gym
        except ImportError:
            return
        minatar.gym.register_envs()


__all__ = ["PIXEL_CARTPOLE_ID", "PixelCartPoleEnv", "register_envs"]
