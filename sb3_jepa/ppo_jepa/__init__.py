from sb3_jepa.ppo_jepa.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from sb3_jepa.ppo_jepa.ppo_jepa import PPOJEPA

__all__ = ["PPOJEPA", "CnnPolicy", "MlpPolicy", "MultiInputPolicy"]
