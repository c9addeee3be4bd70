"""
The JEPA loss, top to bottom: ``||W(E(s_t), a_t) - E(s_{t+1})||^2`` (the paper's Eq. 1) or its cosine form, its
target modes, its K-step form, the optional projection head (``||P(W(z_t, a_t)) - P(z_{t+1})||^2``, SPR/BYOL), the
reward predictor's loss (for planners; also on ``W``'s own rollouts), and VICReg's anti-collapse terms as the explicit
baseline.

Everything here is a function of the policy's encoder and predictor (:meth:`JEPAPolicyMixin.jepa_encode`,
``policy.jepa_predictor``), one (mini)batch of samples from a JEPA rollout buffer and the embeddings captured from
the encoder pass that ``evaluate_actions`` already did (:class:`CapturedEmbeddings`). The algorithm
(:mod:`sb3_jepa.common.on_policy_algorithm`) adds ``jepa_coef *`` :func:`jepa_prediction_loss` ``.loss`` to SB3's
loss, checks it is finite, moves the ``ema`` target and logs.

Where ``E(s_{t+1})`` is found: a sample's next observations are rows of ``cat(observations,
next_extra_observations)`` (``next_index[i]`` is the row of ``s_{t+1}`` of row ``i``), so every observation is
encoded once. The batch's rows come from the captured pass; the extras came with it when they rode along
(``CapturedEmbeddings.extra``), else they are encoded here.
"""

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import torch as th
import torch.nn.functional as F

from sb3_jepa.common.buffers import JEPADictRolloutBufferSamples, JEPARolloutBufferSamples
from sb3_jepa.common.utils import check_choice, concat_observations, first_rows, num_rows

if TYPE_CHECKING:
    from sb3_jepa.common.policies import JEPAPolicyMixin

JEPASamples = JEPARolloutBufferSamples | JEPADictRolloutBufferSamples

#: Where the target ``E(s_{t+1})`` comes from.
#: ``online``: the encoder itself, gradient through both branches (the paper's Eq. 1);
#: ``stop_grad``: the encoder itself, no gradient through the target (SimSiam, TD-MPC2);
#: ``ema``: an exponential moving average of the encoder (BYOL, SPR).
TARGET_MODES = ("online", "stop_grad", "ema")


#: The prediction error of one transition.
#: ``mse``: the paper's squared L2 ``||p - t||^2``, summed over the embedding's dimensions (Eq. 1);
#: ``cosine``: ``2 - 2 cos(p, t)``, the squared distance of the L2-normalised vectors (SPR, BYOL), which shrinking
#: z cannot lower: it rules out collapse in *scale* by construction, not collapse in *direction*.
JEPA_LOSSES = ("mse", "cosine")


def check_jepa_loss(jepa_loss: str) -> str:
    """
    :param jepa_loss: the prediction error to check
    :return: ``jepa_loss``, if it is one of :data:`JEPA_LOSSES`
    """
    return check_choice("jepa_loss", jepa_loss, JEPA_LOSSES)


def check_target_mode(jepa_target: str) -> str:
    """
    :param jepa_target: the target mode to check
    :return: ``jepa_target``, if it is one of :data:`TARGET_MODES`
    """
    return check_choice("jepa_target", jepa_target, TARGET_MODES)


@dataclass(frozen=True)
class CapturedEmbeddings:
    """
    What the encoder pass of ``evaluate_actions`` gave (:meth:`JEPAPolicyMixin.jepa_capture_stop`): the embeddings
    of the batch's rows and, when the sample's ``next_extra_observations`` rode along that pass, theirs.
    """

    #: the pass's output: ``batch`` then ``extra`` (one tensor, so the targets of all rows need no concatenation)
    rows: th.Tensor
    #: how many of its rows are the batch's
    n_batch: int

    @property
    def batch(self) -> th.Tensor:
        """``z_t = E(s_t)`` of the batch's rows, with gradient"""
        return self.rows if len(self.rows) == self.n_batch else self.rows[: self.n_batch]

    @property
    def extra(self) -> th.Tensor | None:
        """``E`` of the sample's ``next_extra_observations`` when they rode along the pass, else None"""
        return self.rows[self.n_batch :] if len(self.rows) > self.n_batch else None


