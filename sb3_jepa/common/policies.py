"""
JEPA actor-critic policies: SB3's ``ActorCriticPolicy`` plus the predictor W and, for the ``ema`` target,
a slowly updated copy of the encoder. The encoder E is the policy's (actor's) features extractor.
"""

import copy
import functools
from collections.abc import Sequence
from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.torch_layers import (
    BaseFeaturesExtractor,
    CombinedExtractor,
    FlattenExtractor,
    NatureCNN,
)
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.common.utils import get_parameters_by_name, polyak_update
from torch import nn
from torch.utils.hooks import RemovableHandle

from sb3_jepa.common.jepa import (
    JEPAFeaturesExtractor,
    JEPAPredictor,
    JEPAProjector,
    JEPARewardPredictor,
    base_encoder_learns,
    check_embedding_norm,
    check_projection_arch,
    cnn_encoder_class,
    default_predictor_arch,
    warn_if_encoder_has_no_parameters,
)
from sb3_jepa.common.loss import CapturedEmbeddings, check_target_mode
from sb3_jepa.common.optim import FLAT_OPTIMIZERS
from sb3_jepa.common.utils import check_bool, check_net_arch, concat_observations, num_rows

# Added to torch's initial seed to seed the predictor's initialisation (see JEPAPolicyMixin._build)
_PREDICTOR_SEED_OFFSET = 0x4A455041
# The same for the reward predictor R
_REWARD_SEED_OFFSET = 0x52455741
_PROJECTOR_SEED_OFFSET = 0x50524F4A
#: Optimizers whose step the JEPA policies make flat (:data:`~sb3_jepa.common.optim.FLAT_OPTIMIZERS`: Adam and
#: RMSprop themselves) or multi-tensor (``foreach=True``: their subclasses, e.g. AdamW) unless told otherwise: SB3's
#: defaults (PPO: Adam, A2C: RMSprop), whose flat and foreach steps are bit for bit their per-tensor one
FOREACH_OPTIMIZERS = (th.optim.Adam, th.optim.RMSprop)


def _seed_own_stream(offset: int) -> None:
    """
    Seed torch's CPU generator from its initial seed plus ``offset`` (inside a ``fork_rng``, so that a module built
    next has a stream of its own). The CPU generator only: ``th.manual_seed`` would also reseed CUDA's, which
    ``fork_rng(devices=[])`` leaves alone.
    """
    th.default_generator.manual_seed((th.initial_seed() + offset) % 2**63)


