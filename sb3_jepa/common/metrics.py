"""
Collapse metrics: pure functions on a batch of embeddings ``z`` of shape ``(batch, dim)``.

They are cheap enough to run on every update (one ``svdvals`` of a ``batch x dim`` matrix) and are
logged by :class:`sb3_jepa.common.mixin.JEPAOnPolicyMixin` under ``jepa/``.

Collapse shows up in two ways that these metrics keep apart:

- in *scale*: every dimension shrinks towards a constant (``embedding_std`` -> 0);
- in *rank*: the embeddings still vary but only along a few directions (``effective_rank`` -> 1).

The rank metrics are computed on the centred batch, so they are invariant to the scale and to a common
offset of the embeddings (a ReLU encoder's all-positive outputs would otherwise dominate the spectrum).
"""

import torch as th
import torch.nn.functional as F


def _check_batch(z: th.Tensor) -> th.Tensor:
    if z.ndim != 2:
        raise ValueError(f"z must be a (batch, dim) matrix, got shape {tuple(z.shape)}")
    return z.detach().float()


def embedding_std(z: th.Tensor) -> float:
    """
    Mean over dimensions of the per-dimension standard deviation of ``z`` (VICReg's quantity).
    0 when every embedding in the batch is the same vector.

    :param z: embeddings, shape ``(batch, dim)`` with ``batch >= 2``
    :return: the mean per-dimension std (unbiased estimator)
    """
    z = _check_batch(z)
    if z.shape[0] < 2:
        raise ValueError(f"embedding_std needs at least 2 embeddings, got {z.shape[0]}")
    return z.std(dim=0).mean().item()


def singular_values(z: th.Tensor) -> th.Tensor:
    """
    Singular values of the centred batch ``z - mean(z)``.

    :param z: embeddings, shape ``(batch, dim)``
    :return: the singular values, in decreasing order
    """
    z = _check_batch(z)
    return th.linalg.svdvals(z - z.mean(dim=0, keepdim=True))


def effective_rank(z: th.Tensor, eps: float = 1e-12) -> float:
    """
    RankMe (Garrido et al. 2023) on the centred batch: ``exp(H(p))`` with ``p = s / sum(s)`` the normalised
    singular values. 1 for a rank-one batch, about ``dim`` for isotropic embeddings (``batch >> dim``),
    0 when the batch does not vary at all (full collapse).

    :param z: embeddings, shape ``(batch, dim)``
    :param eps: total singular mass under which the batch counts as constant
    :return: the effective rank, in ``[0, min(batch - 1, dim)]``
    """
    return _effective_rank_from_singular_values(singular_values(z), eps)


def _effective_rank_from_singular_values(s: th.Tensor, eps: float) -> float:
    total = s.sum()
    if total.item() <= eps:
        return 0.0
    p = s / total
    # 0 * log(0) is 0: drop exact zeros instead of adding an epsilon that would bias the entropy
    p = p[p > 0]
    return th.exp(-(p * p.log()).sum()).item()


def participation_ratio(z: th.Tensor, eps: float = 1e-12) -> float:
    """
    Participation ratio of the centred batch's covariance: ``tr(C)^2 / tr(C^2)``.
    Like :func:`effective_rank` it is 1 for a rank-one batch and about ``dim`` for isotropic embeddings,
    but it weighs large directions more heavily.

    :param z: embeddings, shape ``(batch, dim)``
    :param eps: trace under which the batch counts as constant (the ratio is then 0)
    :return: the participation ratio
    """
    return _participation_ratio_from_singular_values(singular_values(z), eps)


def _participation_ratio_from_singular_values(s: th.Tensor, eps: float) -> float:
    eigenvalues = s.pow(2)
    trace = eigenvalues.sum()
    if trace.item() <= eps:
        return 0.0
    return (trace.pow(2) / eigenvalues.pow(2).sum()).item()


def collapse_metrics(z: th.Tensor, eps: float = 1e-12) -> dict[str, float]:
    """
    All batch-level collapse metrics at once, sharing one singular value decomposition.

    :param z: embeddings, shape ``(batch, dim)`` with ``batch >= 2``
    :param eps: threshold under which the batch counts as constant (see :func:`effective_rank`)
    :return: ``embedding_std``, ``effective_rank`` and ``participation_ratio``
    """
    s = singular_values(z)
    return {
        "embedding_std": embedding_std(z),
        "effective_rank": _effective_rank_from_singular_values(s, eps),
        "participation_ratio": _participation_ratio_from_singular_values(s, eps),
    }


def prediction_cosine(prediction: th.Tensor, target: th.Tensor, mask: th.Tensor | None = None) -> float:
    """
    Mean cosine similarity between the predictor's output ``W(z_t, a_t)`` and the target ``z_{t+1}``.

    :param prediction: predicted next embeddings, shape ``(batch, dim)``
    :param target: target next embeddings, shape ``(batch, dim)``
    :param mask: optional weights (1 = valid transition, 0 = ignored), shape ``(batch,)``
    :return: the (masked) mean cosine similarity, in ``[-1, 1]``
    """
    cosine = F.cosine_similarity(prediction.detach().float(), target.detach().float(), dim=-1)
    if mask is None:
        return cosine.mean().item()
    mask = mask.detach().float()
    return ((cosine * mask).sum() / mask.sum().clamp(min=1.0)).item()
