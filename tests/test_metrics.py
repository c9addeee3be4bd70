"""Collapse metrics on matrices whose answers are known."""

import math

import pytest
import torch as th

from sb3_jepa.common.loss import masked_prediction_loss, vicreg_terms
from sb3_jepa.common.metrics import (
    collapse_metrics,
    effective_rank,
    embedding_std,
    participation_ratio,
    prediction_cosine,
    singular_values,
)


def test_rank_one_batch():
    z = th.randn(256, 1) * th.randn(1, 32)
    assert effective_rank(z) == pytest.approx(1.0, abs=1e-3)
    assert participation_ratio(z) == pytest.approx(1.0, abs=1e-3)


def test_isotropic_batch():
    th.manual_seed(0)
    z = th.randn(20_000, 16)
    assert effective_rank(z) == pytest.approx(16, rel=0.02)
    assert participation_ratio(z) == pytest.approx(16, rel=0.03)
    assert embedding_std(z) == pytest.approx(1.0, rel=0.02)


def test_k_dimensional_batch():
    th.manual_seed(0)
    basis = th.linalg.qr(th.randn(64, 64))[0][:, :5]
    z = th.randn(10_000, 5) @ basis.T
    assert effective_rank(z) == pytest.approx(5, rel=0.03)


def test_scale_and_offset_invariance_of_rank():
    th.manual_seed(0)
    z = th.randn(1000, 8)
    assert effective_rank(1e-4 * z + 7.0) == pytest.approx(effective_rank(z), rel=1e-3)
    assert embedding_std(1e-4 * z) == pytest.approx(1e-4 * embedding_std(z), rel=1e-4)


def test_fully_collapsed_batch():
    z = th.ones(64, 8) * 3.0
    metrics = collapse_metrics(z)
    assert metrics == {"embedding_std": 0.0, "effective_rank": 0.0, "participation_ratio": 0.0}


def test_collapse_metrics_agree_with_single_metrics():
    th.manual_seed(0)
    z = th.randn(128, 4) @ th.randn(4, 16)
    metrics = collapse_metrics(z)
    assert metrics["effective_rank"] == pytest.approx(effective_rank(z))
    assert metrics["participation_ratio"] == pytest.approx(participation_ratio(z))
    assert metrics["embedding_std"] == pytest.approx(embedding_std(z))
    assert 1.0 < metrics["participation_ratio"] <= metrics["effective_rank"] <= 4.0 + 1e-4


@pytest.mark.parametrize("shape", [(40, 512), (256, 64), (32, 32)])
def test_singular_values_match_svd(shape):
    # Wide (A2C on Atari), tall (PPO minibatches of an MLP encoder) and square batches
    th.manual_seed(0)
    z = th.randn(*shape) @ th.diag(th.logspace(0, -3, shape[1]))
    centred = (z - z.mean(dim=0)).double()
    expected = th.linalg.svdvals(centred)
    th.testing.assert_close(singular_values(z), expected, atol=1e-7 * expected[0].item(), rtol=1e-6)


def test_bad_shapes():
    with pytest.raises(ValueError, match="batch, dim"):
        effective_rank(th.zeros(3))
    with pytest.raises(ValueError, match="at least 2"):
        embedding_std(th.zeros(1, 4))


def test_prediction_cosine_and_loss():
    prediction = th.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    target = th.tensor([[2.0, 0.0], [0.0, -1.0], [5.0, 5.0]])
    valid = th.tensor([1.0, 0.0, 1.0])
    assert prediction_cosine(prediction, target) == pytest.approx(1.0 / 3.0)
    assert prediction_cosine(prediction, target, valid) == pytest.approx(1.0)
    # Squared L2 norm summed over dimensions, averaged over valid rows: (1 + 32) / 2
    assert masked_prediction_loss(prediction, target, valid).item() == pytest.approx(16.5)
    assert masked_prediction_loss(prediction, target, th.zeros(3)).item() == 0.0
    assert not math.isnan(masked_prediction_loss(prediction, target, th.zeros(3)).item())


def test_vicreg_terms():
    th.manual_seed(0)
    spread = 2.0 * th.randn(50_000, 4)
    variance, covariance = vicreg_terms(spread)
    assert variance.item() == 0.0  # every std is about 2, above the hinge at 1
    assert covariance.item() == pytest.approx(0.0, abs=0.01)
    variance, _ = vicreg_terms(th.ones(32, 4))
    assert variance.item() == pytest.approx(1.0 - 1e-2)  # std 0: the hinge is 1 - sqrt(eps)
    # Two identical unit-variance dimensions: C = [[1, 1], [1, 1]], off-diagonal squares sum to 2, over dim 2
    x = th.randn(50_000, 1)
    _, covariance = vicreg_terms(th.cat([x, x], dim=1))
    assert covariance.item() == pytest.approx(1.0, rel=0.03)