class _EncoderCapture:
    """
    One-shot hooks on the encoder that capture its next pass (:meth:`JEPAPolicyMixin.jepa_capture_start`). A plain
    object with slots, kept by the policy for its lifetime: arming and disarming it once per minibatch costs two
    hook registrations and a few attribute writes, not ``nn.Module.__setattr__`` calls and new closures.
    """

    __slots__ = ("captured", "detach", "extra", "handles", "n_batch")

    def __init__(self) -> None:
        self.detach = False
        self.extra: PyTorchObs | None = None
        self.n_batch: int | None = None
        self.captured: CapturedEmbeddings | None = None
        self.handles: tuple[RemovableHandle, ...] = ()

    def start(self, encoder: nn.Module, detach: bool, extra: PyTorchObs | None) -> None:
        """
        :param encoder: the encoder whose next pass to capture
        :param detach: hand the rest of the policy a detached ``z``
        :param extra: preprocessed observations to append to that pass's input, or None
        """
        self.detach, self.extra, self.n_batch, self.captured = detach, extra, None, None
        # The pre-hook only where extras ride along: one hook less to register, call and remove per minibatch
        hook = encoder.register_forward_hook(self.hook)
        self.handles = (hook,) if extra is None else (encoder.register_forward_pre_hook(self.pre_hook), hook)

    def stop(self) -> CapturedEmbeddings | None:
        """:return: what was captured since :meth:`start` (None if the encoder did not run); the hooks are removed"""
        self._remove()
        captured, self.captured, self.extra = self.captured, None, None
        return captured

    def _remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = ()

    def pre_hook(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        assert self.extra is not None  # registered only then
        (observations,) = args
        self.n_batch = num_rows(observations)
        return (concat_observations(observations, self.extra),)

    def hook(self, module: nn.Module, args: Any, output: th.Tensor) -> th.Tensor | None:
        # One shot: only the first encoder pass (the one of evaluate_actions) is captured
        self._remove()
        n_batch = len(output) if self.n_batch is None else self.n_batch
        self.captured = CapturedEmbeddings(rows=output, n_batch=n_batch)
        own_rows = output if self.n_batch is None else output[:n_batch]
        return own_rows.detach() if self.detach else own_rows


class JEPAPolicyMixin(ActorCriticPolicy):
    """
    Turns an ``ActorCriticPolicy`` (SB3's or the user's own subclass) into a JEPA policy. The encoder E is
    ``pi_features_extractor`` (the shared extractor by default); the mixin adds the predictor W and, for the
    ``ema`` target mode, a target encoder, and lets the algorithm capture ``z = E(s)`` from the encoder pass
    that ``evaluate_actions`` already does.

    :param args: the base policy's positional arguments
    :param jepa_target: where ``E(s_{t+1})`` comes from: ``online``, ``stop_grad`` or ``ema``
        (see :data:`sb3_jepa.common.loss.TARGET_MODES`). Only ``ema`` changes the policy (it adds
        ``jepa_target_encoder``).
    :param predictor_net_arch: hidden layer widths of the predictor W (default: one layer of ``min(256, dim(z))``)
    :param predictor_residual: make W residual (``z + f(z, a)``, ``f`` starting at zero; see
        :class:`~sb3_jepa.common.jepa.JEPAPredictor`)
    :param jepa_embedding_norm: a parameter-free normalisation ending the encoder (see
        :data:`sb3_jepa.common.jepa.EMBEDDING_NORMS`), given to every :class:`JEPAFeaturesExtractor` the policy builds
        (the critic's own encoder too, where it has one); None: none
    :param jepa_projection_arch: the layers of the projection head P (``jepa_projector``; the last width is the
        projection's size), or None: no projection, the loss compares ``z`` itself
    :param jepa_reward: add the reward predictor R (``jepa_reward_predictor``, with the predictor's hidden layers),
        which the algorithm's ``jepa_reward_coef`` trains
    :param kwargs: the base policy's keyword arguments
    """

    jepa_target_encoder: nn.Module | None
    jepa_reward_predictor: JEPARewardPredictor | None
    jepa_projector: JEPAProjector | None

    def __init__(
        self,
        *args: Any,
        jepa_target: str = "online",
        predictor_net_arch: Sequence[int] | None = None,
        predictor_residual: bool = False,
        jepa_embedding_norm: str | None = None,
        jepa_projection_arch: Sequence[int] | None = None,
        jepa_reward: bool = False,
        **kwargs: Any,
    ):
        self.predictor_residual = check_bool("predictor_residual", predictor_residual)
        self.jepa_reward = check_bool("jepa_reward", jepa_reward)
        self.jepa_projection_arch = check_projection_arch(jepa_projection_arch)
        self.jepa_target = check_target_mode(jepa_target)
        self.jepa_embedding_norm = check_embedding_norm(jepa_embedding_norm)
        self.predictor_net_arch = (
            None if predictor_net_arch is None else check_net_arch("predictor_net_arch", predictor_net_arch)
        )
        self._jepa_capture = _EncoderCapture()
        self._jepa_remember_values = False
        #: while :meth:`jepa_remember_values_pass` is on: what the encoder was given in the last ``predict_values``
        #: call (preprocessed observations) and its output (a copy; no gradient where SB3 calls it, under
        #: ``no_grad``), else None
        self.jepa_values_pass: tuple[PyTorchObs, th.Tensor] | None = None
        super().__init__(*args, **kwargs)
        warn_if_encoder_has_no_parameters(self.jepa_encoder)

    @property
    def jepa_encoder(self) -> BaseFeaturesExtractor:
        """The encoder E: the actor's features extractor (shared with the critic unless ``share_features_extractor=False``)."""
        return self.pi_features_extractor

    def make_features_extractor(self) -> BaseFeaturesExtractor:
        if self.jepa_embedding_norm is None:
            return super().make_features_extractor()
        if not issubclass(self.features_extractor_class, JEPAFeaturesExtractor):
            raise ValueError(
                f"jepa_embedding_norm={self.jepa_embedding_norm!r} is added to JEPAFeaturesExtractor; the features "
                f"extractor {self.features_extractor_class.__name__} is not one: end it with the normalisation "
                "yourself (sb3_jepa.common.jepa.embedding_norm_layer), or wrap it: features_extractor_class="
                "JEPAFeaturesExtractor, features_extractor_kwargs=dict(encoder_class=...)"
            )
        given = self.features_extractor_kwargs.get("embedding_norm")
        if given is not None and given != self.jepa_embedding_norm:
            raise ValueError(
                f"features_extractor_kwargs has embedding_norm={given!r} and jepa_embedding_norm is "
                f"{self.jepa_embedding_norm!r}: give it once"
            )
        kwargs = {**self.features_extractor_kwargs, "embedding_norm": self.jepa_embedding_norm}
        return self.features_extractor_class(self.observation_space, **kwargs)

    def _build(self, lr_schedule: Schedule) -> None:
        # The predictor exists before the optimizer is built, so that it trains with the rest of the policy.
        # Its initialisation runs on a forked RNG so that it does not shift the random stream used by
        # everything after: with jepa_coef=0 a JEPA model reproduces plain SB3 bit for bit.
        with th.random.fork_rng(devices=[]):
            _seed_own_stream(_PREDICTOR_SEED_OFFSET)
            predictor_arch = (
                default_predictor_arch(self.features_dim) if self.predictor_net_arch is None else self.predictor_net_arch
            )
            self.jepa_predictor = JEPAPredictor(
                self.features_dim,
                self.action_space,
                predictor_arch,
                squash_output=self.squash_output,
                residual=self.predictor_residual,
            )
            # Each seeded on its own, so that adding R or P changes no other initialisation (W's included)
            _seed_own_stream(_REWARD_SEED_OFFSET)
            self.jepa_reward_predictor = (
                JEPARewardPredictor(self.features_dim, self.action_space, predictor_arch, squash_output=self.squash_output)
                if self.jepa_reward
                else None
            )
            _seed_own_stream(_PROJECTOR_SEED_OFFSET)
            self.jepa_projector = (
                None if self.jepa_projection_arch is None else JEPAProjector(self.features_dim, self.jepa_projection_arch)
            )
        # The optimizer's flat step (sb3_jepa/common/optim.py) where the user left SB3's Adam or RMSprop and chose no
        # implementation, else its multi-tensor (foreach) step: both the same arithmetic as the per-tensor loop, bit for
        # bit (tests/test_optim.py, tests/test_algorithms.py), in a few calls per group instead of several per tensor,
        # which dominate the update of small policies on CPU (torch has no multi-tensor kernels there). The foreach
        # step is also what a flat optimizer falls back to. The policy's optimizer_class and optimizer_kwargs stay
        # the user's own (they are saved with the model).
        user_optimizer_class, user_optimizer_kwargs = self.optimizer_class, self.optimizer_kwargs
        if issubclass(self.optimizer_class, FOREACH_OPTIMIZERS) and not {"foreach", "fused"} & user_optimizer_kwargs.keys():
            self.optimizer_class = FLAT_OPTIMIZERS.get(self.optimizer_class, self.optimizer_class)
            self.optimizer_kwargs = {**user_optimizer_kwargs, "foreach": True}
        try:
            super()._build(lr_schedule)
        finally:
            self.optimizer_class, self.optimizer_kwargs = user_optimizer_class, user_optimizer_kwargs
        # Created after the optimizer: the target encoder is never trained by gradients
        if self.jepa_target == "ema":
            self.jepa_target_encoder = copy.deepcopy(self.jepa_encoder).requires_grad_(False)
        else:
            self.jepa_target_encoder = None

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            jepa_target=self.jepa_target,
            predictor_net_arch=self.predictor_net_arch,
            predictor_residual=self.predictor_residual,
            jepa_embedding_norm=self.jepa_embedding_norm,
            jepa_projection_arch=self.jepa_projection_arch,
            jepa_reward=self.jepa_reward,
        )
        return data

    def train(self, mode: bool = True) -> "JEPAPolicyMixin":
        super().train(mode)
        # The target encoder always gives deterministic targets (dropout off, BatchNorm on its running statistics)
        if self.jepa_target_encoder is not None:
            self.jepa_target_encoder.train(False)
        return self

    def jepa_capture_start(self, detach_encoder: bool = False, extra_observations: PyTorchObs | None = None) -> None:
        """
        Capture the next output of the encoder (call it just before ``evaluate_actions``).

        :param detach_encoder: hand a detached copy of ``z`` to the rest of the policy, so that the RL loss does
            not reach the encoder (the JEPA-only ablation); the captured ``z`` keeps its gradient
        :param extra_observations: observations to encode in the same encoder pass (one batch instead of two:
            cheaper, and consistent under BatchNorm). Their embeddings are captured as ``extra``; the rest of the
            policy only sees the rows of its own batch.
        """
        self._jepa_capture.stop()
        extra = None
        if extra_observations is not None:
            extra = preprocess_obs(extra_observations, self.observation_space, normalize_images=self.normalize_images)
        self._jepa_capture.start(self.jepa_encoder, detach_encoder, extra)

    def jepa_capture_stop(self) -> CapturedEmbeddings | None:
        """
        :return: the embeddings captured since :meth:`jepa_capture_start`: the batch's rows and, when
            ``extra_observations`` were given, theirs; None if the encoder did not run
        """
        return self._jepa_capture.stop()

    def jepa_remember_values_pass(self, remember: bool) -> None:
        """
        Keep (or stop keeping) the encoder's output of each :meth:`predict_values` call in ``jepa_values_pass``. The
        algorithm turns it on while it collects a rollout: SB3's last value estimate of the rollout encodes the
        final observations, which the JEPA target needs again (see ``JEPAOnPolicyMixin.collect_rollouts``).

        :param remember: keep them from now on (each call replaces the last one kept), or stop keeping them
        """
        self._jepa_remember_values = remember

    def predict_values(self, obs: PyTorchObs) -> th.Tensor:
        """
        SB3's ``predict_values``; while :meth:`jepa_remember_values_pass` is on, the encoder's input and output of
        this call (where the critic reads the encoder E) are kept in ``jepa_values_pass``.

        :param obs: the observations
        :return: the estimated values
        """
        if not self._jepa_remember_values:
            return super().predict_values(obs)
        self.jepa_values_pass = None
        # A hook of its own (not the train-time capture, which a user's code may have armed): the first pass only
        handle = self.jepa_encoder.register_forward_hook(self._jepa_keep_values_pass)
        try:
            return super().predict_values(obs)
        finally:
            handle.remove()

    def _jepa_keep_values_pass(self, module: nn.Module, args: tuple[Any, ...], output: th.Tensor) -> None:
        if self.jepa_values_pass is None:
            self.jepa_values_pass = (args[0], output.detach().clone())

    def jepa_encode(self, obs: PyTorchObs, target: bool = False) -> th.Tensor:
        """
        Encode observations as the policy does (SB3's preprocessing, then the encoder).

        :param obs: observations, as stored in the rollout buffer
        :param target: use the ``ema`` target encoder instead of the encoder
        :return: the embeddings
        """
        encoder = self.jepa_target_encoder if target else self.jepa_encoder
        assert encoder is not None, "This policy has no target encoder (jepa_target is not 'ema')"
        return encoder(preprocess_obs(obs, self.observation_space, normalize_images=self.normalize_images))

    def jepa_update_target(self, tau: float) -> None:
        """
        Polyak update of the ``ema`` target encoder: ``target <- (1 - tau) * target + tau * encoder``.
        BatchNorm running statistics are copied, as SB3's DQN and SAC do for their target networks.

        :param tau: the soft update coefficient, in ``(0, 1]``
        """
        assert self.jepa_target_encoder is not None, "This policy has no target encoder (jepa_target is not 'ema')"
        polyak_update(self.jepa_encoder.parameters(), self.jepa_target_encoder.parameters(), tau)
        polyak_update(
            get_parameters_by_name(self.jepa_encoder, ["running_"]),
            get_parameters_by_name(self.jepa_target_encoder, ["running_"]),
            1.0,
        )


