"""
Everything is declared in setup.cfg; this file only adds the build step that puts the rl-zoo3 registration hook's
startup files (startup/sb3_jepa_zoo.pth and its PEP 829 twin sb3_jepa_zoo.start) at the root of site-packages,
for regular and editable installs alike.
"""

import os

from setuptools import Command, setup
from setuptools.command.build import build

STARTUP_FILES = ("startup/sb3_jepa_zoo.pth", "startup/sb3_jepa_zoo.start")


class build_startup_files(Command):
    """Copy the startup files to the root of what gets installed into site-packages."""

    description = "install sb3-jepa's rl-zoo3 registration hook (.pth and .start files)"
    user_options: list = []
    # setuptools sets this for editable installs (PEP 660), whose wheel holds no build_lib
    editable_mode = False

    def initialize_options(self) -> None:
        # None, not "": set_undefined_options only fills options that are still None (with "" the files landed in
        # the current directory and the wheel shipped without them)
        self.build_lib: str | None = None

    def finalize_options(self) -> None:
        self.set_undefined_options("build_py", ("build_lib", "build_lib"))

    def _target(self) -> str:
        if self.editable_mode:
            # setuptools' editable wheel installs the content of install_lib (its unpacked wheel) as is
            return self.get_finalized_command("install").install_lib
        assert self.build_lib is not None, "finalize_options sets build_lib"
        return self.build_lib

    def run(self) -> None:
        target = self._target()
        for path in STARTUP_FILES:
            self.copy_file(path, os.path.join(target, os.path.basename(path)))

    def get_outputs(self) -> list[str]:
        return [os.path.join(self._target(), os.path.basename(path)) for path in STARTUP_FILES]

    def get_source_files(self) -> list[str]:
        return list(STARTUP_FILES)


build.sub_commands.append(("build_startup_files", None))
setup(cmdclass={"build_startup_files": build_startup_files})
