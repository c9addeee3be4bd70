import os

from sb3_jepa.a2c_jepa import A2CJEPA
from sb3_jepa.common.buffers import JEPADictRolloutBuffer, JEPARolloutBuffer
from sb3_jepa.common.callbacks import CollapseMetricsCallback
from sb3_jepa.common.jepa import JEPAFeaturesExtractor, JEPAPredictor
from sb3_jepa.common.torch_layers import SmallImageCNN
from sb3_jepa.envs import register_envs
from sb3_jepa.ppo_jepa import PPOJEPA

register_envs()

# Read version from file
version_file = os.path.join(os.path.dirname(__file__), "version.txt")
with open(version_file) as file_handler:
    __version__ = file_handler.read().strip()

__all__ = [
    "A2CJEPA",
    "PPOJEPA",
    "CollapseMetricsCallback",
    "JEPADictRolloutBuffer",
    "JEPAFeaturesExtractor",
    "JEPAPredictor",
    "JEPARolloutBuffer",
    "SmallImageCNN",
    "__version__",
]