class JEPAActorCriticPolicy(JEPAPolicyMixin):
    """
    JEPA actor-critic policy (the ``MlpPolicy`` of A2CJEPA and PPOJEPA).

    Differences from SB3's ``ActorCriticPolicy``, all in the defaults: the features extractor is the JEPA encoder
    (:class:`~sb3_jepa.common.jepa.JEPAFeaturesExtractor`: SB3's extractor for the space followed, when that
    extractor has no parameters, by a ``[64, 64]`` tanh MLP), and ``net_arch`` defaults to ``[]``: the actor and
    the critic are linear heads on ``z = E(s)``, as in the paper. Pass ``net_arch`` to add layers.

    Whether the critic shares E (``share_features_extractor=None``, the default) follows SB3's networks: where
    SB3's base extractor learns (a CNN: ``CnnPolicy``, ``MultiInputPolicy`` with images) actor and critic share it,
    as in SB3; where it does not (vector observations: SB3's ``MlpPolicy`` has separate ``[64, 64]`` actor and
    critic nets), the critic gets its own ``[64, 64]`` encoder and E is the actor's. With a shared ``[64, 64]``
    trunk the critic's gradient costs the actor its task: on SB3's ``IdentityEnvBox`` test PPO passed no seed of
    five even with ``jepa_coef=0`` (``python -m benchmarks.identity``; README, "Defaults").

    :param observation_space: Observation space
    :param action_space: Action space
    :param lr_schedule: Learning rate schedule (could be constant)
    :param net_arch: The specification of the policy and value networks on top of the encoder
    :param activation_fn: Activation function of ``net_arch``'s layers
    :param ortho_init: Whether to use or not orthogonal initialization
    :param use_sde: Whether to use State Dependent Exploration or not
    :param log_std_init: Initial value for the log standard deviation
    :param full_std: Whether to use (n_features x n_actions) parameters for the std instead of only (n_features,)
        when using gSDE
    :param use_expln: Use ``expln()`` function instead of ``exp()`` to ensure a positive standard deviation
    :param squash_output: Whether to squash the output using a tanh function (gSDE only)
    :param features_extractor_class: The encoder E
    :param features_extractor_kwargs: Keyword arguments to pass to the encoder
    :param share_features_extractor: If True, the encoder is shared between the policy and value networks;
        if False, E is the actor's extractor and the critic has its own; None: True when the base extractor of
        the JEPA encoder learns (a CNN), False otherwise (see above). A features extractor class that is not a
        :class:`~sb3_jepa.common.jepa.JEPAFeaturesExtractor` is shared, as in SB3.
    :param normalize_images: Whether to normalize images or not, dividing by 255.0
    :param optimizer_class: The optimizer to use
    :param optimizer_kwargs: Additional keyword arguments, excluding the learning rate, to pass to the optimizer
    :param jepa_target: see :class:`JEPAPolicyMixin`
    :param predictor_net_arch: see :class:`JEPAPolicyMixin`
    :param predictor_residual: see :class:`JEPAPolicyMixin`
    :param jepa_embedding_norm: see :class:`JEPAPolicyMixin`
    :param jepa_projection_arch: see :class:`JEPAPolicyMixin`
    :param jepa_reward: see :class:`JEPAPolicyMixin`
    """

    @staticmethod
    def default_encoder_class(observation_space: spaces.Space) -> type[BaseFeaturesExtractor]:
        """
        :param observation_space: the observation space
        :return: the base extractor JEPAFeaturesExtractor wraps unless ``features_extractor_kwargs["encoder_class"]``
            says otherwise
        """
        return FlattenExtractor

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.Tanh,
        ortho_init: bool = True,
        use_sde: bool = False,
        log_std_init: float = 0.0,
        full_std: bool = True,
        use_expln: bool = False,
        squash_output: bool = False,
        features_extractor_class: type[BaseFeaturesExtractor] = JEPAFeaturesExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        share_features_extractor: bool | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        jepa_target: str = "online",
        predictor_net_arch: Sequence[int] | None = None,
        predictor_residual: bool = False,
        jepa_embedding_norm: str | None = None,
        jepa_projection_arch: Sequence[int] | None = None,
        jepa_reward: bool = False,
    ):
        if issubclass(features_extractor_class, JEPAFeaturesExtractor):
            features_extractor_kwargs = self._encoder_kwargs(observation_space, features_extractor_kwargs, normalize_images)
            if share_features_extractor is None:
                share_features_extractor = base_encoder_learns(observation_space, features_extractor_kwargs)
        elif share_features_extractor is None:
            share_features_extractor = True
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            [] if net_arch is None else net_arch,
            activation_fn,
            ortho_init,
            use_sde,
            log_std_init,
            full_std,
            use_expln,
            squash_output,
            features_extractor_class,
            features_extractor_kwargs,
            share_features_extractor,
            normalize_images,
            optimizer_class,
            optimizer_kwargs,
            jepa_target=jepa_target,
            predictor_net_arch=predictor_net_arch,
            predictor_residual=predictor_residual,
            jepa_embedding_norm=jepa_embedding_norm,
            jepa_projection_arch=jepa_projection_arch,
            jepa_reward=jepa_reward,
        )

    def _encoder_kwargs(
        self, observation_space: spaces.Space, kwargs: dict[str, Any] | None, normalize_images: bool
    ) -> dict[str, Any]:
        kwargs = dict(kwargs or {})
        kwargs.setdefault("encoder_class", self.default_encoder_class(observation_space))
        # What SB3's BaseModel does for NatureCNN and CombinedExtractor themselves: with normalize_images=False,
        # skip their check that images are uint8 in [0, 255]
        if not normalize_images and issubclass(kwargs["encoder_class"], (NatureCNN, CombinedExtractor)):
            # Where SB3 puts it too (BaseModel.__init__ updates the extractor's kwargs), and out of encoder_kwargs,
            # which models saved by earlier versions used, so that the two never disagree
            kwargs["encoder_kwargs"] = {
                k: v for k, v in (kwargs.get("encoder_kwargs") or {}).items() if k != "normalized_image"
            }
            kwargs["normalized_image"] = True
        return kwargs


