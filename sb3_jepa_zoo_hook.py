"""
Registers sb3-jepa's algorithms with rl-zoo3 at the moment rl-zoo3 loads, so that
``python -m rl_zoo3.train --algo ppo_jepa`` works right after ``pip install sb3-jepa``, without a flag or wrapper.

rl-zoo3 has no plugin mechanism: its algorithms are a dict (``rl_zoo3.utils.ALGOS``) read when its CLI builds its
parser. This stdlib-only module is run at interpreter start by ``sb3_jepa_zoo.pth`` (or, from Python 3.15, the
PEP 829 ``sb3_jepa_zoo.start`` file). It imports nothing else and only puts an import hook in ``sys.meta_path``;
when ``rl_zoo3.utils``, ``rl_zoo3.hyperparams_opt`` or ``rl_zoo3.exp_manager`` finishes loading, the matching
function of :mod:`sb3_jepa.zoo` adds to it (never replacing an existing key). Any error becomes one warning.

Set ``SB3_JEPA_NO_ZOO_HOOK=1`` to turn it off; ``sb3_jepa.zoo.register()`` does the same registration explicitly.
"""

from __future__ import annotations

import os
import sys

# Nothing more is imported at interpreter start: not even typing (about as costly as this whole module)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any

OPT_OUT_VARIABLE = "SB3_JEPA_NO_ZOO_HOOK"

#: rl-zoo3 module -> function of ``sb3_jepa.zoo`` that registers into it once it has loaded
WATCHED = {
    "rl_zoo3.utils": "register_algorithms",
    "rl_zoo3.hyperparams_opt": "register_samplers",
    "rl_zoo3.exp_manager": "register_config_files",
}


def _register(function_name: str, module: ModuleType) -> None:
    try:
        import sb3_jepa.zoo

        getattr(sb3_jepa.zoo, function_name)(module)
    except Exception as error:  # an unrelated import must never break because of us
        import warnings

        warnings.warn(
            f"sb3-jepa could not register with rl-zoo3 ({type(error).__name__}: {error}). "
            f"Call sb3_jepa.zoo.register() instead, or set {OPT_OUT_VARIABLE}=1 to skip this hook.",
            RuntimeWarning,
            stacklevel=2,
        )


class _RegisteringLoader:
    """The real loader of a watched module, followed by the registration; everything else is delegated to it."""

    def __init__(self, loader: Any, function_name: str):
        self._loader = loader
        self._function_name = function_name

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _register(self._function_name, module)

    def __getattr__(self, name: str) -> Any:
        if name == "_loader":  # not set yet (copy, pickle): do not recurse
            raise AttributeError(name)
        return getattr(self._loader, name)


class ZooImportHook:
    """A ``sys.meta_path`` finder that only answers for the watched rl-zoo3 modules."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        function_name = WATCHED.get(fullname)
        if function_name is None:
            return None
        for finder in sys.meta_path:
            if isinstance(finder, ZooImportHook) or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _RegisteringLoader(spec.loader, function_name)  # type: ignore[assignment]
        return spec


def install() -> None:
    """Put the hook in ``sys.meta_path`` (once), unless ``SB3_JEPA_NO_ZOO_HOOK`` is set to a true value."""
    if os.environ.get(OPT_OUT_VARIABLE, "").strip().lower() not in ("", "0", "false", "no"):
        return
    if any(isinstance(finder, ZooImportHook) for finder in sys.meta_path):
        return
    sys.meta_path.insert(0, ZooImportHook())