class PredictionLoss(NamedTuple):
    """The JEPA prediction loss of one (mini)batch, and what it compared at the first step (for the logs)."""

    #: the loss: the masked mean over transitions of ``||W(z_t, a_t) - z_{t+1}||^2``, averaged over the K steps
    loss: th.Tensor
    #: ``W(z_t, a_t)`` (``P(W(z_t, a_t))`` with a projection head), shape ``(batch, dim)``
    prediction: th.Tensor
    #: ``z_{t+1}`` (``P(z_{t+1})``), shape ``(batch, dim)`` (with gradient only for the ``online`` target)
    target: th.Tensor
    #: 1.0 where ``s_{t+1}`` is known (``next_valid``), shape ``(batch,)``
    mask: th.Tensor


def prediction_error(prediction: th.Tensor, target: th.Tensor, kind: str = "mse") -> th.Tensor:
    """
    :param prediction: ``W(z_t, a_t)``, shape ``(batch, dim)``
    :param target: ``z_{t+1}``, shape ``(batch, dim)``
    :param kind: one of :data:`JEPA_LOSSES`
    :return: each transition's error, shape ``(batch,)``: ``||p - t||^2`` (``mse``) or ``2 - 2 cos(p, t)``
        (``cosine``; ``F.normalize``'s eps keeps a zero vector finite)
    """
    if kind == "cosine":
        return (F.normalize(prediction, dim=1) - F.normalize(target, dim=1)).pow(2).sum(dim=1)
    return (prediction - target).pow(2).sum(dim=1)


def masked_prediction_loss(prediction: th.Tensor, target: th.Tensor, valid: th.Tensor, kind: str = "mse") -> th.Tensor:
    """
    The JEPA loss of Eq. 1: mean over valid transitions of the squared L2 norm
    ``||W(z_t, a_t) - z_{t+1}||^2`` (summed over embedding dimensions, not averaged), or of the cosine form.

    :param prediction: ``W(z_t, a_t)``, shape ``(batch, dim)``
    :param target: ``z_{t+1}``, shape ``(batch, dim)``
    :param valid: 1 for transitions whose next observation is known, 0 otherwise, shape ``(batch,)``
    :param kind: one of :data:`JEPA_LOSSES` (see :func:`prediction_error`)
    :return: the scalar loss (0 if no transition is valid)
    """
    return (prediction_error(prediction, target, kind) * valid).sum() / valid.sum().clamp(min=1.0)


def jepa_prediction_loss(
    policy: "JEPAPolicyMixin",
    data: JEPASamples,
    captured: CapturedEmbeddings,
    target_mode: str,
    prediction_steps: int,
    loss: str = "mse",
) -> PredictionLoss:
    """
    The JEPA loss of one (mini)batch: predict ``z_{t+1}`` from ``z_t = E(s_t)`` and the action taken, compare with
    the target; with ``prediction_steps = K > 1``, roll the predictor on with the actions actually taken and average
    the K steps' losses (SPR-style multi-step latent prediction).

    :param policy: the JEPA policy (its encoder, target encoder and predictor)
    :param data: the (mini)batch
    :param captured: the embeddings of the encoder pass of ``evaluate_actions``
    :param target_mode: one of :data:`TARGET_MODES`
    :param prediction_steps: K >= 1
    :param loss: the prediction error, one of :data:`JEPA_LOSSES`
    :return: the loss, with the first step's prediction, target (both projected, with a projection head) and mask
    """
    prediction = policy.jepa_predictor(captured.batch, data.actions)  # W(z_t, a_t)
    compared = projected(policy, prediction)  # what the loss compares: P(W(z_t, a_t)) with a projection head
    if target_mode == "ema" and prediction_steps == 1:
        target = projected_targets(policy, one_step_ema_target(policy, data), target_mode)
        value = masked_prediction_loss(compared, target, data.next_valid, loss)
        return PredictionLoss(value, compared, target, data.next_valid)
    targets = projected_targets(policy, target_rows(policy, data, captured, target_mode), target_mode)
    # index_select: the rows targets[next_index], through one kernel instead of advanced indexing's machinery
    target = targets.index_select(0, data.next_index)  # z_{t+1}
    value = masked_prediction_loss(compared, target, data.next_valid, loss)
    if prediction_steps > 1:
        value = (value + later_steps_loss(policy, data, targets, prediction, prediction_steps, loss)) / prediction_steps
    return PredictionLoss(value, compared, target, data.next_valid)


