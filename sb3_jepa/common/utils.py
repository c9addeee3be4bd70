"""
Helpers shared by the JEPA modules: argument validators (each error names the argument and what is allowed) and
the observation-tree helpers (an observation batch is a tensor, or a dict of tensors for ``Dict`` spaces).
"""

import inspect
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from torch import nn

# -- argument validators ------------------------------------------------------------------------------------


def check_positive_int(name: str, value: Any) -> int:
    """
    :param name: the argument's name, for the error message
    :param value: the number to check
    :return: ``value`` as an int, if it is an int >= 1 (``bool`` is refused: ``True`` is no count)
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def check_optional_positive_int(name: str, value: Any) -> int | None:
    """
    :param name: the argument's name, for the error message
    :param value: None or the number to check
    :return: ``value``, if it is None or an int >= 1
    """
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
        raise ValueError(f"{name} must be None or a positive int, got {value!r}")
    return None if value is None else int(value)


def check_bool(name: str, value: Any) -> bool:
    """
    :param name: the argument's name, for the error message
    :param value: the flag to check
    :return: ``value`` as a bool, if it is a bool (numpy's included; not 0, 1 or a string)
    """
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> Any:
    """
    :param name: the argument's name, for the error message
    :param value: the value to check
    :param choices: the allowed values
    :return: ``value``, if it is one of ``choices``
    """
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_finite_nonnegative(name: str, value: float) -> float:
    """
    :param name: the argument's name, for the error message
    :param value: the number to check
    :return: ``value`` as a float, if it is finite and >= 0
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return number


def check_net_arch(name: str, net_arch: Any) -> list[int]:
    """
    :param name: the argument's name, for the error message
    :param net_arch: a sequence of layer widths
    :return: the widths as a list of positive ints
    """
    if isinstance(net_arch, (str, bytes)) or not hasattr(net_arch, "__iter__"):
        raise ValueError(f"{name} must be a list of positive ints (hidden layer widths), got {net_arch!r}")
    widths = list(net_arch)
    if not all(isinstance(w, (int, np.integer)) and not isinstance(w, bool) and w > 0 for w in widths):
        raise ValueError(f"{name} must be a list of positive ints (hidden layer widths), got {net_arch!r}")
    return [int(w) for w in widths]


# -- observation trees --------------------------------------------------------------------------------------


def num_rows(observations: th.Tensor | dict[str, th.Tensor]) -> int:
    """:return: the batch size of a tensor or of a dict of tensors (``Dict`` observations)"""
    if isinstance(observations, dict):
        return next(iter(observations.values())).shape[0]
    return observations.shape[0]


def concat_observations(first: Any, second: Any) -> Any:
    """:return: the rows of ``first`` then those of ``second`` (tensors, or dicts of tensors for ``Dict`` observations)"""
    if isinstance(first, dict):
        return {key: th.cat([first[key], second[key]]) for key in first}
    return th.cat([first, second])


def observations_equal(first: Any, second: Any) -> bool:
    """:return: whether two observation batches (tensors, or dicts of tensors) hold the same values"""
    if isinstance(first, dict) or isinstance(second, dict):
        return (
            isinstance(first, dict)
            and isinstance(second, dict)
            and first.keys() == second.keys()
            and all(observations_equal(first[key], second[key]) for key in first)
        )
    return first.shape == second.shape and first.dtype == second.dtype and th.equal(first, second)


def first_rows(observations: Any, n: int) -> Any:
    """:return: the first ``n`` rows of ``observations`` (a tensor, or a dict of tensors for ``Dict`` observations)"""
    if isinstance(observations, dict):
        return {key: obs[:n] for key, obs in observations.items()}
    return observations[:n]


# -- modules and classes ------------------------------------------------------------------------------------


def has_parameters(module: nn.Module) -> bool:
    """:return: whether ``module`` has any trainable parameter"""
    return any(p.requires_grad for p in module.parameters())


def accepted_keywords(cls: type) -> set[str] | None:
    """
    :param cls: a class
    :return: the keyword arguments its ``__init__`` accepts besides ``self`` and the observation space, or None
        if it takes ``**kwargs`` (then any keyword may be right)
    """
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]  # type: ignore[misc]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    named = [p for p in parameters if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    # The first one is the observation space, which the policy passes positionally
    return {p.name for p in named[1:]}


def write_atomically(path: Path, write: Callable[[Any], object], binary: bool = False) -> None:
    """
    Write a file through ``<name>.partial`` and a rename, so that a crash or a full disk mid-write leaves the
    previous file (or none), never half of one (the study's and the planning evaluation's files mark work as done).

    :param path: the file
    :param write: called with the open file
    :param binary: open it in binary mode (else text, with ``newline=""`` as the csv module wants)
    """
    partial = path.with_name(path.name + ".partial")
    try:
        with open(partial, "wb") if binary else open(partial, "w", newline="") as file:
            write(file)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
