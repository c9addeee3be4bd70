"""The numeric check of Propositions 1 and 2 (sb3_jepa.theory), on exact tabular computations."""

import numpy as np
import pytest

from sb3_jepa.theory import (
    check_proposition_1,
    check_proposition_2,
    collapsed_model,
    losses,
    main,
    partially_collapsed_model,
    random_mdp,
)

SMALL_EPS = np.array([1e-8, 1e-7, 1e-6, 1e-5, 1e-4])
#: where the first-order terms dominate (k is in the hundreds, so k * eps must stay tiny)
FIRST = slice(0, 2)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_proposition_1_perturbation_lowers_the_loss(seed):
    mdp = random_mdp(6, 3, seed=seed)
    result = check_proposition_1(mdp, collapsed_model(mdp, d=8, rank_head=3, seed=seed), lam=1.0, eps_values=SMALL_EPS)
    assert result.applicable and result.combined_advantage > 0
    assert np.all(result.delta_total < 0)
    # The tweak isolates s_D: every other state's logits stay exactly where they were, s_D's a_D logit gains k eps
    assert result.other_logit_change < 1e-10
    assert result.logit_gain_per_eps == pytest.approx(result.k, rel=1e-6)
    # First order: Delta J = -k1 k eps (policy tweak) + the encoder move's own JEPA change (bounded by C eps)
    first_order = -result.k1 * result.k + result.delta_jepa_encoder_only / SMALL_EPS
    np.testing.assert_allclose((result.delta_total / SMALL_EPS)[FIRST], first_order[FIRST], rtol=1e-3)
    # The encoder-only part of the JEPA change obeys the bound with both sides counted
    assert np.all(np.abs(result.delta_jepa_encoder_only) <= result.c_full * SMALL_EPS * 1.01 + 1e-12)


def test_proposition_1_condition_on_dimensions():
    mdp = random_mdp(5, 3, seed=0)
    failing = check_proposition_1(mdp, collapsed_model(mdp, d=4, rank_head=3))
    assert not failing.applicable and "ker W has dimension 1" in failing.reason
    holding = check_proposition_1(mdp, collapsed_model(mdp, d=5, rank_head=3), eps_values=SMALL_EPS)
    assert holding.applicable and np.all(holding.delta_total < 0)
    # With a low-rank head the kernel is big enough even when d is small
    assert check_proposition_1(mdp, collapsed_model(mdp, d=3, rank_head=1), eps_values=SMALL_EPS).applicable


def test_proposition_2_perturbation_lowers_the_loss():
    mdp = random_mdp(6, 3, seed=0)
    model = partially_collapsed_model(mdp, d=10, seed=0)
    result = check_proposition_2(mdp, model, eps_values=SMALL_EPS)
    assert result.applicable and np.all(result.delta_total < 0)
    assert result.other_logit_change < 1e-9
    first_order = -result.k1 * result.k + result.delta_jepa_encoder_only / SMALL_EPS
    np.testing.assert_allclose((result.delta_total / SMALL_EPS)[FIRST], first_order[FIRST], rtol=1e-3)
    # Too little latent slack: no u outside span(P)
    cramped = check_proposition_2(mdp, partially_collapsed_model(mdp, d=5, seed=0))
    assert not cramped.applicable


def test_choosing_by_the_rl_advantage_alone_can_fail():
    """The finding: J_JEPA depends on the policy, so a_D must have a positive advantage for reward - lam * g."""
    mdp = random_mdp(6, 3, seed=0)
    model = partially_collapsed_model(mdp, d=10, seed=0)
    paper = check_proposition_2(mdp, model, eps_values=SMALL_EPS, choose="rl")
    assert paper.applicable and paper.rl_advantage > 0 > paper.combined_advantage
    assert np.all(paper.delta_total > 0)  # the perturbation raises the loss
    assert np.all(paper.delta_pg < 0)  # although the policy-gradient part falls, as the proof says


def test_losses_of_a_collapsed_encoder_with_perfect_world_model():
    mdp = random_mdp(4, 2, seed=0)
    model = collapsed_model(mdp, d=3, rank_head=2)
    model.dynamics = np.stack([np.eye(3)] * 2)
    model.offsets = np.zeros((2, 3))
    # A collapsed encoder and an identity world model: the JEPA loss is exactly 0, the global JEPA optimum
    assert losses(mdp, model)[1] == 0.0


def test_command_line(capsys):
    main(["--states", "5", "--actions", "3", "--dim", "6"])
    printed = capsys.readouterr().out
    assert "Proposition 1 (full collapse), rl advantage" in printed
    assert "not applicable: ker W has dimension 1" in printed
    assert "Proposition 2" in printed
    with pytest.raises(ValueError, match="choose must be"):
        check_proposition_1(random_mdp(), collapsed_model(random_mdp(), 4, 2), choose="best")


def test_both_checks_reject_bad_input_in_the_same_order():
    """The shared start: ``choose`` is checked first, then the collapse, then ``eps_values``."""
    mdp = random_mdp(6, 3, seed=0)
    collapsed, partial = collapsed_model(mdp, 8, 3), partially_collapsed_model(mdp, 10)
    distinct = partially_collapsed_model(mdp, 10)
    distinct.embeddings[1] += 1.0
    for check, good, bad, message in [
        (check_proposition_1, collapsed, partial, "Proposition 1 starts from a fully collapsed encoder"),
        (check_proposition_2, partial, distinct, "Proposition 2 needs states 0 and 1 to share their embedding"),
    ]:
        with pytest.raises(ValueError, match="choose must be 'rl' or 'combined', got 'best'"):
            check(mdp, bad, choose="best")
        with pytest.raises(ValueError, match=message):
            check(mdp, bad, eps_values=["not a number"])
        with pytest.raises(ValueError, match="could not convert"):
            check(mdp, good, eps_values=["not a number"])
        # The default perturbation sizes
        np.testing.assert_array_equal(check(mdp, good).eps, np.logspace(-6, -2, 9))
