"""
The JEPA models: the encoder E (:class:`JEPAFeaturesExtractor`), the action encoding (:class:`ActionEncoder`),
the action-conditioned predictor W (:class:`JEPAPredictor`) and, optionally, a projection head P
(:class:`JEPAProjector`, SPR's and BYOL's: the loss compares projections) and a reward predictor R
(:class:`JEPARewardPredictor`, TD-MPC2's ``reward``) for planners. The losses that train them are in
:mod:`sb3_jepa.common.loss`.
"""

import warnings
from typing import Any

import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import (
    BaseFeaturesExtractor,
    CombinedExtractor,
    FlattenExtractor,
    NatureCNN,
    create_mlp,
)
from torch import nn

from sb3_jepa.common.torch_layers import SmallImageCNN, is_small_image_like
from sb3_jepa.common.utils import accepted_keywords, check_bool, check_choice, check_net_arch, has_parameters

#: Hidden layers of the default encoder MLP for observations whose base extractor learns nothing (flatten).
DEFAULT_VECTOR_ENCODER_ARCH = (64, 64)

#: Width cap of the default predictor W's hidden layer: one layer of ``min(256, dim(z))`` units
DEFAULT_PREDICTOR_WIDTH = 256


def default_predictor_arch(features_dim: int) -> list[int]:
    """
    :param features_dim: the embedding size ``dim(z)``
    :return: the default hidden layers of the predictor W: one layer of ``min(256, dim(z))`` units
    """
    return [min(DEFAULT_PREDICTOR_WIDTH, features_dim)]


def cnn_encoder_class(observation_space: spaces.Space) -> type[BaseFeaturesExtractor]:
    """
    :param observation_space: an image-like observation space
    :return: ``NatureCNN``, or :class:`~sb3_jepa.common.torch_layers.SmallImageCNN` for 3-D boxes too small for it
        (MinAtar's 10x10xC grids)
    """
    return SmallImageCNN if is_small_image_like(observation_space) else NatureCNN


def encoder_class_for_space(observation_space: spaces.Space) -> type[BaseFeaturesExtractor]:
    """
    The base extractor :class:`JEPAFeaturesExtractor` wraps when it is given none (``encoder_class=None``), chosen
    from the space as SB3's ``MultiInputPolicy``/``CnnPolicy``/``MlpPolicy`` would: ``CombinedExtractor`` for
    ``Dict``, a CNN for images (see :func:`cnn_encoder_class`), ``FlattenExtractor`` otherwise. The JEPA policies
    always name theirs (each alias its own, ``JEPAActorCriticPolicy.default_encoder_class``), so this rule is for
    the extractor used on its own or in a user's policy.

    :param observation_space: the observation space
    :return: the features extractor class
    """
    if isinstance(observation_space, spaces.Dict):
        return CombinedExtractor
    if is_image_space(observation_space, check_channels=False) or is_small_image_like(observation_space):
        return cnn_encoder_class(observation_space)
    return FlattenExtractor


#: Parameter-free normalisations that can end the encoder (``jepa_embedding_norm``), so that the heads, the
#: predictor's input and the target all see the normalised ``z``.
#: ``layernorm``: each embedding centred and scaled to unit variance over its dimensions (LayerNorm without affine
#: parameters): every row has norm ``sqrt(dim)``, so collapse in *scale* is ruled out by construction; the rows can
#: still all point the same way (collapse in *direction*).
#: ``simnorm``: TD-MPC2's simplicial normalisation, a softmax over each group of :data:`SIMNORM_GROUP` dimensions:
#: every group is a point of the simplex, bounded and never zero; a constant encoder is still possible.
EMBEDDING_NORMS = ("layernorm", "simnorm")

#: TD-MPC2's group size for SimNorm
SIMNORM_GROUP = 8


def check_embedding_norm(embedding_norm: str | None) -> str | None:
    """
    :param embedding_norm: the normalisation to check
    :return: ``embedding_norm``, if it is None or one of :data:`EMBEDDING_NORMS`
    """
    # None is allowed, and named first in the message
    return check_choice("jepa_embedding_norm", embedding_norm, (None, *EMBEDDING_NORMS))


class SimNorm(nn.Module):
    """
    TD-MPC2's simplicial normalisation: the embedding split into groups of ``group`` dimensions, a softmax over each.

    :param dim: the embedding size, a multiple of ``group``
    :param group: dimensions per group
    """

    def __init__(self, dim: int, group: int = SIMNORM_GROUP):
        super().__init__()
        if dim % group != 0:
            raise ValueError(f"simnorm needs an embedding size that is a multiple of {group}, got {dim}")
        self.group = group

    def forward(self, z: th.Tensor) -> th.Tensor:
        groups = z.reshape(*z.shape[:-1], -1, self.group)
        return F.softmax(groups, dim=-1).reshape(z.shape)


