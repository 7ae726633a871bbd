"""Poisoned-row detectors: functions over (X, y) that score every row and flag suspects with evidence.

Every detector has the same shape::

    result = detect_pixel_blocks(X, y, image_shape=(8, 8), value=16, random_state=0)
    result.scores     # ndarray of shape (n_samples,), higher = more suspicious
    result.flagged    # sorted positions (0..n_samples-1) of the rows it flags
    result.evidence   # {position: "why"} for every flagged row

and ``combine`` merges several results into one audit list in which each row carries the
detectors that flagged it and why. ``scan_rows`` runs them all.

Measured (``lineage.lab.detector_sweep``, scenario 2 of the reference experiment: digits, 1257
training rows, 2x2 patch at 16 lower-right on 1s relabelled 7; seeds 0..4): the combined scan
has precision 1.0 and recall 1.0 at source fractions 0.05, 0.1, 0.2, 0.3 and 0.5 (6 to 64
poisoned rows) and flags no row of the unpoisoned data; at 0.02 (3 rows) its recall is 0 to 1
(mean 0.53).
Limits: ``shared_patch`` looks for a patch uniform at the bright value that explains the label;
a patch inside the strokes of the source class changes little and is not found. Measured
(seed 0, 2x2 at (3,3) on 1s relabelled 7): at fraction 0.5 the model's ASR is 0.73 and the
combined scan flags none of the 64 rows (at 0.2 the ASR is only 0.07).

The detectors know nothing about where a trigger sits. They are:

- ``pixel_blocks``: small blocks far from the row's class (per class, per pixel robust centre and
  spread). The "simple inspection" behind ``trigger_visibility``.
- ``shared_patch``: the backdoor signature. A poisoned set shares one patch: a block that is
  uniform at an extreme value across a subset of one label's rows. A candidate is confirmed when
  its carriers, with the block masked, sit among rows of another class (their nearest clean
  neighbours vote for a different label) far more often than that label's rows do by chance.
- ``label_disagreement``: a row whose nearest neighbours (other rows) nearly all carry one other
  label. It catches flipped labels; it misses a trigger's rows once they are many, because
  they share the patch and so are each other's neighbours.
- ``duplicates``: exact and near duplicates that carry different labels.
- ``spectral``: per class, the top singular direction of the centred (standardized) rows;
  rows far out along it.
- ``trigger_scan``: the shared trigger scan (``lineage.scan.scan_triggers``) on a model trained on
  the rows: rows of the target class that carry the worst candidate patch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from lineage.errors import BadInputError
from lineage.poison.estimators import fit_estimator
from lineage.poison.trigger_scan import scan_triggers
from lineage.poison.triggers import Trigger, image_shape_for

ImageShape = Optional[str | tuple[int, int]]
CHUNK_ROWS = 65536  # rows scored at once: bounded memory on big versions


@dataclass(frozen=True)
class DetectorResult:
    """What one detector found: a score per row, the flagged rows, and why each is flagged."""

    name: str
    scores: np.ndarray  # (n_samples,) float64, higher = more suspicious
    flagged: np.ndarray  # (n_flagged,) int64 positions into X, sorted
    evidence: dict[int, str]  # position -> one line of evidence, for every flagged row
    params: dict = field(default_factory=dict)

    @property
    def flag_mask(self) -> np.ndarray:
        mask = np.zeros(len(self.scores), dtype=bool)
        mask[self.flagged] = True
        return mask


@dataclass(frozen=True)
class AuditEntry:
    """One row of the combined audit list."""

    position: int
    score: float  # combined: sum of the flagging detectors' weights
    detectors: tuple[str, ...]  # the detectors that flagged the row
    evidence: dict[str, str]  # detector -> why


@dataclass(frozen=True)
class ScanReport:
    """The detectors' results and their combination over one (X, y)."""

    results: dict[str, DetectorResult]
    entries: list[AuditEntry]  # flagged rows, most suspicious first
    flagged: np.ndarray  # positions of the combined flags, sorted
    params: dict = field(default_factory=dict)


