"""The random-shift augmentation of the training minibatches (``augment_observations``)."""

from typing import Any

import numpy as np
import pytest
import torch as th
from gymnasium import spaces

from sb3_jepa import A2CJEPA, PPOJEPA, JEPADictRolloutBuffer, JEPARolloutBuffer
from sb3_jepa.common.augmentation import ObservationAugmenter, image_layout, random_shift, shift_pad


def candidate_crops(image: np.ndarray, pad: int) -> list[np.ndarray]:
    """Every crop of the edge-padded (C, H, W) image back to its size: the shifts DrQ's random shift can give"""
    padded = np.pad(image, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
    height, width = image.shape[1:]
    return [padded[:, y : y + height, x : x + width] for y in range(2 * pad + 1) for x in range(2 * pad + 1)]


def test_random_shift_worked_example(monkeypatch):
    """The docstring's example: (dy, dx) = (1, -1) reads rows (1, 2, 2) and columns (0, 0, 1)"""
    monkeypatch.setattr(th, "randint", lambda low, high, size, device=None: th.tensor([1, -1]).reshape(size))
    image = th.arange(1, 10).reshape(1, 1, 3, 3)
    np.testing.assert_array_equal(random_shift(image, pad=1)[0, 0], [[4, 4, 5], [7, 7, 8], [7, 7, 8]])


def test_random_shift_is_a_crop_of_the_replicate_padded_image_drawn_per_image():
    th.manual_seed(0)
    images = th.randint(0, 256, (256, 3, 12, 10), dtype=th.uint8)
    shifted = random_shift(images, pad=2)
    assert shifted.dtype == th.uint8 and shifted.shape == images.shape
    used = set()
    for image, result in zip(images.numpy(), shifted.numpy(), strict=True):
        matches = [k for k, crop in enumerate(candidate_crops(image, 2)) if np.array_equal(crop, result)]
        assert matches, "not a crop of the padded image"
        used.add(matches[0])
    # Each image its own offset: all 25 shifts appear among 256 images (each missed with odds 1e-4)
    assert used == set(range(25))


def test_random_shift_channels_last_is_the_same_shift():
    images = th.randint(0, 256, (8, 10, 10, 4), dtype=th.uint8)
    th.manual_seed(1)
    last = random_shift(images, pad=1, channels_last=True)
    th.manual_seed(1)
    first = random_shift(images.permute(0, 3, 1, 2), pad=1)
    th.testing.assert_close(last, first.permute(0, 2, 3, 1))


def test_shift_pad_and_layouts():
    assert (shift_pad(84, 84), shift_pad(64, 64), shift_pad(10, 10), shift_pad(84, 42)) == (4, 3, 1, 2)
    assert image_layout(spaces.Box(0, 255, (3, 64, 64), np.uint8)) == "channels_first"
    assert image_layout(spaces.Box(0, 255, (64, 64, 3), np.uint8)) == "channels_last"
    assert image_layout(spaces.Box(0, 1, (10, 10, 4), bool)) == "channels_last"  # MinAtar
    assert image_layout(spaces.Box(-1, 1, (4,))) is None
    assert image_layout(spaces.Box(-1, 1, (64, 64, 3))) is None  # floats at NatureCNN's size: not an image to SB3


def filled_buffer(space: Any, augment: str | None, n_steps: int = 6) -> Any:
    buffer_class = JEPADictRolloutBuffer if isinstance(space, spaces.Dict) else JEPARolloutBuffer
    buffer: Any = buffer_class(n_steps, space, spaces.Discrete(2), n_envs=2, augment=augment)
    rng = np.random.default_rng(0)
    for _ in range(n_steps):
        obs: Any = (
            {k: rng.integers(0, 256, (2, *tuple(s.shape or ()))) for k, s in space.spaces.items()}
            if isinstance(space, spaces.Dict)
            else rng.integers(0, 256, (2, *space.shape))
        )
        buffer.add(obs, np.zeros((2, 1)), np.zeros(2), np.zeros(2, dtype=bool), th.zeros(2), th.zeros(2))
    buffer.add_final_observations(obs, np.zeros(2, dtype=bool))
    buffer._prepare_successors()
    buffer._flatten_for_sampling()
    return buffer


def test_the_buffer_shifts_each_sample_image_and_its_successors():
    space = spaces.Box(0, 255, (3, 16, 16), np.uint8)
    th.manual_seed(0)
    augmented = filled_buffer(space, "shift")._get_samples(np.arange(12))
    clean = filled_buffer(space, None)._get_samples(np.arange(12))
    assert not th.equal(augmented.observations, clean.observations)
    for views, originals in (
        (augmented.observations, clean.observations),
        (augmented.next_extra_observations, clean.next_extra_observations),
    ):
        assert len(views) == len(originals) > 0
        for view, original in zip(views.numpy(), originals.numpy(), strict=True):
            assert any(np.array_equal(view, crop) for crop in candidate_crops(original, 1))
    th.testing.assert_close(augmented.next_index, clean.next_index)


def test_dict_observations_shift_the_images_only():
    space = spaces.Dict({"image": spaces.Box(0, 255, (3, 16, 16), np.uint8), "vector": spaces.Box(0, 255, (3,), np.float32)})
    th.manual_seed(0)
    augmented = filled_buffer(space, "shift")._get_samples(np.arange(12))
    clean = filled_buffer(space, None)._get_samples(np.arange(12))
    th.testing.assert_close(augmented.observations["vector"], clean.observations["vector"])
    assert not th.equal(augmented.observations["image"], clean.observations["image"])
    assert set(ObservationAugmenter(space, "shift").images) == {"image"}


@pytest.mark.parametrize("algo_cls", [A2CJEPA, PPOJEPA])
def test_training_sees_shifted_images_and_the_rollouts_clean_ones(algo_cls):
    """What evaluate_actions trains on: shifted frames (rarely one the buffer holds); without augmentation, its rows"""
    extra = dict(batch_size=32, n_epochs=1) if algo_cls is PPOJEPA else {}
    matched = {}
    for augment in (None, "shift"):
        model = algo_cls("CnnPolicy", "TwoRoomsDiscrete-v0", n_steps=32, seed=0, augment_observations=augment, **extra)
        seen: list[th.Tensor] = []
        real = model.policy.evaluate_actions
        model.policy.evaluate_actions = lambda obs, actions, real=real, seen=seen: (
            seen.append(obs.clone()) or real(obs, actions)
        )
        model.learn(32)
        stored = {frame.tobytes() for frame in np.asarray(model.rollout_buffer.observations).reshape(-1, *seen[0].shape[1:])}
        rows = th.cat(seen).cpu().numpy()
        matched[augment] = np.mean([row.tobytes() in stored for row in rows])
    assert matched[None] == 1.0 and matched["shift"] < 0.2


def test_augmentation_is_refused_without_images_and_by_name():
    with pytest.raises(ValueError, match="augment_observations='shift' shifts images, but the observation space"):
        PPOJEPA("MlpPolicy", "CartPole-v1", augment_observations="shift")
    with pytest.raises(ValueError, match=r"augment_observations must be one of \(None, 'shift'\), got 'crop'"):
        PPOJEPA("CnnPolicy", "TwoRoomsDiscrete-v0", augment_observations="crop")
