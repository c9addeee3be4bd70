"""Encoders SB3 does not ship: a CNN for small images (MinAtar's 10x10xC grids), where NatureCNN cannot fit."""

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

#: NatureCNN's 8x8/4, 4x4/2 and 3x3/1 convolutions need images of at least this many pixels a side
NATURE_CNN_MIN_SIZE = 36


class SmallImageCNN(BaseFeaturesExtractor):
    """
    The MinAtar paper's network (Young & Tian 2019): one 3x3 convolution with stride 1 and ``n_filters`` filters,
    then a linear layer to ``features_dim`` units, both with ReLU. Works on any ``(H, W, C)`` or ``(C, H, W)``
    box, of any dtype (MinAtar's observations are boolean).

    :param observation_space: a 3-D Box
    :param features_dim: output size
    :param n_filters: number of convolution filters
    :param channels_last: whether observations are ``(H, W, C)``. ``None`` decides: uint8 images follow SB3's rule
        (``VecTransposeImage`` makes them channels-first), other boxes (MinAtar's) are read as channels-last.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        features_dim: int = 128,
        n_filters: int = 16,
        channels_last: bool | None = None,
    ):
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 3:
            raise ValueError(f"SmallImageCNN needs a 3-D Box observation space, got {observation_space}")
        if channels_last is None:
            if is_image_space(observation_space, check_channels=False):
                channels_last = not is_image_space_channels_first(observation_space)
            else:
                channels_last = True
        super().__init__(observation_space, features_dim)
        shape = observation_space.shape
        n_channels, height, width = (shape[2], shape[0], shape[1]) if channels_last else shape
        self.channels_last = channels_last
        self.cnn = nn.Sequential(nn.Conv2d(n_channels, n_filters, kernel_size=3, stride=1), nn.ReLU(), nn.Flatten())
        n_flatten = n_filters * (height - 2) * (width - 2)
        self.linear = nn.Sequential(nn.Linear(n_flatten, features_dim), nn.ReLU())

    def forward(self, observations: th.Tensor) -> th.Tensor:
        if self.channels_last:
            observations = observations.permute(0, 3, 1, 2)
        return self.linear(self.cnn(observations.float()))


def is_small_image_like(observation_space: gym.Space) -> bool:
    """:return: whether the space is a 3-D box too small for NatureCNN (such as MinAtar's 10x10xC grids)"""
    if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 3:
        return False
    spatial = sorted(observation_space.shape)[1:]
    return int(np.min(spatial)) < NATURE_CNN_MIN_SIZE