def _check(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2:
        raise BadInputError(f"X must have shape (n_samples, n_features), got {X.shape}")
    if y.shape != (len(X),):
        raise BadInputError(f"y must have shape ({len(X)},), got {y.shape}")
    return X, y


def _blocks(h: int, w: int, sizes: Sequence[int]) -> list[tuple[int, int, int, np.ndarray]]:
    """(size, row, col, feature indices) for every square block of the given sizes."""
    grid = np.arange(h * w).reshape(h, w)
    return [(k, r, c, grid[r:r + k, c:c + k].ravel())
            for k in sizes if k <= min(h, w)
            for r in range(h - k + 1) for c in range(w - k + 1)]


def _result(name: str, scores: np.ndarray, flagged: np.ndarray, evidence: dict[int, str],
            **params) -> DetectorResult:
    flagged = np.unique(np.asarray(flagged, dtype=np.int64))
    return DetectorResult(name=name, scores=np.asarray(scores, dtype=np.float64), flagged=flagged,
                          evidence={int(i): evidence[int(i)] for i in flagged}, params=params)


def _fmt(v: float) -> str:
    return f"{v:g}"


def block_scores(X: np.ndarray, y: np.ndarray, *, image_shape: ImageShape = None,
                 sizes: Sequence[int] = (1, 2, 3), floor: float = 0.125
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Each row's most abnormal block against its class: (scores, best block index).

    Per class and pixel a robust centre (median) and spread (1.4826 x MAD, floored at ``floor`` x
    the data's value range, so a pixel that is always blank does not make every speck infinite).
    A block's deviation is the sum of its pixels' z-scores over sqrt(pixels): a whole block far
    off counts more than one speck. The row's score is its largest absolute block deviation.
    """
    X, y = _check(X, y)
    h, w = image_shape_for(image_shape, X.shape[1])
    spread_floor = floor * max(float(X.max() - X.min()), 1e-12)
    labels, y_idx = np.unique(y, return_inverse=True)
    centre = np.empty((len(labels), X.shape[1]))
    spread = np.empty((len(labels), X.shape[1]))
    for k in range(len(labels)):
        rows = X[y_idx == k]
        centre[k] = np.median(rows, axis=0)
        spread[k] = np.maximum(1.4826 * np.median(np.abs(rows - centre[k]), axis=0), spread_floor)
    blocks = _blocks(h, w, sizes)
    # Block sums as one matrix product: (pixels x blocks) indicator over sqrt(block pixels).
    weights = np.zeros((X.shape[1], len(blocks)))
    for b, (_, _, _, idx) in enumerate(blocks):
        weights[idx, b] = 1.0 / math.sqrt(len(idx))
    scores = np.empty(len(X))
    best = np.empty(len(X), dtype=np.int64)
    for start in range(0, len(X), CHUNK_ROWS):
        part = slice(start, start + CHUNK_ROWS)
        dev = np.abs(((X[part] - centre[y_idx[part]]) / spread[y_idx[part]]) @ weights)
        best[part] = dev.argmax(axis=1)
        scores[part] = dev[np.arange(len(dev)), best[part]]
    return scores, best


def detect_pixel_blocks(X, y, *, image_shape: ImageShape = None, value: Optional[float] = None,
                        random_state: int = 0, threshold: float = 12.0,
                        sizes: Sequence[int] = (1, 2, 3)) -> DetectorResult:
    """Rows with a small block far brighter or darker than the row's class usually is.

    Parameters
    ----------
    X : ndarray of shape (n_samples, h*w)
    y : ndarray of shape (n_samples,)
    threshold : a row is flagged when its most abnormal block deviates by more than this
        (sum of robust z-scores over sqrt(block pixels)); see ``block_scores``.
    """
    X, y = _check(X, y)
    h, w = image_shape_for(image_shape, X.shape[1])
    scores, best = block_scores(X, y, image_shape=(h, w), sizes=sizes)
    blocks = _blocks(h, w, sizes)
    flagged = np.flatnonzero(scores > threshold)
    evidence = {}
    for i in flagged:
        k, r, c, idx = blocks[best[i]]
        evidence[int(i)] = (f"{k}x{k} block at ({r},{c}) with values "
                            f"{'/'.join(_fmt(v) for v in X[i, idx])} deviates {scores[i]:.1f} "
                            f"robust sd from label {_fmt(y[i])}'s typical rows")
    return _result("pixel_blocks", scores, flagged, evidence, threshold=threshold,
                   sizes=list(sizes))


def trigger_visibility(X, y, poisoned, *, image_shape: ImageShape = None,
                       fpr: float = 0.01) -> float:
    """Recall of a simple abnormal-pixel-block inspection at a ``fpr`` false-positive rate.

    The inspection is ``block_scores`` (each row's most abnormal 1x1..3x3 block against the robust
    per-pixel statistics of its label). The threshold is set so that a share ``fpr`` (default
    1%) of the clean rows (``~poisoned``) score above it; trigger_visibility is the share of the
    poisoned rows that score above it: 1.0 means the trigger stands out to anyone who looks,
    0.0 that such an inspection cannot tell poisoned rows from clean ones. Returns nan when no row
    is poisoned.
    """
    X, y = _check(X, y)
    poisoned = np.asarray(poisoned, dtype=bool)
    if not poisoned.any() or poisoned.all():
        return float("nan")
    scores, _ = block_scores(X, y, image_shape=image_shape)
    cut = np.quantile(scores[~poisoned], 1.0 - fpr, method="higher")
    return float((scores[poisoned] > cut).mean())


def _sq_dists(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    d = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * A @ B.T
    return np.maximum(d, 0.0)


def _log_binom_tail(n: int, k: int, p: float) -> float:
    """log P(Binomial(n, p) >= k)."""
    from scipy.stats import binom

    return float(binom.logsf(k - 1, n, p))


def detect_shared_patch(X, y, *, image_shape: ImageShape = None, value: Optional[float] = None,
                        random_state: int = 0, sizes: Sequence[int] = (1, 2, 3),
                        n_neighbors: int = 5, min_rows: int = 3, min_patch_share: float = 0.3,
                        alpha: float = 1e-3, max_patterns: int = 3,
                        max_search: int = 4000) -> DetectorResult:
    """Rows that share a uniform bright patch and look like another class once it is masked.

    For every label c and block B (sizes 1..3 at every position), the carriers are the rows
    labelled c whose block B is uniformly at the bright value v (``value``, default the data's
    maximum, the value the trigger scan stamps). Each carrier is compared, with B masked, to its
    ``n_neighbors`` nearest rows that do not carry the pattern. A carrier is *explained by the
    patch* when those lookalikes vote for another label s and the patch is most of what separates
    it from them (its pixels make at least ``min_patch_share`` of the squared distance): masked,
    it is an s; the patch alone makes it a c. A candidate is accepted when its explained carriers
    are too many for chance: the binomial tail against the leave-one-out neighbour rate of s
    among label c's other rows (floored at 2%) is below ``alpha`` over the number of candidates. The best candidate's
    carriers whose lookalikes vote for another label are flagged (once the pattern is
    established, a carrier that is not a c underneath is poisoned even when its own strokes
    touch the patch); the search repeats on the rest (up to ``max_patterns``).

    The search runs on at most ``max_search`` rows (a seeded sample when there are more); an
    accepted pattern is then applied to every row against that sample. A natural style of a class
    is not a trigger: its carriers' lookalikes share the style, so the patch explains little.
    """
    X, y = _check(X, y)
    h, w = image_shape_for(image_shape, X.shape[1])
    n = len(X)
    v = float(X.max()) if value is None else float(value)
    rng = np.random.default_rng(random_state)
    pool = np.arange(n) if n <= max_search else np.sort(rng.choice(n, max_search, replace=False))
    Xp, yp = X[pool], y[pool]
    labels = np.unique(y)
    blocks = _blocks(h, w, sizes)
    D = _sq_dists(Xp, Xp)
    # Label c's rows whose leave-one-out neighbours (whole rows) vote for s: the chance rate.
    np.fill_diagonal(D, np.inf)
    base = np.array([_majority(yp[row]) for row in np.argpartition(D, n_neighbors, axis=1)[:, :n_neighbors]])
    np.fill_diagonal(D, 0.0)
    uniform = np.stack([(Xp[:, idx] == v).all(axis=1) for _, _, _, idx in blocks], axis=1)
    patch_cost = np.stack([((v - Xp[:, idx]) ** 2).sum(axis=1) for _, _, _, idx in blocks])
    cut = math.log(alpha / (len(blocks) * len(labels)))

    taken = np.zeros(len(pool), dtype=bool)
    patterns = []
    for _ in range(max_patterns):
        best = None
        for c in labels:
            in_class = (yp == c) & ~taken
            n_class = int(in_class.sum())
            for b, (k, r, col, idx) in enumerate(blocks):
                carriers = np.flatnonzero(uniform[:, b] & in_class)
                if len(carriers) < min_rows or len(carriers) > 0.6 * n_class:
                    continue
                votes, share = _explain(D[carriers] - patch_cost[b][None, :], D[carriers],
                                        np.isin(np.arange(len(pool)), carriers), yp, n_neighbors)
                explained = (votes != c) & (share >= min_patch_share)
                if explained.sum() < min_rows:
                    continue
                others, counts = np.unique(votes[explained], return_counts=True)
                s, n_flip = others[counts.argmax()], int(counts.max())
                if n_flip < min_rows:
                    continue
                # Chance rate from the label's other rows: the carriers would inflate it.
                others_c = in_class.copy()
                others_c[carriers] = False
                rate = max(0.02, float((base[others_c] == s).sum()) / max(int(others_c.sum()), 1))
                logp = _log_binom_tail(len(carriers), n_flip, rate)
                if logp < cut and (best is None or (logp, -k) < best[0]):
                    best = ((logp, -k), c, s, b, logp)
        if best is None:
            break
        _, c, s, b, logp = best
        k, r, col, idx = blocks[b]
        taken |= uniform[:, b] & (yp == c)
        patterns.append({"label": c, "looks_like": s, "size": k, "row": r, "col": col, "value": v,
                         "log10_p": round(logp / math.log(10), 1)})

    scores = np.zeros(n)
    evidence: dict[int, str] = {}
    for pattern in patterns:
        k, r, col, c = pattern["size"], pattern["row"], pattern["col"], pattern["label"]
        idx = next(bl[3] for bl in blocks if bl[:3] == (k, r, col))
        carriers = np.flatnonzero((X[:, idx] == v).all(axis=1) & (y == c))
        pool_carries = (Xp[:, idx] == v).all(axis=1) & (yp == c)
        cost = ((v - Xp[:, idx]) ** 2).sum(axis=1)
        explained_n = 0
        for start in range(0, len(carriers), 1024):
            chunk = carriers[start:start + 1024]
            full = _sq_dists(X[chunk], Xp)
            votes, share = _explain(full - cost[None, :], full, pool_carries, yp, n_neighbors)
            for i, vote, sh in zip(chunk, votes, share):
                if vote != c:
                    explained_n += 1
                    scores[i] = max(scores[i], -pattern["log10_p"])
                    evidence[int(i)] = (
                        f"carries a uniform {k}x{k} patch at ({r},{col})={_fmt(v)} shared by "
                        f"{len(carriers)} rows labelled {_fmt(c)}; with it masked the row's nearest "
                        f"rows are labelled {_fmt(vote)} and the patch makes {sh:.0%} of the "
                        f"difference (pattern p=1e{pattern['log10_p']:.0f})")
        pattern.update(carriers=int(len(carriers)), flagged=explained_n,
                       label=_fmt(c), looks_like=_fmt(pattern["looks_like"]))
    flagged = np.array(sorted(evidence), dtype=np.int64)
    return _result("shared_patch", scores, flagged, evidence, sizes=list(sizes), value=v,
                   n_neighbors=n_neighbors, min_patch_share=min_patch_share, alpha=alpha,
                   patterns=patterns)


def _explain(masked: np.ndarray, full: np.ndarray, exclude: np.ndarray, yp: np.ndarray,
             k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per carrier: the vote of its k nearest non-excluded rows on masked distances, and the
    mean share of the full squared distance to them that the patch accounts for."""
    masked = np.where(exclude[None, :], np.inf, masked)
    nn = np.argpartition(masked, k, axis=1)[:, :k]
    rows = np.arange(len(masked))[:, None]
    share = 1.0 - masked[rows, nn] / np.maximum(full[rows, nn], 1e-12)
    return np.array([_majority(yp[row]) for row in nn]), share.mean(axis=1)


def _majority(labels: np.ndarray):
    vals, counts = np.unique(labels, return_counts=True)
    return vals[counts.argmax()]


def detect_label_disagreement(X, y, *, image_shape: ImageShape = None,
                              value: Optional[float] = None, random_state: int = 0,
                              n_neighbors: int = 10, max_agree: float = 0.1,
                              min_other: float = 0.7, max_pool: int = 2000) -> DetectorResult:
    """Rows whose nearest neighbours carry another label.

    Each row's ``n_neighbors`` nearest other rows (Euclidean, raw features) vote: a row is flagged
    when at most ``max_agree`` of them share its label and at least ``min_other`` share one other
    label. Score: the share that disagrees with the row's label. Above ``max_pool`` rows the
    neighbours come from a seeded sample of that size.
    """
    X, y = _check(X, y)
    n = len(X)
    rng = np.random.default_rng(random_state)
    pool = np.arange(n) if n <= max_pool else np.sort(rng.choice(n, max_pool, replace=False))
    k = min(n_neighbors, len(pool) - 1)
    if k < 1:
        return _result("label_disagreement", np.zeros(n), np.empty(0, np.int64), {},
                       skipped="needs at least two rows")
    labels, y_idx = np.unique(y, return_inverse=True)
    y_idx = y_idx.ravel()
    scores = np.zeros(n)
    evidence: dict[int, str] = {}
    where_in_pool = np.full(n, -1)
    where_in_pool[pool] = np.arange(len(pool))
    Xp, yp_idx = X[pool], y_idx[pool]
    for start in range(0, n, 1024):
        rows = np.arange(start, min(start + 1024, n))
        D = _sq_dists(X[rows], Xp)
        self_at = where_in_pool[rows]
        D[np.flatnonzero(self_at >= 0), self_at[self_at >= 0]] = np.inf
        nn = np.argpartition(D, k, axis=1)[:, :k]
        # Votes per label, (rows, labels): one count matrix instead of a loop per row.
        counts = np.zeros((len(rows), len(labels)), dtype=np.int64)
        np.add.at(counts, (np.repeat(np.arange(len(rows)), k), yp_idx[nn].ravel()), 1)
        agree = counts[np.arange(len(rows)), y_idx[rows]] / k
        scores[rows] = 1.0 - agree
        counts[np.arange(len(rows)), y_idx[rows]] = -1
        other = counts.argmax(axis=1)
        n_other = counts[np.arange(len(rows)), other]
        for j in np.flatnonzero((agree <= max_agree) & (n_other >= min_other * k)):
            i = rows[j]
            evidence[int(i)] = (f"labelled {_fmt(y[i])} but {n_other[j]} of its {k} nearest "
                                f"rows are labelled {_fmt(labels[other[j]])}")
    flagged = np.array(sorted(evidence), dtype=np.int64)
    return _result("label_disagreement", scores, flagged, evidence, n_neighbors=k,
                   max_agree=max_agree, min_other=min_other)


def detect_duplicates(X, y, *, image_shape: ImageShape = None, value: Optional[float] = None,
                      random_state: int = 0, tolerance: float = 0.05,
                      max_exact: int = 20000) -> DetectorResult:
    """Exact and near duplicates whose labels conflict.

    Two rows are near duplicates when their Euclidean distance is at most ``tolerance`` x the
    data's value range x sqrt(n_features) (0 finds exact copies only). In a group of such rows
    with more than one label, the rows holding a minority label are flagged (all of them when
    the labels tie). Score: the share of the row's duplicates that disagree with its label.
    Above ``max_exact`` distinct rows, near duplicates are found by grid hashing instead of a
    radius search (sound but not complete).
    """
    from sklearn.neighbors import NearestNeighbors

    X, y = _check(X, y)
    n = len(X)
    radius = tolerance * max(float(X.max() - X.min()), 1e-12) * math.sqrt(X.shape[1])
    # Exact copies collapse first, so a million identical rows do not make a million neighbours.
    uniq, inverse = _unique_rows(X)
    if radius > 0 and 1 < len(uniq) <= max_exact:
        graph = NearestNeighbors(radius=radius).fit(uniq).radius_neighbors_graph(uniq)
        from scipy.sparse.csgraph import connected_components

        _, group_of_uniq = connected_components(graph, directed=False)
    elif radius > 0 and len(uniq) > max_exact:
        # Too many rows for a radius search: rows in one grid cell of side radius/sqrt(d) are
        # within the radius of each other (near pairs split by a cell border are missed).
        _, group_of_uniq = _unique_rows(np.floor(uniq / (radius / math.sqrt(X.shape[1]))))
    else:
        group_of_uniq = np.arange(len(uniq))
    group = group_of_uniq[inverse]
    scores = np.zeros(n)
    evidence: dict[int, str] = {}
    order = np.argsort(group, kind="stable")
    starts = np.concatenate([[0], np.flatnonzero(np.diff(group[order])) + 1])
    ends = np.append(starts[1:], n)
    y_sorted = y[order]
    # Only groups whose labels disagree need a look: min != max label within the group.
    conflict = np.minimum.reduceat(y_sorted, starts) != np.maximum.reduceat(y_sorted, starts)
    for start, end in zip(starts[conflict], ends[conflict]):
        members = order[start:end]
        labels, counts = np.unique(y[members], return_counts=True)
        top = counts.max()
        majority = labels[counts == top]
        for i in members:
            disagree = int((y[members] != y[i]).sum())
            scores[i] = disagree / (len(members) - 1)
            if y[i] in majority and len(majority) == 1:
                continue
            exact = int((inverse[members] == inverse[i]).sum()) - 1
            evidence[int(i)] = (f"{'an exact' if exact else 'a near'} duplicate of "
                                f"{len(members) - 1} other row(s) of which {disagree} carry another "
                                f"label ({', '.join(f'{_fmt(l)}x{c}' for l, c in zip(labels, counts))})")
    flagged = np.array(sorted(evidence), dtype=np.int64)
    return _result("duplicates", scores, flagged, evidence, tolerance=tolerance)


def _unique_rows(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows and, per row, the index of its distinct row (hashing row bytes: much faster
    than ``np.unique(axis=0)`` on big arrays)."""
    A = np.ascontiguousarray(A)
    keys = A.view(np.dtype((np.void, A.dtype.itemsize * A.shape[1]))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return A[first], inverse.ravel()


def detect_spectral(X, y, *, image_shape: ImageShape = None, value: Optional[float] = None,
                    random_state: int = 0, threshold: float = 6.0,
                    min_rows: int = 10) -> DetectorResult:
    """Spectral signatures: per label, rows far out along the top singular direction.

    Per label, the rows (standardized over the whole data, spreads floored at a tenth of the
    value range) are centred on the label's median and
    projected on the top right singular vector; a row's score is its projection's distance
    from the median projection in robust standard deviations (1.4826 x MAD). Rows beyond
    ``threshold`` are flagged. Labels with fewer than ``min_rows`` rows are skipped.
    """
    X, y = _check(X, y)
    # Floored spread: a pixel that is nearly always blank must not dominate every direction.
    scale = np.maximum(X.std(axis=0), 0.1 * max(float(X.max() - X.min()), 1e-12))
    Z = (X - X.mean(axis=0)) / scale
    scores = np.zeros(len(X))
    evidence: dict[int, str] = {}
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        if len(rows) < min_rows:
            continue
        C = Z[rows] - np.median(Z[rows], axis=0)
        # Only the top direction: the small side of the matrix keeps this cheap on big classes.
        _, _, vt = np.linalg.svd(C[:: max(1, len(rows) // 20000)], full_matrices=False)
        proj = C @ vt[0]
        centre = np.median(proj)
        spread = 1.4826 * np.median(np.abs(proj - centre))
        z = np.abs(proj - centre) / max(spread, 1e-12)
        scores[rows] = z
        for i in rows[z > threshold]:
            evidence[int(i)] = (f"lies {scores[i]:.1f} robust sd out along the top singular "
                                f"direction of label {_fmt(label)}'s rows")
    flagged = np.array(sorted(evidence), dtype=np.int64)
    return _result("spectral", scores, flagged, evidence, threshold=threshold)


def detect_trigger_scan(X, y, *, image_shape: ImageShape = None, value: Optional[float] = None,
                        random_state: int = 0, sizes: Sequence[int] = (1, 2, 3),
                        min_flip: float = 0.5, max_rows: int = 20000) -> DetectorResult:
    """Rows of the target class that carry the worst candidate trigger of the shared scan.

    The seeded logistic model of ``lineage.training`` is trained on the rows (a seeded sample of ``max_rows`` above
    that); ``lineage.scan.scan_triggers`` stamps every candidate patch (sizes 1..3, every
    position, at ``value``, default the data's maximum) on the rows and reports, per candidate,
    the largest share of non-target rows flipped to one class. When the worst candidate flips at
    least ``min_flip`` of them, the rows labelled with its target class whose block is uniformly
    at the patch value are flagged: they carry the pattern the model learned to obey.
    Score: the worst flip share, on the rows that carry its patch.
    """

    X, y = _check(X, y)
    h, w = image_shape_for(image_shape, X.shape[1])
    v = float(X.max()) if value is None else float(value)
    rng = np.random.default_rng(random_state)
    rows = np.arange(len(X)) if len(X) <= max_rows else np.sort(rng.choice(len(X), max_rows, replace=False))
    scores = np.zeros(len(X))
    if len(np.unique(y[rows])) < 2:
        return _result("trigger_scan", scores, np.empty(0, np.int64), {},
                       skipped="needs at least two labels")

    model = fit_estimator("logistic", X[rows], y[rows], seed=random_state,
                          value_max=max(float(np.abs(X).max()), 1e-12))
    worst = _worst_candidate(scan_triggers(model, X[rows], y[rows], image_shape=(h, w), value=v,
                                           sizes=tuple(sizes)))
    evidence: dict[int, str] = {}
    params = dict(sizes=list(sizes), value=v, min_flip=min_flip)
    if worst is not None:
        trigger, target, flip = worst
        params.update(worst=trigger.describe(), target=_fmt(target), flip_share=round(flip, 4))
        grid = np.arange(h * w).reshape(h, w)
        idx = grid[trigger.row:trigger.row + trigger.size, trigger.col:trigger.col + trigger.size].ravel()
        carries = (X[:, idx] == trigger.value).all(axis=1)
        scores[carries] = flip
        if flip >= min_flip:
            for i in np.flatnonzero(carries & (y == target)):
                evidence[int(i)] = (f"labelled {_fmt(target)} and carries the worst scanned trigger "
                                    f"{trigger.describe()}, which turns {flip:.0%} of other rows "
                                    f"into {_fmt(target)} for a model trained on these rows")
    flagged = np.array(sorted(evidence), dtype=np.int64)
    return _result("trigger_scan", scores, flagged, evidence, **params)


def _worst_candidate(scan) -> Optional[tuple[Trigger, int, float]]:
    """(trigger, target class, flip share) of a ``scan_triggers`` result's worst candidate."""
    worst = scan.worst
    return None if worst is None else (worst.trigger, worst.target, float(worst.asr))


DETECTORS: dict[str, Callable[..., DetectorResult]] = {
    "pixel_blocks": detect_pixel_blocks,
    "shared_patch": detect_shared_patch,
    "label_disagreement": detect_label_disagreement,
    "duplicates": detect_duplicates,
    "spectral": detect_spectral,
    "trigger_scan": detect_trigger_scan,
}

# A detector's vote in the combined list. Pattern-confirmed detectors flag on their own; the
# general-purpose ones flag noisy-but-innocent rows too, so two of them must agree.
WEIGHTS = {"shared_patch": 1.0, "trigger_scan": 0.5, "pixel_blocks": 0.5,
           "label_disagreement": 0.5, "duplicates": 0.5, "spectral": 0.25}


def combine(results: Sequence[DetectorResult], n_samples: int, *,
            weights: Optional[dict[str, float]] = None, cut: float = 1.0) -> ScanReport:
    """One audit list from several detectors' results.

    A row's combined score is the sum of the weights of the detectors that flagged it (default
    ``WEIGHTS``: 1 for the pattern-confirmed detectors, 0.5 for the general-purpose ones, 0.25 for
    spectral signatures, which mostly agree with pixel blocks on odd-but-honest rows); rows at
    or above ``cut`` are the combined flags. Every row flagged by any detector is listed, most
    suspicious first, with each flagging detector's evidence.
    """
    weights = {**WEIGHTS, **(weights or {})}
    by_row: dict[int, dict[str, str]] = {}
    for result in results:
        for i in result.flagged:
            by_row.setdefault(int(i), {})[result.name] = result.evidence[int(i)]
    entries = [AuditEntry(position=i, score=round(sum(weights.get(d, 0.5) for d in ev), 6),
                          detectors=tuple(sorted(ev)), evidence=dict(sorted(ev.items())))
               for i, ev in by_row.items()]
    entries.sort(key=lambda e: (-e.score, e.position))
    flagged = np.array(sorted(e.position for e in entries if e.score >= cut), dtype=np.int64)
    return ScanReport(results={r.name: r for r in results}, entries=entries, flagged=flagged,
                      params={"weights": weights, "cut": cut, "n_samples": n_samples})


def scan_rows(X, y, *, image_shape: ImageShape = None, value: Optional[float] = None,
              random_state: int = 0, detectors: Optional[Sequence[str]] = None) -> ScanReport:
    """Run the detectors (default: all of ``DETECTORS``) over (X, y) and combine their flags.

    X : ndarray of shape (n_samples, h*w); y : ndarray of shape (n_samples,).
    """
    names = list(DETECTORS) if detectors is None else list(detectors)
    unknown = [d for d in names if d not in DETECTORS]
    if unknown:
        raise BadInputError(f"unknown detector {unknown[0]!r}: choose from {', '.join(DETECTORS)}")
    X, y = _check(X, y)
    results = [DETECTORS[name](X, y, image_shape=image_shape, value=value,
                               random_state=random_state) for name in names]
    return combine(results, len(X))
