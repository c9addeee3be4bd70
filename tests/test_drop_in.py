"""
Drop-in parity: lines an SB3 user writes for A2C/PPO work unchanged, with the same warnings and errors, for
A2CJEPA/PPOJEPA (features_extractor_kwargs for SB3's extractors, load with policy_kwargs, any rollout buffer
class, SB3's argument checks).
"""

import copy
import inspect
import warnings
import zipfile
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.buffers import DictRolloutBuffer, ReplayBuffer, RolloutBuffer
from stable_baselines3.common.envs import SimpleMultiObsEnv
from stable_baselines3.common.save_util import data_to_json, json_to_data
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, CombinedExtractor, NatureCNN
from stable_baselines3.common.type_aliases import RolloutBufferSamples
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    SubprocVecEnv,
    VecFrameStack,
    VecNormalize,
    VecTransposeImage,
)

from sb3_jepa import A2CJEPA, PPOJEPA, JEPAFeaturesExtractor
from sb3_jepa.common.buffers import (
    JEPADictRolloutBuffer,
    JEPARolloutBuffer,
    JEPARolloutBufferSamples,
    NextObservationMixin,
    as_jepa_buffer,
)
from sb3_jepa.common.jepa import JEPA_EXTRACTOR_KEYWORDS
from tests.conftest import ALGOS, SMALL
from tests.helpers import CountingEnv, SeededImageEnv, SmallMlpExtractor, check_rows

BASE = {A2CJEPA: A2C, PPOJEPA: PPO}
IMAGE_SPACE = spaces.Box(0, 255, (1, 36, 36), np.uint8)


class ImageDictEnv(gym.Env):
    """A Dict of a uint8 image and a vector (SB3's test_dict_env shape), seeded, 10-step episodes."""

    def __init__(self, float_image: bool = False):
        super().__init__()
        # Float images are not transposed by SB3 (it cannot tell them from other boxes): channel-first
        image = spaces.Box(0.0, 1.0, (1, 36, 36), np.float32) if float_image else spaces.Box(0, 255, (36, 36, 1), np.uint8)
        self.observation_space = spaces.Dict({"img": image, "vec": spaces.Box(-1, 1, (2,), np.float32)})
        self.action_space = spaces.Discrete(3)
        self.steps = 0

    def _obs(self) -> dict[str, np.ndarray]:
        image_space = self.observation_space["img"]  # type: ignore[index]
        sample = self.np_random.random(image_space.shape) * image_space.high
        return {"img": sample.astype(image_space.dtype), "vec": self.np_random.uniform(-1, 1, 2).astype(np.float32)}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        self.steps = 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        self.steps += 1
        return self._obs(), float(action == 0), False, self.steps >= 10, {}


def image_vec_env(wrapper: str) -> Any:
    if wrapper == "subproc":
        return SubprocVecEnv([SeededImageEnv, SeededImageEnv])
    env: Any = DummyVecEnv([SeededImageEnv])
    if wrapper == "transpose":
        env = VecTransposeImage(env)
    elif wrapper == "frame_stack":
        env = VecFrameStack(env, n_stack=2)
    elif wrapper == "normalize":
        env = VecNormalize(env, norm_obs=False)
    return env


# -- features_extractor_kwargs written for SB3's default extractors ----------------------------------------------


@pytest.mark.parametrize("algo_cls", ALGOS)
@pytest.mark.parametrize(
    "wrapper", ["none", "transpose", "frame_stack", "normalize", pytest.param("subproc", marks=pytest.mark.slow)]
)
def test_nature_cnn_keywords_reach_it(algo_cls, wrapper):
    env = image_vec_env(wrapper)
    try:
        model = algo_cls(
            "CnnPolicy", env, seed=0, policy_kwargs=dict(features_extractor_kwargs=dict(features_dim=32)), **SMALL[algo_cls]
        )
        assert isinstance(model.policy.jepa_encoder, JEPAFeaturesExtractor)
        assert isinstance(model.policy.jepa_encoder.encoder, NatureCNN)
        assert model.policy.features_dim == 32 and model.policy.jepa_predictor.net[-1].out_features == 32
        model.learn(SMALL[algo_cls]["n_steps"] * env.num_envs)
        assert np.isfinite(model.logger.name_to_value["jepa/loss"])
    finally:
        env.close()


