from sb3_jepa.ppo_jepa.ppo_jepa import PPOJEPA
from sb3_jepa.ppo_jepa.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

__all__ = ["PPOJEPA", "CnnPolicy", "MlpPolicy", "MultiInputPolicy"]
