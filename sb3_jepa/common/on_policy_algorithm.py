"""
The JEPA side of an on-policy algorithm, what A2CJEPA and PPOJEPA share: argument checks, the buffer and policy
choice, the capture of terminal and final observations while collecting, and, called from the marked lines of
their copied ``train()``, the wiring of the JEPA loss (:mod:`sb3_jepa.common.loss`): the ``jepa_coef`` schedule,
the finite-loss check, the ``ema`` target update and the ``jepa/`` logs.
"""

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.torch_layers import CombinedExtractor, FlattenExtractor, NatureCNN
from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.common.utils import FloatSchedule, obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from sb3_jepa.common.augmentation import check_augmentation
from sb3_jepa.common.buffers import JEPADictRolloutBuffer, JEPARolloutBuffer, NextObservationMixin, as_jepa_buffer
from sb3_jepa.common.jepa import JEPAFeaturesExtractor, SimNorm, check_embedding_norm, check_projection_arch
from sb3_jepa.common.loss import (
    CapturedEmbeddings,
    JEPASamples,
    PredictionLoss,
    check_jepa_loss,
    check_target_mode,
    jepa_prediction_loss,
    reward_prediction_loss,
    vicreg_terms,
)
from sb3_jepa.common.metrics import collapse_metrics, prediction_cosine
from sb3_jepa.common.policies import JEPAPolicyMixin, as_jepa_policy
from sb3_jepa.common.torch_layers import SmallImageCNN
from sb3_jepa.common.utils import (
    check_bool,
    check_finite_nonnegative,
    check_net_arch,
    check_positive_int,
    num_rows,
    observations_equal,
)

SelfJEPAOnPolicy = TypeVar("SelfJEPAOnPolicy", bound="JEPAOnPolicyMixin")

#: Keys of ``policy_kwargs`` that are set from the algorithm's own arguments
_POLICY_KWARGS_FROM_ALGORITHM = (
    "jepa_target",
    "predictor_net_arch",
    "predictor_residual",
    "jepa_embedding_norm",
    "jepa_projection_arch",
    "jepa_reward",
)


#: Module types whose output does not depend on the train/eval mode (exact types: a subclass may read
#: ``self.training``): an encoder made only of these gives the same embeddings while collecting (eval mode) and
#: training, so the final observations' embeddings of the collection can serve as targets (see
#: ``JEPAOnPolicyMixin._jepa_reuses_final_encoding``). Left out on purpose: BatchNorm and InstanceNorm (running
#: statistics), dropout of every kind, RReLU (random slopes in train mode), MultiheadAttention (its dropout).
MODE_INDEPENDENT_MODULES: frozenset[type[nn.Module]] = frozenset(
    {
        *(nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.Bilinear, nn.Identity, nn.Flatten, nn.Unflatten),
        *(nn.Sequential, nn.ModuleList, nn.ModuleDict, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm),
        *(nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d),
        *(nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d),
        *(nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish),
        *(nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardsigmoid, nn.Hardswish, nn.Softplus, nn.Softsign, nn.GLU),
        *(nn.Softmax, nn.LogSoftmax),
        # SB3's extractors and ours: their forward passes read no mode
        *(NatureCNN, FlattenExtractor, CombinedExtractor, JEPAFeaturesExtractor, SmallImageCNN, SimNorm),
    }
)


@dataclass
class _TrainStats:
    """What one call of ``train()`` accumulates for the ``jepa/`` logs (never saved)."""

    coef: float = 0.0
    #: detached JEPA losses of the minibatches (averaged once, at logging time: no extra sync per step)
    losses: list[th.Tensor] = field(default_factory=list)
    #: detached reward predictor losses of the minibatches, when it is on
    reward_losses: list[th.Tensor] = field(default_factory=list)
    #: detached VICReg (variance, covariance) terms of the minibatches, when they are on
    vicreg: list[th.Tensor] = field(default_factory=list)
    #: the last minibatch's embeddings, for the collapse metrics (not detached: the metrics detach them)
    last_embeddings: th.Tensor | None = None
    #: the last minibatch's prediction, target and mask, for ``jepa/pred_cosine`` (which detaches them)
    last_prediction: PredictionLoss | None = None