@pytest.mark.parametrize("algo_cls", ALGOS)
@pytest.mark.parametrize("float_image", [False, True])
def test_combined_extractor_keywords_reach_it(algo_cls, float_image) -> None:
    # SB3's way to feed float images in [0, 1] to CombinedExtractor: normalized_image=True (and normalize_images=False)
    extractor_kwargs: dict[str, Any] = dict(cnn_output_dim=16)
    policy_kwargs: dict[str, Any] = dict(features_extractor_kwargs=extractor_kwargs)
    if float_image:
        extractor_kwargs["normalized_image"] = True
        policy_kwargs["normalize_images"] = False
    model = algo_cls("MultiInputPolicy", ImageDictEnv(float_image), seed=0, policy_kwargs=policy_kwargs, **SMALL[algo_cls])
    base = model.policy.jepa_encoder.encoder
    assert isinstance(base, CombinedExtractor)
    image_extractor = base.extractors["img"]
    assert isinstance(image_extractor, NatureCNN) and image_extractor.features_dim == 16
    assert model.policy.features_dim == 16 + 2
    model.learn(SMALL[algo_cls]["n_steps"])
    # The caller's dict is left as it was
    assert extractor_kwargs == (dict(cnn_output_dim=16, normalized_image=True) if float_image else dict(cnn_output_dim=16))


def test_normalize_images_false_marks_images_normalized_once():
    model = A2CJEPA("MultiInputPolicy", ImageDictEnv(float_image=True), policy_kwargs=dict(normalize_images=False), n_steps=8)
    kwargs = model.policy.features_extractor_kwargs
    assert kwargs["normalized_image"] is True and "normalized_image" not in kwargs["encoder_kwargs"]
    # The form earlier versions saved (under encoder_kwargs) still builds, and converges on the same place
    policy = type(model.policy)(
        model.observation_space,
        model.action_space,
        lambda _: 1e-3,
        normalize_images=False,
        features_extractor_kwargs=dict(encoder_kwargs=dict(normalized_image=True)),
    )
    assert policy.features_extractor_kwargs["normalized_image"] is True


def test_user_extractor_keywords_reach_it():
    model = PPOJEPA(
        "MlpPolicy",
        DummyVecEnv([CountingEnv]),
        seed=0,
        policy_kwargs=dict(features_extractor_kwargs=dict(encoder_class=SmallMlpExtractor, features_dim=8, net_arch=[])),
        **SMALL[PPOJEPA],
    )
    assert isinstance(model.policy.jepa_encoder.encoder, SmallMlpExtractor)
    assert model.policy.features_dim == 8


@pytest.mark.parametrize(
    "policy, env, extractor_kwargs, message",
    [
        (
            "CnnPolicy",
            SeededImageEnv,
            dict(cnn_output_dim=8),
            r"\['cnn_output_dim'\].*NatureCNN, which takes \['features_dim'",
        ),
        ("MultiInputPolicy", ImageDictEnv, dict(features_dim=8), r"\['features_dim'\].*CombinedExtractor, which takes"),
        ("MlpPolicy", CountingEnv, dict(features_dim=8), r"\['features_dim'\].*FlattenExtractor, which takes \[\]"),
    ],
)
def test_keyword_no_extractor_takes_is_refused(policy, env, extractor_kwargs, message):
    with pytest.raises(TypeError, match=f"unexpected keyword argument.*{message}"):
        A2CJEPA(policy, DummyVecEnv([env]), policy_kwargs=dict(features_extractor_kwargs=extractor_kwargs))


