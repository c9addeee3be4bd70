"""The collapse study: ``python -m sb3_jepa.study`` (see :mod:`sb3_jepa.study.__main__`)."""
