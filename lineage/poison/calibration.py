"""Calibration of the detectors: scores -> p-values against the data's own null, the combination
of several detectors' p-values, and the false discovery rate control that turns p-values into
flags. (A group's evidence, that rows share an anomaly, is ``lineage.poison.detectors``'
``Lookalikes.confirm``.)

- ``tail_pvalues``: per class, the upper tail of a score beyond its median is modelled as
  exponential, its scale fitted between the class's median and its ``upper`` quantile (75%:
  robust to a quarter of a class's rows being poisoned): ``p = 0.5 * exp(-(s - q50) / beta)``
  with ``beta = (q_upper - q50) / ln(0.5 / (1 - upper))``.
  An exponential tail is heavier than a Gaussian one, so natural outliers of most score
  distributions get moderate p-values, not tiny ones.
- ``cauchy_combine``: the Cauchy combination test (Liu & Xie 2020) of one row's p-values from
  several detectors: valid under any dependence between them, dominated by the smallest p-value
  (one strong detector can flag a row alone) and rewarding agreement.
- ``benjamini_hochberg``: the rows whose p-values pass the Benjamini-Hochberg step-up procedure
  at false discovery rate ``q`` (``FDR_Q``, 1%, unless given).
"""

from __future__ import annotations

import math

import numpy as np

FDR_Q = 0.01  # the documented false discovery rate of the combined scan


def distinct_labels(y: np.ndarray) -> np.ndarray:
    """The sorted distinct values of ``y``, as ``np.unique(y)`` but without sorting a copy of a
    large integer array (a count per value instead)."""
    y = np.asarray(y)
    if y.dtype.kind in "iu" and len(y):
        lo, hi = int(y.min()), int(y.max())
        if hi - lo < 1 << 16:
            present = np.flatnonzero(np.bincount((y - lo).astype(np.intp, copy=False),
                                                 minlength=hi - lo + 1))
            return (present + lo).astype(y.dtype)
    return np.unique(y)


def label_index(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, idx): ``distinct_labels(y)`` and each row's position in it (int32), as
    ``np.unique(y, return_inverse=True)`` without its int64 sort of a large array."""
    y = np.asarray(y)
    labels = distinct_labels(y)
    if y.dtype.kind in "iu" and len(y) and int(labels[-1]) - int(labels[0]) < 1 << 16:
        lookup = np.zeros(int(labels[-1]) - int(labels[0]) + 1, dtype=np.int32)
        lookup[labels.astype(np.int64) - int(labels[0])] = np.arange(len(labels), dtype=np.int32)
        return labels, lookup[(y - labels[0]).astype(np.intp, copy=False)]
    return labels, np.searchsorted(labels, y).astype(np.int32)


def tail_pvalues(scores: np.ndarray, groups: np.ndarray, *, sample: int = 20000,
                 random_state: int = 0, upper: float = 0.75) -> np.ndarray:
    """Per-row p-values of ``scores`` (higher = more suspicious) against each group's (class's)
    own robust exponential tail; groups with fewer than 5 rows get p = 1. Quantiles come from at
    most ``sample`` rows of a group (seeded)."""
    scores = np.asarray(scores)
    p = np.ones(len(scores), dtype=np.float32)  # float32: 4 bytes a row on a 1M-row scan
    rng = np.random.default_rng(random_state)
    for g in distinct_labels(groups):
        rows = np.flatnonzero(groups == g)
        if len(rows) < 5:
            continue
        s = scores[rows].astype(np.float64)
        ref = s if len(s) <= sample else s[rng.choice(len(s), sample, replace=False)]
        q50, qu = np.quantile(ref, [0.5, upper])
        beta = max((qu - q50) / math.log(0.5 / (1.0 - upper)), 1e-12)
        with np.errstate(over="ignore", under="ignore"):
            p[rows] = np.minimum(1.0, 0.5 * np.exp(-(s - q50) / beta))
    return p


def cauchy_combine(P: np.ndarray) -> np.ndarray:
    """Combine each row's p-values (columns: detectors) by the Cauchy combination test with
    equal weights. p-values above 0.5 count as 0.5, a neutral term (a detector that sees
    nothing neither adds evidence nor, through the Cauchy transform's -inf at p = 1, hides
    another detector's); the combination's tail, where flags are decided, is unchanged."""
    P = np.clip(np.asarray(P, dtype=np.float64), 1e-300, 0.5)
    if P.ndim == 1:
        return P.copy()
    # tan((0.5 - p) pi) = 1 / tan(p pi), accurate for tiny p
    t = (1.0 / np.tan(P * math.pi)).mean(axis=1)
    out = np.where(t > 1e15, 1.0 / (np.maximum(t, 1e-300) * math.pi),
                   0.5 - np.arctan(t) / math.pi)
    return np.clip(out, 0.0, 1.0)


def benjamini_hochberg(p: np.ndarray, q: float = FDR_Q) -> np.ndarray:
    """Boolean mask of the rows discovered by the Benjamini-Hochberg procedure at level ``q``."""
    p = np.asarray(p)
    n = len(p)
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    # Only p-values at or below q can pass: sort those alone (few on a big scan).
    small = np.flatnonzero(p <= q)
    order = small[np.argsort(p[small], kind="stable")]
    passed = np.flatnonzero(p[order] <= q * np.arange(1, len(order) + 1) / n)
    if len(passed):
        mask[order[:passed[-1] + 1]] = True
    return mask


def bh_cut(p: np.ndarray, q: float = FDR_Q) -> float:
    """The largest p-value that the Benjamini-Hochberg procedure at ``q`` discovers (0 if none)."""
    mask = benjamini_hochberg(p, q)
    return float(np.max(p[mask])) if mask.any() else 0.0