def test_own_keywords_are_the_extractors_parameters():
    parameters = set(inspect.signature(JEPAFeaturesExtractor.__init__).parameters)
    assert set(JEPA_EXTRACTOR_KEYWORDS) == parameters - {"self", "observation_space", "base_kwargs"}


def test_keyword_given_twice_differently_is_refused():
    with pytest.raises(ValueError, match="'features_dim' twice"):
        JEPAFeaturesExtractor(IMAGE_SPACE, features_dim=8, encoder_kwargs=dict(features_dim=16))
    # The same value twice is one keyword
    assert JEPAFeaturesExtractor(IMAGE_SPACE, features_dim=8, encoder_kwargs=dict(features_dim=8)).features_dim == 8


def test_extractor_taking_any_keyword():
    class AnyKeywordExtractor(BaseFeaturesExtractor):
        def __init__(self, observation_space: spaces.Space, **kwargs: Any):
            super().__init__(observation_space, kwargs["width"])
            self.linear = th.nn.Linear(int(np.prod(observation_space.shape or ())), kwargs["width"])

        def forward(self, observations: th.Tensor) -> th.Tensor:
            return self.linear(observations.flatten(1))

    extractor = JEPAFeaturesExtractor(spaces.Box(-1, 1, (3,)), encoder_class=AnyKeywordExtractor, width=5)
    assert extractor.features_dim == 5


# -- load / set_parameters / Policy.load with the policy kwargs of creation ------------------------------------------


@pytest.mark.parametrize("algo_cls", ALGOS)
def test_load_with_the_policy_kwargs_of_creation(tmp_path, algo_cls):
    policy_kwargs = dict(net_arch=[32])
    model = algo_cls(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        jepa_target="ema",
        predictor_net_arch=[16],
        policy_kwargs=copy.deepcopy(policy_kwargs),
        **SMALL[algo_cls],
    )
    model.learn(SMALL[algo_cls]["n_steps"])
    model.save(tmp_path / "model.zip")
    # What SB3 stores for the plain algorithm (A2C adds its RMSprop optimizer), and nothing JEPA
    plain = BASE[algo_cls]("MlpPolicy", "CartPole-v1", policy_kwargs=copy.deepcopy(policy_kwargs), **SMALL[algo_cls])
    assert model.policy_kwargs == plain.policy_kwargs
    loaded = algo_cls.load(tmp_path / "model.zip", policy_kwargs=model.policy_kwargs)
    assert (loaded.jepa_target, loaded.predictor_net_arch) == ("ema", [16])
    assert loaded.policy.jepa_target_encoder is not None and loaded.policy.predictor_net_arch == [16]
    if algo_cls is PPOJEPA:
        # PPO stores the user's dict as given: the line works as written
        PPOJEPA.load(tmp_path / "model.zip", policy_kwargs=dict(net_arch=[32]))
    with pytest.raises(ValueError, match="do not equal the stored policy kwargs"):
        algo_cls.load(tmp_path / "model.zip", policy_kwargs=dict(net_arch=[8]))
    # set_parameters from the file, and the policy's own save/load
    loaded.set_parameters(str(tmp_path / "model.zip"), exact_match=True)
    loaded.policy.save(tmp_path / "policy.pth")
    policy = type(loaded.policy).load(tmp_path / "policy.pth")
    assert policy.jepa_target == "ema" and policy.predictor_net_arch == [16]
    assert policy.mlp_extractor.policy_net[0].out_features == 32


