"""Sphinx configuration of the sb3-jepa documentation (``make docs`` builds it with warnings as errors)."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

with open(os.path.join("..", "sb3_jepa", "version.txt")) as file:
    release = version = file.read().strip()

project = "sb3-jepa"
author = "sb3-jepa developers"
copyright = "2026, sb3-jepa developers"  # noqa: A001 (Sphinx's name)

extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# Only our own members: SB3's inherited docstrings are SB3's documentation
autodoc_default_options = {"members": True, "inherited-members": False, "show-inheritance": True}
nitpicky = False
exclude_patterns = ["_build", "results"]
html_theme = "sphinx_rtd_theme"
html_title = f"sb3-jepa {release}"
