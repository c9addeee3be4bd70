"""A user's own ActorCriticPolicy subclass and features extractor keep working: the JEPA parts attach to them."""

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_jepa import A2CJEPA, PPOJEPA
from sb3_jepa.common.policies import JEPAPolicyMixin, as_jepa_policy
from tests.conftest import ALGOS, SMALL
from tests.helpers import ConstantValuePolicy, CountingEnv, SmallMlpExtractor

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("algo_cls", ALGOS)
def test_custom_policy_class_gets_jepa_parts(algo_cls):
    with pytest.warns(UserWarning, match="no trainable parameters"):
        model = algo_cls(ConstantValuePolicy, DummyVecEnv([CountingEnv]), seed=0, **SMALL[algo_cls])
    assert isinstance(model.policy, ConstantValuePolicy) and isinstance(model.policy, JEPAPolicyMixin)
    assert model.policy.jepa_encoder is model.policy.features_extractor
    predictor_before = [p.clone() for p in model.policy.jepa_predictor.parameters()]
    model.learn(2 * SMALL[algo_cls]["n_steps"])
    # The user's override is still in charge of the values it reports
    assert th.all(model.policy(th.zeros(1, 3))[1] == 0.0)
    assert any(not th.equal(p, q) for p, q in zip(model.policy.jepa_predictor.parameters(), predictor_before, strict=True))


@pytest.mark.parametrize("algo_cls", ALGOS)
def test_custom_features_extractor_is_the_encoder(algo_cls):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a learned extractor: no warning
        model = algo_cls(
            "MlpPolicy",
            DummyVecEnv([CountingEnv]),
            seed=0,
            policy_kwargs=dict(features_extractor_class=SmallMlpExtractor, features_extractor_kwargs=dict(features_dim=8)),
            **SMALL[algo_cls],
        )
    assert isinstance(model.policy.jepa_encoder, SmallMlpExtractor)
    assert model.policy.jepa_predictor.net[-1].out_features == 8
    before = [p.clone() for p in model.policy.jepa_encoder.parameters()]
    model.learn(SMALL[algo_cls]["n_steps"])
    assert any(not th.equal(p, q) for p, q in zip(model.policy.jepa_encoder.parameters(), before, strict=True))


def test_separate_actor_and_critic_extractors():
    model = PPOJEPA("MlpPolicy", "CartPole-v1", seed=0, policy_kwargs=dict(share_features_extractor=False), **SMALL[PPOJEPA])
    assert model.policy.jepa_encoder is model.policy.pi_features_extractor
    assert model.policy.vf_features_extractor is not model.policy.pi_features_extractor
    model.learn(SMALL[PPOJEPA]["n_steps"])
    assert model.logger.name_to_value["jepa/loss"] > 0


def test_as_jepa_policy():
    assert as_jepa_policy(ConstantValuePolicy) is as_jepa_policy(ConstantValuePolicy)
    jepa_class = as_jepa_policy(ConstantValuePolicy)
    assert as_jepa_policy(jepa_class) is jepa_class
    assert jepa_class.__name__ == "JEPAConstantValuePolicy"
    with pytest.raises(ValueError, match="ActorCriticPolicy subclass"):
        as_jepa_policy(dict)  # type: ignore[arg-type]


class EncoderFreePolicy(ActorCriticPolicy):
    """evaluate_actions that never runs the features extractor"""

    def evaluate_actions(self, obs, actions):
        values, log_prob, entropy = super().evaluate_actions(obs, actions)
        return values, log_prob, entropy

    def extract_features(self, obs, features_extractor=None):
        return obs.float()


def test_policy_that_bypasses_the_encoder_is_reported():
    with pytest.warns(UserWarning):
        model = A2CJEPA(EncoderFreePolicy, DummyVecEnv([CountingEnv]), seed=0, **SMALL[A2CJEPA])
    with pytest.raises(RuntimeError, match="did not run the encoder"):
        model.learn(SMALL[A2CJEPA]["n_steps"])


@pytest.mark.slow
def test_custom_policy_model_loads_in_a_fresh_process(tmp_path):
    with pytest.warns(UserWarning):
        model = A2CJEPA(ConstantValuePolicy, DummyVecEnv([CountingEnv]), seed=0, **SMALL[A2CJEPA])
    model.learn(SMALL[A2CJEPA]["n_steps"])
    model.save(tmp_path / "model.zip")
    obs = np.array([[0.0, 0.0, 1.0]], dtype=np.float32)
    expected = model.predict(obs, deterministic=True)[0].tolist()
    script = (
        "import numpy as np; from sb3_jepa import A2CJEPA\n"
        f"m = A2CJEPA.load({str(tmp_path / 'model.zip')!r})\n"
        "obs = np.array([[0.0, 0.0, 1.0]], dtype=np.float32)\n"
        "print(type(m.policy).__name__, m.predict(obs, deterministic=True)[0].tolist())"
    )
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.split(maxsplit=1) == ["JEPAConstantValuePolicy", f"{expected}\n"]


class CheckGAECallback(BaseCallback):
    """SB3's test_gae check: with a constant value of 0 and one reward at the end of each episode"""

    def _on_rollout_end(self) -> None:
        model = self.model
        assert isinstance(model, (A2CJEPA, PPOJEPA))
        buffer = model.rollout_buffer
        gamma, gae_lambda = model.gamma, model.gae_lambda
        rewards = buffer.rewards.flatten()
        starts = buffer.episode_starts.flatten()
        advantages = np.zeros_like(rewards)
        advantages[-1] = rewards[-1]
        for n in reversed(range(len(rewards) - 1)):
            mask = 1.0 - starts[n + 1]
            advantages[n] = rewards[n] + gamma * gae_lambda * advantages[n + 1] * mask
        np.testing.assert_allclose(buffer.advantages.flatten(), advantages, rtol=1e-5)
        self.checked = True

    def _on_step(self) -> bool:
        return True


class EpisodeEndsEnv(CountingEnv):
    """Terminates every 4 steps with a reward of 1, as in SB3's GAE test (no truncation)"""

    def step(self, action):
        self.step_count += 1
        done = self.step_count % 4 == 0
        return self._obs(), float(done), done, False, {}


@pytest.mark.parametrize("algo_cls", ALGOS)
@pytest.mark.parametrize("gae_lambda", [1.0, 0.9])
def test_gae_with_custom_policy(algo_cls, gae_lambda):
    with pytest.warns(UserWarning):
        model = algo_cls(
            ConstantValuePolicy,
            EpisodeEndsEnv(),
            seed=1,
            gamma=0.99,
            gae_lambda=gae_lambda,
            n_steps=16,
            **({"n_epochs": 1, "batch_size": 16} if algo_cls is PPOJEPA else {}),
        )
    callback = CheckGAECallback()
    callback.checked = False
    model.learn(16, callback=callback)
    assert callback.checked
