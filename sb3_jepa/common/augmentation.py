"""
Image augmentation of the training minibatches (``augment_observations``): DrQ's and SPR's random shift.

``shift``: each image is padded by ``pad`` pixels on every side with copies of its border pixels (replicate
padding), then cropped back to its size at a random integer offset, drawn per image: a shift of up to ``pad``
pixels in each direction, the uncovered border filled with the edge's pixels. DrQ-v2 and SPR pad by 4 at 84 px;
here ``pad = max(1, round(4 * min(height, width) / 84))`` (TD-MPC's ``size / 21``): 4 at 84, 3 at 64 (Two Rooms),
1 at 10 (MinAtar, where 4/84 of a side rounds to nothing).

The padding and the crop are one gather: output pixel ``(r, c)`` of an image shifted by ``(dy, dx)`` is input pixel
``(clamp(r + dy, 0, H - 1), clamp(c + dx, 0, W - 1))``, ``dy, dx`` uniform in ``[-pad, pad]``, which is exactly the
padded image cropped at ``(pad + dy, pad + dx)``. No copy of a padded image is made.
"""

from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first

from sb3_jepa.common.torch_layers import is_small_image_like
from sb3_jepa.common.utils import check_choice

#: The augmentations ``augment_observations`` takes
AUGMENTATIONS = ("shift",)


def check_augmentation(augmentation: str | None) -> str | None:
    """
    :param augmentation: the augmentation to check
    :return: ``augmentation``, if it is None or one of :data:`AUGMENTATIONS`
    """
    return check_choice("augment_observations", augmentation, (None, *AUGMENTATIONS))


def shift_pad(height: int, width: int) -> int:
    """
    :param height: the image's height in pixels
    :param width: its width
    :return: the largest shift, ``max(1, round(4 * min(height, width) / 84))``: 4 at 84 px, 3 at 64, 1 at 10
    """
    return max(1, round(4 * min(height, width) / 84))


def image_layout(space: spaces.Space) -> str | None:
    """
    :param space: an observation space (of one key, for Dict spaces)
    :return: ``"channels_first"`` or ``"channels_last"`` for images (SB3's uint8 images, channels-first after
        ``VecTransposeImage``; MinAtar-like small 3-D boxes, channels-last as :class:`SmallImageCNN` reads them),
        None for anything else
    """
    if not isinstance(space, spaces.Box) or len(space.shape) != 3:
        return None
    if is_image_space(space, check_channels=False):
        return "channels_first" if is_image_space_channels_first(space) else "channels_last"
    return "channels_last" if is_small_image_like(space) else None


def random_shift(images: th.Tensor, pad: int, channels_last: bool = False) -> th.Tensor:
    """
    Shift each image of a batch by its own random integer offset in ``[-pad, pad]`` per axis, replicating its
    border (see the module).

    Example: a 1x3x3 image ``[[1, 2, 3], [4, 5, 6], [7, 8, 9]]`` shifted by ``(dy, dx) = (1, -1)`` reads rows
    ``(1, 2, 2)`` and columns ``(0, 0, 1)``: ``[[4, 4, 5], [7, 7, 8], [7, 7, 8]]``.

    :param images: a batch, ``(B, C, H, W)`` (``(B, H, W, C)`` with ``channels_last``), of any dtype
    :param pad: the largest shift in pixels (>= 0)
    :param channels_last: the layout of ``images``
    :return: the shifted batch, the same shape, dtype and device
    """
    if channels_last:
        return random_shift(images.permute(0, 3, 1, 2), pad).permute(0, 2, 3, 1)
    batch, channels, height, width = images.shape
    offsets = th.randint(-pad, pad + 1, (2, batch, 1), device=images.device)
    rows = (th.arange(height, device=images.device) + offsets[0]).clamp(0, height - 1)  # (B, H)
    columns = (th.arange(width, device=images.device) + offsets[1]).clamp(0, width - 1)  # (B, W)
    pixels = (rows[:, :, None] * width + columns[:, None, :]).flatten(1)  # (B, H * W): each output pixel's source
    shifted = images.flatten(2).gather(2, pixels[:, None, :].expand(batch, channels, height * width))
    return shifted.reshape(images.shape)


class ObservationAugmenter:
    """
    Augments the image parts of observation batches as the rollout buffer hands them out (a Box image, or the
    image keys of a Dict).

    :param observation_space: the buffer's observation space (images channels-first after ``VecTransposeImage``)
    :param augmentation: one of :data:`AUGMENTATIONS`
    :raises ValueError: if nothing in the space is an image
    """

    def __init__(self, observation_space: spaces.Space, augmentation: str):
        self.augmentation = check_choice("augment_observations", augmentation, AUGMENTATIONS)
        parts = observation_space.spaces if isinstance(observation_space, spaces.Dict) else {None: observation_space}
        #: key (None for a Box) -> (channels_last, pad) of each image part
        self.images: dict[Any, tuple[bool, int]] = {}
        for key, space in parts.items():
            layout = image_layout(space)
            if layout is not None:
                shape = tuple(space.shape or ())  # image_layout: a 3-D Box
                height, width = shape[:2] if layout == "channels_last" else shape[1:]
                self.images[key] = (layout == "channels_last", shift_pad(height, width))
        if not self.images:
            raise ValueError(
                f"augment_observations={augmentation!r} shifts images, but the observation space {observation_space} "
                "holds none (uint8 image boxes, or small 3-D grids such as MinAtar's): leave it None"
            )

    def __call__(self, observations: Any) -> Any:
        """
        :param observations: a batch: a tensor, or a dict of tensors
        :return: the batch with every image part shifted (a new dict; the other keys as they were)
        """
        if not isinstance(observations, dict):
            channels_last, pad = self.images[None]
            return random_shift(observations, pad, channels_last)
        return {
            key: random_shift(value, self.images[key][1], self.images[key][0]) if key in self.images else value
            for key, value in observations.items()
        }