def projected(policy: "JEPAPolicyMixin", z: th.Tensor) -> th.Tensor:
    """
    :param policy: the JEPA policy
    :param z: predictions (or embeddings), shape ``(batch, dim)``
    :return: ``P(z)`` with a projection head (``policy.jepa_projector``), else ``z``
    """
    return z if policy.jepa_projector is None else policy.jepa_projector(z)


def projected_targets(policy: "JEPAPolicyMixin", targets: th.Tensor, target_mode: str) -> th.Tensor:
    """
    :param policy: the JEPA policy
    :param targets: target embeddings, shape ``(n, dim)``
    :param target_mode: one of :data:`TARGET_MODES`
    :return: ``P(targets)`` with a projection head, with gradient only for the ``online`` target (``stop_grad`` and
        ``ema``: ``sg(P(target))``, so the projection learns from the prediction's side alone); else ``targets``
    """
    if policy.jepa_projector is None:
        return targets
    with contextlib.nullcontext() if target_mode == "online" else th.no_grad():
        return policy.jepa_projector(targets)


def one_step_ema_target(policy: "JEPAPolicyMixin", data: JEPASamples) -> th.Tensor:
    """
    The ``ema`` target of the one-step loss: the target encoder on the successors only (under SB3's shuffled
    minibatches they are fewer rows than the batch and its extras together, which :func:`target_rows` encodes).

    :param policy: the JEPA policy
    :param data: the (mini)batch
    :return: ``E_ema(s_{t+1})`` of every row, no gradient
    """
    with th.no_grad():
        return policy.jepa_encode(data.next_observations, target=True)


def target_rows(policy: "JEPAPolicyMixin", data: JEPASamples, captured: CapturedEmbeddings, target_mode: str) -> th.Tensor:
    """
    The target embedding of every row of ``cat(data.observations, data.next_extra_observations)``, each observation
    encoded once: ``online`` and ``stop_grad`` reuse the captured pass (``stop_grad`` detached), encoding the extras
    if they did not ride along (``online`` with gradient, ``stop_grad`` without a graph: a forward pass costs about
    a third of a forward and backward; those whose embeddings came with the sample, ``next_extra_embeddings``, are
    not encoded again); ``ema`` encodes all of them with the target encoder.

    :param policy: the JEPA policy
    :param data: the (mini)batch
    :param captured: the embeddings of the encoder pass of ``evaluate_actions``
    :param target_mode: one of :data:`TARGET_MODES`
    :return: the targets, shape ``(batch + n_extra, dim)``; rows ``data.next_index`` are the ``z_{t+1}``
    """
    if target_mode == "ema":
        with th.no_grad():
            return policy.jepa_encode(concat_observations(data.observations, data.next_extra_observations), target=True)
    online = target_mode == "online"
    # stop_grad: no graph, neither for encoding the extras nor for the concatenation
    with contextlib.nullcontext() if online else th.no_grad():
        rows = captured.rows
        if captured.extra is None and num_rows(data.next_extra_observations) > 0:
            known = None if online else data.next_extra_embeddings
            if known is None:
                rows = th.cat([rows, policy.jepa_encode(data.next_extra_observations)])
            else:  # the last extras' embeddings came with the sample (see NextObservationMixin.add_final_observations)
                n_encoded = num_rows(data.next_extra_observations) - len(known)
                encoded = [policy.jepa_encode(first_rows(data.next_extra_observations, n_encoded))] if n_encoded else []
                rows = th.cat([rows, *encoded, known])
    return rows if online else rows.detach()


def later_steps_loss(
    policy: "JEPAPolicyMixin",
    data: JEPASamples,
    targets: th.Tensor,
    prediction: th.Tensor,
    prediction_steps: int,
    loss: str = "mse",
) -> th.Tensor:
    """
    Steps 2..K of the multi-step loss: ``z_hat_{t+k+1} = W(z_hat_{t+k}, a_{t+k})`` compared with ``E(s_{t+k+1})``
    for k = 1..K-1, each step's loss averaged over the transitions whose episode has not ended before it.

    :param policy: the JEPA policy
    :param data: the (mini)batch, with its ``multistep_*`` fields
    :param targets: the target rows (see :func:`target_rows`), projected as :func:`projected_targets` gives them
    :param prediction: the first step's prediction ``W(z_t, a_t)`` (not projected: ``W`` rolls on in ``z``'s space)
    :param prediction_steps: K >= 2
    :param loss: the prediction error, one of :data:`JEPA_LOSSES`
    :return: the sum of the later steps' losses
    """
    assert data.multistep_index is not None and data.multistep_valid is not None and data.multistep_actions is not None
    total = th.zeros((), device=prediction.device)
    for step in range(1, prediction_steps):
        prediction = policy.jepa_predictor(prediction, data.multistep_actions[step - 1])
        valid = data.multistep_valid[step]
        compared = projected(policy, prediction)
        total = total + masked_prediction_loss(compared, targets.index_select(0, data.multistep_index[step]), valid, loss)
    return total