def test_load_a_model_saved_with_jepa_settings_in_policy_kwargs(tmp_path):
    """Earlier versions saved jepa_target / predictor_net_arch inside policy_kwargs: such files still load."""
    model = PPOJEPA("MlpPolicy", "CartPole-v1", seed=0, jepa_target="stop_grad", predictor_net_arch=[8], **SMALL[PPOJEPA])
    model.save(tmp_path / "model.zip")
    old = tmp_path / "old.zip"
    with zipfile.ZipFile(tmp_path / "model.zip") as source, zipfile.ZipFile(old, "w") as target:
        for item in source.infolist():
            content = source.read(item.filename)
            if item.filename == "data":
                data = json_to_data(content.decode())
                data["policy_kwargs"] = {**data["policy_kwargs"], "jepa_target": "stop_grad", "predictor_net_arch": [8]}
                content = data_to_json(data).encode()
            target.writestr(item, content)
    loaded = PPOJEPA.load(old, env=model.get_env())
    assert loaded.policy_kwargs == {}
    assert loaded.policy.jepa_target == "stop_grad" and loaded.policy.predictor_net_arch == [8]
    loaded.learn(SMALL[PPOJEPA]["n_steps"])


# -- any rollout buffer class ------------------------------------------------------------------------------------


class CountingResetsBuffer(RolloutBuffer):
    """A user's RolloutBuffer subclass: it counts its resets and keeps its own keyword."""

    def __init__(self, *args: Any, tag: str = "", **kwargs: Any):
        self.tag = tag
        self.resets = 0
        super().__init__(*args, **kwargs)

    def reset(self) -> None:
        super().reset()
        self.resets += 1


class CountingResetsDictBuffer(DictRolloutBuffer):
    """The Dict counterpart"""

    def reset(self) -> None:
        super().reset()
        self.resets = getattr(self, "resets", 0) + 1


class OwnSamplesBuffer(RolloutBuffer):
    """A buffer whose samples are a type of its own: it cannot carry next observations"""

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> Any:
        samples = super()._get_samples(batch_inds, env)
        return tuple(samples)


@pytest.mark.parametrize("algo_cls", ALGOS)
def test_sb3_rollout_buffer_class(algo_cls):
    env = DummyVecEnv([lambda: CountingEnv(0), lambda: CountingEnv(1)])
    model = algo_cls("MlpPolicy", env, seed=0, rollout_buffer_class=RolloutBuffer, **SMALL[algo_cls])
    assert type(model.rollout_buffer) is JEPARolloutBuffer
    model.learn(2 * 2 * SMALL[algo_cls]["n_steps"])
    assert model.logger.name_to_value["jepa/loss"] > 0
    check_rows(
        [list(model.rollout_buffer.get(16))],
        lambda states: states,
        model.rollout_buffer.buffer_size * model.rollout_buffer.n_envs,
    )
    dict_env = DummyVecEnv([lambda: CountingEnv(0, dict_obs=True)])
    model = algo_cls("MultiInputPolicy", dict_env, seed=0, rollout_buffer_class=DictRolloutBuffer, **SMALL[algo_cls])
    assert type(model.rollout_buffer) is JEPADictRolloutBuffer


@pytest.mark.parametrize("algo_cls", ALGOS)
@pytest.mark.parametrize("segment_length", [None, 4])
def test_user_rollout_buffer_subclass(tmp_path, algo_cls, segment_length):
    if segment_length is not None and algo_cls is A2CJEPA:
        pytest.skip("jepa_segment_length is PPO's")
    extra = {} if segment_length is None else dict(jepa_segment_length=segment_length)
    env = DummyVecEnv([lambda: CountingEnv(0), lambda: CountingEnv(1)])
    model = algo_cls(
        "MlpPolicy",
        env,
        seed=0,
        rollout_buffer_class=CountingResetsBuffer,
        rollout_buffer_kwargs=dict(tag="mine"),
        **extra,
        **SMALL[algo_cls],
    )
    buffer = model.rollout_buffer
    assert isinstance(buffer, CountingResetsBuffer) and isinstance(buffer, NextObservationMixin)
    assert buffer.tag == "mine"
    model.learn(3 * 2 * SMALL[algo_cls]["n_steps"])
    # The user's reset ran at creation and before each of the three rollouts
    assert buffer.resets == 4
    assert model.logger.name_to_value["jepa/loss"] > 0
    check_rows(
        [list(model.rollout_buffer.get(16))],
        lambda states: states,
        model.rollout_buffer.buffer_size * model.rollout_buffer.n_envs,
    )
    # The mixed class is made once per user class, and saved models load with it
    assert as_jepa_buffer(CountingResetsBuffer) is type(buffer)
    model.save(tmp_path / "model.zip")
    loaded = algo_cls.load(tmp_path / "model.zip", env=env)
    assert isinstance(loaded.rollout_buffer, CountingResetsBuffer) and loaded.rollout_buffer.tag == "mine"
    loaded.learn(2 * SMALL[algo_cls]["n_steps"])


