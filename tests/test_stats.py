"""Paired statistics of the evaluation (evaluation/stats.py) against known answers."""

import math

import numpy as np
import pytest

from evaluation.stats import holm_adjust, mean_ci, paired_comparison


def test_known_shift_is_detected_and_null_is_not():
    rng = np.random.default_rng(0)
    base = rng.normal(0.5, 0.1, size=100)  # e.g. consistency scores of the base model
    noise = rng.normal(0.0, 0.02, size=100)
    shifted = paired_comparison(base, base - 0.02 + noise, lower_is_better=True)
    assert shifted.wilcoxon_p < 0.01 and shifted.ci_high < 0 and shifted.significant(0.01)
    assert shifted.improved is True and shifted.win_rate > 0.75
    assert shifted.ci_low < -0.02 < shifted.ci_high  # the true shift is inside the interval

    null = paired_comparison(base, base + noise, lower_is_better=True)
    assert null.wilcoxon_p > 0.05 and null.ci_low < 0 < null.ci_high and not null.significant(0.05)


def test_wilcoxon_exact_known_answer():
    # 10 positive differences of distinct ranks: exact two-sided p = 2 / 2**10
    res = paired_comparison(np.zeros(10), np.arange(1, 11, dtype=float), lower_is_better=False)
    assert res.wilcoxon_p == pytest.approx(2 / 1024, rel=1e-9)
    assert res.win_rate == 1.0 and res.mean_diff == pytest.approx(5.5) and res.improved is True


def test_ties_missing_values_and_direction():
    base = [1.0, 2.0, 3.0, float("nan"), 5.0]
    treated = [1.0, 3.0, 2.0, 4.0, float("inf")]
    res = paired_comparison(base, treated, lower_is_better=True)
    assert res.n == 3 and res.n_dropped == 2 and res.n_ties == 1
    assert res.win_rate == pytest.approx((1 + 0.5) / 3)
    same = paired_comparison([1.0, 2.0], [1.0, 2.0])
    assert same.wilcoxon_p == 1.0 and same.mean_diff == 0 and same.improved is None
    with pytest.raises(ValueError, match="paired"):
        paired_comparison([1.0, 2.0], [1.0])


def test_mean_ci_matches_t_interval_for_normal_data():
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 1.0, size=400)
    ci = mean_ci(x)
    half_t = 1.966 * x.std(ddof=1) / math.sqrt(x.size)  # t quantile for 399 dof
    assert ci.n == 400 and ci.mean == pytest.approx(x.mean())
    assert ci.ci_low == pytest.approx(x.mean() - half_t, abs=0.03)
    assert ci.ci_high == pytest.approx(x.mean() + half_t, abs=0.03)
    assert mean_ci(x, seed=3) == mean_ci(x, seed=3)  # reproducible
    one = mean_ci([0.7, float("nan")])
    assert one.n == 1 and one.ci_low == one.ci_high == 0.7


def test_holm_adjust_known_answer():
    # m = 4: sorted p 0.01, 0.02, 0.03, 0.5 -> 0.04, 0.06, 0.06 (monotone), 0.5
    adj = holm_adjust([0.03, 0.01, 0.5, 0.02, float("nan")])
    assert adj[:4] == pytest.approx([0.06, 0.04, 0.5, 0.06])
    assert math.isnan(adj[4])