class JEPAOnPolicyMixin(OnPolicyAlgorithm):
    """
    Mixed into SB3's A2C and PPO (``class A2CJEPA(JEPAOnPolicyMixin, A2C)``). The subclass's ``__init__`` calls
    :meth:`_init_jepa` before SB3's ``__init__``, and its copied ``train()`` calls :meth:`_jepa_train_start`,
    :meth:`_jepa_add_loss`, :meth:`_jepa_after_step` and :meth:`_jepa_log`.
    """

    policy: JEPAPolicyMixin  # type: ignore[assignment]
    rollout_buffer: JEPARolloutBuffer | JEPADictRolloutBuffer  # type: ignore[assignment]
    #: whether the final observations' embeddings from the collection are worth reusing in train() (see
    #: _jepa_reuses_final_encoding): A2C's one step per update, yes; PPO's first minibatch alone, no
    _jepa_final_encoding_reusable: ClassVar[bool] = False

    jepa_coef: float | Schedule
    jepa_target: str
    jepa_tau: float
    encoder_rl_grad: bool
    predictor_net_arch: list[int] | None
    jepa_vicreg_var_coef: float
    jepa_vicreg_cov_coef: float
    jepa_prediction_steps: int
    jepa_loss: str
    jepa_embedding_norm: str | None
    jepa_reward_coef: float
    jepa_reward_steps: int
    augment_observations: str | None
    jepa_projection_arch: list[int] | None

    def _init_jepa(
        self,
        *,
        jepa_coef: float | Schedule,
        jepa_target: str,
        jepa_tau: float,
        encoder_rl_grad: bool,
        predictor_net_arch: list[int] | None,
        predictor_residual: bool,
        jepa_vicreg_var_coef: float,
        jepa_vicreg_cov_coef: float,
        jepa_prediction_steps: int,
        jepa_loss: str,
        jepa_embedding_norm: str | None,
        jepa_reward_coef: float,
        jepa_reward_steps: int,
        augment_observations: str | None,
        jepa_projection_arch: list[int] | None,
        rollout_buffer_class: type[RolloutBuffer] | None,
        policy_kwargs: dict[str, Any] | None,
    ) -> None:
        """
        Check and store the JEPA arguments. Runs before SB3's ``__init__``, so bad input fails before any work.

        :param jepa_coef: see the algorithm's docstring
        :param jepa_target: see the algorithm's docstring
        :param jepa_tau: see the algorithm's docstring
        :param encoder_rl_grad: see the algorithm's docstring
        :param predictor_net_arch: see the algorithm's docstring
        :param predictor_residual: see the algorithm's docstring
        :param jepa_vicreg_var_coef: see the algorithm's docstring
        :param jepa_vicreg_cov_coef: see the algorithm's docstring
        :param jepa_prediction_steps: see the algorithm's docstring
        :param jepa_loss: see the algorithm's docstring
        :param jepa_embedding_norm: see the algorithm's docstring
        :param jepa_reward_coef: see the algorithm's docstring
        :param jepa_reward_steps: see the algorithm's docstring
        :param augment_observations: see the algorithm's docstring
        :param jepa_projection_arch: see the algorithm's docstring
        :param rollout_buffer_class: the algorithm's ``rollout_buffer_class`` argument
        :param policy_kwargs: the algorithm's ``policy_kwargs`` argument
        """
        if callable(jepa_coef):
            for progress in (1.0, 0.0):
                check_finite_nonnegative(f"jepa_coef (schedule at progress_remaining={progress})", jepa_coef(progress))
        else:
            jepa_coef = check_finite_nonnegative("jepa_coef", jepa_coef)
        self.jepa_coef = jepa_coef
        self.jepa_target = check_target_mode(jepa_target)
        if isinstance(jepa_tau, bool) or not isinstance(jepa_tau, (int, float)) or not 0.0 < jepa_tau <= 1.0:
            raise ValueError(f"jepa_tau must be a number in (0, 1] (1 copies the encoder at every step), got {jepa_tau!r}")
        self.jepa_tau = float(jepa_tau)
        self.encoder_rl_grad = check_bool("encoder_rl_grad", encoder_rl_grad)
        self.predictor_net_arch = (
            None if predictor_net_arch is None else check_net_arch("predictor_net_arch", predictor_net_arch)
        )
        self.predictor_residual = check_bool("predictor_residual", predictor_residual)
        self.jepa_vicreg_var_coef = check_finite_nonnegative("jepa_vicreg_var_coef", jepa_vicreg_var_coef)
        self.jepa_vicreg_cov_coef = check_finite_nonnegative("jepa_vicreg_cov_coef", jepa_vicreg_cov_coef)
        self.jepa_prediction_steps = check_positive_int("jepa_prediction_steps", jepa_prediction_steps)
        self.jepa_loss = check_jepa_loss(jepa_loss)
        self.jepa_embedding_norm = check_embedding_norm(jepa_embedding_norm)
        self.jepa_reward_coef = check_finite_nonnegative("jepa_reward_coef", jepa_reward_coef)
        self.jepa_reward_steps = check_positive_int("jepa_reward_steps", jepa_reward_steps)
        if self.jepa_reward_steps > 1 and self.jepa_reward_coef == 0:
            raise ValueError(
                f"jepa_reward_steps={jepa_reward_steps} trains the reward predictor on W's rollouts, but there is no reward "
                "predictor: pass jepa_reward_coef > 0 (e.g. 0.01), or leave jepa_reward_steps at 1"
            )
        self.augment_observations = check_augmentation(augment_observations)
        self.jepa_projection_arch = check_projection_arch(jepa_projection_arch)
        if rollout_buffer_class is not None:
            as_jepa_buffer(rollout_buffer_class)  # raises for a class that is no RolloutBuffer
        for key in _POLICY_KWARGS_FROM_ALGORITHM:
            if policy_kwargs is not None and key in policy_kwargs:
                raise ValueError(f"Pass {key} as an argument of {type(self).__name__}, not in policy_kwargs")
        self._jepa_train_stats = _TrainStats()
        self._jepa_unrecorded: _TrainStats | None = None
        self._jepa_collecting_into: RolloutBuffer | None = None

    def _excluded_save_params(self) -> list[str]:
        return [
            *super()._excluded_save_params(),
            "_jepa_train_stats",
            "_jepa_unrecorded",
            "_jepa_collecting_into",
            "_jepa_encoder_mixes_rows",
            "_jepa_encoder_mode_independent",
            "_jepa_final_versions",
        ]

    def _setup_model(self) -> None:
        is_dict = isinstance(self.observation_space, spaces.Dict)
        # SB3's choice for None; any other RolloutBuffer subclass gets the next-observation bookkeeping mixed in
        buffer_class = self.rollout_buffer_class or (DictRolloutBuffer if is_dict else RolloutBuffer)
        # A DictRolloutBuffer on other spaces: DictRolloutBuffer's own assertion says so, as in SB3
        if is_dict and not issubclass(buffer_class, DictRolloutBuffer):
            raise ValueError(
                f"rollout_buffer_class must be a DictRolloutBuffer (subclasses included) for the observation space "
                f"{self.observation_space}, got {buffer_class.__name__}"
            )
        self.rollout_buffer_class = as_jepa_buffer(buffer_class)
        if self.jepa_prediction_steps > 1:
            self.rollout_buffer_kwargs = {**self.rollout_buffer_kwargs, "prediction_steps": self.jepa_prediction_steps}
        # getattr: models saved before 0.5 have no reward predictor
        self.jepa_reward_coef = getattr(self, "jepa_reward_coef", 0.0)
        reward = self.jepa_reward_coef > 0
        if reward:
            self.rollout_buffer_kwargs = {**self.rollout_buffer_kwargs, "with_rewards": True}
        # getattr: models saved before 0.5 read true embeddings only
        self.jepa_reward_steps = getattr(self, "jepa_reward_steps", 1)
        # Set afresh, not only added: SB3 saves rollout_buffer_kwargs, and load(path, jepa_reward_steps=1) must not keep
        # a saved model's longer rollout (the loss reads the samples' fields)
        self.rollout_buffer_kwargs = {k: v for k, v in self.rollout_buffer_kwargs.items() if k != "reward_steps"}
        if self.jepa_reward_steps > 1:
            self.rollout_buffer_kwargs = {**self.rollout_buffer_kwargs, "reward_steps": self.jepa_reward_steps}
        # getattr: models saved before 0.5 have no augmentation
        self.augment_observations = getattr(self, "augment_observations", None)
        if self.augment_observations is not None:
            self.rollout_buffer_kwargs = {**self.rollout_buffer_kwargs, "augment": self.augment_observations}
        self.policy_class = as_jepa_policy(self.policy_class)  # type: ignore[arg-type]
        # The JEPA settings reach the policy without entering self.policy_kwargs, which is saved and compared with
        # load(path, policy_kwargs=...): a user's policy_kwargs stay exactly the ones given (as in SB3). Models
        # saved by earlier versions carry them there: dropped, the algorithm's own attributes are the truth.
        user_policy_kwargs = {k: v for k, v in self.policy_kwargs.items() if k not in _POLICY_KWARGS_FROM_ALGORITHM}
        self.policy_kwargs = {
            **user_policy_kwargs,
            "jepa_target": self.jepa_target,
            "predictor_net_arch": self.predictor_net_arch,
            # getattr: models saved before 0.5 have a plain predictor
            "predictor_residual": getattr(self, "predictor_residual", False),
            "jepa_embedding_norm": self.jepa_embedding_norm,
            "jepa_reward": reward,
            # getattr: models saved before 0.5 have no projection
            "jepa_projection_arch": getattr(self, "jepa_projection_arch", None),
        }
        try:
            super()._setup_model()
        finally:
            self.policy_kwargs = user_policy_kwargs
        self._jepa_coef_schedule = FloatSchedule(self.jepa_coef)
        # Whether a row's embedding depends on the other rows of its batch (train-mode BatchNorm)
        self._jepa_encoder_mixes_rows = any(isinstance(m, _BatchNorm) for m in self.policy.jepa_encoder.modules())
        # Whether its output cannot depend on the train/eval mode (see _jepa_reuses_final_encoding)
        self._jepa_encoder_mode_independent = all(
            type(m) in MODE_INDEPENDENT_MODULES for m in self.policy.jepa_encoder.modules()
        )
        self._jepa_final_versions: tuple[int, ...] | None = None
        # Loaded models skip __init__'s _init_jepa: give them the transient state too
        self._jepa_train_stats = _TrainStats()
        self._jepa_unrecorded = None
        self._jepa_collecting_into = None

    def _maybe_recommend_cpu(self, mlp_class_name: str = "ActorCriticPolicy") -> None:
        # SB3 recognises its MlpPolicy by class name; the JEPA version of a policy class is named JEPA + its name
        # (JEPAActorCriticPolicy, the MlpPolicy alias, and as_jepa_policy(ActorCriticPolicy) alike)
        super()._maybe_recommend_cpu(f"JEPA{mlp_class_name}")

    # -- collecting transitions ------------------------------------------------------------------------------

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: RolloutBuffer,
        n_rollout_steps: int,
    ) -> bool:
        # SB3's collect_rollouts is not copied: terminal observations arrive through _update_info_buffer, which it
        # calls once per step just before rollout_buffer.add, and the final observations are _last_obs after it
        self._jepa_collecting_into = rollout_buffer
        reuse = isinstance(rollout_buffer, NextObservationMixin) and self._jepa_reuses_final_encoding()
        self.policy.jepa_remember_values_pass(reuse)
        try:
            complete = super().collect_rollouts(env, callback, rollout_buffer, n_rollout_steps)
        finally:
            self._jepa_collecting_into = None
            self.policy.jepa_remember_values_pass(False)
        if complete and isinstance(rollout_buffer, NextObservationMixin):
            assert self._last_obs is not None and self._last_episode_starts is not None
            embeddings = self._jepa_final_embeddings() if reuse else None
            rollout_buffer.add_final_observations(self._last_obs, self._last_episode_starts, embeddings)
        self.policy.jepa_values_pass = None  # nothing kept past the rollout (a stopped one included)
        return complete

    def _jepa_reuses_final_encoding(self) -> bool:
        """
        Whether the ``stop_grad`` target can take the final observations' embeddings from SB3's last value estimate
        of the rollout (``predict_values(new_obs)``) instead of encoding them again in ``train()``. They are the same
        numbers where the critic reads the encoder E (a shared extractor), the target is E itself without gradient,
        E's output cannot depend on the train/eval mode (it is made of :data:`MODE_INDEPENDENT_MODULES` only: no
        BatchNorm, no dropout, no encoder of the user's own, which may read ``self.training``), and the samples carry
        the observations themselves (no augmentation); :meth:`_jepa_final_embeddings` also checks that the encoder
        was given exactly the final observations, preprocessed as :meth:`JEPAPolicyMixin.jepa_encode` does. They stay
        valid while the encoder's weights do: the first optimizer step drops them (:meth:`_jepa_after_step`), and so
        does ``train()`` if anything changed the weights in between (:meth:`_jepa_train_start`). For A2C, whose update
        is one step on the whole rollout, that is the whole update, and on its CnnPolicy this encoding was most of
        the JEPA term's extra time (README, Speed). PPO would reuse them in its first minibatch only, where they are
        a few of its extras: it does not (``_jepa_final_encoding_reusable``).

        Not bit for bit: the extras still encoded (terminal observations) then go through the encoder in a smaller
        batch, and the CPU convolution's last bits depend on the batch size at some sizes (a row encoded alone
        differs from the same row in a batch of 8 by about 1e-6).
        """
        return (
            self._jepa_final_encoding_reusable
            and self.jepa_target == "stop_grad"
            # mode-independent rules out BatchNorm too, under which stop_grad's extras ride along the minibatch's pass
            and self._jepa_encoder_mode_independent
            and self.augment_observations is None
            and self.policy.share_features_extractor
            and (callable(self.jepa_coef) or self.jepa_coef > 0.0)
        )

    def _jepa_final_embeddings(self) -> th.Tensor | None:
        """
        :return: the final observations' embeddings from the last ``predict_values`` call of the collection, if the
            encoder was given the final observations there (SB3's last value estimate; a callback's call after it,
            or a policy of the user's own that preprocesses otherwise, give it something else: then None); their
            encoder weights' versions are kept for :meth:`_jepa_train_start`
        """
        values_pass = self.policy.jepa_values_pass  # collect_rollouts forgets it after this
        if values_pass is None:
            return None
        encoder_input, embeddings = values_pass
        assert self._last_obs is not None
        # What jepa_encode gives the encoder (one more host-to-device copy of n_envs observations per rollout on GPU)
        final = obs_as_tensor(self._last_obs, self.device)  # type: ignore[arg-type]
        expected = preprocess_obs(final, self.observation_space, normalize_images=self.policy.normalize_images)
        if not observations_equal(encoder_input, expected):
            return None
        self._jepa_final_versions = self._jepa_encoder_versions()
        return embeddings

    def _jepa_encoder_versions(self) -> tuple[int, ...]:
        """:return: the version counters of the encoder's parameters and buffers (any in-place change bumps one)"""
        encoder = self.policy.jepa_encoder
        return tuple(tensor._version for tensor in (*encoder.parameters(), *encoder.buffers()))

    def _update_info_buffer(self, infos: list[dict[str, Any]], dones: np.ndarray | None = None) -> None:
        super()._update_info_buffer(infos, dones)
        buffer = self._jepa_collecting_into
        if dones is not None and isinstance(buffer, NextObservationMixin):
            buffer.add_terminal_observations(infos, dones)

    # -- training: called from the marked lines of the copied train() ----------------------------------------

    def _jepa_train_start(self) -> None:
        """
        Start of ``train()``: read ``jepa_coef`` from its schedule, reset the logged statistics, and drop the final
        observations' embeddings if the encoder changed since they were made.
        """
        coef = self._jepa_coef_schedule(self._current_progress_remaining)
        check_finite_nonnegative(f"jepa_coef (schedule at progress_remaining={self._current_progress_remaining})", coef)
        self._jepa_train_stats = _TrainStats(coef=coef)
        # The final observations' embeddings only if the encoder's weights are still those that made them (a
        # callback at the rollout's end, or set_parameters(), may have changed them)
        if self.rollout_buffer.final_embeddings is not None and self._jepa_final_versions != self._jepa_encoder_versions():
            self.rollout_buffer.final_embeddings = None

    def _jepa_capture_start(self, rollout_data: JEPASamples) -> None:
        """
        Before ``evaluate_actions``: capture its encoder pass, extended to the next observations that are not rows
        of the batch (terminal and final observations; in PPO, successors outside the minibatch), so that one
        encoder pass gives ``E(s_t)`` and every ``E(s_{t+1})`` (with the ``online`` target, and ``stop_grad`` under
        BatchNorm, when the loss is on).
        """
        stats = self._jepa_train_stats
        wants_extra = stats.coef > 0.0 and self._jepa_extras_ride_along()
        extra = rollout_data.next_extra_observations
        self.policy.jepa_capture_start(
            detach_encoder=not self.encoder_rl_grad,
            extra_observations=extra if wants_extra and num_rows(extra) > 0 else None,
        )

    def _jepa_extras_ride_along(self) -> bool:
        """
        Whether ``next_extra_observations`` are encoded in the encoder pass of ``evaluate_actions``. Only the online
        target needs their gradient; stop_grad encodes them without a graph (a forward pass costs about a third of a
        forward and backward), ema with its own encoder. Except under BatchNorm: a pass of their own would normalise
        the extras with their own statistics (and fail on A2C's one final observation per env: "Expected more than
        1 value per channel"), so there stop_grad rides along too, and detaches.
        """
        return self.jepa_target == "online" or (self.jepa_target == "stop_grad" and self._jepa_encoder_mixes_rows)

    def _jepa_add_loss(self, loss: th.Tensor, rollout_data: JEPASamples, captured: CapturedEmbeddings | None) -> th.Tensor:
        """
        :param loss: SB3's loss for this (mini)batch
        :param rollout_data: the (mini)batch
        :param captured: what the encoder pass of ``evaluate_actions`` captured (:meth:`JEPAPolicyMixin.jepa_capture_stop`)
        :return: ``loss + jepa_coef * jepa_loss`` (plus the VICReg terms when they are on; ``loss`` itself when
            ``jepa_coef`` is 0 and they are off)
        """
        if captured is None:
            raise RuntimeError(
                f"{type(self.policy).__name__}.evaluate_actions() did not run the encoder "
                f"({type(self.policy.jepa_encoder).__name__}): the JEPA loss needs z = E(s_t) from that pass"
            )
        stats = self._jepa_train_stats
        z = captured.batch
        stats.last_embeddings = z  # detached when logged, as are the other statistics: nothing extra per minibatch
        uses_vicreg = self.jepa_vicreg_var_coef > 0 or self.jepa_vicreg_cov_coef > 0
        if stats.coef == 0.0 and not uses_vicreg and self.jepa_reward_coef == 0.0:
            # Exactly SB3's loss: nothing is added to the graph, so jepa_coef=0 reproduces A2C/PPO bit for bit
            return loss
        # The terms added to SB3's loss, summed in this order
        terms = []
        if stats.coef > 0.0:
            jepa = jepa_prediction_loss(
                self.policy, rollout_data, captured, self.jepa_target, self.jepa_prediction_steps, self.jepa_loss
            )
            stats.last_prediction = jepa
            terms.append(stats.coef * jepa.loss)
        if uses_vicreg:
            variance, covariance = vicreg_terms(z.flatten(1))
            terms += [self.jepa_vicreg_var_coef * variance, self.jepa_vicreg_cov_coef * covariance]
            stats.vicreg.append(th.stack([variance, covariance]).detach())
        if self.jepa_reward_coef > 0.0:
            reward_loss = reward_prediction_loss(self.policy, rollout_data, captured)
            terms.append(self.jepa_reward_coef * reward_loss)
        extra_loss = terms[0]
        for term in terms[1:]:
            extra_loss = extra_loss + term
        # One host sync per minibatch (a no-op on CPU; beside the four of SB3's own PPO loop on GPU), so that a
        # non-finite loss is raised before backward() and the optimizer step: the weights stay as they were
        value = extra_loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(
                f"The JEPA loss is {value} (jepa_coef={stats.coef}, jepa_reward_coef={self.jepa_reward_coef}): the "
                "embeddings or the predictors diverged. "
                "Lower jepa_coef or the learning rate, or normalise the observations."
            )
        if stats.coef > 0.0:
            stats.losses.append(jepa.loss.detach())
        if self.jepa_reward_coef > 0.0:
            stats.reward_losses.append(reward_loss.detach())
        return loss + extra_loss

    def _jepa_after_step(self) -> None:
        """After each optimizer step: move the ``ema`` target encoder, forget the final observations' embeddings."""
        # They were computed with the weights before this step (PPO's later minibatches encode those observations)
        self.rollout_buffer.final_embeddings = None
        if self.jepa_target == "ema":
            self.policy.jepa_update_target(self.jepa_tau)

    def _jepa_log(self) -> None:
        """
        End of ``train()``: keep this update's statistics for :meth:`record_jepa_metrics`, which computes the ``jepa/``
        metrics from them when they are read: before SB3 writes its logs (:meth:`dump_logs`), when a
        :class:`~sb3_jepa.common.callbacks.CollapseMetricsCallback` records an update, and when ``learn()`` returns.
        The collapse metrics cost an eigendecomposition (about 0.25 ms on 64 x 64 embeddings), as much as a whole A2C
        update of a small policy, and A2C writes its logs every 100 updates by default: computed at every update,
        99 of 100 were never read.
        """
        self._jepa_unrecorded = self._jepa_train_stats

    def record_jepa_metrics(self) -> None:
        """
        Record the ``jepa/`` metrics of the last update in the logger (``jepa/coef``, ``jepa/loss``, the collapse
        metrics of its last minibatch's embeddings, ``jepa/pred_cosine``, ...; the README's "Logged metrics"), once
        per update: a second call before the next update records nothing. SB3's log writing, the
        ``CollapseMetricsCallback`` and ``learn()`` call it; call it yourself after a ``train()`` of your own.
        """
        stats, self._jepa_unrecorded = self._jepa_unrecorded, None
        if stats is None:
            return
        self.logger.record("jepa/coef", stats.coef)
        if stats.losses:
            self.logger.record("jepa/loss", th.stack(stats.losses).mean().item())
        if stats.reward_losses:
            self.logger.record("jepa/reward_loss", th.stack(stats.reward_losses).mean().item())
        if stats.vicreg:
            variance, covariance = th.stack(stats.vicreg).mean(dim=0).tolist()
            self.logger.record("jepa/vicreg_variance", variance)
            self.logger.record("jepa/vicreg_covariance", covariance)
        if stats.last_prediction is not None:
            last = stats.last_prediction
            self.logger.record("jepa/pred_cosine", prediction_cosine(last.prediction, last.target, last.mask))
        if stats.last_embeddings is not None and stats.last_embeddings.shape[0] >= 2:
            for name, value in collapse_metrics(stats.last_embeddings.flatten(1)).items():
                self.logger.record(f"jepa/{name}", value)

    def dump_logs(self, iteration: int = 0) -> None:
        """
        SB3's ``dump_logs``, after recording the ``jepa/`` metrics of the last update (:meth:`record_jepa_metrics`).

        :param iteration: the logging iteration
        """
        self.record_jepa_metrics()
        super().dump_logs(iteration)

    def learn(self: SelfJEPAOnPolicy, *args: Any, **kwargs: Any) -> SelfJEPAOnPolicy:
        """
        SB3's ``learn()`` (the algorithm's arguments, A2C's and PPO's defaults), then :meth:`record_jepa_metrics`.

        :param args: the positional arguments of ``learn()``
        :param kwargs: its keyword arguments
        :return: the trained model
        """
        model = super().learn(*args, **kwargs)
        # The last update's metrics, in the logger when learn() returns (no dump follows the last train())
        self.record_jepa_metrics()
        return model

    def plan(self, obs: Any, goal_obs: Any, **kwargs: Any) -> np.ndarray:
        """
        Plan toward a goal through the world model: ``LatentPlanner(self, **kwargs).plan(obs, goal_obs)``
        (see :class:`sb3_jepa.planning.LatentPlanner`; for receding-horizon control, keep a planner and call its
        ``predict``, which warm-starts each plan from the last).

        :param obs: one observation, or a batch
        :param goal_obs: the goal observation(s), the same shape as ``obs``
        :param kwargs: the planner's arguments (``horizon``, ``method``, ``seed``, ``cost``, method options)
        :return: the planned actions, shape ``(horizon, *action_space.shape)`` (with a leading batch axis for a batch)
        """
        from sb3_jepa.planning import LatentPlanner  # the planner imports this package

        return LatentPlanner(self, **kwargs).plan(obs, goal_obs)