def test_user_dict_rollout_buffer_subclass():
    model = PPOJEPA(
        "MultiInputPolicy",
        DummyVecEnv([lambda: CountingEnv(0, dict_obs=True)]),
        seed=0,
        rollout_buffer_class=CountingResetsDictBuffer,
        **SMALL[PPOJEPA],
    ).learn(2 * SMALL[PPOJEPA]["n_steps"])
    assert isinstance(model.rollout_buffer, CountingResetsDictBuffer) and model.rollout_buffer.resets == 3
    check_rows(
        [list(model.rollout_buffer.get(16))],
        lambda states: states,
        model.rollout_buffer.buffer_size * model.rollout_buffer.n_envs,
    )


def test_buffer_whose_samples_cannot_carry_next_observations():
    model = A2CJEPA("MlpPolicy", DummyVecEnv([CountingEnv]), rollout_buffer_class=OwnSamplesBuffer, n_steps=8)
    with pytest.raises(TypeError, match=r"OwnSamplesBuffer._get_samples returned tuple"):
        model.learn(8)


@pytest.mark.parametrize("algo_cls", ALGOS)
def test_rollout_buffer_class_that_is_no_rollout_buffer(algo_cls):
    # Checked before the env is made: the id does not exist
    with pytest.raises(ValueError, match="rollout_buffer_class must be None or a subclass of RolloutBuffer"):
        algo_cls("MlpPolicy", "NoSuchEnv-v0", rollout_buffer_class=ReplayBuffer)


def test_plain_buffer_for_dict_observations_is_refused():
    with pytest.raises(ValueError, match=r"must be a DictRolloutBuffer .* for the observation space"):
        A2CJEPA("MultiInputPolicy", SimpleMultiObsEnv(), rollout_buffer_class=RolloutBuffer)


def test_samples_types():
    buffer = as_jepa_buffer(CountingResetsBuffer)(4, spaces.Box(-1, 1, (2,)), spaces.Discrete(2))
    for _ in range(4):
        buffer.add(np.zeros((1, 2)), np.zeros((1, 1)), np.zeros(1), np.zeros(1), th.zeros(1), th.zeros(1))
    buffer.compute_returns_and_advantage(th.zeros(1), np.zeros(1))
    next(buffer.get(2))  # flattens the arrays, as SB3's get() does
    rows = np.array([2, 0])
    sample = buffer._get_samples(rows)
    # SB3's sample of these rows, field for field, then the next-observation fields
    assert type(sample) is JEPARolloutBufferSamples
    plain = RolloutBuffer._get_samples(buffer, rows)
    assert all(th.equal(getattr(sample, name), getattr(plain, name)) for name in RolloutBufferSamples._fields)
    assert sample.next_valid.shape == (2,)


# -- SB3's warnings and errors, for the same arguments --------------------------------------------------------------


