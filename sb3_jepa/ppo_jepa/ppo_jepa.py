from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import explained_variance
from torch.nn import functional as F

from sb3_jepa.common.on_policy_algorithm import JEPAOnPolicyMixin
from sb3_jepa.common.utils import check_bool, check_optional_positive_int
from sb3_jepa.ppo_jepa.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

SelfPPOJEPA = TypeVar("SelfPPOJEPA", bound="PPOJEPA")


class PPOJEPA(JEPAOnPolicyMixin, PPO):
    """
    Proximal Policy Optimization (PPO, clip version) whose encoder is also trained as a JEPA world model, with
    one loss: PPO's loss plus ``jepa_coef * ||W(E(s_t), a_t) - E(s_{t+1})||^2`` (mean over the minibatch's
    transitions of the squared L2 norm). See "RL as internal regularization preventing JEPA representation
    collapse" (Yu & Chen) and SB3's PPO, of which this is a drop-in subclass: every PPO argument works the same.

    SB3's ``train/*`` logs keep their meaning but one: ``train/loss`` (the last minibatch's total loss) includes the
    JEPA term, ``jepa_coef * jepa/loss`` (and the VICReg terms when they are on), since it is the loss that was
    minimised; ``jepa/loss`` is the JEPA term alone, averaged over the update's minibatches.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy, or an ActorCriticPolicy
        subclass, whose features extractor becomes the encoder)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate, it can be a function
        of the current progress remaining (from 1 to 0)
    :param n_steps: The number of steps to run for each environment per update
        (i.e. rollout buffer size is n_steps * n_envs where n_envs is number of environment copies running in parallel)
    :param batch_size: Minibatch size
    :param n_epochs: Number of epoch when optimizing the surrogate loss
    :param gamma: Discount factor
    :param gae_lambda: Factor for trade-off of bias vs variance for Generalized Advantage Estimator
    :param clip_range: Clipping parameter, it can be a function of the current progress
        remaining (from 1 to 0).
    :param clip_range_vf: Clipping parameter for the value function,
        it can be a function of the current progress remaining (from 1 to 0).
        This is a parameter specific to the OpenAI implementation. If None is passed (default),
        no clipping will be done on the value function.
    :param normalize_advantage: Whether to normalize or not the advantage
    :param ent_coef: Entropy coefficient for the loss calculation
    :param vf_coef: Value function coefficient for the loss calculation
    :param max_grad_norm: The maximum value for the gradient clipping (the predictor's gradients included)
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE)
        instead of action noise exploration (default: False)
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE
        Default: -1 (only sample at the beginning of the rollout)
    :param rollout_buffer_class: Rollout buffer class to use. If ``None``, JEPARolloutBuffer (or
        JEPADictRolloutBuffer for Dict observations); otherwise a subclass of one of them.
    :param rollout_buffer_kwargs: Keyword arguments to pass to the rollout buffer on creation
    :param target_kl: Limit the KL divergence between updates,
        because the clipping is not enough to prevent large update
        see issue #213 (cf https://github.com/hill-a/stable-baselines/issues/213)
        By default, there is no limit on the kl div.
    :param stats_window_size: Window size for the rollout logging, specifying the number of episodes to average
        the reported success rate, mean episode length, and mean reward over
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation
    :param verbose: Verbosity level: 0 for no output, 1 for info messages (such as device or wrappers used), 2 for
        debug messages
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run.
        Setting it to auto, the code will be run on the GPU if possible.
    :param jepa_coef: lambda, the weight of the JEPA loss (a number >= 0 or a schedule of the progress remaining).
        0 gives plain PPO, bit for bit. The default is the study's tuned MinAtar value; at the paper's 1.0 the
        summed loss collapses the embedding's scale and most of the return (README, "Defaults")
    :param jepa_target: where the target ``E(s_{t+1})`` comes from: ``"online"`` (the paper's: the encoder itself,
        gradient through both branches), ``"stop_grad"`` (the encoder, no gradient through the target) or ``"ema"``
        (a Polyak-averaged copy of the encoder). The default is ``"stop_grad"``: with ``"online"`` a JEPA term
        of any useful weight kept SB3's identity tasks from being learnt at SB3's budgets (README, "Defaults");
        pass ``"online"`` for the paper's setting
    :param jepa_tau: the ``ema`` target's soft update coefficient after each optimizer step, in ``(0, 1]``
        (SB3's convention: 1 copies the encoder)
    :param encoder_rl_grad: whether the RL loss trains the encoder (True, the paper's setting). False detaches the
        encoder from the actor and critic heads: only the JEPA loss trains it (the ablation expected to collapse).
    :param predictor_net_arch: hidden layer widths of the predictor W (default: one layer of ``min(256, dim(z))``)
    :param predictor_residual: make W residual, ``W(z, a) = z + f(z, a)`` with ``f``'s last layer initialised to
        zero, so that W starts as the "no change" predictor and learns the change (as dynamics models that predict
        state deltas do); False (the default): W outputs ``z_{t+1}`` itself
    :param jepa_vicreg_var_coef: weight of VICReg's variance hinge on the batch's embeddings (0: off, the paper's
        setting). An explicit anti-collapse term, to compare against.
    :param jepa_vicreg_cov_coef: weight of VICReg's off-diagonal covariance penalty (0: off)
    :param jepa_prediction_steps: K, the number of steps the predictor is rolled forward with the actions taken
        (SPR-style multi-step latent prediction); the JEPA loss is then the mean over the K steps. 1: the paper's
        one-step loss.
    :param jepa_loss: the prediction error: ``"mse"`` (the paper's squared L2, summed over the embedding's
        dimensions) or ``"cosine"`` (``2 - 2 cos``, prediction and target L2-normalised as in SPR/BYOL: shrinking z
        cannot lower it, so it rules out collapse in scale, not in direction)
    :param jepa_embedding_norm: a parameter-free normalisation ending the encoder, so that the heads, the predictor's
        input and the target all see it: None, ``"layernorm"`` (LayerNorm without affine parameters: every embedding
        has norm ``sqrt(dim)``) or ``"simnorm"`` (TD-MPC2's softmax over groups of 8 dimensions). Needs a
        ``JEPAFeaturesExtractor`` (the policies' default)
    :param jepa_reward_coef: the weight of the reward predictor's loss, ``mean (R(sg(z_t), a_t) - r_t)^2`` over
        the transitions whose reward is the environment's (not those SB3 bootstraps at a time limit). 0 (the
        default): no reward predictor. Above 0 the policy gets ``jepa_reward_predictor``, which planners use for
        TD-MPC2's return estimate (:class:`sb3_jepa.planning.LatentPlanner`'s ``value_estimate="return"``); its
        input is detached, so it reads ``E`` without training it (the RL update changes only through the
        gradient clipping's shared norm)
    :param jepa_reward_steps: H, how many steps of ``W``'s own rollout the reward predictor learns to read: with H > 1
        its loss also compares ``R(z_hat_{t+k}, a_{t+k})`` with ``r_{t+k}`` for k = 1..H-1, where
        ``z_hat_{t+k} = W(z_hat_{t+k-1}, a_{t+k-1})`` rolls ``z_t`` forward along the actions taken (without
        gradient: it shapes neither ``W`` nor ``E``), as TD-MPC2 trains its reward head on its dynamics' latents and
        as a planner's return estimate reads ``R``. 1 (the default): ``R`` reads true embeddings only. Needs
        ``jepa_reward_coef > 0``. (With ``jepa_loss="cosine"`` the planner rescales ``W``'s latents to the start
        embedding's norm before ``R`` reads them; the rollout here does not.)
    :param augment_observations: None, or ``"shift"``: DrQ's and SPR's random shift of the images of every training
        minibatch (replicate-padded by ``max(1, round(4 * size / 84))`` px, cropped back at a random integer offset
        per image; :mod:`sb3_jepa.common.augmentation`). The RL loss and the JEPA loss see the same augmented views
        (as in DrQ, RAD and SPR); rollouts are collected on clean observations. With ``jepa_coef=0`` this is plain
        A2C/PPO with augmentation: the control that tells a JEPA gain from augmentation's own
    :param jepa_projection_arch: the layers of a projection head P (SPR, BYOL; the last width is the projection's
        size, ReLU between), applied to the prediction and the target before the loss compares them: the loss then
        constrains ``P(z)`` instead of ``z``. None (the default): no projection. The target's projection has a
        gradient only with the ``online`` target (``stop_grad`` and ``ema``: ``sg(P(target))``)
    :param jepa_segment_length: draw each minibatch as shuffled time-contiguous segments of this many steps of one
        env instead of independently shuffled rows (``None``, SB3's way). Most ``s_{t+1}`` are then rows of the
        same minibatch, whose encoder pass gives their embedding for free; the price is minibatches of correlated
        transitions. Each transition is still used once per epoch.
    :param jepa_in_minibatch_only: use the JEPA term only on transitions whose successor is a row of the same
        minibatch (False: every transition, encoding the other successors as extras). With ``jepa_segment_length``
        the segments' cut points alternate between epochs, so that each transition's JEPA term is used in some
        epochs: with segments of 2 ("pairs"), no extra encoding at all and minibatches nearly as shuffled as SB3's
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        n_steps: int = 2048,
        batch_size: int = 64,
        n_epochs: int = 10,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_range: float | Schedule = 0.2,
        clip_range_vf: float | Schedule | None = None,
        normalize_advantage: bool = True,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        rollout_buffer_class: type[RolloutBuffer] | None = None,
        rollout_buffer_kwargs: dict[str, Any] | None = None,
        target_kl: float | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        jepa_coef: float | Schedule = 0.01,
        jepa_target: str = "stop_grad",
        jepa_tau: float = 0.01,
        encoder_rl_grad: bool = True,
        predictor_net_arch: list[int] | None = None,
        predictor_residual: bool = False,
        jepa_vicreg_var_coef: float = 0.0,
        jepa_vicreg_cov_coef: float = 0.0,
        jepa_prediction_steps: int = 1,
        jepa_loss: str = "mse",
        jepa_embedding_norm: str | None = None,
        jepa_reward_coef: float = 0.0,
        jepa_reward_steps: int = 1,
        augment_observations: str | None = None,
        jepa_projection_arch: list[int] | None = None,
        jepa_segment_length: int | None = None,
        jepa_in_minibatch_only: bool = False,
        _init_setup_model: bool = True,
    ):
        self.jepa_segment_length = check_optional_positive_int("jepa_segment_length", jepa_segment_length)
        self.jepa_in_minibatch_only = check_bool("jepa_in_minibatch_only", jepa_in_minibatch_only)
        self._init_jepa(
            jepa_coef=jepa_coef,
            jepa_target=jepa_target,
            jepa_tau=jepa_tau,
            encoder_rl_grad=encoder_rl_grad,
            predictor_net_arch=predictor_net_arch,
            predictor_residual=predictor_residual,
            jepa_vicreg_var_coef=jepa_vicreg_var_coef,
            jepa_vicreg_cov_coef=jepa_vicreg_cov_coef,
            jepa_prediction_steps=jepa_prediction_steps,
            jepa_loss=jepa_loss,
            jepa_embedding_norm=jepa_embedding_norm,
            jepa_reward_coef=jepa_reward_coef,
            jepa_reward_steps=jepa_reward_steps,
            augment_observations=augment_observations,
            jepa_projection_arch=jepa_projection_arch,
            rollout_buffer_class=rollout_buffer_class,
            policy_kwargs=policy_kwargs,
        )
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            batch_size=batch_size,
            n_epochs=n_epochs,
            gamma=gamma,
            gae_lambda=gae_lambda,
            clip_range=clip_range,
            clip_range_vf=clip_range_vf,
            normalize_advantage=normalize_advantage,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs,
            target_kl=target_kl,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=_init_setup_model,
        )

    def _setup_model(self) -> None:
        if self.jepa_segment_length is not None:
            self.rollout_buffer_kwargs = {**self.rollout_buffer_kwargs, "segment_length": self.jepa_segment_length}
        # getattr: models saved before 0.3 have no such attribute
        if getattr(self, "jepa_in_minibatch_only", False):
            self.rollout_buffer_kwargs = {**self.rollout_buffer_kwargs, "successors_in_minibatch": True}
        super()._setup_model()

    def learn(
        self: SelfPPOJEPA,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "PPOJEPA",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfPPOJEPA:
        # Overridden for the TensorBoard run name only (PPOJEPA_1, not PPO_1), as sb3-contrib's algorithms do
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    # Copied from stable_baselines3.ppo.PPO.train. Lines marked [JEPA] are added; nothing else differs
    # (tests/test_upstream_drift.py fails if the installed SB3's train() no longer matches).
    def train(self) -> None:
        """
        Update policy using the currently gathered rollout buffer.
        """
        # Switch to train mode (this affects batch norm / dropout)
        self.policy.set_training_mode(True)
        # Update optimizer learning rate
        self._update_learning_rate(self.policy.optimizer)
        # Compute current clip range
        clip_range = self.clip_range(self._current_progress_remaining)  # type: ignore[operator]
        # Optional: clip range for the value function
        if self.clip_range_vf is not None:
            clip_range_vf = self.clip_range_vf(self._current_progress_remaining)  # type: ignore[operator]
        self._jepa_train_start()  # [JEPA]

        entropy_losses = []
        pg_losses, value_losses = [], []
        clip_fractions = []

        continue_training = True
        # train for n_epochs epochs
        for epoch in range(self.n_epochs):
            approx_kl_divs = []
            # Do a complete pass on the rollout buffer
            for rollout_data in self.rollout_buffer.get(self.batch_size):
                actions = rollout_data.actions
                if isinstance(self.action_space, spaces.Discrete):
                    # Convert discrete action from float to long
                    actions = rollout_data.actions.long().flatten()

                self._jepa_capture_start(rollout_data)  # [JEPA]
                values, log_prob, entropy = self.policy.evaluate_actions(rollout_data.observations, actions)
                captured = self.policy.jepa_capture_stop()  # [JEPA]
                values = values.flatten()
                # Normalize advantage
                advantages = rollout_data.advantages
                # Normalization does not make sense if mini batchsize == 1, see GH issue #325
                if self.normalize_advantage and len(advantages) > 1:
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

                # ratio between old and new policy, should be one at the first iteration
                ratio = th.exp(log_prob - rollout_data.old_log_prob)

                # clipped surrogate loss
                policy_loss_1 = advantages * ratio
                policy_loss_2 = advantages * th.clamp(ratio, 1 - clip_range, 1 + clip_range)
                policy_loss = -th.min(policy_loss_1, policy_loss_2).mean()

                # Logging
                pg_losses.append(policy_loss.item())
                clip_fraction = th.mean((th.abs(ratio - 1) > clip_range).float()).item()
                clip_fractions.append(clip_fraction)

                if self.clip_range_vf is None:
                    # No clipping
                    values_pred = values
                else:
                    # Clip the difference between old and new value
                    # NOTE: this depends on the reward scaling
                    values_pred = rollout_data.old_values + th.clamp(
                        values - rollout_data.old_values, -clip_range_vf, clip_range_vf
                    )
                # Value loss using the TD(gae_lambda) target
                value_loss = F.mse_loss(rollout_data.returns, values_pred)
                value_losses.append(value_loss.item())

                # Entropy loss favor exploration
                if entropy is None:
                    # Approximate entropy when no analytical form
                    entropy_loss = -th.mean(-log_prob)
                else:
                    entropy_loss = -th.mean(entropy)

                entropy_losses.append(entropy_loss.item())

                loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss

                # Calculate approximate form of reverse KL Divergence for early stopping
                # see issue #417: https://github.com/DLR-RM/stable-baselines3/issues/417
                # and discussion in PR #419: https://github.com/DLR-RM/stable-baselines3/pull/419
                # and Schulman blog: http://joschu.net/blog/kl-approx.html
                with th.no_grad():
                    log_ratio = log_prob - rollout_data.old_log_prob
                    approx_kl_div = th.mean((th.exp(log_ratio) - 1) - log_ratio).cpu().numpy()
                    approx_kl_divs.append(approx_kl_div)

                if self.target_kl is not None and approx_kl_div > 1.5 * self.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(f"Early stopping at step {epoch} due to reaching max kl: {approx_kl_div:.2f}")
                    break

                loss = self._jepa_add_loss(loss, rollout_data, captured)  # [JEPA]
                # Optimization step
                self.policy.optimizer.zero_grad()
                loss.backward()
                # Clip grad norm
                th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                self.policy.optimizer.step()
                self._jepa_after_step()  # [JEPA]

            self._n_updates += 1
            if not continue_training:
                break

        explained_var = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())

        # Logs
        self.logger.record("train/entropy_loss", np.mean(entropy_losses))
        self.logger.record("train/policy_gradient_loss", np.mean(pg_losses))
        self.logger.record("train/value_loss", np.mean(value_losses))
        self.logger.record("train/approx_kl", np.mean(approx_kl_divs))
        self.logger.record("train/clip_fraction", np.mean(clip_fractions))
        self.logger.record("train/loss", loss.item())
        self.logger.record("train/explained_variance", explained_var)
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())

        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
        if self.clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", clip_range_vf)
        self._jepa_log()  # [JEPA]
