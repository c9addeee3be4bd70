"""
Collapse metrics: pure functions on a batch of embeddings ``z`` of shape ``(batch, dim)``.

They are cheap enough to run on every update (one eigendecomposition of a small Gram matrix) and are
logged by :class:`sb3_jepa.common.on_policy_algorithm.JEPAOnPolicyMixin` under ``jepa/``.

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
    return _embedding_std(z).item()


def _embedding_std(z: th.Tensor) -> th.Tensor:
    z = _check_batch(z)
    if z.shape[0] < 2:
        raise ValueError(f"embedding_std needs at least 2 embeddings, got {z.shape[0]}")
    return z.std(dim=0).mean()


def singular_values(z: th.Tensor) -> th.Tensor:
    """
    Singular values of the centred batch ``z - mean(z)``, as the square roots of the eigenvalues of its smaller
    Gram matrix (``batch x batch`` or ``dim x dim``), in float64: several times cheaper than an SVD for the wide
    batches of A2C (40 x 512 on Atari), and accurate to about 1e-7 of the largest singular value.

    :param z: embeddings, shape ``(batch, dim)``
    :return: the ``min(batch, dim)`` singular values, in decreasing order (float64)
    """
    centred = _check_batch(z).double()
    centred = centred - centred.mean(dim=0, keepdim=True)
    gram = centred @ centred.T if centred.shape[0] <= centred.shape[1] else centred.T @ centred
    # eigvalsh returns them in increasing order; rounding can make the zero ones slightly negative
    return th.linalg.eigvalsh(gram).flip(0).clamp(min=0.0).sqrt()


def effective_rank(z: th.Tensor, eps: float = 1e-12) -> float:
    """
    RankMe (Garrido et al. 2023) on the centred batch: ``exp(H(p))`` with ``p = s / sum(s)`` the normalised
    singular values. 1 for a rank-one batch, about ``dim`` for isotropic embeddings (``batch >> dim``),
    0 when the batch does not vary at all (full collapse).

    :param z: embeddings, shape ``(batch, dim)``
    :param eps: total singular mass under which the batch counts as constant
    :return: the effective rank, in ``[0, min(batch - 1, dim)]``
    """
    return _effective_rank_from_singular_values(singular_values(z), eps).item()


def _effective_rank_from_singular_values(s: th.Tensor, eps: float) -> th.Tensor:
    total = s.sum()
    p = s / total.clamp(min=eps)
    # 0 * log(0) is 0: xlogy drops exact zeros instead of adding an epsilon that would bias the entropy
    rank = th.exp(-th.special.xlogy(p, p).sum())
    return th.where(total > eps, rank, th.zeros_like(rank))


def participation_ratio(z: th.Tensor, eps: float = 1e-12) -> float:
    """
    Participation ratio of the centred batch's covariance: ``tr(C)^2 / tr(C^2)``.
    Like :func:`effective_rank` it is 1 for a rank-one batch and about ``dim`` for isotropic embeddings,
    but it weighs large directions more heavily.

    :param z: embeddings, shape ``(batch, dim)``
    :param eps: trace under which the batch counts as constant (the ratio is then 0)
    :return: the participation ratio
    """
    return _participation_ratio_from_singular_values(singular_values(z), eps).item()


def _participation_ratio_from_singular_values(s: th.Tensor, eps: float) -> th.Tensor:
    eigenvalues = s.pow(2)
    trace = eigenvalues.sum()
    ratio = trace.pow(2) / eigenvalues.pow(2).sum().clamp(min=eps * eps)
    return th.where(trace > eps, ratio, th.zeros_like(ratio))


def collapse_metrics(z: th.Tensor, eps: float = 1e-12) -> dict[str, float]:
    """
    All batch-level collapse metrics at once, sharing one eigendecomposition, with one device-to-host copy.

    :param z: embeddings, shape ``(batch, dim)`` with ``batch >= 2``
    :param eps: threshold under which the batch counts as constant (see :func:`effective_rank`)
    :return: ``embedding_std``, ``effective_rank`` and ``participation_ratio``
    """
    s = singular_values(z)
    values = th.stack(
        [
            _embedding_std(z).double(),
            _effective_rank_from_singular_values(s, eps),
            _participation_ratio_from_singular_values(s, eps),
        ]
    ).tolist()  # one device-to-host copy for the three
    return dict(zip(("embedding_std", "effective_rank", "participation_ratio"), values, strict=True))


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
