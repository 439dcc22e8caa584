"""Statistics for a paired evaluation: base model vs adapter on the same prompts and seeds.

Every arm generates one video per (prompt, seed); a metric is computed per video. Comparing an arm
with the base model (``original``) on the *same* (prompt, seed) removes the prompt-to-prompt
variance, which dwarfs the effect of an adapter. This module gives

* :func:`mean_ci` -- the mean of one arm's metric with a bootstrap confidence interval;
* :func:`paired_comparison` -- treated vs base: mean paired difference with a bootstrap CI, win
  rate, and the Wilcoxon signed-rank test (distribution-free, the standard paired test for metric
  differences that are not normal);
* :func:`holm_adjust` -- Holm-Bonferroni adjustment when many metrics/arms are tested at once.

Bootstrap intervals use :func:`scipy.stats.bootstrap` (BCa, fixed seed, so a summary is
reproducible); the signed-rank test is :func:`scipy.stats.wilcoxon` (two-sided, zero differences
dropped: ``zero_method="wilcox"``; exact distribution for small samples without ties, normal
approximation otherwise, as scipy chooses).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from scipy import stats as sps

DEFAULT_CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 10_000


@dataclass(frozen=True)
class MeanCI:
    """Mean of a sample with a bootstrap confidence interval.

    Attributes:
        n: number of finite values used (NaN/inf dropped).
        mean, std: sample mean and standard deviation (ddof=1; 0 for n = 1; NaN for n = 0).
        ci_low, ci_high: bootstrap interval of the mean at ``confidence`` (equal to the mean when
            n < 2 or all values are equal: no resampling variance).
        confidence: coverage of the interval, e.g. 0.95.
    """

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    confidence: float

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PairedComparison:
    """Treated arm vs base arm on the same items (prompt, seed).

    Differences are ``treated - base`` in the metric's units, whatever its direction; ``better``
    says which sign is an improvement.

    Attributes:
        n: number of complete pairs (both values finite).
        n_dropped: pairs dropped because a value was missing/NaN.
        mean_base, mean_treated: arm means over the complete pairs.
        mean_diff: mean of ``treated - base``.
        ci_low, ci_high: bootstrap CI of ``mean_diff`` at ``confidence``.
        win_rate: fraction of pairs in which the treated arm is better (ties count one half).
        n_ties: pairs with exactly equal values.
        wilcoxon_statistic, wilcoxon_p: two-sided Wilcoxon signed-rank test of ``treated - base``
            (p = 1.0 when every difference is zero; NaN when n = 0).
        lower_is_better: the metric's direction.
        confidence: coverage of the interval.
    """

    n: int
    n_dropped: int
    mean_base: float
    mean_treated: float
    mean_diff: float
    ci_low: float
    ci_high: float
    win_rate: float
    n_ties: int
    wilcoxon_statistic: float
    wilcoxon_p: float
    lower_is_better: bool
    confidence: float

    @property
    def ci_excludes_zero(self) -> bool:
        """True when the whole confidence interval of the mean difference lies on one side of 0."""
        return bool(self.ci_low > 0 or self.ci_high < 0)

    def significant(self, alpha: float = 0.05) -> bool:
        """Wilcoxon p < ``alpha`` and the bootstrap CI excludes 0 (both criteria, conservative)."""
        return bool(self.wilcoxon_p < alpha and self.ci_excludes_zero)

    @property
    def improved(self) -> bool | None:
        """True/False: the mean difference goes the better/worse way; None when it is exactly 0."""
        if self.mean_diff == 0 or not math.isfinite(self.mean_diff):
            return None
        return (self.mean_diff < 0) == self.lower_is_better

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ci_excludes_zero"] = self.ci_excludes_zero
        d["improved"] = self.improved
        return d


def _as_1d(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _bootstrap_mean_interval(x: np.ndarray, confidence: float, n_resamples: int, seed: int) -> tuple[float, float]:
    """BCa bootstrap interval of the mean of ``x`` (1-D, finite). Degenerate samples -> (mean, mean)."""
    mean = float(x.mean()) if x.size else math.nan
    if x.size < 2 or np.all(x == x[0]):
        return mean, mean
    with warnings.catch_warnings():
        # BCa warns (and returns NaN) on near-degenerate samples; fall back to the percentile method.
        warnings.simplefilter("ignore", category=sps.DegenerateDataWarning)
        res = sps.bootstrap(
            (x,), np.mean, confidence_level=confidence, n_resamples=n_resamples, method="BCa",
            random_state=np.random.default_rng(seed), vectorized=True,
        )
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if not (math.isfinite(low) and math.isfinite(high)):
            res = sps.bootstrap(
                (x,), np.mean, confidence_level=confidence, n_resamples=n_resamples, method="percentile",
                random_state=np.random.default_rng(seed), vectorized=True,
            )
            low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return low, high


def mean_ci(
    values: Sequence[float] | np.ndarray,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> MeanCI:
    """Mean of ``values`` with a BCa bootstrap confidence interval.

    Args:
        values: 1-D sample, any units; NaN and inf are dropped (failed videos).
        confidence: interval coverage in (0, 1).
        n_resamples: bootstrap resamples.
        seed: resampling seed (the result is deterministic for a given seed).

    Raises:
        ValueError: ``values`` is not 1-D or ``confidence`` is not in (0, 1).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    x = _as_1d(values, "values")
    x = x[np.isfinite(x)]
    n = int(x.size)
    mean = float(x.mean()) if n else math.nan
    std = float(x.std(ddof=1)) if n > 1 else (0.0 if n == 1 else math.nan)
    low, high = _bootstrap_mean_interval(x, confidence, n_resamples, seed)
    return MeanCI(n=n, mean=mean, std=std, ci_low=low, ci_high=high, confidence=confidence)


