"""
Pixel testbeds, registered as gymnasium ids when ``sb3_jepa`` is imported:

- ``PixelCartPole-v1``: CartPole-v1 from 84x84 grayscale frames (``gym.make("PixelCartPole-v1", rgb=True)`` for
  RGB, ``size=`` for another resolution). Stack frames with ``VecFrameStack``.
- ``TwoRooms-v0`` and ``TwoRoomsDiscrete-v0``: PLDM's goal-reaching task from 64x64 pixels (agent, walls and goal
  channels), with 2-D displacement or 9 discrete actions, 200-step episodes (see :mod:`sb3_jepa.envs.two_rooms`).
- ``TwoRoomsDiscreteDistractorsPredictable-v0`` and ``TwoRoomsDiscreteDistractorsNoise-v0``: TwoRoomsDiscrete-v0
  with 2 distractor dots in a fourth channel, bouncing at constant speed or random-walking (see
  :mod:`sb3_jepa.envs.two_rooms`).
- ``CartPoleDistractorsPredictable-v1`` and ``CartPoleDistractorsNoise-v1``: CartPole-v1 with 8 appended dimensions
  the reward never depends on, moving as a fixed linear system or drawn as i.i.d. noise (``n_distractors=`` for
  another count; see :mod:`sb3_jepa.envs.distractors`), and ``CartPoleDistractorsNone-v1``, the reference without
  them: CartPole-v1 itself, reporting its state in ``info["state"]`` for the probes.
- ``MinAtar/<Game>-v1``: the MinAtar games, when the optional ``minatar`` package is installed (its ids are
  registered here if MinAtar has not done it).
"""

import gymnasium as gym

from sb3_jepa.envs.distractors import DistractorCartPoleEnv
from sb3_jepa.envs.pixel_cartpole import PixelCartPoleEnv
from sb3_jepa.envs.two_rooms import TwoRoomsEnv

PIXEL_CARTPOLE_ID = "PixelCartPole-v1"
TWO_ROOMS_ID = "TwoRooms-v0"
TWO_ROOMS_DISCRETE_ID = "TwoRoomsDiscrete-v0"
#: PLDM's episode length
TWO_ROOMS_STEPS = 200
#: The distractor testbeds: id -> kind
DISTRACTOR_CARTPOLE_IDS = {"CartPoleDistractorsPredictable-v1": "predictable", "CartPoleDistractorsNoise-v1": "noise"}
#: Their reference: the same env without distractors (CartPole-v1 that reports its state)
DISTRACTOR_FREE_CARTPOLE_ID = "CartPoleDistractorsNone-v1"
DISTRACTOR_TWO_ROOMS_IDS = {
    "TwoRoomsDiscreteDistractorsPredictable-v0": "predictable",
    "TwoRoomsDiscreteDistractorsNoise-v0": "noise",
}


#: Every testbed: (id, entry point, episode limit, reward threshold, keyword arguments)
_TESTBEDS: tuple[tuple[str, str, int, float | None, dict], ...] = (
    (PIXEL_CARTPOLE_ID, "sb3_jepa.envs.pixel_cartpole:PixelCartPoleEnv", 500, 475.0, {}),
    (TWO_ROOMS_ID, "sb3_jepa.envs.two_rooms:TwoRoomsEnv", TWO_ROOMS_STEPS, None, {}),
    (TWO_ROOMS_DISCRETE_ID, "sb3_jepa.envs.two_rooms:TwoRoomsEnv", TWO_ROOMS_STEPS, None, dict(discrete=True)),
    *(
        (env_id, "sb3_jepa.envs.distractors:DistractorCartPoleEnv", 500, 475.0, dict(kind=kind))
        for env_id, kind in DISTRACTOR_CARTPOLE_IDS.items()
    ),
    (
        DISTRACTOR_FREE_CARTPOLE_ID,
        "sb3_jepa.envs.distractors:DistractorCartPoleEnv",
        500,
        475.0,
        dict(kind=None, n_distractors=0),
    ),
    *(
        (env_id, "sb3_jepa.envs.two_rooms:TwoRoomsEnv", TWO_ROOMS_STEPS, None, dict(discrete=True, distractors=kind))
        for env_id, kind in DISTRACTOR_TWO_ROOMS_IDS.items()
    ),
)


def register_envs() -> None:
    """Register the testbeds with gymnasium (idempotent)."""
    for env_id, entry_point, max_episode_steps, reward_threshold, kwargs in _TESTBEDS:
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point=entry_point,
                max_episode_steps=max_episode_steps,
                reward_threshold=reward_threshold,
                kwargs=kwargs,
            )
    if not any(env_id.startswith("MinAtar/") for env_id in gym.registry):
        try:
            import minatar.gym
        except ImportError:
            return
        minatar.gym.register_envs()


__all__ = [
    "DISTRACTOR_CARTPOLE_IDS",
    "DISTRACTOR_FREE_CARTPOLE_ID",
    "DISTRACTOR_TWO_ROOMS_IDS",
    "PIXEL_CARTPOLE_ID",
    "TWO_ROOMS_DISCRETE_ID",
    "TWO_ROOMS_ID",
    "TWO_ROOMS_STEPS",
    "DistractorCartPoleEnv",
    "PixelCartPoleEnv",
    "TwoRoomsEnv",
    "register_envs",
]
