from sb3_jepa.a2c_jepa.a2c_jepa import A2CJEPA
from sb3_jepa.a2c_jepa.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

__all__ = ["A2CJEPA", "CnnPolicy", "MlpPolicy", "MultiInputPolicy"]
