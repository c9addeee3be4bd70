"""
Two Rooms from pixels (PLDM's goal-reaching testbed, Sobal et al. 2025), drawn with numpy.

A point agent moves in a square arena split by a middle wall with a door. The observation is a ``size x size`` image
with three channels (channels last, uint8): the agent as a Gaussian dot, the walls, and the goal as a Gaussian dot.
Every episode draws a start and a goal, in the same room or in opposite rooms.

Geometry at the default ``size=64`` (PLDM's): a border wall 2 px thick, a middle wall at columns 31-33 (x = 32, width
3) with a door of 10 px (rows 27-36), a dot of std 1.3 px, moves of at most 2.45 px, 200-step episodes, success when
the agent is within 4.5 px of the goal. Positions are continuous ``(x, y)`` in pixels; pixel ``(row, col)`` covers
``[col, col + 1) x [row, row + 1)``, so the agent at ``(x, y)`` stands on pixel ``(int(y), int(x))``.

Other sizes (``size >= 17``, :data:`MIN_SIZE`) scale this geometry and round it to whole pixels: the middle wall is
then 1 px thick at sizes 17-32 and 2 or 3 px from 33 to 64, the border at least 1 px. Below 17 the rounding can
leave no middle wall (at 16, columns ``[round(7.75), round(8.5)) = [8, 8)``), no door or no room, so such sizes are
refused.

Motion: a move goes in :data:`SUBSTEPS` equal parts, and only the parts' end points are checked: the move stops at
the end of the last part before the first part whose end is not free (on a wall pixel or outside the image); if the
first part's end is not free, the agent stays. So:

- a move never ends on a wall pixel;
- a move never crosses a wall: to get from one side of the middle wall to the other without a part ending on it, a
  part would have to move further along x than the wall is thick, and the constructor keeps every part (at most
  ``max_step / SUBSTEPS`` long) no longer than that. At the default ``max_step`` the wall is more than 3 parts thick
  at every allowed size: 3 px against parts of at most 0.61 px at 64, and 1 px against 0.31 px at 32, the closest.
  The agent changes rooms only through the door (every part end in the wall's columns is on the door's rows), and
  the border, with the outside of the image behind it, cannot be crossed at all;
- but a diagonal part whose two ends are on free pixels can clip the corner of a wall pixel in between. At 64 px,
  from ``(30.8, 26.6)`` the Box action ``(1, 1)`` (a move of ``(1.73, 1.73)``) ends unblocked at ``(32.53, 28.33)``
  in the door, although its first part, to ``(31.23, 27.03)``, passes over pixel ``(26, 31)`` (the middle wall's
  pixel just above the door) between ``x = 31`` and ``x = 31.2``. What a part clips is shorter than the part.

The models trained here and the published results use exactly these dynamics, so they are kept as they are.

Distractors (``distractors="predictable"`` or ``"noise"``, the issue-20 simplicity testbeds): ``n_distractors`` more
Gaussian dots, drawn in a fourth channel of their own (the agent, walls and goal channels stay exactly as without
them), which the reward and the agent's moves never depend on and which pass over the walls:

- ``predictable``: each dot bounces at a constant speed of ``max_step`` per step inside the arena's border (its
  direction drawn at reset, reflected at the border): deterministic motion, predictable from two frames;
- ``noise``: each dot takes an independent random step of up to ``max_step`` per step (uniform in the disc), kept in
  the arena by reflection: a random walk no action influences.

Reward (the RL task; the planner never sees it): the decrease of the geodesic distance to the goal (the shortest
path through the door when start and goal are in opposite rooms), in units of the largest move, plus
:data:`SUCCESS_BONUS` when the goal is reached, which ends the episode. A dense, shaped reward keeps a PPO run within
minutes on these 2-core machines; the geodesic (not the straight-line) distance makes the cross-room task learnable
without rewarding walks into the wall.
"""

from typing import Any

import numpy as np
from gymnasium import Env, spaces