def paired_comparison(
    base: Sequence[float] | np.ndarray,
    treated: Sequence[float] | np.ndarray,
    lower_is_better: bool = True,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> PairedComparison:
    """Compare ``treated`` with ``base`` item by item (same prompt and seed at the same index).

    Args:
        base, treated: 1-D arrays of equal length; index i of both is the same (prompt, seed).
            A pair with a NaN/inf on either side (a failed video) is dropped and counted.
        lower_is_better: direction of the metric (True for consistency score, MSE, LPIPS,
            Sampson distance; False for PSNR, SSIM, MVCS).
        confidence, n_resamples, seed: as in :func:`mean_ci`.

    Returns:
        :class:`PairedComparison` with the mean of ``treated - base``, its bootstrap CI, win rate
        and Wilcoxon signed-rank p-value.

    Raises:
        ValueError: arrays are not 1-D or differ in length.
    """
    b = _as_1d(base, "base")
    t = _as_1d(treated, "treated")
    if b.shape != t.shape:
        raise ValueError(f"base and treated must be paired (same length), got {b.size} and {t.size}")
    ok = np.isfinite(b) & np.isfinite(t)
    b, t = b[ok], t[ok]
    n = int(b.size)
    diff = t - b
    if n == 0:
        nan = math.nan
        return PairedComparison(0, int((~ok).sum()), nan, nan, nan, nan, nan, nan, 0, nan, nan, lower_is_better, confidence)
    better = diff < 0 if lower_is_better else diff > 0
    ties = diff == 0
    win_rate = float((better.sum() + 0.5 * ties.sum()) / n)
    if np.all(ties):
        stat, p = 0.0, 1.0
    else:
        res = sps.wilcoxon(diff, zero_method="wilcox", alternative="two-sided")
        stat, p = float(res.statistic), float(res.pvalue)
    low, high = _bootstrap_mean_interval(diff, confidence, n_resamples, seed)
    return PairedComparison(
        n=n,
        n_dropped=int((~ok).sum()),
        mean_base=float(b.mean()),
        mean_treated=float(t.mean()),
        mean_diff=float(diff.mean()),
        ci_low=low,
        ci_high=high,
        win_rate=win_rate,
        n_ties=int(ties.sum()),
        wilcoxon_statistic=stat,
        wilcoxon_p=p,
        lower_is_better=lower_is_better,
        confidence=confidence,
    )


def holm_adjust(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as the input; NaN stays NaN).

    Controls the family-wise error rate when several comparisons (metrics x arms) are read at once:
    the k-th smallest of m p-values is multiplied by (m - k + 1), then made monotone and capped at 1.
    Source: Holm, "A simple sequentially rejective multiple test procedure", Scand. J. Stat. 1979.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = idx.size
    if m == 0:
        return out.tolist()
    order = idx[np.argsort(p[idx], kind="stable")]
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        out[i] = running
    return out.tolist()