class JEPAActorCriticCnnPolicy(JEPAActorCriticPolicy):
    """
    JEPA actor-critic policy for images (the ``CnnPolicy``): the encoder is NatureCNN, or for images too small for
    it (MinAtar's 10x10xC grids) :class:`~sb3_jepa.common.torch_layers.SmallImageCNN`, wrapped in
    :class:`~sb3_jepa.common.jepa.JEPAFeaturesExtractor`. Arguments are those of :class:`JEPAActorCriticPolicy`.
    """

    @staticmethod
    def default_encoder_class(observation_space: spaces.Space) -> type[BaseFeaturesExtractor]:
        return cnn_encoder_class(observation_space)


class JEPAMultiInputActorCriticPolicy(JEPAActorCriticPolicy):
    """
    JEPA actor-critic policy for ``Dict`` observations (the ``MultiInputPolicy``): the encoder is SB3's
    CombinedExtractor (wrapped in :class:`~sb3_jepa.common.jepa.JEPAFeaturesExtractor`, with a ``[64, 64]`` MLP
    on top when no key is an image). Arguments are those of :class:`JEPAActorCriticPolicy`.
    """

    @staticmethod
    def default_encoder_class(observation_space: spaces.Space) -> type[BaseFeaturesExtractor]:
        return CombinedExtractor


@functools.cache
def as_jepa_policy(policy_class: type[ActorCriticPolicy]) -> type[JEPAPolicyMixin]:
    """
    The JEPA version of an actor-critic policy class: the class itself if it is already one, else a subclass
    mixing :class:`JEPAPolicyMixin` into it (its features extractor becomes the encoder E).

    :param policy_class: an ``ActorCriticPolicy`` subclass
    :return: a JEPA policy class
    """
    if not (isinstance(policy_class, type) and issubclass(policy_class, ActorCriticPolicy)):
        raise ValueError(f"policy must be a policy name or an ActorCriticPolicy subclass, got {policy_class!r}")
    if issubclass(policy_class, JEPAPolicyMixin):
        return policy_class
    return type(
        f"JEPA{policy_class.__name__}",
        (JEPAPolicyMixin, policy_class),
        {"__module__": policy_class.__module__, "__doc__": f"{policy_class.__name__} with a JEPA predictor (sb3-jepa)."},
    )