def outcome(algo_cls: type, env: Any, **kwargs: Any) -> tuple[str | None, list[str]]:
    """What building a model with these arguments raises (type and message) and warns (messages, not ours)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            algo_cls("MlpPolicy", env, **kwargs)
            error = None
        except Exception as exception:
            error = f"{type(exception).__name__}: {exception}"
    messages = [str(w.message) for w in caught if "sb3_jepa" not in w.filename]
    return error, sorted(set(messages))


PARITY_CASES = {
    "ppo_truncated_minibatch": (PPO, dict(n_steps=64, batch_size=48)),
    "ppo_n_steps_1": (PPO, dict(n_steps=1, batch_size=1)),
    "ppo_batch_size_1": (PPO, dict(n_steps=8, batch_size=1)),
    "a2c_dict_buffer_on_box": (A2C, dict(rollout_buffer_class=DictRolloutBuffer)),
    "a2c_buffer_unknown_keyword": (A2C, dict(rollout_buffer_class=RolloutBuffer, rollout_buffer_kwargs=dict(wrong_keyword=1))),
    "a2c_buffer_gamma_twice": (A2C, dict(rollout_buffer_class=RolloutBuffer, rollout_buffer_kwargs=dict(gamma=1))),
    "ppo_buffer_unknown_keyword": (PPO, dict(rollout_buffer_kwargs=dict(wrong_keyword=1))),
    "a2c_unsupported_action_space": (A2C, dict()),
    "a2c_sde_on_discrete": (A2C, dict(use_sde=True)),
}


@pytest.mark.parametrize("case", sorted(PARITY_CASES))
def test_same_warnings_and_errors_as_sb3(case):
    plain_cls, kwargs = PARITY_CASES[case]
    jepa_cls = PPOJEPA if plain_cls is PPO else A2CJEPA
    env_id = "Pendulum-v1" if "box" in case else "CartPole-v1"
    if case == "a2c_unsupported_action_space":

        def make_env() -> Any:
            env = CountingEnv()
            env.action_space = spaces.Tuple([spaces.Discrete(2)])  # type: ignore[assignment]
            return DummyVecEnv([lambda: env])

    else:

        def make_env() -> Any:
            return env_id

    plain = outcome(plain_cls, make_env(), **copy.deepcopy(kwargs))
    ours = outcome(jepa_cls, make_env(), **copy.deepcopy(kwargs))
    assert plain[0] is not None or plain[1], f"{case} checks nothing: SB3 neither raises nor warns"

    def ours_named(message: str) -> str:
        # The one difference: messages name the class at work (A2CJEPA for A2C, JEPARolloutBuffer for RolloutBuffer)
        message = message.replace(
            "stable_baselines3.common.buffers.RolloutBuffer", "sb3_jepa.common.buffers.JEPARolloutBuffer"
        )
        return message.replace(f"{plain_cls.__name__} ", f"{jepa_cls.__name__} ")

    assert ours == (None if plain[0] is None else ours_named(plain[0]), [ours_named(message) for message in plain[1]])


@pytest.mark.parametrize("algo_cls", ALGOS)
@pytest.mark.parametrize("policy, warns", [("MlpPolicy", True), ("CnnPolicy", False)])
def test_gpu_warning_for_mlp_policies(algo_cls, policy, warns):
    """SB3 recommends the CPU for A2C/PPO with an MlpPolicy (SB3 GH#1245), recognising it by class name."""
    env = DummyVecEnv([SeededImageEnv if policy == "CnnPolicy" else CountingEnv])
    results = []
    for cls in (BASE[algo_cls], algo_cls):
        model = cls(policy, env, device="cpu", **SMALL[algo_cls])
        # No GPU needed: the check reads only the device attribute and the policy class
        model.device = th.device("cuda")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model._maybe_recommend_cpu()
        results.append([str(w.message) for w in caught if "on the GPU" in str(w.message)])
    assert bool(results[0]) is warns and bool(results[1]) is warns
    if warns:
        assert f"You are trying to run {algo_cls.__name__} on the GPU" in results[1][0]


@pytest.mark.skipif(not th.cuda.is_available(), reason="no CUDA device")
def test_gpu_warning_on_a_real_gpu():
    with pytest.warns(UserWarning, match="You are trying to run PPOJEPA on the GPU"):
        PPOJEPA("MlpPolicy", "CartPole-v1", device="cuda")
