# This file is here just to define MlpPolicy/CnnPolicy/MultiInputPolicy, as in SB3 and sb3-contrib
from sb3_jepa.common.policies import JEPAActorCriticCnnPolicy, JEPAActorCriticPolicy, JEPAMultiInputActorCriticPolicy

MlpPolicy = JEPAActorCriticPolicy
CnnPolicy = JEPAActorCriticCnnPolicy
MultiInputPolicy = JEPAMultiInputActorCriticPolicy
