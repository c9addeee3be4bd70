"""
Planning toward a goal with the learned world model: :class:`LatentPlanner` (``cem``, ``mppi``, ``grad``,
``exhaustive``) and the planning evaluation (``python -m sb3_jepa.planning``).
"""

from sb3_jepa.planning.planner import COSTS, METHOD_DEFAULTS, METHODS, VALUE_ESTIMATES, LatentPlanner

__all__ = ["COSTS", "METHODS", "METHOD_DEFAULTS", "VALUE_ESTIMATES", "LatentPlanner"]
