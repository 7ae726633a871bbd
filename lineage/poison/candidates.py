"""Trigger candidates found in the data: the patterns and directions the detectors confirmed,
turned into ``Pattern`` triggers the trigger scan can stamp on held-out rows.

For every group a detector confirmed (rows of label t that look like label s once their shared
anomaly is removed, ``DetectorResult.found``):

- a shared patch (``shared_patch``) is stamped as found: its block set to its value;
- any other group gives two candidates: its *patch* (the features where the group's rows differ
  most from their nearest rows of s, up to ``TRIM`` of them, set to the group's median values:
  a patch of any shape, inside the strokes or not) and its *blend* (the group's median
  difference from its nearest s rows, added to a row and clipped to the data's range).

Nothing here knows a trigger's shape, place or value; the groups come from the data.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from lineage.poison.calibration import FDR_Q
from lineage.poison.detectors import TRIM, Lookalikes, ScanReport
from lineage.poison.triggers import Pattern


def _fmt(v) -> str:
    return f"{float(v):g}" if isinstance(v, (int, float, np.integer, np.floating)) else str(v)


def candidate_patterns(report: ScanReport, X: np.ndarray, y: np.ndarray, *,
                       q: float = FDR_Q, max_groups: int = 12, random_state: int = 0,
                       lookalikes: Optional[Lookalikes] = None) -> list[Pattern]:
    """The triggers suggested by the scan's confirmed groups (most significant first, at most
    ``max_groups`` groups), for ``scan_attacks``.

    X : ndarray of shape (n_samples, n_features), the scanned rows; y : their labels.
    """
    X = np.asarray(X)
    groups = []
    for name, result in report.results.items():
        for g in result.found:
            if g.get("log10_p", 0.0) < math.log10(q) and len(g.get("rows", ())) >= 1:
                groups.append((g["log10_p"], name, g))
    groups.sort(key=lambda t: t[0])
    low, high = float(X.min()), float(X.max())
    look = lookalikes or report.lookalikes
    out: list[Pattern] = []
    seen = set()
    for _, name, g in groups[:max_groups]:
        t, s = g["label"], g["looks_like"]
        rows = np.asarray(g["rows"], dtype=np.int64)
        if "square" in g:
            k, r, c = g["square"]
            key = ("square", k, r, c, g["value"])
            if key not in seen:
                seen.add(key)
                values = tuple(float(v) for v in g.get("values", (g["value"],) * len(g["mask"])))
                out.append(Pattern(name=f"{k}x{k} at ({r},{c})={_fmt(g['value'])}", features=tuple(int(i) for i in g["mask"]),
                                   values=values, origin=name,
                                   size=k, row=r, col=c, value=float(g["value"])))
            continue
        if look is None:
            look = Lookalikes(X, y, random_state=random_state)
        nn = look.pool[look.nearest(X, rows, s, exclude=rows)]
        delta = np.median(X[rows].astype(np.float64) - X[nn].astype(np.float64), axis=0)
        n_feat = max(1, int(math.ceil(TRIM * X.shape[1])))
        top = np.sort(np.argsort(-np.abs(delta))[:n_feat])
        values = np.median(X[rows][:, top].astype(np.float64), axis=0)
        key = ("patch", tuple(top.tolist()), tuple(np.round(values, 1).tolist()))
        if key not in seen:
            seen.add(key)
            out.append(Pattern(name=f"patch of {len(top)} features from {name} group "
                               f"{_fmt(t)}~{_fmt(s)} ({len(rows)} rows)",
                               features=tuple(int(i) for i in top),
                               values=tuple(float(v) for v in values), origin=name))
        out.append(Pattern(name=f"blend from {name} group {_fmt(t)}~{_fmt(s)} ({len(rows)} rows)",
                           delta=tuple(float(d) for d in delta), low=low, high=high, origin=name))
    return out
