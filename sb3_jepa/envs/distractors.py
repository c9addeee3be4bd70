"""
A vector testbed with distractors, in the style of Ni et al. (2024): CartPole-v1 with ``n_distractors`` appended
observation dimensions that the reward never depends on, of one of two kinds:

- ``predictable``: a fixed linear dynamical system, ``d_{t+1} = A d_t``, with ``A`` block-diagonal of 2-D rotations
  (angles fixed by the ``dynamics_seed``, not by the episode's seed): deterministic, bounded motion on circles,
  predictable from ``d_t`` alone and independent of the agent's actions;
- ``noise``: i.i.d. uniform on ``[-1, 1]`` at every step: nothing in it can be predicted.

``info["state"]`` holds CartPole's 4 state variables then the distractors (``info["distractor_state"]`` the
distractors alone), so that probes can score the task variables and each kind of distractor separately. With
``kind=None`` there are none: CartPole-v1 itself, reporting its state, the reference the probes compare with.
"""

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

#: The kinds of distractor dimensions
DISTRACTOR_KINDS = ("predictable", "noise")
#: CartPole's state variables, first in the observation and in ``info["state"]``
N_TASK_STATE = 4


def rotation_dynamics(n_distractors: int, seed: int) -> np.ndarray:
    """
    The predictable distractors' transition matrix: block-diagonal 2-D rotations by angles drawn once from ``seed``
    (in [0.1, 0.5] rad per step: visibly moving, never still), and a 1 for an odd last dimension (it stays put).

    Example: ``n_distractors = 3`` gives a 3x3 matrix whose top-left 2x2 block is a rotation and whose (2, 2) entry
    is 1.

    :param n_distractors: the distractor dimensions
    :param seed: the seed of the angles
    :return: ``A``, shape ``(n_distractors, n_distractors)``
    """
    angles = np.random.default_rng(seed).uniform(0.1, 0.5, size=n_distractors // 2)
    matrix = np.eye(n_distractors)
    for block, angle in enumerate(angles):
        cos, sin = np.cos(angle), np.sin(angle)
        matrix[2 * block : 2 * block + 2, 2 * block : 2 * block + 2] = [[cos, -sin], [sin, cos]]
    return matrix


class DistractorCartPoleEnv(gym.Env):
    """
    CartPole-v1 whose observation is ``concat(cartpole_state, distractors)``.

    :param kind: one of :data:`DISTRACTOR_KINDS`, or None: no distractors (CartPole-v1 with ``info["state"]``, the
        reference; ``n_distractors`` must then be 0)
    :param n_distractors: appended dimensions (>= 1; 0 with ``kind=None``)
    :param dynamics_seed: the seed of the predictable kind's rotation angles (the same task for every episode seed)
    """

    metadata = {"render_modes": []}

    def __init__(self, kind: str | None = "noise", n_distractors: int = 8, dynamics_seed: int = 0):
        super().__init__()
        if kind is not None and kind not in DISTRACTOR_KINDS:
            raise ValueError(f"kind must be one of {DISTRACTOR_KINDS} or None (no distractors), got {kind!r}")
        if kind is None:
            if isinstance(n_distractors, bool) or n_distractors != 0:
                raise ValueError(f"kind=None has no distractors: n_distractors must be 0, got {n_distractors!r}")
        elif isinstance(n_distractors, bool) or not isinstance(n_distractors, (int, np.integer)) or n_distractors < 1:
            raise ValueError(f"n_distractors must be an integer >= 1, got {n_distractors!r}")
        self.kind, self.n_distractors = kind, int(n_distractors)
        self.cartpole = gym.make("CartPole-v1").unwrapped
        self.dynamics = rotation_dynamics(self.n_distractors, dynamics_seed)
        task_space = self.cartpole.observation_space
        assert isinstance(task_space, spaces.Box)
        low = np.concatenate([task_space.low, -np.ones(self.n_distractors)]).astype(np.float32)
        high = np.concatenate([task_space.high, np.ones(self.n_distractors)]).astype(np.float32)
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        self.action_space = self.cartpole.action_space
        self.distractors = np.zeros(self.n_distractors)

    def _observe(self, task: np.ndarray, info: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        observation = np.concatenate([task, self.distractors]).astype(np.float32)
        return observation, {**info, "state": observation.copy(), "distractor_state": observation[N_TASK_STATE:].copy()}

    def _draw_noise(self) -> np.ndarray:
        return self.np_random.uniform(-1.0, 1.0, size=self.n_distractors)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        # CartPole drawn from this env's generator, so that one seed fixes the task and the distractors
        task, info = self.cartpole.reset(seed=int(self.np_random.integers(2**31)))
        if self.kind is None:
            self.distractors = np.zeros(0)
        elif self.kind == "predictable":
            # A point on each circle of radius in [0.5, 1]: bounded by 1 forever, since rotations keep the norm
            angles = self.np_random.uniform(0, 2 * np.pi, size=(self.n_distractors + 1) // 2)
            radii = self.np_random.uniform(0.5, 1.0, size=len(angles))
            circles = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1).ravel()
            self.distractors = circles[: self.n_distractors].copy()
        else:
            self.distractors = self._draw_noise()
        return self._observe(task, info)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        task, reward, terminated, truncated, info = self.cartpole.step(action)
        if self.kind is not None:
            self.distractors = self.dynamics @ self.distractors if self.kind == "predictable" else self._draw_noise()
        observation, info = self._observe(task, info)
        return observation, float(reward), terminated, truncated, info