def reward_prediction_loss(policy: "JEPAPolicyMixin", data: JEPASamples, captured: CapturedEmbeddings) -> th.Tensor:
    """
    The reward predictor's loss: ``mean (R(sg(z_t), a_t) - r_t)^2`` over the transitions whose reward is the
    environment's (``reward_valid``: SB3 adds ``gamma * V(s_T)`` to the reward of a step truncated by a time limit).
    ``z_t`` is detached: R learns to read the embedding, and its loss does not shape ``E``.

    With ``reward_steps = H > 1`` (the sample's ``reward_rollout_*`` fields), R also learns to read ``W``'s own
    predictions, as a planner reads it: ``W`` rolls ``z_t`` forward along the actions actually taken,
    ``z_hat_{t+k} = W(z_hat_{t+k-1}, a_{t+k-1})`` (no gradient: the loss shapes neither ``W`` nor ``E``), and
    ``R(z_hat_{t+k}, a_{t+k})`` is compared with ``r_{t+k}`` for k = 1..H-1 (TD-MPC2 trains its reward head on its
    dynamics' latents). The loss is then the average over the H steps of each step's masked mean (a step with no
    valid row in the minibatch counts as 0, as in the K-step JEPA loss).

    :param policy: the JEPA policy, with ``jepa_reward_predictor``
    :param data: the (mini)batch, from a buffer built with ``with_rewards=True``
    :param captured: the embeddings of the encoder pass of ``evaluate_actions``
    :return: the scalar loss (0 if no reward is valid)
    """
    assert policy.jepa_reward_predictor is not None and data.rewards is not None and data.reward_valid is not None
    z = captured.batch.detach()
    loss = masked_squared_error(policy.jepa_reward_predictor(z, data.actions), data.rewards, data.reward_valid)
    if data.reward_rollout_actions is None:
        return loss
    assert data.reward_rollout_rewards is not None and data.reward_rollout_valid is not None
    actions = data.actions
    for step, next_actions in enumerate(data.reward_rollout_actions):
        with th.no_grad():
            z = policy.jepa_predictor(z, actions)  # z_hat_{t+step+1}
        prediction = policy.jepa_reward_predictor(z, next_actions)
        loss = loss + masked_squared_error(prediction, data.reward_rollout_rewards[step], data.reward_rollout_valid[step])
        actions = next_actions
    return loss / (len(data.reward_rollout_actions) + 1)


def masked_squared_error(prediction: th.Tensor, target: th.Tensor, valid: th.Tensor) -> th.Tensor:
    """
    :param prediction: predicted rewards, shape ``(batch,)``
    :param target: the rewards, shape ``(batch,)``
    :param valid: 1 where the reward counts, 0 elsewhere, shape ``(batch,)``
    :return: the mean of ``(prediction - target)^2`` over the valid rows (0 if none is)
    """
    return ((prediction - target).pow(2) * valid).sum() / valid.sum().clamp(min=1.0)


def vicreg_terms(z: th.Tensor, eps: float = 1e-4) -> tuple[th.Tensor, th.Tensor]:
    """
    VICReg's anti-collapse terms (Bardes et al. 2022) on a batch of embeddings: the variance hinge
    ``mean_d relu(1 - sqrt(var_d(z) + eps))`` and the covariance penalty ``sum_{i != j} C_ij^2 / dim``.

    :param z: embeddings, shape ``(batch, dim)`` with ``batch >= 2``
    :param eps: added to the variance before the square root, as in VICReg
    :return: the variance term and the covariance term (scalars, differentiable)
    """
    batch, dim = z.shape
    std = th.sqrt(z.var(dim=0) + eps)
    variance = F.relu(1.0 - std).mean()
    centred = z - z.mean(dim=0)
    covariance_matrix = centred.T @ centred / max(batch - 1, 1)
    off_diagonal = covariance_matrix - th.diag(th.diagonal(covariance_matrix))
    return variance, off_diagonal.pow(2).sum() / dim
