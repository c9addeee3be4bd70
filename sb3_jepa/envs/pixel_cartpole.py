"""
Cart Pole from pixels, drawn with numpy: the same dynamics, rewards and ends as gymnasium's CartPole-v1, but the
observation is a small image of the cart and the pole instead of the 4 state variables. Rendering CartPole through
its 600x400 pygame window and downscaling dominates collection time; this draws the 84x84 frame directly.

One frame shows positions, not velocities: stack frames (``VecFrameStack``) as for Atari.
"""

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

# Brightness of the parts of the picture (grayscale; RGB repeats them)
TRACK, CART, POLE = 80, 160, 255


class PixelCartPoleEnv(CartPoleEnv):
    """
    CartPole-v1 observed as a ``size x size`` image (uint8, channels last). The true state is in
    ``info["state"]`` (for probes and analyses, not for the agent).

    :param size: image height and width in pixels
    :param rgb: three identical color channels instead of one grayscale channel
    :param render_mode: gymnasium's render mode (``"rgb_array"`` returns the observation as RGB)
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(self, size: int = 84, rgb: bool = False, render_mode: str | None = None):
        if not isinstance(size, int) or size < 16:
            raise ValueError(f"size must be an int >= 16 (pixels), got {size!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        # CartPoleEnv's own renderer (pygame) is never used
        super().__init__(render_mode=None)
        self.render_mode = render_mode
        self.size = size
        self.rgb = rgb
        self.observation_space = spaces.Box(0, 255, (size, size, 3 if rgb else 1), dtype=np.uint8)
        # The track spans the x range CartPole allows before it terminates (+-2.4), with a small margin
        self.scale = size / (2 * self.x_threshold * 1.1)
        self.cart_y = int(size * 0.65)
        self.cart_half_width = max(2, round(0.25 * self.scale))
        self.cart_half_height = max(1, round(0.15 * self.scale))
        self.pole_length = 2 * self.length * self.scale
        self._pole_steps = np.linspace(0.0, 1.0, max(8, int(2 * self.pole_length)))

    def _pixels(self) -> np.ndarray:
        assert self.state is not None
        x, _, theta, _ = self.state
        frame = np.zeros((self.size, self.size), dtype=np.uint8)
        frame[self.cart_y + self.cart_half_height + 1, :] = TRACK
        center = round(self.size / 2 + x * self.scale)
        left, right = max(0, center - self.cart_half_width), min(self.size, center + self.cart_half_width + 1)
        frame[self.cart_y - self.cart_half_height : self.cart_y + self.cart_half_height + 1, left:right] = CART
        # The pole leaves the top of the cart at angle theta from the vertical (positive: to the right)
        xs = center + np.sin(theta) * self.pole_length * self._pole_steps
        ys = self.cart_y - self.cart_half_height - np.cos(theta) * self.pole_length * self._pole_steps
        cols = np.clip(np.round(xs).astype(int), 0, self.size - 1)
        rows = np.clip(np.round(ys).astype(int), 0, self.size - 1)
        frame[rows, cols] = POLE
        frame[rows, np.clip(cols + 1, 0, self.size - 1)] = POLE  # two pixels thick
        return np.repeat(frame[:, :, None], 3 if self.rgb else 1, axis=2)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        state, info = super().reset(seed=seed, options=options)
        return self._pixels(), {**info, "state": state}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        state, reward, terminated, truncated, info = super().step(action)
        return self._pixels(), reward, terminated, truncated, {**info, "state": state}

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        if self.render_mode != "rgb_array":
            return None
        frame = self._pixels()
        return frame if self.rgb else np.repeat(frame, 3, axis=2)