#: Parts each move is split into when checking walls (at most 2.45 / 4 = 0.61 px each at 64 px: no wall can be
#: jumped, see the module docstring; only the parts' ends are checked)
SUBSTEPS = 4
#: The smallest image size: every size from 17 on has a middle wall, a door and two rooms (at 16 the middle wall
#: rounds to no column; some smaller odd sizes keep one-pixel rooms, not worth a rule of their own)
MIN_SIZE = 17
#: Reward for reaching the goal (the episode ends there)
SUCCESS_BONUS = 10.0
#: What ``reset(options={"layout": ...})`` accepts: start and goal in the same room, in opposite rooms, or either
LAYOUTS = ("same", "cross", "any")
#: How distractor dots move (see the module docstring)
DISTRACTOR_MOTIONS = ("predictable", "noise")
#: Where the agent's and the goal's positions are in ``info["state"]`` (``[x, y, goal_x, goal_y]``, then the distractor
#: dots' ``[x, y]`` when there are any): e.g. ``state[STATE_GOAL]`` is ``[goal_x, goal_y]`` with or without dots
STATE_POSITION = slice(0, 2)
STATE_GOAL = slice(2, 4)


class TwoRoomsEnv(Env):
    """
    The pixel Two Rooms task: reach the goal dot, through the door when it is in the other room.

    ``info`` has ``state`` (``[x, y, goal_x, goal_y]``, the true positions, for probes and planning evaluation, then
    ``[x, y]`` of each distractor dot when there are any, whose positions alone are also ``distractor_state``),
    ``distance`` (straight-line, px), ``is_success`` and ``cross_room``. ``goal_observation()`` is the image with the
    agent at the goal (what a goal-conditioned planner encodes as its target).

    :param size: image height and width in pixels, an int ``>= 17`` (:data:`MIN_SIZE`): the geometry scales with
        it, rounded to whole pixels, and below 17 the middle wall, the door or a room can round away (at 16 the
        middle wall has no column); PLDM's is 64
    :param discrete: ``Discrete(9)`` actions (no-op, then 8 moves of the largest length at 45 degree steps, starting
        east and turning towards +y) instead of a ``Box([-1, 1]^2)`` displacement
    :param layout: where starts and goals are drawn: one of :data:`LAYOUTS` (``any``: opposite rooms half the time)
    :param max_step: the largest move in pixels (at ``size=64``; scaled with ``size``). A Box action ``a`` moves by
        ``a * max_step / sqrt(2)``, so ``(1, 1)`` moves ``max_step`` diagonally. A move's :data:`SUBSTEPS` parts
        must be no longer than the middle wall is thick, so that no part can jump it (``max_step <= 12`` at 64 px)
    :param dot_std: the dots' standard deviation in pixels (at ``size=64``)
    :param success_distance: the goal is reached within this many pixels (at ``size=64``)
    :param door_width: the door's height in pixels (at ``size=64``); rounded to whole rows, it must leave the door
        at least one row and the middle wall at least one row above and one below it
    :param render_mode: gymnasium's render mode (``"rgb_array"`` returns the observation)
    :param distractors: None, or how distractor dots move, one of :data:`DISTRACTOR_MOTIONS`: they are drawn in a
        fourth channel (the observation then has 4 channels)
    :param n_distractors: the distractor dots (>= 1; only with ``distractors``)
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        size: int = 64,
        discrete: bool = False,
        layout: str = "any",
        max_step: float = 2.45,
        dot_std: float = 1.3,
        success_distance: float = 4.5,
        door_width: float = 10.0,
        render_mode: str | None = None,
        distractors: str | None = None,
        n_distractors: int = 2,
    ):
        if not isinstance(size, int) or size < MIN_SIZE:
            raise ValueError(
                f"size must be an int >= {MIN_SIZE} (pixels): below {MIN_SIZE} the rounded geometry can lose the middle "
                f"wall (at size=16 it has no column), the door or a room, got {size!r}"
            )
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        for name, value in dict(max_step=max_step, dot_std=dot_std, success_distance=success_distance).items():
            if not value > 0:
                raise ValueError(f"{name} must be > 0 (pixels at size 64), got {value!r}")
        if not 0 < door_width < 60:
            raise ValueError(f"door_width must be in (0, 60) (pixels at size 64), got {door_width!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if distractors not in (None, *DISTRACTOR_MOTIONS):
            raise ValueError(f"distractors must be None or one of {DISTRACTOR_MOTIONS}, got {distractors!r}")
        if isinstance(n_distractors, bool) or not isinstance(n_distractors, (int, np.integer)) or n_distractors < 1:
            raise ValueError(f"n_distractors must be an integer >= 1, got {n_distractors!r}")
        self.distractors, self.n_distractors = distractors, int(n_distractors) if distractors else 0
        self.size, self.discrete, self.layout, self.render_mode = size, discrete, layout, render_mode
        scale = size / 64
        self.max_step = max_step * scale
        self.dot_std = dot_std * scale
        self.success_distance = success_distance * scale
        # Walls: the border, and the middle wall (3 columns at 64 px) with the door centred on it
        self.border = max(1, round(2 * scale))
        self.wall_left, self.wall_right = round(31 * scale), round(34 * scale)  # columns [31, 34) at 64 px
        half_door = door_width * scale / 2
        self.door_low, self.door_high = round(size / 2 - half_door), round(size / 2 + half_door)  # rows [27, 37)
        if not self.border < self.door_low < self.door_high < size - self.border:
            raise ValueError(
                f"door_width={door_width!r} at size={size} makes the door rows [{self.door_low}, {self.door_high}): "
                f"the door needs at least one row and the middle wall a row above and below it (inside the border, "
                f"rows {self.border} to {size - self.border - 1})"
            )
        thickness = self.wall_right - self.wall_left
        if self.max_step / SUBSTEPS > thickness:
            # Only the parts' ends are checked: a part longer than the wall is thick could jump it
            raise ValueError(
                f"max_step={max_step!r} at size={size} makes a move's {SUBSTEPS} parts {self.max_step / SUBSTEPS:.3g} px "
                f"long, longer than the middle wall is thick ({thickness} px): it must be at most "
                f"{SUBSTEPS * thickness / scale:.4g} (pixels at size 64) at this size"
            )
        walls = np.zeros((size, size), dtype=bool)
        walls[: self.border], walls[-self.border :], walls[:, : self.border], walls[:, -self.border :] = (True,) * 4
        walls[:, self.wall_left : self.wall_right] = True
        walls[self.door_low : self.door_high, self.wall_left : self.wall_right] = False
        self.walls = walls
        self._walls_channel = np.where(walls, 255, 0).astype(np.uint8)
        self._grid = np.arange(size) + 0.5  # pixel centres
        self.observation_space = spaces.Box(0, 255, (size, size, 4 if distractors else 3), dtype=np.uint8)
        self.action_space: spaces.Space
        if discrete:
            self.action_space = spaces.Discrete(9)
            angles = np.arange(8) * np.pi / 4
            moves = np.stack([np.cos(angles), np.sin(angles)], axis=1) * self.max_step
            self.moves = np.concatenate([np.zeros((1, 2)), moves]).astype(np.float64)
        else:
            self.action_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self.position = np.zeros(2)
        self.goal = np.zeros(2)
        self._geodesic = 0.0
        self._goal_channel = np.zeros((size, size), dtype=np.uint8)
        # The distractor dots: positions (x, y) and, for the predictable ones, velocities, in pixels
        self.distractor_positions = np.zeros((self.n_distractors, 2))
        self.distractor_velocities = np.zeros((self.n_distractors, 2))
        self._distractor_rng = np.random.default_rng(0)

    # -- geometry ---------------------------------------------------------------------------------------------------

    def is_free(self, position: np.ndarray) -> bool:
        """:return: whether ``(x, y)`` lies inside the arena on a pixel that is not a wall"""
        x, y = position
        if not (0 <= x < self.size and 0 <= y < self.size):
            return False
        return not self.walls[int(y), int(x)]

    def room(self, position: np.ndarray) -> int:
        """:return: 0 for the left room, 1 for the right one (the door's columns count as the left room)"""
        return int(position[0] >= self.wall_right)

    def room_bounds(self, room: int, margin: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
        """
        :param room: 0 (left) or 1 (right)
        :param margin: distance to keep from the walls, in pixels (at size 64)
        :return: the lowest and highest ``(x, y)`` of the positions drawn in that room
        """
        margin = margin * self.size / 64
        low_x, high_x = (self.border, self.wall_left) if room == 0 else (self.wall_right, self.size - self.border)
        low = np.array([low_x + margin, self.border + margin])
        high = np.array([high_x - margin, self.size - self.border - margin])
        return low, high

    def geodesic_distance(self, position: np.ndarray, goal: np.ndarray) -> float:
        """
        The length of the shortest path from ``position`` to ``goal``: straight when both are in the same room,
        otherwise through the door, whose opening is treated as a segment on the wall's centre line (the wall's
        3 px are ignored). Through a segment, the shortest path crosses it where the straight line does, clipped
        to the segment (the sum of two distances is convex along it).

        Example (64 px): from (16, 10) to (48, 10), the straight line crosses the wall's centre x = 32.5 at y = 10,
        outside the door (rows 27-36): clipped to y = 27.5, the path is sqrt(16.5^2 + 17.5^2) + sqrt(15.5^2 + 17.5^2)
        = 47.4 px, not 32.
        """
        if self.room(position) == self.room(goal):
            return float(np.linalg.norm(goal - position))
        door_x = (self.wall_left + self.wall_right) / 2
        dx_total = goal[0] - position[0]
        t = (door_x - position[0]) / dx_total
        cross_y = position[1] + t * (goal[1] - position[1])
        door = np.array([door_x, np.clip(cross_y, self.door_low + 0.5, self.door_high - 0.5)])
        return float(np.linalg.norm(door - position) + np.linalg.norm(goal - door))

    def displacement(self, action: Any) -> np.ndarray:
        """:return: the move an action asks for, in pixels (before walls)"""
        if self.discrete:
            return self.moves[int(action)]
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        return action * self.max_step / np.sqrt(2)

    def move(self, position: np.ndarray, displacement: np.ndarray) -> np.ndarray:
        """
        Move in :data:`SUBSTEPS` equal parts, checking only each part's end point: the move stops at the end of the
        last part before the first whose end is not free (:meth:`is_free`; the agent stays if that is the first).
        So a move never ends on a wall pixel and never crosses a wall (a part is no longer than the middle wall is
        thick), but a diagonal part whose ends are both free can clip the corner of a wall pixel between them: the
        module docstring has an example.

        :param position: the ``(x, y)`` start, a free position
        :param displacement: the move asked for, in pixels (:meth:`displacement`)
        :return: where the move ends
        """
        for part in range(1, SUBSTEPS + 1):
            candidate = position + displacement * part / SUBSTEPS
            if not self.is_free(candidate):
                return position + displacement * (part - 1) / SUBSTEPS
        return position + displacement

    # -- pictures ---------------------------------------------------------------------------------------------------

    def _dot(self, position: np.ndarray) -> np.ndarray:
        column = np.exp(-((self._grid - position[0]) ** 2) / (2 * self.dot_std**2))
        row = np.exp(-((self._grid - position[1]) ** 2) / (2 * self.dot_std**2))
        return np.round(255 * np.outer(row, column)).astype(np.uint8)

    def _image(self, agent: np.ndarray) -> np.ndarray:
        channels = [self._dot(agent), self._walls_channel, self._goal_channel]
        if self.distractors:
            # Overlapping dots: the brighter one shows (as one dot over another would)
            channels.append(np.max([self._dot(position) for position in self.distractor_positions], axis=0))
        return np.stack(channels, axis=2)

    def goal_observation(self) -> np.ndarray:
        """
        :return: the observation the agent would see standing on the goal (the planner's target), the distractors
            where they are now
        """
        return self._image(self.goal)

    def observation_at(self, position: np.ndarray) -> np.ndarray:
        """:return: the observation with the agent at ``position`` and this episode's goal"""
        return self._image(np.asarray(position, dtype=np.float64))

    # -- the gymnasium API ------------------------------------------------------------------------------------------

    def _info(self) -> dict[str, Any]:
        distance = float(np.linalg.norm(self.goal - self.position))
        info = dict(
            state=np.concatenate([self.position, self.goal, self.distractor_positions.ravel()]).astype(np.float32),
            distance=distance,
            is_success=distance < self.success_distance,
            cross_room=self.room(self.position) != self.room(self.goal),
        )
        if self.distractors:
            info["distractor_state"] = self.distractor_positions.ravel().astype(np.float32)
            # The dots share one channel and look alike: the image shows where they are, not which is which, so a
            # probe can read functions of the set (their centroid), not dot 1's x (see distractor_probes)
            info["distractor_objects"] = self.n_distractors
        return info

    # -- distractors ------------------------------------------------------------------------------------------------

    def _arena(self) -> tuple[float, float]:
        """:return: the lowest and highest coordinate a distractor dot's centre takes (inside the border)"""
        return float(self.border), float(self.size - self.border)

    def _reflect(self, positions: np.ndarray, velocities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """
        Fold positions back into the arena, mirrored at its edges, and flip the velocity of each axis folded.

        Example (64 px, arena [2, 62]): x = 63.5 with velocity +2 becomes x = 60.5 with velocity -2; x = 1 becomes 3.
        """
        low, high = self._arena()
        below, above = positions < low, positions > high
        positions = np.where(below, 2 * low - positions, np.where(above, 2 * high - positions, positions))
        return positions, np.where(below | above, -velocities, velocities)

    def _start_distractors(self) -> None:
        # Their own generator, drawn from the episode's: the same seed gives the same distractors, and their motion
        # draws nothing from the generator of starts and goals
        self._distractor_rng = np.random.default_rng(int(self.np_random.integers(2**63)))
        low, high = self._arena()
        self.distractor_positions = self._distractor_rng.uniform(low, high, size=(self.n_distractors, 2))
        angles = self._distractor_rng.uniform(0, 2 * np.pi, size=self.n_distractors)
        self.distractor_velocities = self.max_step * np.stack([np.cos(angles), np.sin(angles)], axis=1)

    def _move_distractors(self) -> None:
        if self.distractors == "predictable":
            moves = self.distractor_velocities
        else:  # noise: uniform in the disc of radius max_step
            angles = self._distractor_rng.uniform(0, 2 * np.pi, size=self.n_distractors)
            radii = self.max_step * np.sqrt(self._distractor_rng.uniform(0, 1, size=self.n_distractors))
            moves = radii[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        self.distractor_positions, velocities = self._reflect(self.distractor_positions + moves, moves)
        if self.distractors == "predictable":
            self.distractor_velocities = velocities

    def _draw(self, room: int) -> np.ndarray:
        low, high = self.room_bounds(room)
        return self.np_random.uniform(low, high)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """
        :param seed: the episode generator's seed
        :param options: ``layout`` (one of :data:`LAYOUTS`, this episode only), or ``start`` and ``goal`` as
            ``(x, y)`` pixel positions on free pixels (fixed evaluation pairs)
        """
        super().reset(seed=seed)
        options = dict(options or {})
        if "start" in options or "goal" in options:
            if "start" not in options or "goal" not in options:
                raise ValueError("reset options 'start' and 'goal' go together")
            start, goal = (np.asarray(options[key], dtype=np.float64).reshape(2) for key in ("start", "goal"))
            for name, point in (("start", start), ("goal", goal)):
                if not self.is_free(point):
                    raise ValueError(f"reset option {name}={point.tolist()} is not a free position of the arena")
        else:
            layout = options.get("layout", self.layout)
            if layout not in LAYOUTS:
                raise ValueError(f"reset option layout must be one of {LAYOUTS}, got {layout!r}")
            if layout == "any":
                layout = "cross" if self.np_random.random() < 0.5 else "same"
            while True:
                start_room = int(self.np_random.integers(2))
                start = self._draw(start_room)
                goal = self._draw(start_room if layout == "same" else 1 - start_room)
                # Never start on the goal: at least twice the success distance apart
                if np.linalg.norm(goal - start) >= 2 * self.success_distance:
                    break
        self.position, self.goal = start, goal
        if self.distractors:
            self._start_distractors()
        self._geodesic = self.geodesic_distance(start, goal)  # the next step's "before"
        self._goal_channel = self._dot(goal)
        return self._image(self.position), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """
        :param action: a displacement in ``[-1, 1]^2`` (Box) or a move index (Discrete)
        :return: gymnasium's ``(obs, reward, terminated, truncated, info)``; terminated when the goal is reached
        """
        before = self._geodesic
        self.position = self.move(self.position, self.displacement(action))
        if self.distractors:
            self._move_distractors()
        after = self._geodesic = self.geodesic_distance(self.position, self.goal)
        info = self._info()
        reward = (before - after) / self.max_step + (SUCCESS_BONUS if info["is_success"] else 0.0)
        return self._image(self.position), float(reward), bool(info["is_success"]), False, info

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        """:return: the observation (``render_mode="rgb_array"``), else None"""
        if self.render_mode != "rgb_array":
            return None
        return self._image(self.position)
