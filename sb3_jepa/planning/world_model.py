"""
The world model a planner searches through, with TD-MPC2's names: ``encode`` (E), ``next`` (W), ``R`` (the reward
predictor, where the model was trained with ``jepa_reward_coef > 0``), ``pi`` (the actor) and ``V`` (the critic), all
read off a trained A2CJEPA/PPOJEPA policy; nothing here is trained.

The space a plan is measured in is the one ``W`` was trained to predict in (:meth:`WorldModel.target` and
:meth:`WorldModel.compared`):

- ``jepa_target`` ``online`` or ``stop_grad``: ``W`` predicts ``E(s')``: the goal is encoded with ``E``;
- ``ema``: ``W`` predicts the target encoder's ``E_ema(s')``: the goal is encoded with ``E_ema``;
- ``jepa_loss="cosine"``: only the direction of ``W``'s output was trained (``2 - 2 cos``): distances are measured
  between L2-normalised vectors (for the actor and the critic, a predicted latent is rescaled to the start
  embedding's norm, the scale they were trained on);
- a projection head ``P`` (``jepa_projection_arch``): the loss compared ``P(W(z, a))`` with ``P(z')``: distances
  are measured between projections (then normalised, for ``cosine``).

The actor and the critic read ``z = E(s)``; a predicted latent of an ``ema`` model lies in the target encoder's
space, which tracks ``E`` (tau 0.005 per update by default): they read it as it is.
"""

import contextlib
from collections.abc import Iterator
from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import (
    CategoricalDistribution,
    DiagGaussianDistribution,
    MultiCategoricalDistribution,
    SquashedDiagGaussianDistribution,
)
from torch.nn import functional as F

from sb3_jepa.common.jepa import JEPAPredictor
from sb3_jepa.common.loss import check_jepa_loss


