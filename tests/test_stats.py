"""Intervals, paired tests and seed summaries against known answers (scipy's own, hand-made tables)."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest
from scipy import stats as scipy_stats
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from workbench.core import stats

LABELS = list(range(7))


def predictions(n: int, right: float, seed: int, classes: int = 7):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    return y, np.where(rng.random(n) < right, y, rng.integers(0, 7, n))


@pytest.mark.parametrize("classes", [7, 5])  # 5: two classes absent from the labels
def test_scores_are_scikit_learns(classes):
    y, p = predictions(600, 0.5, 1, classes)
    expected = [
        accuracy_score(y, p),
        f1_score(y, p, labels=LABELS, average="macro", zero_division=0),
        f1_score(y, p, labels=LABELS, average="weighted", zero_division=0),
        balanced_accuracy_score(y, p),
    ]
    assert stats.scores(y, p) == pytest.approx(expected)


def test_an_interval_is_scipys_on_the_same_resamples():
    y, p = predictions(350, 0.43, 2)
    ours = stats.intervals(y, p)
    theirs = scipy_stats.bootstrap(
        (y, p),
        lambda a, b, axis=-1: (a == b).mean(axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=stats.RESAMPLES,
        method="BCa",
        random_state=np.random.default_rng(stats.SEED),
        batch=250,
    ).confidence_interval
    assert ours["test_accuracy_ci_low"] == pytest.approx(theirs.low)
    assert ours["test_accuracy_ci_high"] == pytest.approx(theirs.high)
    assert ours["test_accuracy_ci_low"] < accuracy_score(y, p) < ours["test_accuracy_ci_high"]
    # 350 faces near 0.43: about +-5 points
    assert 0.08 < ours["test_accuracy_ci_high"] - ours["test_accuracy_ci_low"] < 0.12
    assert stats.intervals(y, p) == ours  # seeded: the same predictions, the same interval


def test_mcnemar_on_a_hand_made_table_is_the_exact_binomial():
    # 12 faces only A gets right, 3 only B: two-sided, P(X <= 3) doubled, X ~ Binomial(15, 1/2)
    assert stats.mcnemar_exact(12, 3) == pytest.approx(
        2 * sum(comb(15, k) for k in range(4)) / 2**15
    )
    assert stats.mcnemar_exact(0, 0) == 1.0


def test_a_paired_comparison_finds_a_real_gain_and_no_gain_in_a_copy():
    y, a = predictions(3589, 0.66, 3)
    rng = np.random.default_rng(4)
    b = np.where(rng.random(len(y)) < 0.08, (a + 1) % 7, a)  # B breaks 8% of A's answers
    result = stats.paired(y, a, b)
    assert result.only_a > result.only_b and result.p_value < 1e-6
    assert result.accuracy[1] < result.accuracy[0] < result.accuracy[2] and result.accuracy[1] > 0
    assert result.verdict.startswith("A better at the 5% level")
    same = stats.paired(y, a, a)
    assert same.p_value == 1.0 and same.accuracy == (0.0, 0.0, 0.0)
    assert same.verdict.startswith("no difference at the 5% level")


def test_an_unpaired_difference_holds_its_point_and_is_wider_than_paired():
    y, a = predictions(2000, 0.65, 5)
    y2, b = predictions(1500, 0.6, 6)
    point, low, high = stats.unpaired_difference((y, a), (y2, b))
    assert point == pytest.approx(accuracy_score(y, a) - accuracy_score(y2, b))
    assert low < point < high and 0.04 < high - low < 0.1


def test_seed_summary_is_the_t_interval():
    values = [0.61, 0.63, 0.62]
    s = stats.seed_summary(values)
    assert s["mean"] == pytest.approx(0.62) and s["std"] == pytest.approx(0.01)
    half = scipy_stats.t.ppf(0.975, 2) * 0.01 / np.sqrt(3)
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((0.62 - half, 0.62 + half))


def test_faces_needed_for_a_gain():
    # +-1.6 points at 0.63 needs about 3,500 faces (FER-2013's PrivateTest has 3,589)
    assert 3_400 < stats.faces_for_gain(0.016, 0.63) < 3_600
