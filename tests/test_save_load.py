"""Everything JEPA adds (predictor, EMA target, settings) round-trips through SB3's persistence paths."""

import copy

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_jepa import PPOJEPA
from tests.conftest import ALGOS, SMALL
from tests.helpers import CountingEnv, SeededImageEnv

CUDA = [pytest.param("cuda", marks=pytest.mark.skipif(not th.cuda.is_available(), reason="no CUDA device"))]


def make_env(seed: int = 0) -> DummyVecEnv:
    env = DummyVecEnv([lambda: CountingEnv(0), lambda: CountingEnv(1)])
    env.seed(seed)
    return env


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert th.equal(a[key].cpu(), b[key].cpu()), key


@pytest.mark.parametrize("algo_cls", ALGOS)
@pytest.mark.parametrize("device", ["cpu", *CUDA])
def test_save_load_model(tmp_path, algo_cls, device):
    model = algo_cls(
        "MlpPolicy",
        make_env(),
        seed=0,
        device=device,
        jepa_coef=0.5,
        jepa_target="ema",
        jepa_tau=0.2,
        predictor_net_arch=[32, 32],
        predictor_residual=True,
        encoder_rl_grad=False,
        **SMALL[algo_cls],
    ).learn(2 * SMALL[algo_cls]["n_steps"])
    obs = np.stack([CountingEnv(0).reset()[0], CountingEnv(1).reset()[0]])
    actions, _ = model.predict(obs, deterministic=True)
    params = copy.deepcopy(model.get_parameters())
    assert any(key.startswith("jepa_predictor.") for key in params["policy"])
    assert any(key.startswith("jepa_target_encoder.") for key in params["policy"])
    model.save(tmp_path / "model.zip")

    loaded = algo_cls.load(tmp_path / "model.zip", env=make_env(), device=device)
    assert (loaded.jepa_coef, loaded.jepa_target, loaded.jepa_tau, loaded.encoder_rl_grad) == (0.5, "ema", 0.2, False)
    assert loaded.predictor_net_arch == [32, 32]
    assert loaded.predictor_residual and loaded.policy.jepa_predictor.residual
    assert loaded.policy.jepa_target_encoder is not None
    assert_same_state(params["policy"], loaded.get_parameters()["policy"])
    optimizer_state = loaded.get_parameters()["policy.optimizer"]["state"]
    assert optimizer_state.keys() == params["policy.optimizer"]["state"].keys()
    for key, state in params["policy.optimizer"]["state"].items():
        assert_same_state(state, optimizer_state[key])
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], actions)
    loaded.learn(SMALL[algo_cls]["n_steps"])
    assert loaded.policy.jepa_predictor.net[0].weight.device.type == th.device(device).type


@pytest.mark.parametrize("algo_cls", ALGOS)
def test_set_parameters_exact_match(algo_cls):
    model = algo_cls("MlpPolicy", make_env(), seed=0, jepa_target="ema", **SMALL[algo_cls])
    params = copy.deepcopy(model.get_parameters())
    model.learn(SMALL[algo_cls]["n_steps"])
    model.set_parameters(params, exact_match=True)
    assert_same_state(model.policy.state_dict(), params["policy"])
    missing_predictor = {"policy": {k: v for k, v in params["policy"].items() if not k.startswith("jepa_predictor")}}
    missing_predictor["policy.optimizer"] = params["policy.optimizer"]
    with pytest.raises(RuntimeError, match="jepa_predictor"):
        model.set_parameters(missing_predictor, exact_match=True)


@pytest.mark.parametrize("policy", ["MlpPolicy", "CnnPolicy"])
@pytest.mark.parametrize("target", ["online", "ema"])
def test_policy_save_load(tmp_path, policy, target):
    env = make_env() if policy == "MlpPolicy" else DummyVecEnv([SeededImageEnv])
    model = PPOJEPA(policy, env, seed=0, jepa_target=target, predictor_net_arch=[16], **SMALL[PPOJEPA])
    model.learn(SMALL[PPOJEPA]["n_steps"])
    obs = env.reset()
    actions, _ = model.policy.predict(obs, deterministic=True)
    model.policy.save(tmp_path / "policy.pth")
    policy_class = type(model.policy)
    loaded = policy_class.load(tmp_path / "policy.pth")
    assert loaded.jepa_target == target and loaded.predictor_net_arch == [16]
    assert_same_state(model.policy.state_dict(), loaded.state_dict())
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], actions)


@pytest.mark.parametrize("algo_cls", ALGOS)
def test_save_load_learn_equals_uninterrupted_learn(tmp_path, algo_cls):
    """save -> load -> learn gives the parameters of one uninterrupted learn (same seed, CPU)"""
    kwargs = dict(seed=1, device="cpu", jepa_target="ema", jepa_tau=0.1, **SMALL[algo_cls])
    first, second = 3 * SMALL[algo_cls]["n_steps"], 2 * SMALL[algo_cls]["n_steps"]

    uninterrupted = algo_cls("MlpPolicy", make_env(), **kwargs).learn(first)
    uninterrupted.learn(second, reset_num_timesteps=False)
    expected = copy.deepcopy(uninterrupted.policy.state_dict())

    env = make_env()
    interrupted = algo_cls("MlpPolicy", env, **kwargs).learn(first)
    interrupted.save(tmp_path / "model.zip")
    # SB3 reseeds the global RNGs when it loads a model: hand the loaded model the RNG state it was saved with
    rng = th.get_rng_state(), np.random.get_state()
    resumed = algo_cls.load(tmp_path / "model.zip", env=env, force_reset=False, device="cpu")
    th.set_rng_state(rng[0])
    np.random.set_state(rng[1])
    resumed.learn(second, reset_num_timesteps=False)

    assert_same_state(resumed.policy.state_dict(), expected)
    # The resumed run did train the predictor and move the target encoder after loading
    saved = interrupted.policy.state_dict()
    for prefix in ("jepa_predictor.", "jepa_target_encoder."):
        assert any(not th.equal(saved[k], v) for k, v in expected.items() if k.startswith(prefix))


def test_save_load_after_compile(tmp_path):
    """SB3 saves compiled policies without their _orig_mod prefix (GH#2137); the JEPA parts follow"""
    model = PPOJEPA("MlpPolicy", make_env(), seed=0, jepa_target="ema", **SMALL[PPOJEPA])
    state = copy.deepcopy(model.policy.state_dict())
    model.policy = th.compile(model.policy)  # type: ignore[assignment]
    model.save(tmp_path / "model.zip")
    assert_same_state(PPOJEPA.load(tmp_path / "model.zip").policy.state_dict(), state)