class WorldModel:
    """
    A trained JEPA policy's parts as a planner uses them.

    :param policy: a JEPA policy (``jepa_encode``, ``jepa_predictor``; an A2CJEPA/PPOJEPA's ``policy``)
    :param jepa_loss: the loss ``W`` was trained with (the model's ``jepa_loss``)
    """

    def __init__(self, policy: Any, jepa_loss: str = "mse"):
        predictor = getattr(policy, "jepa_predictor", None)
        if not (hasattr(policy, "jepa_encode") and isinstance(predictor, JEPAPredictor)):
            raise ValueError(
                f"model must be an A2CJEPA/PPOJEPA model or a JEPA policy (with jepa_encode and jepa_predictor); "
                f"{type(policy).__name__} has no JEPA predictor"
            )
        self.policy: Any = policy
        self.predictor = predictor
        self.jepa_loss = check_jepa_loss(jepa_loss)
        self.ema = getattr(policy, "jepa_target", None) == "ema"
        #: the projection head the loss compared through, or None
        self.projector: Any = getattr(policy, "jepa_projector", None)
        # What pi() needs of the action space, on the model's device once (not a host-device copy per rollout step)
        space: Any = policy.action_space
        if isinstance(space, spaces.Box):
            self._low = th.as_tensor(space.low, dtype=th.float32, device=policy.device).flatten()
            self._high = th.as_tensor(space.high, dtype=th.float32, device=policy.device).flatten()
        elif isinstance(space, spaces.MultiDiscrete):
            self._starts = th.as_tensor(getattr(space, "start", 0), device=policy.device).reshape(-1)

    @property
    def critic_reads_z(self) -> bool:
        """Whether the critic reads the actor's embedding ``z`` (one encoder for both heads): ``V(z)`` is defined"""
        return bool(getattr(self.policy, "share_features_extractor", False))

    @contextlib.contextmanager
    def eval_mode(self) -> Iterator[None]:
        """
        Plan with the networks in eval mode (dropout off, BatchNorm on its running statistics, which encoding does
        not move), and put the policy back in the mode it was in.
        """
        was_training = self.policy.training
        self.policy.set_training_mode(False)
        try:
            yield
        finally:
            self.policy.set_training_mode(was_training)

    # -- E --------------------------------------------------------------------------------------------------------

    def encode(self, obs: Any) -> th.Tensor:
        """
        :param obs: an observation batch as ``policy.obs_to_tensor`` gives it
        :return: ``z = E(obs)``: ``W``'s input, and what the actor and the critic read, shape ``(batch, dim)``
        """
        with th.no_grad():
            return self.policy.jepa_encode(obs)

    def target(self, obs: Any) -> th.Tensor:
        """
        :param obs: an observation batch as ``policy.obs_to_tensor`` gives it
        :return: the embedding ``W`` was trained to predict for ``obs``: ``E_ema(obs)`` for an ``ema`` model, else
            ``E(obs)``; shape ``(batch, dim)``
        """
        with th.no_grad():
            return self.policy.jepa_encode(obs, target=True) if self.ema else self.policy.jepa_encode(obs)

    def compared(self, z: th.Tensor) -> th.Tensor:
        """
        :param z: predicted or target embeddings, shape ``(..., dim)``
        :return: what the loss compared: ``z`` itself (``mse``) or its direction (``cosine``: L2-normalised), after the
            projection head where the policy has one
        """
        if self.projector is not None:
            z = self.projector(z.reshape(-1, z.shape[-1])).reshape(*z.shape[:-1], -1)
        return F.normalize(z, dim=-1) if self.jepa_loss == "cosine" else z

    # -- W --------------------------------------------------------------------------------------------------------

    def action_features(self, actions: th.Tensor) -> th.Tensor:
        """
        :param actions: env actions, shape ``(n, *action shape)``
        :return: ``W``'s input for them, shape ``(n, action_dim)``
        """
        return self.predictor.action_encoder.from_env_actions(actions)

    def next(self, z: th.Tensor, action_features: th.Tensor) -> th.Tensor:
        """
        :param z: embeddings, shape ``(n, dim)``
        :param action_features: encoded actions, shape ``(n, action_dim)``
        :return: ``W(z, a)``, shape ``(n, dim)``
        """
        return self.predictor.next(z, action_features)

    def rollout(self, z: th.Tensor, action_features: th.Tensor) -> th.Tensor:
        """
        Roll ``W`` forward from each embedding along its action sequence, as the K-step loss does (``W`` applied to
        its own predictions).

        :param z: start embeddings, shape ``(n, dim)``
        :param action_features: encoded actions, shape ``(n, horizon, action_dim)``
        :return: the predicted latents after each action, shape ``(n, horizon, dim)``
        """
        latents = []
        for step in range(action_features.shape[1]):
            z = self.next(z, action_features[:, step])
            latents.append(z)
        return th.stack(latents, dim=1)

    def readout(self, latents: th.Tensor, z: th.Tensor) -> th.Tensor:
        """
        :param latents: predicted latents, shape ``(..., dim)``
        :param z: the embeddings they were predicted from, broadcastable to ``latents``
        :return: what the actor and the critic read for them: the latents (``mse``), or their direction at the
            norm of ``z`` (``cosine``: the norm of ``W``'s output was never trained)
        """
        if self.jepa_loss == "cosine":
            return F.normalize(latents, dim=-1) * z.norm(dim=-1, keepdim=True)
        return latents

    # -- pi and V -------------------------------------------------------------------------------------------------

    def check_pi(self) -> None:
        """Refuse action distributions :meth:`pi` cannot sample with the planner's generator"""
        distribution = getattr(self.policy, "action_dist", None)
        supported = (CategoricalDistribution, MultiCategoricalDistribution, DiagGaussianDistribution)
        if not isinstance(distribution, supported) or isinstance(distribution, SquashedDiagGaussianDistribution):
            raise ValueError(
                f"prior='policy' samples from Categorical, MultiCategorical or DiagGaussian action distributions; this "
                f"policy's is {type(distribution).__name__} (gSDE: train with use_sde=False, or plan with prior=None)"
            )

    def check_V(self) -> None:
        """Refuse a critic that does not read the actor's ``z``"""
        if not self.critic_reads_z:
            raise ValueError(
                "value_weight > 0 needs a critic that reads the actor's embedding z, but this policy gives the critic "
                "its own encoder (share_features_extractor=False, the default MlpPolicy layout): V(W(z, a)) is "
                "undefined. Train with policy_kwargs=dict(share_features_extractor=True) (CnnPolicy's default), or "
                "plan with value_weight=0"
            )

    def pi(self, z: th.Tensor, generator: th.Generator, deterministic: bool | th.Tensor = False) -> th.Tensor:
        """
        Actions from the actor on embeddings, drawn with the planner's generator (SB3's ``predict`` draws from
        torch's global one). Box actions are clipped to the bounds, as SB3's ``predict`` does. The distribution's
        parameters are read off the action net directly (SB3's distribution objects cost more than the sampling
        in a planner's per-step loop).

        :param z: embeddings (or :meth:`readout` of predicted latents), shape ``(n, dim)``
        :param generator: the random generator
        :param deterministic: the distribution's mode instead of a sample: for every row, or per row (a bool
            tensor of shape ``(n,)``)
        :return: env actions, shape ``(n, *action shape)`` (Discrete: ``(n,)``)
        """
        policy = self.policy
        out = policy.action_net(policy.mlp_extractor.forward_actor(z))
        mode = th.as_tensor(deterministic, device=z.device).expand(len(z))
        space = policy.action_space
        if isinstance(policy.action_dist, DiagGaussianDistribution):
            noise = th.randn(out.shape, generator=generator, device=out.device)
            flat = out + policy.log_std.exp() * noise * (~mode)[:, None]
            return th.maximum(th.minimum(flat, self._high), self._low).reshape(-1, *space.shape)
        sizes = [int(space.n)] if isinstance(space, spaces.Discrete) else [int(n) for n in space.nvec]
        indices = []
        for logits in out.split(sizes, dim=1):
            sampled = th.multinomial(th.softmax(logits, dim=1), 1, generator=generator)[:, 0]
            indices.append(th.where(mode, logits.argmax(dim=1), sampled))
        if isinstance(space, spaces.Discrete):
            return indices[0] + int(space.start)
        return th.stack(indices, dim=-1) + self._starts

    def check_R(self) -> None:
        """Refuse a policy without a reward predictor"""
        if getattr(self.policy, "jepa_reward_predictor", None) is None:
            raise ValueError(
                "value_estimate='return' adds the predicted rewards along the plan, but this model has no reward "
                "predictor: train it with jepa_reward_coef > 0 (e.g. 0.01), or plan with value_estimate='terminal'"
            )

    def R(self, z: th.Tensor, action_features: th.Tensor) -> th.Tensor:
        """
        :param z: embeddings (or :meth:`readout` of predicted latents), shape ``(n, dim)``
        :param action_features: encoded actions, shape ``(n, action_dim)``
        :return: the predicted reward of each action, shape ``(n,)`` (see :meth:`check_R`)
        """
        return self.policy.jepa_reward_predictor.reward(z, action_features)

    def V(self, z: th.Tensor) -> th.Tensor:
        """
        :param z: embeddings (or :meth:`readout` of predicted latents), shape ``(..., dim)``
        :return: the critic's value, shape ``(...)`` (see :meth:`check_V`)
        """
        flat = z.reshape(-1, z.shape[-1])
        values = self.policy.value_net(self.policy.mlp_extractor.forward_critic(flat))
        return values.reshape(z.shape[:-1])