def embedding_norm_layer(embedding_norm: str, dim: int) -> nn.Module:
    """
    :param embedding_norm: one of :data:`EMBEDDING_NORMS`
    :param dim: the embedding size
    :return: the parameter-free layer
    """
    if check_choice("jepa_embedding_norm", embedding_norm, EMBEDDING_NORMS) == "layernorm":
        return nn.LayerNorm(dim, elementwise_affine=False)
    return SimNorm(dim)


class JEPAFeaturesExtractor(BaseFeaturesExtractor):
    """
    The JEPA encoder E: any SB3 features extractor, optionally followed by an MLP.

    Its output ``z = E(s)`` feeds the actor and the critic heads *and* the JEPA predictor, so the RL loss and
    the world-model loss both train it. For vector observations the default is a learned MLP on top of the
    flattened observation: a bare flatten has no parameters, so there would be nothing to learn or to collapse.

    Keywords it does not own go to the base extractor, so ``features_extractor_kwargs`` written for SB3's default
    extractor keep working unchanged: ``dict(features_dim=32)`` for NatureCNN, ``dict(cnn_output_dim=64,
    normalized_image=True)`` for CombinedExtractor, a user class's own keywords for it. A keyword neither takes is
    refused (``TypeError``, naming it) before anything is built.

    :param observation_space: the observation space
    :param encoder_class: the base extractor (``NatureCNN``, ``FlattenExtractor``, ``CombinedExtractor`` or the
        user's own ``BaseFeaturesExtractor`` subclass). ``None`` picks SB3's choice for the space
        (see :func:`encoder_class_for_space`).
    :param encoder_kwargs: keyword arguments for ``encoder_class``, the explicit form of ``base_kwargs`` (needed
        only for a base keyword named like one of this class's own, ``net_arch`` or ``activation_fn``)
    :param net_arch: widths of the MLP layers applied after the base extractor, each followed by
        ``activation_fn``. ``None`` means ``[64, 64]`` when the base extractor has no parameters, ``[]`` otherwise.
    :param activation_fn: activation after each MLP layer
    :param embedding_norm: a parameter-free normalisation ending the encoder, one of :data:`EMBEDDING_NORMS`
        (None: none; the algorithms' ``jepa_embedding_norm`` sets it)
    :param base_kwargs: further keyword arguments for ``encoder_class``
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        encoder_class: type[BaseFeaturesExtractor] | None = None,
        encoder_kwargs: dict[str, Any] | None = None,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.Tanh,
        embedding_norm: str | None = None,
        **base_kwargs: Any,
    ):
        if encoder_class is None:
            encoder_class = encoder_class_for_space(observation_space)
        kwargs = base_encoder_kwargs(encoder_class, encoder_kwargs, base_kwargs)
        base = encoder_class(observation_space, **kwargs)
        if net_arch is None:
            net_arch = [] if has_parameters(base) else list(DEFAULT_VECTOR_ENCODER_ARCH)
        net_arch = check_net_arch("net_arch", net_arch)
        super().__init__(observation_space, net_arch[-1] if net_arch else base.features_dim)
        self.encoder = base
        layers = create_mlp(base.features_dim, -1, net_arch, activation_fn)
        self.embedding_norm = check_embedding_norm(embedding_norm)
        if self.embedding_norm is not None:
            # Parameter-free: no state-dict entry, so the option changes no saved tensor
            layers.append(embedding_norm_layer(self.embedding_norm, self.features_dim))
        self.head = nn.Sequential(*layers)
        self.net_arch = net_arch

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.head(self.encoder(observations))


#: The keywords :class:`JEPAFeaturesExtractor` keeps; every other one goes to its base extractor
JEPA_EXTRACTOR_KEYWORDS = ("encoder_class", "encoder_kwargs", "net_arch", "activation_fn", "embedding_norm")


def base_encoder_learns(observation_space: spaces.Space, extractor_kwargs: dict[str, Any]) -> bool:
    """
    Whether the base extractor that :class:`JEPAFeaturesExtractor` would wrap has trainable parameters (a CNN:
    yes; a flatten: no), found by building it on the ``meta`` device: no memory, no initialisation, and the random
    stream is left untouched (forked), so that ``jepa_coef=0`` still reproduces SB3 bit for bit.

    :param observation_space: the observation space
    :param extractor_kwargs: the :class:`JEPAFeaturesExtractor` keyword arguments
    :return: whether the base extractor learns
    """
    base_kwargs = {k: v for k, v in extractor_kwargs.items() if k not in JEPA_EXTRACTOR_KEYWORDS}
    encoder_class = extractor_kwargs.get("encoder_class") or encoder_class_for_space(observation_space)
    kwargs = base_encoder_kwargs(encoder_class, extractor_kwargs.get("encoder_kwargs"), base_kwargs)
    with th.random.fork_rng(devices=[]), th.device("meta"):
        probe = encoder_class(observation_space, **kwargs)
    return has_parameters(probe)


def base_encoder_kwargs(
    encoder_class: type[BaseFeaturesExtractor], encoder_kwargs: dict[str, Any] | None, base_kwargs: dict[str, Any]
) -> dict[str, Any]:
    """
    The keyword arguments :class:`JEPAFeaturesExtractor` hands its base extractor: ``encoder_kwargs`` and the
    keywords it does not own, checked against what ``encoder_class`` accepts.

    :param encoder_class: the base extractor
    :param encoder_kwargs: the explicit form
    :param base_kwargs: the keywords given to :class:`JEPAFeaturesExtractor` that are not its own
    :return: the merged keywords
    """
    encoder_kwargs = dict(encoder_kwargs or {})
    for key in encoder_kwargs.keys() & base_kwargs.keys():
        if encoder_kwargs[key] != base_kwargs[key]:
            raise ValueError(
                f"features_extractor_kwargs gives {key!r} twice, with different values: {base_kwargs[key]!r} and "
                f"{encoder_kwargs[key]!r} in encoder_kwargs"
            )
    kwargs = {**encoder_kwargs, **base_kwargs}
    accepted = accepted_keywords(encoder_class)
    unknown = [] if accepted is None else sorted(kwargs.keys() - accepted)
    if unknown:
        raise TypeError(
            f"features_extractor_kwargs got unexpected keyword argument(s) {unknown}: JEPAFeaturesExtractor takes "
            f"{list(JEPA_EXTRACTOR_KEYWORDS)} and passes the rest to its base extractor {encoder_class.__name__}, "
            f"which takes {sorted(accepted or ())}"
        )
    return kwargs


class ActionEncoder(nn.Module):
    """
    Turns the actions stored in the rollout buffer into the predictor's input:
    ``Discrete`` -> one-hot, ``MultiDiscrete`` -> one-hot per dimension, ``MultiBinary`` -> float,
    ``Box`` -> the action the environment received (clipped to the space, or unscaled from ``[-1, 1]`` when
    the policy squashes its output).

    :param action_space: the action space
    :param squash_output: whether the policy's Box actions are squashed to ``[-1, 1]`` (gSDE with
        ``squash_output=True``); they are then unscaled to the space's bounds, as SB3 does before ``env.step``
    """

    low: th.Tensor
    high: th.Tensor
    starts: th.Tensor

    def __init__(self, action_space: spaces.Space, squash_output: bool = False):
        super().__init__()
        self.action_space = action_space
        self.squash_output = squash_output
        if isinstance(action_space, spaces.Discrete):
            self.dim = int(action_space.n)
            starts = np.array([action_space.start])
        elif isinstance(action_space, spaces.MultiDiscrete):
            if action_space.nvec.ndim != 1:
                raise ValueError(
                    f"Only 1-D MultiDiscrete action spaces are supported, got nvec shape {action_space.nvec.shape}"
                )
            self.nvec = [int(n) for n in action_space.nvec]
            self.dim = sum(self.nvec)
            starts = np.asarray(getattr(action_space, "start", np.zeros_like(action_space.nvec)))
        elif isinstance(action_space, spaces.MultiBinary):
            self.dim = int(np.prod(action_space.shape))
            starts = np.zeros(1)
        elif isinstance(action_space, spaces.Box):
            self.dim = int(np.prod(action_space.shape))
            starts = np.zeros(1)
            # Not persistent: derived from the action space, so they stay out of the state dict
            self.register_buffer("low", th.as_tensor(action_space.low, dtype=th.float32).flatten(), persistent=False)
            self.register_buffer("high", th.as_tensor(action_space.high, dtype=th.float32).flatten(), persistent=False)
        else:
            raise ValueError(f"Unsupported action space for the JEPA predictor: {action_space}")
        self.register_buffer("starts", th.as_tensor(starts, dtype=th.long).flatten(), persistent=False)

    def forward(self, actions: th.Tensor) -> th.Tensor:
        batch = actions.shape[0]
        if isinstance(self.action_space, spaces.Discrete):
            # A scatter into zeros: the same codes as F.one_hot(...).float() in two operations instead of five (its
            # range check reduces the batch twice); an action outside the space is still refused (RuntimeError)
            indices = actions.reshape(batch, 1).long() - self.starts
            return th.zeros(batch, self.dim, device=actions.device).scatter_(1, indices, 1.0)
        if isinstance(self.action_space, spaces.MultiDiscrete):
            indices = actions.reshape(batch, len(self.nvec)).long() - self.starts
            return th.cat([F.one_hot(indices[:, i], n) for i, n in enumerate(self.nvec)], dim=1).float()
        actions = actions.reshape(batch, self.dim).float()
        if isinstance(self.action_space, spaces.Box):
            if self.squash_output:
                return self.low + 0.5 * (actions + 1.0) * (self.high - self.low)
            # Rollout buffers store the unclipped Gaussian sample: clip it as SB3 does before env.step
            return th.maximum(th.minimum(actions, self.high), self.low)
        return actions

    def from_env_actions(self, actions: th.Tensor) -> th.Tensor:
        """
        The predictor's input for actions as the environment receives them (what a planner searches over), instead
        of as the rollout buffer stores them: the two differ only for Box actions of a squashing policy, whose buffer
        holds ``[-1, 1]`` values that :meth:`forward` unscales.

        :param actions: a batch of actions in the action space's units
        :return: their encoding, the same as :meth:`forward` gives for the stored form of these actions
        """
        if isinstance(self.action_space, spaces.Box):
            actions = actions.reshape(actions.shape[0], self.dim).float()
            return th.maximum(th.minimum(actions, self.high), self.low)
        return self(actions)


class ActionConditionedMLP(nn.Module):
    """
    What W and R share: an MLP on ``concat(z_t, encode(a_t))`` (the action encoded by :class:`ActionEncoder`).

    :param features_dim: the embedding size ``dim(z)``
    :param action_space: the action space
    :param output_dim: the size of the output
    :param net_arch: hidden layer widths
    :param activation_fn: activation after each hidden layer
    :param squash_output: see :class:`ActionEncoder`
    """

    def __init__(
        self,
        features_dim: int,
        action_space: spaces.Space,
        output_dim: int,
        net_arch: list[int],
        activation_fn: type[nn.Module] = nn.ReLU,
        squash_output: bool = False,
    ):
        super().__init__()
        self.action_encoder = ActionEncoder(action_space, squash_output=squash_output)
        self.net = nn.Sequential(*create_mlp(features_dim + self.action_encoder.dim, output_dim, net_arch, activation_fn))

    def mlp(self, z: th.Tensor, action_features: th.Tensor) -> th.Tensor:
        """
        :param z: embeddings, shape ``(batch, dim(z))``
        :param action_features: encoded actions, shape ``(batch, action_encoder.dim)`` (see
            :meth:`ActionEncoder.from_env_actions`)
        :return: the MLP's output, shape ``(batch, output_dim)``
        """
        return self.net(th.cat([z, action_features], dim=1))


class JEPAPredictor(ActionConditionedMLP):
    """
    The action-conditioned predictor W: an MLP on ``concat(z_t, encode(a_t))`` that outputs ``z_{t+1}``'s estimate,
    or with ``residual`` the change: ``W(z, a) = z + MLP(z, a)``.

    Why residual: consecutive embeddings are close (an agent moves a few pixels a step), so the "no change"
    prediction ``z_{t+1} = z_t`` is already a good one, and a plain MLP must relearn the identity through its hidden
    layers (a bottleneck where they are narrower than ``z``: NatureCNN's 512 dimensions through 256 units by default).
    On Two Rooms a plain W's open-loop error stayed above that baseline's at every horizon (docs/results/planning.md).
    The residual W's last layer starts at zero, so W starts *as* the "no change" predictor and learns what an action
    changes, as dynamics models that predict state deltas do.

    :param features_dim: the embedding size ``dim(z)``
    :param action_space: the action space
    :param net_arch: hidden layer widths
    :param activation_fn: activation after each hidden layer
    :param squash_output: see :class:`ActionEncoder`
    :param residual: predict ``z + MLP(z, a)`` (the MLP's last layer initialised to zero) instead of ``MLP(z, a)``
    """

    def __init__(
        self,
        features_dim: int,
        action_space: spaces.Space,
        net_arch: list[int],
        activation_fn: type[nn.Module] = nn.ReLU,
        squash_output: bool = False,
        residual: bool = False,
    ):
        super().__init__(features_dim, action_space, features_dim, net_arch, activation_fn, squash_output)
        self.residual = check_bool("residual", residual)
        if self.residual:
            # After the default initialisation, so that the random stream (and every other layer) is as without it
            last = self.net[-1]
            assert isinstance(last, nn.Linear)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, z: th.Tensor, actions: th.Tensor) -> th.Tensor:
        return self.next(z, self.action_encoder(actions))

    def next(self, z: th.Tensor, action_features: th.Tensor) -> th.Tensor:
        """
        One latent step from encoded actions (TD-MPC2's ``next``): what planners call, with one-hot, relaxed
        (softmax) or continuous action features (see :meth:`ActionEncoder.from_env_actions`).

        :param z: embeddings, shape ``(batch, dim(z))``
        :param action_features: encoded actions, shape ``(batch, action_encoder.dim)``
        :return: the predicted next embeddings
        """
        change_or_next = self.mlp(z, action_features)
        return z + change_or_next if self.residual else change_or_next


def check_projection_arch(net_arch: Any) -> list[int] | None:
    """
    :param net_arch: the projection head's layer widths (``jepa_projection_arch``), or None
    :return: the widths as a list of positive ints, or None, if there is at least one layer (its width is the
        projection's size)
    """
    if net_arch is None:
        return None
    widths = check_net_arch("jepa_projection_arch", net_arch)
    if not widths:
        raise ValueError("jepa_projection_arch must be None or name at least one layer (the last is the projection)")
    return widths


class JEPAProjector(nn.Module):
    """
    The projection head P (SPR, BYOL): an MLP applied to the prediction ``W(z_t, a_t)`` and to the target
    ``z_{t+1}`` before the loss compares them, so that the loss constrains ``P(z)``, a space of its own, rather than
    ``z``, which the actor and the critic read. ReLU between layers, none after the last.

    :param features_dim: the embedding size ``dim(z)``
    :param net_arch: the layers' widths; the last is the projection's size
    """

    def __init__(self, features_dim: int, net_arch: list[int]):
        super().__init__()
        widths = check_projection_arch(net_arch)
        assert widths is not None, "a projection head has layers"
        self.net = nn.Sequential(*create_mlp(features_dim, widths[-1], widths[:-1], nn.ReLU))

    def forward(self, z: th.Tensor) -> th.Tensor:
        return self.net(z)


class JEPARewardPredictor(ActionConditionedMLP):
    """
    The reward predictor R: an MLP on ``concat(z_t, encode(a_t))`` that outputs the estimate of ``r_t``, the reward
    of taking ``a_t`` in ``s_t`` (TD-MPC2's ``reward``). A planner adds its predictions along a plan (the return
    ``sum_t gamma^t R(z_t, a_t) + gamma^H V(z_H)``); nothing else reads it.

    :param features_dim: the embedding size ``dim(z)``
    :param action_space: the action space
    :param net_arch: hidden layer widths
    :param activation_fn: activation after each hidden layer
    :param squash_output: see :class:`ActionEncoder`
    """

    def __init__(
        self,
        features_dim: int,
        action_space: spaces.Space,
        net_arch: list[int],
        activation_fn: type[nn.Module] = nn.ReLU,
        squash_output: bool = False,
    ):
        super().__init__(features_dim, action_space, 1, net_arch, activation_fn, squash_output)

    def forward(self, z: th.Tensor, actions: th.Tensor) -> th.Tensor:
        return self.reward(z, self.action_encoder(actions))

    def reward(self, z: th.Tensor, action_features: th.Tensor) -> th.Tensor:
        """
        :param z: embeddings, shape ``(batch, dim(z))``
        :param action_features: encoded actions, shape ``(batch, action_encoder.dim)`` (see
            :meth:`ActionEncoder.from_env_actions`)
        :return: the predicted rewards, shape ``(batch,)``
        """
        return self.mlp(z, action_features).squeeze(-1)


def warn_if_encoder_has_no_parameters(encoder: nn.Module) -> None:
    """
    Warn (once per call site, as ``warnings`` does) that a parameter-free encoder cannot learn from the JEPA loss.

    :param encoder: the features extractor used as the encoder E
    """
    if not has_parameters(encoder):
        warnings.warn(
            f"The encoder {type(encoder).__name__} has no trainable parameters: the JEPA loss can only train "
            "the predictor. Use JEPAFeaturesExtractor (the default of the JEPA policies) or a learned extractor.",
            UserWarning,
            stacklevel=3,
        )
