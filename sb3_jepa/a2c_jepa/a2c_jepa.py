from typing import Any, ClassVar, TypeVar

import torch as th
from gymnasium import spaces
from stable_baselines3 import A2C
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import explained_variance
from torch.nn import functional as F

from sb3_jepa.a2c_jepa.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from sb3_jepa.common.on_policy_algorithm import JEPAOnPolicyMixin

SelfA2CJEPA = TypeVar("SelfA2CJEPA", bound="A2CJEPA")


class A2CJEPA(JEPAOnPolicyMixin, A2C):
    """
    Advantage Actor Critic (A2C) whose encoder is also trained as a JEPA world model, with one loss:
    A2C's loss plus ``jepa_coef * ||W(E(s_t), a_t) - E(s_{t+1})||^2`` (mean over transitions of the squared L2
    norm). See "RL as internal regularization preventing JEPA representation collapse" (Yu & Chen) and
    SB3's A2C, of which this is a drop-in subclass: every A2C argument works the same.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy, or an ActorCriticPolicy
        subclass, whose features extractor becomes the encoder)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate, it can be a function
        of the current progress remaining (from 1 to 0)
    :param n_steps: The number of steps to run for each environment per update
        (i.e. batch size is n_steps * n_env where n_env is number of environment copies running in parallel)
    :param gamma: Discount factor
    :param gae_lambda: Factor for trade-off of bias vs variance for Generalized Advantage Estimator.
        Equivalent to classic advantage when set to 1.
    :param ent_coef: Entropy coefficient for the loss calculation
    :param vf_coef: Value function coefficient for the loss calculation
    :param max_grad_norm: The maximum value for the gradient clipping (the predictor's gradients included)
    :param rms_prop_eps: RMSProp epsilon. It stabilizes square root computation in denominator
        of RMSProp update
    :param use_rms_prop: Whether to use RMSprop (default) or Adam as optimizer
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE)
        instead of action noise exploration (default: False)
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE
        Default: -1 (only sample at the beginning of the rollout)
    :param rollout_buffer_class: Rollout buffer class to use. If ``None``, JEPARolloutBuffer (or
        JEPADictRolloutBuffer for Dict observations); otherwise a subclass of one of them.
    :param rollout_buffer_kwargs: Keyword arguments to pass to the rollout buffer on creation.
    :param normalize_advantage: Whether to normalize or not the advantage
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
        0 gives plain A2C, bit for bit. The default is the study's tuned MinAtar value; at the paper's 1.0 the
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
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }
    # A2C's update is one optimizer step on the whole rollout: the final observations' embeddings from SB3's last
    # value estimate serve the whole update (see JEPAOnPolicyMixin._jepa_reuses_final_encoding)
    _jepa_final_encoding_reusable: ClassVar[bool] = True

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 7e-4,
        n_steps: int = 5,
        gamma: float = 0.99,
        gae_lambda: float = 1.0,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        rms_prop_eps: float = 1e-5,
        use_rms_prop: bool = True,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        rollout_buffer_class: type[RolloutBuffer] | None = None,
        rollout_buffer_kwargs: dict[str, Any] | None = None,
        normalize_advantage: bool = False,
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
        _init_setup_model: bool = True,
    ):
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
            gamma=gamma,
            gae_lambda=gae_lambda,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,
            rms_prop_eps=rms_prop_eps,
            use_rms_prop=use_rms_prop,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs,
            normalize_advantage=normalize_advantage,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            # Not a copy: SB3's A2C writes its optimizer choice into the caller's dict, and code relies on it
            # (load(path, policy_kwargs=the same dict) compares it with the stored one, as SB3's own tests do)
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=_init_setup_model,
        )

    def learn(
        self: SelfA2CJEPA,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 100,
        tb_log_name: str = "A2CJEPA",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfA2CJEPA:
        # Overridden for the TensorBoard run name only (A2CJEPA_1, not A2C_1), as sb3-contrib's algorithms do
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    # Copied from stable_baselines3.a2c.A2C.train. Lines marked [JEPA] are added; nothing else differs
    # (tests/test_upstream_drift.py fails if the installed SB3's train() no longer matches).
    def train(self) -> None:
        """
        Update policy using the currently gathered
        rollout buffer (one gradient step over whole data).
        """
        # Switch to train mode (this affects batch norm / dropout)
        self.policy.set_training_mode(True)

        # Update optimizer learning rate
        self._update_learning_rate(self.policy.optimizer)
        self._jepa_train_start()  # [JEPA]

        # This will only loop once (get all data in one go)
        for rollout_data in self.rollout_buffer.get(batch_size=None):
            actions = rollout_data.actions
            if isinstance(self.action_space, spaces.Discrete):
                # Convert discrete action from float to long
                actions = actions.long().flatten()

            self._jepa_capture_start(rollout_data)  # [JEPA]
            values, log_prob, entropy = self.policy.evaluate_actions(rollout_data.observations, actions)
            captured = self.policy.jepa_capture_stop()  # [JEPA]
            values = values.flatten()

            # Normalize advantage (not present in the original implementation)
            advantages = rollout_data.advantages
            if self.normalize_advantage:
                advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

            # Policy gradient loss
            policy_loss = -(advantages * log_prob).mean()

            # Value loss using the TD(gae_lambda) target
            value_loss = F.mse_loss(rollout_data.returns, values)

            # Entropy loss favor exploration
            if entropy is None:
                # Approximate entropy when no analytical form
                entropy_loss = -th.mean(-log_prob)
            else:
                entropy_loss = -th.mean(entropy)

            loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
            loss = self._jepa_add_loss(loss, rollout_data, captured)  # [JEPA]

            # Optimization step
            self.policy.optimizer.zero_grad()
            loss.backward()

            # Clip grad norm
            th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
            self._jepa_after_step()  # [JEPA]

        explained_var = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())

        self._n_updates += 1
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/explained_variance", explained_var)
        self.logger.record("train/entropy_loss", entropy_loss.item())
        self.logger.record("train/policy_loss", policy_loss.item())
        self.logger.record("train/value_loss", value_loss.item())
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())
        self._jepa_log()  # [JEPA]
