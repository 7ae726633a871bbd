"""Poisoned-row detectors: functions over (X, y) that score every row, turn the score into a
p-value against the data's own null, and flag suspects with evidence.

Every detector has the same shape::

    result = detect_pixel_blocks(X, y, image_shape="8x8", value=16, random_state=0)
    result.scores     # ndarray of shape (n_samples,), higher = more suspicious
    result.pvalues    # ndarray of shape (n_samples,): small = evidence that the row is poisoned
    result.flagged    # sorted positions of the rows whose p-value passes Benjamini-Hochberg at q
    result.evidence   # {position: "why"} for every flagged row

``combine`` merges several results into one audit list: per row the detectors' p-values are
combined by the Cauchy combination test (valid under any dependence, dominated by the smallest
p-value, so one strong detector flags a row alone), and the combined p-values pass through the
Benjamini-Hochberg procedure at false discovery rate ``FDR_Q`` (1%). A backdoor is a group of
rows, and a group is one hypothesis: the rows of every group a detector discovers at the same
level (its p-value corrected for the candidate groups it tried) are flagged too and carry the
group's p-value. Every flag keeps each detector's p-value and evidence.

The nulls come from the data itself: a row's own score against its class's robust score tail
(``lineage.poison.calibration.tail_pvalues``); a group's evidence from its rows against the
rest of the class (``Lookalikes.confirm``): a poisoned row of label t is, underneath its
trigger, a row of another label s, so with the anomaly a detector found removed (the block, the
direction) and the other members of its group out of the pool, its nearest rows vote s, and do
so still when only the group itself is left out; a natural style of t stops looking like s once
the rows like it are back. The binomial tail of that count against t's other rows' rate is the
group's p-value, Bonferroni-corrected over the candidates (shares of the class, blocks,
directions). No detector knows where a trigger sits, what shape or value it has, or which
classes it connects; no weight or threshold is tuned to one. Rows of any image shape ``HxW`` or
``HxWxC`` (channels last): block sizes scale with the image (``sizes`` are in eighths of its
shorter side, at least one pixel). Above a few thousand rows the searches run on seeded samples
and what they confirm is applied to every row (bounded time and memory on 1M rows).

Once every detector has run, ``refine_groups`` retests each group's members against the pool
without the rows of all the groups any detector confirmed: poisoning of one label can make clean
rows of another look like a group (two labels flipped into each other), and it no longer does
once the poisoned rows are out of the pool.

- ``pixel_blocks``: each row's most abnormal block against its class (per class, per pixel
  robust centre and spread); groups: the most abnormal rows of a class, and those abnormal at
  the same block (the block masked). Also the "simple inspection" behind
  ``trigger_visibility``.
- ``shared_patch``: rows of one label that share a patch uniform at the bright value and look
  like another class once it is masked: a binomial test per candidate; as many patterns as are
  significant are kept.
- ``label_disagreement``: rows whose label an out-of-fold model does not believe: 5-fold
  logistic probabilities, a second pass trained without the first pass's confident-learning
  candidates, and the label's p-value under the second model (the probability of a label as
  unlikely as the given one).
- ``duplicates``: exact and near duplicates that carry different labels.
- ``spectral``: per class, the top singular directions of the standardized rows; groups: the
  rows farthest out (along one direction and side: that direction projected out).
- ``trigger_scan``: the trigger scan (``lineage.poison.trigger_scan``) on a model trained on the
  rows: rows of the target class that carry a candidate patch flipping far more rows than the
  other candidates do (weak evidence on its own: natural patches flip rows too).

Measured (bench/bench_detect.py, bench/README.md): per attack family, precision, recall, F1 and
the share of clean rows flagged, side by side with cleanlab.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Optional, Sequence

import numpy as np

from lineage.errors import BadInputError
from lineage.poison.calibration import (
    FDR_Q,
    benjamini_hochberg,
    cauchy_combine,
    distinct_labels,
    label_index,
    tail_pvalues,
)
from lineage.poison.estimators import fit_estimator
from lineage.poison.trigger_scan import scan_triggers
from lineage.poison.triggers import Trigger, image_geometry_for

ImageShape = Optional[str | tuple[int, ...]]
CHUNK_ROWS = 32768  # rows scored at once: bounded memory on big versions
STAT_ROWS = 4000  # rows per class behind the robust per-pixel statistics (seeded sample)
TRIM = 0.1  # share of features a found patch may cover (``lineage.poison.candidates``)
LABEL_ROW_NORM = 4.0  # RMS row norm the label detector's model sees (digits / 16: 3.9)
DIST_ROWS = 256  # rows whose distances to a pool are held at once
MAX_MEMBERS = 400  # members of a candidate group behind its test (a seeded sample above that)
Progress = Optional[Callable[[int, int], None]]


@dataclass(frozen=True)
class DetectorResult:
    """What one detector found: a score and a p-value per row, the flagged rows, and why."""

    name: str
    scores: np.ndarray  # (n_samples,) float32, higher = more suspicious
    flagged: np.ndarray  # (n_flagged,) int64 positions into X, sorted
    evidence: dict[int, str]  # position -> one line of evidence, for every flagged row
    params: dict = field(default_factory=dict)
    pvalues: Optional[np.ndarray] = None  # (n_samples,) float32; None: ones (no evidence)
    # The groups (patterns) the detector confirmed, most significant first: dicts with label,
    # looks_like, log10_p, rows (positions), and mask (feature indices) or direction.
    found: tuple = field(default=(), compare=False, repr=False)
    # (n_samples,) p-values of the rows' own scores alone (group detectors): what a row's
    # p-value falls back to when ``refine_groups`` takes it out of a group.
    own_pvalues: Optional[np.ndarray] = field(default=None, compare=False, repr=False)

    @property
    def flag_mask(self) -> np.ndarray:
        mask = np.zeros(len(self.scores), dtype=bool)
        mask[self.flagged] = True
        return mask

    @property
    def p(self) -> np.ndarray:
        return np.ones(len(self.scores), np.float32) if self.pvalues is None else self.pvalues


@dataclass(frozen=True)
class AuditEntry:
    """One row of the combined audit list."""

    position: int
    score: float  # -log10 of the combined p-value
    detectors: tuple[str, ...]  # the detectors whose own p-value is significant for the row
    evidence: dict[str, str]  # detector -> why
    pvalue: float = 1.0  # combined (Cauchy) p-value
    pvalues: dict = field(default_factory=dict)  # detector -> its p-value for the row


@dataclass(frozen=True)
class ScanReport:
    """The detectors' results and their combination over one (X, y)."""

    results: dict[str, DetectorResult]
    entries: list[AuditEntry]  # flagged rows (by any detector), most suspicious first
    flagged: np.ndarray  # positions of the combined flags, sorted
    params: dict = field(default_factory=dict)
    pvalues: Optional[np.ndarray] = None  # (n_samples,) combined p-values
    lookalikes: Optional[object] = field(default=None, compare=False, repr=False)


def _check(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X)
    if X.dtype.kind not in "uif":
        X = X.astype(np.float64)
    y = np.asarray(y)
    if X.ndim != 2:
        raise BadInputError(f"X must have shape (n_samples, n_features), got {X.shape}")
    if y.shape != (len(X),):
        raise BadInputError(f"y must have shape ({len(X)},), got {y.shape}")
    return X, y


def _geometry(image_shape: ImageShape, n_features: int) -> tuple[int, int, int]:
    return image_geometry_for(image_shape, n_features)


def scaled_sizes(geometry: tuple[int, int, int], sizes: Sequence[int]) -> list[int]:
    """Block sizes for an image: ``sizes`` in eighths of the shorter side (8x8: as given)."""
    h, w, _ = geometry
    unit = max(1, int(round(min(h, w) / 8)))
    return sorted({min(k * unit, min(h, w)) for k in sizes if k >= 1})


def _blocks(h: int, w: int, sizes: Sequence[int]) -> list[tuple[int, int, int]]:
    """(size, row, col) of every square block of the given sizes."""
    return [(k, r, c) for k in sizes if k <= min(h, w)
            for r in range(h - k + 1) for c in range(w - k + 1)]


def _block_features(geometry, block) -> np.ndarray:
    h, w, c = geometry
    k, r, col = block
    grid = np.arange(h * w * c).reshape(h, w, c)
    return grid[r:r + k, col:col + k].ravel()


def _sample(n: int, m: int, rng) -> np.ndarray:
    return np.arange(n) if n <= m else np.sort(rng.choice(n, m, replace=False))


def _abs_max(X: np.ndarray) -> float:
    """max |x| without a copy of X (``np.abs(X)`` would copy a 1M-row array)."""
    return max(abs(float(X.max())), abs(float(X.min())), 1e-12)


def _value_range(X: np.ndarray) -> float:
    lo, hi = float(X.min()), float(X.max())
    return max(hi - lo, 1e-12)


def _result(name: str, scores: np.ndarray, pvalues: np.ndarray, evidence_of: Callable[[int], str],
            *, q: float = FDR_Q, found=(), own_pvalues=None, **params) -> DetectorResult:
    # float32 keeps a 1M-row scan's per-row arrays small; p-values below 1e-37 are clipped
    # (far beyond any level Benjamini-Hochberg needs).
    pvalues = np.clip(np.asarray(pvalues, dtype=np.float32), 1e-37, 1.0)
    mask = benjamini_hochberg(pvalues, q)
    mask[_group_rows(found, q, len(pvalues))] = True
    flagged = np.flatnonzero(mask).astype(np.int64)
    evidence = {int(i): f"{evidence_of(int(i))} (p={pvalues[i]:.2g})" for i in flagged}
    scores = np.asarray(scores, dtype=np.float32)
    # A detector that saw nothing keeps no per-row arrays (read-only views of one value).
    if len(pvalues) and float(pvalues.min()) >= 1.0:
        pvalues = np.broadcast_to(np.float32(1.0), pvalues.shape)
    if len(scores) and not scores.any():
        scores = np.broadcast_to(np.float32(0.0), scores.shape)
    return DetectorResult(name=name, scores=scores, flagged=flagged,
                          evidence=evidence, params={**params, "fdr_q": q}, pvalues=pvalues,
                          found=tuple(found),
                          own_pvalues=None if own_pvalues is None else
                          np.asarray(own_pvalues, dtype=np.float32))


def _group_rows(found, q: float, n: int) -> np.ndarray:
    """Rows of the groups discovered at level ``q`` (their p-values are already corrected for
    the candidates tried): a group is a hypothesis of its own, tested once, not once per row."""
    rows = [np.asarray(g["rows"], dtype=np.int64) for g in found
            if g.get("log10_p", 0.0) < math.log10(q) and len(g.get("rows", ()))]
    return np.unique(np.concatenate(rows)) if rows else np.empty(0, np.int64)


def _empty(name: str, n: int, why: str) -> DetectorResult:
    return DetectorResult(name=name, scores=np.zeros(n, np.float32), flagged=np.empty(0, np.int64),
                          evidence={}, params={"skipped": why}, pvalues=np.ones(n, np.float32))


def _fmt(v: float) -> str:
    return f"{v:g}"


def _class_stats(X, y_idx, n_labels, rng, floor):
    centre = np.zeros((n_labels, X.shape[1]), dtype=np.float32)
    spread = np.ones((n_labels, X.shape[1]), dtype=np.float32)
    for k in range(n_labels):
        rows = np.flatnonzero(y_idx == k)
        if len(rows) == 0:
            continue
        rows = rows if len(rows) <= STAT_ROWS else np.sort(rng.choice(rows, STAT_ROWS, replace=False))
        part = X[rows].astype(np.float32)
        centre[k] = np.median(part, axis=0)
        spread[k] = np.maximum(1.4826 * np.median(np.abs(part - centre[k]), axis=0), floor)
    return centre, spread


class Lookalikes:
    """Which class a row looks like: its ``n_neighbors`` nearest rows of a seeded pool (at most
    ``pool_rows``), Euclidean on the raw features,
    optionally with a block of features masked or a direction projected out.

    ``confirm`` is the group test every pattern detector shares: the members of a candidate
    group (rows of label t with one anomaly in common) are compared, with the anomaly removed, to
    the pool rows outside the group; when far more of them look like one other label s than label
    t's other rows do (same removal, rate floored at 2%), the binomial tail is the group's
    p-value. A natural style of a class is not a poisoning: once the rows like it are back in the
    pool, its rows look like their own class again.
    """

    def __init__(self, X, y, *, random_state: int = 0, pool_rows: int = 2000,
                 n_neighbors: int = 5):
        rng = np.random.default_rng(random_state)
        self.pool = _sample(len(X), pool_rows, rng)
        # Raw features (in units of the value range): standardizing would blow up the pixels a
        # class rarely uses, which is where a trigger sits, and hide what a row looks like.
        self.mean = np.zeros(X.shape[1], dtype=np.float32)
        self.scale = np.full(X.shape[1], _value_range(X), dtype=np.float32)
        self.Zp = self.z(X[self.pool])
        self.yp = y[self.pool]
        self.norms = (self.Zp * self.Zp).sum(1)
        self.k = max(1, min(n_neighbors, len(self.pool) - 2))

    def z(self, rows: np.ndarray) -> np.ndarray:
        return (rows.astype(np.float32) - self.mean) / self.scale

    def _za(self, X, chunk, shift):
        Za = self.z(X[chunk])
        return Za if shift is None else Za - shift

    def _dists(self, Za, mask=None, direction=None) -> np.ndarray:
        d = (Za * Za).sum(1)[:, None] + self.norms[None, :] - 2.0 * Za @ self.Zp.T
        if mask is not None and len(mask):
            A, B = Za[:, mask], self.Zp[:, mask]
            d -= (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * A @ B.T
        if direction is not None:
            U = direction.reshape(len(direction), -1)
            U, _ = np.linalg.qr(U)
            for j in range(U.shape[1]):
                d -= ((Za @ U[:, j])[:, None] - (self.Zp @ U[:, j])[None, :]) ** 2
        return np.maximum(d, 0.0)

    def nearest(self, X, rows: np.ndarray, label, *, exclude=None, mask=None,
                direction=None, shift=None, self_out: bool = False) -> np.ndarray:
        """Pool index of each row's nearest pool row labelled ``label`` (``self_out``: not
        itself)."""
        cols = np.flatnonzero(self.yp == label)
        if exclude is not None and len(exclude):
            cols = cols[~np.isin(self.pool[cols], exclude)]
        out = np.empty(len(rows), dtype=np.int64)
        for start in range(0, len(rows), DIST_ROWS):
            chunk = rows[start:start + DIST_ROWS]
            d = self._dists(self._za(X, chunk, shift), mask, direction)[:, cols]
            if self_out:
                d[self.pool[cols][None, :] == chunk[:, None]] = np.inf
            out[start:start + len(chunk)] = cols[d.argmin(axis=1)]
        return out

    def votes(self, X, rows: np.ndarray, *, exclude: Optional[np.ndarray] = None, mask=None,
              direction=None, shift=None) -> np.ndarray:
        """Majority label of each row's nearest pool rows (itself and ``exclude`` left out)."""
        out = np.empty(len(rows), dtype=self.yp.dtype)
        banned = np.zeros(len(self.pool), dtype=bool)
        if exclude is not None and len(exclude):
            banned[np.isin(self.pool, exclude)] = True
        for start in range(0, len(rows), DIST_ROWS):
            chunk = rows[start:start + DIST_ROWS]
            d = self._dists(self._za(X, chunk, shift), mask, direction)
            d[:, banned] = np.inf
            # the pool index of each row that is in the pool (the pool is sorted)
            own = np.minimum(np.searchsorted(self.pool, chunk), len(self.pool) - 1)
            hit = self.pool[own] == chunk
            d[np.flatnonzero(hit), own[hit]] = np.inf
            nn = k_smallest(d, self.k)
            out[start:start + len(chunk)] = _majorities(self.yp[nn])
        return out

    def confirm(self, X, y, members: np.ndarray, label, *, mask=None, direction=None,
                n_tests: int = 1, min_rows: int = 3, max_p: float = 1.0,
                also_exclude: Optional[np.ndarray] = None) -> Optional[dict]:
        """The group test (see the class doc) of ``members`` (positions, all labelled
        ``label``); None when fewer than ``min_rows`` of them look like one other label.

        The members whose nearest pool rows outside the group vote for one other label s are
        the group's core. The core is retested against the pool with only itself left out
        (twice): rows that looked like s only because rows like them were left out with the
        group (a natural style of t) fall away; rows that are s underneath, and so have only
        one another for look-alikes among t's rows, stay. The binomial tail counts the core
        among the members against the chance rate: the share of t's other pool rows whose
        nearest rows, with the core left out, vote s.
        """
        how = {"mask": mask, "direction": direction}
        extra = np.empty(0, np.int64) if also_exclude is None else np.asarray(also_exclude)
        all_members = members
        if len(members) > MAX_MEMBERS:  # a seeded sample tests the group; all get the verdict
            members = np.sort(np.random.default_rng(len(members)).choice(members, MAX_MEMBERS,
                                                                          replace=False))
        votes = self.votes(X, members, exclude=np.union1d(members, extra), **how)
        other = votes[votes != label]
        if len(other) < min_rows:
            return None
        vals, counts = np.unique(other, return_counts=True)
        s = vals[counts.argmax()]
        # Even if every voter stayed, could the group be significant? If not, stop here.
        best = _log_binom_tail(len(members), int(counts.max()), 0.02) + math.log(max(n_tests, 1))
        if best >= math.log(max_p):
            return None
        core = members[votes == s]
        for _ in range(2):
            again = self.votes(X, core, exclude=np.union1d(core, extra), **how) == s
            if again.all():
                break
            core = core[again]
        k = len(core)
        if k < min_rows:
            return None
        outside = np.union1d(core, extra)
        rest = np.setdiff1d(self.pool[self.yp == label], outside)
        rate = (max(0.02, float((self.votes(X, rest, exclude=outside, **how) == s).mean()))
                if len(rest) else 0.5)
        logp = _log_binom_tail(len(members), k, rate) + math.log(max(n_tests, 1))
        like = np.isin(members, core)
        if len(all_members) > len(members):
            like = self.looks_like(X, all_members, s, how,
                                   exclude=np.union1d(all_members, extra))
            k = int(like.sum())
        return {"label": label, "looks_like": s, "members": int(len(all_members)), "lookalike": k,
                "chance_rate": round(rate, 4), "log10_p": logp / math.log(10), "like": like,
                "test": how}

    def looks_like(self, X, rows: np.ndarray, s, test: dict, *, exclude: np.ndarray) -> np.ndarray:
        """Which of ``rows`` look like s under a confirmed group's removal (``confirm``'s
        ``test``): their nearest pool rows outside ``exclude`` vote s."""
        how = {"mask": test.get("mask"), "direction": test.get("direction")}
        return self.votes(X, rows, exclude=exclude, **how) == s


LEVELS = (0.02, 0.05, 0.1, 0.2, 0.35, 0.5)  # shares of a class tried as candidate groups


def group_evidence(look: Lookalikes, X, y, scores: np.ndarray, keys: np.ndarray, removal, *,
                   q: float = FDR_Q, min_rows: int = 3, levels: Sequence[float] = LEVELS,
                   max_search: int = 5000, random_state: int = 0
                   ) -> tuple[np.ndarray, list[dict]]:
    """Per-row group p-values (1 outside a confirmed group) and the confirmed groups.

    Candidates, per label t and share ``level`` of its rows: the most anomalous ``level`` of
    t's rows by ``scores``, and those of them that share a key (a block, a direction and side).
    Several shares are tried because the poisoned share of a class is unknown: the group test
    needs the poisoned rows inside the group (left in the pool, they vouch for each other's
    label). ``removal(key)`` gives what is removed before the look-alike test: ``{"mask":
    features}`` or ``{"direction": vector}``. Each candidate goes through ``Lookalikes.confirm``
    (Bonferroni over all candidates); the members of a confirmed group that look like its other
    label get the group's p-value. Above ``max_search`` rows the candidates are drawn from a
    seeded sample of that size; a confirmed group is then applied to every row of its label
    that scores as high (same key), against the same look-alike test.
    """
    n = len(y)
    rng = np.random.default_rng(random_state + 7)
    search = _sample(n, max_search, rng)
    cands = []
    seen = set()
    for t in np.unique(y[search]):
        rows = search[y[search] == t]
        order = rows[np.argsort(-scores[rows], kind="stable")]
        for level in levels:
            m = int(math.ceil(level * len(rows)))
            if m < min_rows or m > len(rows) - min_rows:
                continue
            top = order[:m]
            if (t, None, m) not in seen:
                seen.add((t, None, m))
                cands.append((t, None, np.sort(top)))
            ks, counts = np.unique(keys[top], return_counts=True)
            for key, c in zip(ks, counts):
                if c >= min_rows and (t, key, int(c)) not in seen:
                    seen.add((t, key, int(c)))
                    cands.append((t, key, np.sort(top[keys[top] == key])))
    tested = []
    for t, key, members in cands:
        how = {} if key is None else removal(key)
        g = look.confirm(X, y, members, t, n_tests=len(cands), min_rows=min_rows, max_p=q, **how)
        if g is None or g["log10_p"] >= math.log10(q):
            continue
        g.update(key=key, members_at=members, how=how)
        tested.append(g)
    # Poisoned rows of label t that look like s make s's own rows look like t (their nearest
    # rows labelled t are the poisoned ones): a group is retested without the rows of every
    # more significant group it looks like, and kept only if still significant.
    tested.sort(key=lambda g: g["log10_p"])
    out = np.ones(n, dtype=np.float32)
    found = []
    in_search = np.zeros(n, dtype=bool)
    in_search[search] = True
    for g in tested:
        members, how = g.pop("members_at"), g.pop("how")
        stronger = [f["rows"] for f in found if f["label"] == g["looks_like"]]
        if stronger:
            g2 = look.confirm(X, y, members, g["label"], n_tests=len(cands), min_rows=min_rows,
                              max_p=q, also_exclude=np.concatenate(stronger), **how)
            if g2 is None or g2["log10_p"] >= math.log10(q) or g2["looks_like"] != g["looks_like"]:
                continue
            g2.update(key=g["key"])
            g = g2
        hit = members[g.pop("like")]
        g.update(flagged=int(len(hit)), rows=hit, cut=float(scores[members].min()),
                 test=g.pop("test"), **how)
        out[hit] = np.minimum(out[hit], 10.0 ** g["log10_p"])
        found.append(g)
    if len(search) < n:
        # The rest of the rows that score as high as a confirmed group's (same label, same key)
        # and look like the same label: once per (label, look-alike, key), at the lowest cut.
        by_kind: dict = {}
        for g in found:
            kind = (g["label"], g["looks_like"], g["key"])
            if kind not in by_kind or g["cut"] < by_kind[kind]["cut"]:
                by_kind[kind] = g
        for (t, s, key), g in by_kind.items():
            p_kind = min(10.0 ** f["log10_p"] for f in found
                         if (f["label"], f["looks_like"], f["key"]) == (t, s, key))
            more = np.flatnonzero((y == t) & ~in_search & (scores >= g["cut"])
                                  & ((keys == key) if key is not None else True))
            if len(more):
                like = look.looks_like(X, more, s, g["test"], exclude=np.union1d(g["rows"], more))
                out[more[like]] = np.minimum(out[more[like]], p_kind)
                g["rows"] = np.union1d(g["rows"], more[like])
                g["flagged"] = int(len(g["rows"]))
    for g in found:
        g.pop("test", None)
        g.pop("cut", None)
    return out, found


def block_scores(X: np.ndarray, y: np.ndarray, *, image_shape: ImageShape = None,
                 sizes: Sequence[int] = (1, 2, 3), floor: float = 0.125,
                 random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Each row's most abnormal block against its class: (scores, best block index into
    ``_blocks(h, w, scaled_sizes(...))``).

    Per class and feature a robust centre (median) and spread (1.4826 x MAD, floored at ``floor``
    x the data's value range, so a pixel that is always blank does not make every speck
    infinite), from at most ``STAT_ROWS`` rows of the class. A pixel's deviation is the sum of
    its channels' z-scores; a block's is the sum over its pixels over sqrt(values): a whole block
    far off counts more than one speck. The row's score is its largest absolute block deviation.
    """
    X, y = _check(X, y)
    geometry = _geometry(image_shape, X.shape[1])
    h, w, c = geometry
    rng = np.random.default_rng(random_state)
    labels, y_idx = label_index(y)
    centre, spread = _class_stats(X, y_idx.ravel(), len(labels), rng, floor * _value_range(X))
    ks = scaled_sizes(geometry, sizes)
    blocks = _blocks(h, w, ks)
    offsets = np.cumsum([0] + [(h - k + 1) * (w - k + 1) for k in ks])
    scores = np.empty(len(X), dtype=np.float32)
    best = np.empty(len(X), dtype=np.int32)
    step = 8192
    yi_all = y_idx.ravel()
    for start in range(0, len(X), step):
        part = slice(start, start + step)
        yi = yi_all[part]
        z = (X[part].astype(np.float32) - centre[yi]) / spread[yi]
        z = z.reshape(-1, h, w) if c == 1 else z.reshape(-1, h, w, c).sum(3)
        # Block sums from an integral image: every block of every size in O(pixels) per row.
        integral = np.zeros((len(z), h + 1, w + 1), dtype=np.float32)
        integral[:, 1:, 1:] = z.cumsum(1).cumsum(2)
        top = np.full(len(z), -1.0, dtype=np.float32)
        arg = np.zeros(len(z), dtype=np.int32)
        for k, offset in zip(ks, offsets[:-1]):
            dev = np.abs(integral[:, k:, k:] - integral[:, :-k, k:] - integral[:, k:, :-k]
                         + integral[:, :-k, :-k]).reshape(len(z), -1)
            dev *= 1.0 / math.sqrt(k * k * c)
            j = dev.argmax(axis=1)
            v = dev[np.arange(len(z)), j]
            better = v > top
            top[better] = v[better]
            arg[better] = j[better] + offset
        scores[part] = top
        best[part] = arg
    assert offsets[-1] == len(blocks)
    return scores, best


def detect_pixel_blocks(X, y, *, image_shape: ImageShape = None, value: Optional[float] = None,
                        random_state: int = 0, sizes: Sequence[int] = (1, 2, 3),
                        q: float = FDR_Q, lookalikes: Optional[Lookalikes] = None
                        ) -> DetectorResult:
    """Rows with a block far brighter or darker than the row's class usually is, alone or (the
    group evidence) together with other rows of their class.

    Parameters
    ----------
    X : ndarray of shape (n_samples, h*w*c)
    y : ndarray of shape (n_samples,)
    q : false discovery rate of this detector's own flags.
    """
    X, y = _check(X, y)
    geometry = _geometry(image_shape, X.shape[1])
    scores, best = block_scores(X, y, image_shape=geometry, sizes=sizes, random_state=random_state)
    blocks = _blocks(geometry[0], geometry[1], scaled_sizes(geometry, sizes))
    own = tail_pvalues(scores, y, random_state=random_state, upper=0.9)
    look = lookalikes or Lookalikes(X, y, random_state=random_state)
    feats = {}

    def removal(key):
        if key not in feats:
            feats[key] = _block_features(geometry, blocks[int(key)])
        return {"mask": feats[key]}

    group, found = group_evidence(look, X, y, scores, best, removal, q=q,
                                  random_state=random_state)
    p = np.minimum(1.0, 2.0 * np.minimum(own, group))
    group_of = {}
    for g in found:
        group_of.setdefault(g["label"], []).append(g)

    def why(i):
        k, r, col = blocks[best[i]]
        text = (f"{k}x{k} block at ({r},{col}) deviates {scores[i]:.1f} robust sd from label "
                f"{_fmt(y[i])}'s typical rows")
        g = next((g for g in group_of.get(y[i], []) if g["key"] in (None, best[i])), None)
        if g and group[i] < 1:
            where = "this block" if g["key"] is not None else "some block"
            text += (f"; {g['members']} rows of label {_fmt(y[i])} abnormal at {where}, "
                     f"{g['lookalike']} of them look like {_fmt(g['looks_like'])} with it "
                     f"removed (chance {g['chance_rate']:.0%}; group p=1e{g['log10_p']:.0f})")
        return text

    return _result("pixel_blocks", scores, p, why, q=q, found=found, own_pvalues=own,
                   sizes=scaled_sizes(geometry, sizes),
                   groups=[_jsonable_group(g, blocks) for g in found][:20])


def _jsonable_group(g: dict, blocks=None) -> dict:
    key = g["key"]
    if key is not None and blocks is not None:
        k, r, c = blocks[int(key)]
        key = f"{k}x{k} at ({r},{c})"
    elif key is not None:
        key = int(key)
    return {"label": _fmt(g["label"]), "looks_like": _fmt(g["looks_like"]), "key": key,
            "members": g["members"], "lookalike": g["lookalike"], "chance_rate": g["chance_rate"],
            "flagged": g.get("flagged"), "log10_p": round(g["log10_p"], 1)}


def trigger_visibility(X, y, poisoned, *, image_shape: ImageShape = None,
                       fpr: float = 0.01) -> float:
    """Recall of a simple abnormal-pixel-block inspection at a ``fpr`` false-positive rate.

    The inspection is ``block_scores`` (each row's most abnormal block against the robust
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
    A = A.astype(np.float32)
    B = B.astype(np.float32)
    d = A @ B.T  # one (len(A), len(B)) array, updated in place
    d *= -2.0
    d += (A * A).sum(1)[:, None]
    d += (B * B).sum(1)[None, :]
    return np.maximum(d, 0.0, out=d)


def _log_binom_tail(n: int, k: int, p: float) -> float:
    """log P(Binomial(n, p) >= k)."""
    from scipy.stats import binom

    return float(binom.logsf(k - 1, n, p))


def detect_shared_patch(X, y, *, image_shape: ImageShape = None, value: Optional[float] = None,
                        random_state: int = 0, sizes: Sequence[int] = (1, 2, 3),
                        n_neighbors: int = 5, min_rows: int = 3, min_patch_share: float = 0.3,
                        max_patterns: int = 50, max_search: int = 2500,
                        q: float = FDR_Q) -> DetectorResult:
    """Rows that share a uniform bright patch and look like another class once it is masked.

    For every label c and block B (``sizes`` in eighths of the image's shorter side, every
    position), the carriers are the rows labelled c whose block B is uniformly at the bright value
    v (``value``, default the data's maximum; on an image of several channels, each channel's
    own maximum up to v) on every channel. Each carrier is compared, with B
    masked, to its ``n_neighbors`` nearest rows that do not carry the pattern. A carrier is
    *explained by the patch* when those lookalikes vote for another label s and the patch is most
    of what separates it from them (at least ``min_patch_share`` of the squared distance). The
    candidate's p-value is the binomial tail of its explained carriers against the
    leave-one-out neighbour rate of s among label c's other rows (floored at 2%), times the number
    of candidates (labels x blocks: Bonferroni). The most significant candidate's carriers that look like another
    label are its rows; the search repeats on the rest while a candidate is significant at ``q``
    (up to ``max_patterns``): as many patterns as the evidence supports.

    The search runs on at most ``max_search`` rows (a seeded sample when there are more); an
    accepted pattern is then applied to every row against that sample. A natural style of a class
    is not a trigger: its carriers' lookalikes share the style, so the patch explains little.
    """
    X, y = _check(X, y)
    geometry = _geometry(image_shape, X.shape[1])
    h, w, _ = geometry
    n = len(X)
    v = float(X.max()) if value is None else float(value)
    # The bright value per feature: on a several-channel image each channel's own maximum (a
    # bright patch on a tinted image is not at one value on every channel), capped at ``v``.
    bright = np.full(X.shape[1], v, dtype=np.float32)
    if geometry[2] > 1:
        for ch in range(geometry[2]):
            bright[ch::geometry[2]] = min(v, float(X[:, ch::geometry[2]].max()))
    # the same values in X's own type, to compare with its rows exactly (12.8 in float32 is not
    # 12.8 in float64)
    bright_x = (np.full(X.shape[1], v) if geometry[2] == 1 else
                np.array([min(v, float(X[:, ch::geometry[2]].max()))
                          for ch in range(geometry[2])] * (X.shape[1] // geometry[2])))
    bright_x = bright_x.astype(X.dtype if X.dtype.kind == "f" else np.float64)
    rng = np.random.default_rng(random_state)
    pool = _sample(n, max_search, rng)
    Xp, yp = X[pool].astype(np.float32), y[pool]
    labels = distinct_labels(y)
    ks = scaled_sizes(geometry, sizes)
    blocks = _blocks(h, w, ks)
    feats = [_block_features(geometry, b) for b in blocks]
    D = _sq_dists(Xp, Xp)
    k_nn = min(n_neighbors, max(len(pool) - 2, 1))
    np.fill_diagonal(D, np.inf)
    base = np.concatenate([_majorities(yp[k_smallest(D[i:i + 256].copy(), k_nn)])
                           for i in range(0, len(D), 256)]) if len(D) else yp[:0]
    np.fill_diagonal(D, 0.0)
    uniform = np.stack([(Xp[:, idx] == bright[idx]).all(axis=1) for idx in feats], axis=1)
    n_tests = max(len(blocks) * len(labels), 1)  # Bonferroni over every (label, block)

    taken = np.zeros(len(pool), dtype=bool)
    patterns = []
    for _ in range(max_patterns):
        best = None
        for c in labels:
            in_class = (yp == c) & ~taken
            n_class = int(in_class.sum())
            cand = np.flatnonzero(uniform[in_class].sum(0) >= min_rows)
            for b in cand:
                carriers = np.flatnonzero(uniform[:, b] & in_class)
                if len(carriers) > 0.6 * n_class:
                    continue
                cost = ((bright[feats[b]] - Xp[:, feats[b]]) ** 2).sum(axis=1)
                votes, share = _explain(D[carriers] - cost[None, :], D[carriers],
                                        np.isin(np.arange(len(pool)), carriers), yp, k_nn)
                explained = (votes != c) & (share >= min_patch_share)
                if explained.sum() < min_rows:
                    continue
                others, counts = np.unique(votes[explained], return_counts=True)
                s, n_flip = others[counts.argmax()], int(counts.max())
                if n_flip < min_rows:
                    continue
                others_c = in_class.copy()
                others_c[carriers] = False
                rate = max(0.02, float((base[others_c] == s).sum()) / max(int(others_c.sum()), 1))
                logp = _log_binom_tail(len(carriers), n_flip, rate) + math.log(n_tests)
                key = (logp, -blocks[b][0])
                if logp < math.log(q) and (best is None or key < best[0]):
                    best = (key, c, s, b, logp)
        if best is None:
            break
        _, c, s, b, logp = best
        taken |= uniform[:, b] & (yp == c)
        k, r, col = blocks[b]
        patterns.append({"label": c, "looks_like": s, "size": k, "row": r, "col": col, "value": v,
                         "block": b, "log10_p": round(logp / math.log(10), 1)})

    scores = np.zeros(n, dtype=np.float32)
    p = np.ones(n, dtype=np.float32)
    evidence: dict[int, str] = {}
    found = []
    for pattern in patterns:
        k, r, col, c = pattern["size"], pattern["row"], pattern["col"], pattern["label"]
        idx = feats[pattern.pop("block")]
        carriers = np.flatnonzero((X[:, idx] == bright_x[idx]).all(axis=1) & (y == c))
        pool_carries = (Xp[:, idx] == bright[idx]).all(axis=1) & (yp == c)
        cost = ((bright[idx] - Xp[:, idx]) ** 2).sum(axis=1)
        explained = []
        pp = 10.0 ** pattern["log10_p"]
        for start in range(0, len(carriers), DIST_ROWS):
            chunk = carriers[start:start + DIST_ROWS]
            full = _sq_dists(X[chunk], Xp)
            votes, share = _explain(full - cost[None, :], full, pool_carries, yp, k_nn)
            for i, vote, sh in zip(chunk, votes, share):
                if vote != c:
                    explained.append(int(i))
                    scores[i] = max(scores[i], -pattern["log10_p"])
                    if pp < p[i]:
                        p[i] = pp
                        evidence[int(i)] = (
                            f"carries a uniform {k}x{k} patch at ({r},{col})={_fmt(v)} shared by "
                            f"{len(carriers)} rows labelled {_fmt(c)}; with it masked the row's "
                            f"nearest rows are labelled {_fmt(vote)} and the patch makes {sh:.0%} "
                            f"of the difference (pattern p=1e{pattern['log10_p']:.0f})")
        if 2 * len(explained) >= len(carriers):
            # Most carriers are another label underneath: the patch itself is the pattern, and
            # the rest of its carriers (a clean-label attack's, which are c underneath) carry it.
            for i in carriers:
                if int(i) not in evidence or pp < p[i]:
                    p[i] = min(p[i], pp)
                    scores[i] = max(scores[i], -pattern["log10_p"])
                    evidence.setdefault(int(i), (
                        f"carries a uniform {k}x{k} patch at ({r},{col})={_fmt(v)} shared by "
                        f"{len(carriers)} rows labelled {_fmt(c)}, {len(explained)} of which look "
                        f"like another label with it masked (pattern p=1e"
                        f"{pattern['log10_p']:.0f})"))
            explained = [int(i) for i in carriers]
        found.append({"label": c, "looks_like": pattern["looks_like"],
                      "log10_p": pattern["log10_p"], "rows": np.array(explained, dtype=np.int64),
                      "mask": idx, "value": v, "values": bright_x[idx].tolist(),
                      "square": (k, r, col)})
        pattern.update(carriers=int(len(carriers)), flagged=len(explained),
                       label=_fmt(c), looks_like=_fmt(pattern["looks_like"]))
    return _result("shared_patch", scores, p, lambda i: evidence.get(i, "carries a shared patch"),
                   q=q, found=found, sizes=ks, value=v, n_neighbors=n_neighbors,
                   min_patch_share=min_patch_share, patterns=patterns)


def _explain(masked: np.ndarray, full: np.ndarray, exclude: np.ndarray, yp: np.ndarray,
             k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per carrier: the vote of its k nearest non-excluded rows on masked distances, and the
    mean share of the full squared distance to them that the patch accounts for."""
    masked = np.where(exclude[None, :], np.inf, masked)
    rows = np.arange(len(masked))[:, None]
    nn, near = k_smallest(masked, k, values=True)
    share = 1.0 - near / np.maximum(full[rows, nn], 1e-12)
    return _majorities(yp[nn]), share.mean(axis=1)


def k_smallest(d: np.ndarray, k: int, *, values: bool = False):
    """Column indices of the ``k`` smallest entries of each row of ``d`` (n, m), smallest first,
    ties to the lower index; with ``values`` also the entries. ``d`` is overwritten. For the
    few neighbours the detectors vote with, k passes of argmin are an order of magnitude faster
    than argpartition (measured 0.7 ms vs 9 ms on 256 x 2000 float32)."""
    k = max(0, min(int(k), d.shape[1]))
    if k > 16:
        idx = np.argpartition(d, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(d, idx, axis=1)
        order = np.argsort(vals, axis=1, kind="stable")
        idx, vals = np.take_along_axis(idx, order, 1), np.take_along_axis(vals, order, 1)
        return (idx, vals) if values else idx
    rows = np.arange(d.shape[0])
    idx = np.empty((d.shape[0], k), dtype=np.int64)
    vals = np.empty((d.shape[0], k), dtype=d.dtype) if values else None
    for j in range(k):
        a = d.argmin(axis=1)
        idx[:, j] = a
        if values:
            vals[:, j] = d[rows, a]
        d[rows, a] = np.inf
    return (idx, vals) if values else idx


def _majority(labels: np.ndarray):
    vals, counts = np.unique(labels, return_counts=True)
    return vals[counts.argmax()]


def _majorities(labels: np.ndarray) -> np.ndarray:
    """Per row of ``labels`` (n, k): its most common value (ties: the smallest), vectorized."""
    vals, idx = np.unique(labels, return_inverse=True)
    n, m = labels.shape[0], len(vals)
    # one bincount over (row, value) cells (np.add.at is a slow unbuffered loop)
    cells = idx.reshape(labels.shape) + (np.arange(n) * m)[:, None]
    counts = np.bincount(cells.ravel(), minlength=n * m).reshape(n, m)
    return vals[counts.argmax(axis=1)]


def out_of_fold_probabilities(X, y, *, folds: int = 5, random_state: int = 0, C: float = 100.0,
                              max_fit: int = 5000, train_mask: Optional[np.ndarray] = None
                              ) -> tuple[np.ndarray, np.ndarray]:
    """(P, classes): P of shape (n_samples, n_classes), each row's class probabilities from a
    logistic model (``lineage.poison.estimators``, ``C``) that did not train on it.

    ``folds``-fold on at most ``max_fit`` rows (a seeded sample); rows outside the sample get
    the probabilities of a model trained on the whole sample (it never saw them).
    ``train_mask`` leaves rows out of every training fold (they are still predicted).
    """
    X, y = _check(X, y)
    classes = distinct_labels(y)
    P = np.zeros((len(X), len(classes)), dtype=np.float32)
    for rows, part in _out_of_fold_chunks(X, y, folds=folds, random_state=random_state, C=C,
                                          max_fit=max_fit, train_mask=train_mask,
                                          classes=classes):
        P[rows] = part
    return P, classes


def _out_of_fold_chunks(X, y, *, folds: int, random_state: int, C: float, max_fit: int,
                        train_mask: Optional[np.ndarray], classes: np.ndarray):
    """``out_of_fold_probabilities``' work, yielding (rows, their probabilities) chunk by
    chunk, so a caller can reduce them without one (n_samples, n_classes) array."""
    n = len(X)
    rng = np.random.default_rng(random_state)
    fit_rows = _sample(n, max_fit, rng)
    fold_of = np.full(n, -1, dtype=np.int8)
    fold_of[fit_rows] = rng.permutation(len(fit_rows)) % folds
    allowed = np.ones(n, dtype=bool) if train_mask is None else np.asarray(train_mask, bool)
    # Rows scaled to an RMS norm of LABEL_ROW_NORM, not by the value range: an L2-penalized
    # model then fits the same function whatever the image size (a pixel repeated 9 times by
    # upscaling would otherwise be penalized a ninth as much, and the model grows overconfident).
    ref = X[fit_rows[::max(1, len(fit_rows) // 2000)]].astype(np.float64)
    vmax = max(math.sqrt(float((ref * ref).sum(1).mean())) / LABEL_ROW_NORM, 1e-12)

    def fit(rows):
        return fit_estimator("logistic", X[rows], y[rows], seed=random_state, value_max=vmax,
                             params={"C": C})

    def predict(model, rows):
        cols = np.searchsorted(classes, model.classes_)
        for start in range(0, len(rows), 8192):
            chunk = rows[start:start + 8192]
            part = np.zeros((len(chunk), len(classes)), dtype=np.float32)
            part[:, cols] = model.predict_proba(X[chunk].astype(np.float64))
            yield chunk, part

    for f in range(folds):
        train = np.flatnonzero((fold_of >= 0) & (fold_of != f) & allowed)
        test = np.flatnonzero(fold_of == f)
        if len(np.unique(y[train])) >= 2 and len(test):
            yield from predict(fit(train), test)
    if len(fit_rows) < n:  # rows outside the sample: a model on the whole sample never saw them
        train = np.flatnonzero((fold_of >= 0) & allowed)
        if len(np.unique(y[train])) >= 2:
            model = fit(train)
            for start in range(0, n, 1 << 18):
                yield from predict(model,
                                   np.flatnonzero(fold_of[start:start + (1 << 18)] < 0) + start)


def label_pvalues(P: np.ndarray, y_idx: np.ndarray) -> np.ndarray:
    """Per row, the probability under the model of a label as unlikely as the given one."""
    out = np.empty(len(P), dtype=np.float32)
    for start in range(0, len(P), CHUNK_ROWS):
        part = P[start:start + CHUNK_ROWS].astype(np.float64)
        own = part[np.arange(len(part)), y_idx[start:start + CHUNK_ROWS]]
        out[start:start + CHUNK_ROWS] = np.where(part <= own[:, None], part, 0.0).sum(axis=1)
    return np.minimum(1.0, out)


def confident_issues(P: np.ndarray, y_idx: np.ndarray) -> np.ndarray:
    """Confident learning's candidates (Northcutt et al. 2021): with per-class thresholds
    t_j = the mean probability of class j over the rows labelled j, a row is a candidate when
    the most probable class among those at or above their threshold is not its label, or when
    its label gets less than 0.5."""
    n, k = P.shape
    own = P[np.arange(n), y_idx]
    counts = np.bincount(y_idx, minlength=k)
    sums = np.bincount(y_idx, weights=own, minlength=k)
    t = np.where(counts > 0, sums / np.maximum(counts, 1), 1.0).astype(P.dtype)
    out = own < 0.5
    for start in range(0, n, CHUNK_ROWS):
        part = P[start:start + CHUNK_ROWS]
        above = np.where(part >= t[None, :], part, -1.0)
        confident = above.argmax(axis=1)
        has = above.max(axis=1) >= 0
        out[start:start + CHUNK_ROWS] |= has & (confident != y_idx[start:start + CHUNK_ROWS])
    return out


def detect_label_disagreement(X, y, *, image_shape: ImageShape = None,
                              value: Optional[float] = None, random_state: int = 0,
                              folds: int = 5, C: float = 100.0, max_fit: int = 3000,
                              q: float = FDR_Q, reference=None) -> DetectorResult:
    """Rows whose label an out-of-fold model does not believe.

    First pass: ``folds``-fold out-of-fold probabilities of a logistic model (C=``C``: weakly
    regularized, so that it is sure where it can be; ``out_of_fold_probabilities``). Second
    pass: the same, trained without the first pass's candidates (``confident_issues``):
    mislabelled rows teach a model their labels, and without them it is sure where they are
    wrong. A row's p-value is the second-pass probability of a label as unlikely as its own
    (``label_pvalues``); score: -log10 of it.

    ``reference``: (X_ref, y_ref), trusted rows of the same distribution (the policy's evaluation
    snapshot). The models then train on, and predict, the rows and the reference rows alike, and
    ``params["reference"]`` counts the reference rows at or below the rows' Benjamini-Hochberg
    cut: the natural label noise of the data, measured the same way, for a gate to compare the
    rows' flags with. The result describes the rows of X only.
    """
    X, y = _check(X, y)
    n_rows = len(X)
    if reference is not None:
        Xr, yr = _check(*reference)
        dtype = np.result_type(X, Xr)  # the schemas match, not the dtypes: cast neither down
        X, y = np.concatenate([X.astype(dtype, copy=False), Xr.astype(dtype, copy=False)]), \
            np.concatenate([y, yr])
    n = len(X)
    if n < 2 * folds or len(distinct_labels(y)) < 2:
        return _empty("label_disagreement", n_rows, "needs at least two labels and 2 rows per fold")
    # Only the rows the models may train on (the same seeded sample both passes draw) need a
    # first-pass verdict.
    fit_rows = _sample(n, max_fit, np.random.default_rng(random_state))
    P1, classes1 = out_of_fold_probabilities(X[fit_rows], y[fit_rows], folds=folds,
                                             random_state=random_state, C=C, max_fit=max_fit)
    trainable = np.ones(n, dtype=bool)
    trainable[fit_rows[confident_issues(P1, np.searchsorted(classes1, y[fit_rows]))]] = False
    doubtful_n = int((~trainable).sum())
    del P1
    # The probabilities are reduced chunk by chunk to what the p-value and the evidence need
    # (14 bytes a row, not 4 per class).
    classes = distinct_labels(y)
    p = np.ones(n, dtype=np.float32)
    own_prob = np.zeros(n, dtype=np.float32)
    other_prob = np.zeros(n, dtype=np.float32)
    other = np.zeros(n, dtype=np.int16 if len(classes) < 1 << 15 else np.int32)
    for rows, part in _out_of_fold_chunks(X, y, folds=folds, random_state=random_state, C=C,
                                          max_fit=max_fit, train_mask=trainable,
                                          classes=classes):
        yi = np.searchsorted(classes, y[rows])
        at = np.arange(len(rows))
        p[rows] = label_pvalues(part, yi)
        own_prob[rows] = part[at, yi]
        part[at, yi] = -1.0
        best = part.argmax(axis=1)
        other[rows] = best
        other_prob[rows] = part[at, best]

    def why(i):
        return (f"labelled {_fmt(y[i])} but a model that never saw it gives that label "
                f"{own_prob[i]:.2g} and label {_fmt(classes[other[i]])} {other_prob[i]:.2g}")

    extra = {}
    if reference is not None:
        found = benjamini_hochberg(p[:n_rows], q)  # the rows' own cut (it may be p = 0)
        extra["reference"] = {"rows": n - n_rows, "flagged": int(
            (p[n_rows:] <= p[:n_rows][found].max()).sum()) if found.any() else 0}
        p = p[:n_rows]
    scores = np.maximum(p, np.float32(1e-37))
    np.log10(scores, out=scores)
    scores *= -1.0
    return _result("label_disagreement", scores, p, why, q=q,
                   folds=folds, C=C, first_pass_candidates=doubtful_n, **extra)


def detect_duplicates(X, y, *, image_shape: ImageShape = None, value: Optional[float] = None,
                      random_state: int = 0, tolerance: float = 0.05,
                      max_exact: int = 10000, n_near: int = 10,
                      q: float = FDR_Q) -> DetectorResult:
    """Exact and near duplicates whose labels conflict.

    Two rows are near duplicates when their Euclidean distance is at most ``tolerance`` x the
    data's value range x sqrt(n_features) (0 finds exact copies only). In a group of such rows
    with more than one label, each row holding a minority label gets p = (1 / K) ** m, K the
    number of labels and m the count of the majority label's copies (the chance that m copies
    would all carry one label other than the row's if a copy's label were drawn at random).
    Score: the share of the row's duplicates that disagree with its label. Above ``max_exact`` distinct rows, only exact copies are looked for.
    """
    X, y = _check(X, y)
    n = len(X)
    radius = tolerance * _value_range(X) * math.sqrt(X.shape[1])
    first, inverse = _unique_rows(X)
    if radius > 0 and 1 < len(first) <= max_exact:
        uniq = X[first]
        # Each distinct row's edges to up to n_near other rows within the radius (the first
        # found: a threshold, no sort of the distances): bounded memory even where many rows lie
        # within the radius of each other; the groups are the graph's connected components.
        from scipy.sparse import csr_matrix
        from scipy.sparse.csgraph import connected_components

        src, dst = [], []
        for start in range(0, len(uniq), 256):
            d = _sq_dists(uniq[start:start + 256], uniq)
            r, c = np.nonzero(d <= radius * radius)
            del d
            if len(r):  # the first n_near hits of each row (nonzero returns them row by row)
                row_start = np.searchsorted(r, r, side="left")
                keep = (np.arange(len(r)) - row_start) < n_near + 1  # + itself
                src.append(r[keep] + start)
                dst.append(c[keep])
        rows_of = np.concatenate(src) if src else np.empty(0, np.int64)
        cols_of = np.concatenate(dst) if dst else np.empty(0, np.int64)
        graph = csr_matrix((np.ones(len(rows_of), dtype=np.int8), (rows_of, cols_of)),
                           shape=(len(uniq), len(uniq)))
        _, group_of_uniq = connected_components(graph, directed=False)
    else:
        group_of_uniq = np.arange(len(first))
    group = group_of_uniq[inverse]
    scores = np.zeros(n, dtype=np.float32)
    p = np.ones(n, dtype=np.float32)
    n_labels = max(len(distinct_labels(y)), 2)
    evidence: dict[int, str] = {}
    # Only rows whose group holds more than one row can conflict.
    shared = np.flatnonzero(np.bincount(group)[group] > 1)
    order = shared[np.argsort(group[shared], kind="stable")]
    m = len(order)
    starts = (np.concatenate([[0], np.flatnonzero(np.diff(group[order])) + 1]) if m
              else np.empty(0, int))
    ends = np.append(starts[1:], m)
    y_sorted = y[order]
    conflict = (np.minimum.reduceat(y_sorted, starts) != np.maximum.reduceat(y_sorted, starts)
                if m else np.empty(0, bool))
    for start, end in zip(starts[conflict], ends[conflict]):
        members = order[start:end]
        labels, counts = np.unique(y[members], return_counts=True)
        top = int(counts.max())
        for i in members:
            disagree = int((y[members] != y[i]).sum())
            scores[i] = disagree / (len(members) - 1)
            own = int(counts[labels == y[i]][0])
            if own == top and (counts == top).sum() == 1:
                continue
            p[i] = (1.0 / n_labels) ** top
            exact = int((inverse[members] == inverse[i]).sum()) - 1
            evidence[int(i)] = (f"{'an exact' if exact else 'a near'} duplicate of "
                                f"{len(members) - 1} other row(s) of which {disagree} carry another "
                                f"label ({', '.join(f'{_fmt(l)}x{c}' for l, c in zip(labels, counts))})")
    return _result("duplicates", scores, p, lambda i: evidence.get(i, "conflicting duplicate"),
                   q=q, tolerance=tolerance)


def _unique_rows(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The position of one row of each distinct content and, per row, the index of its distinct
    content (into the positions).

    Rows are hashed to 64 bits (FNV-1a over their bytes, in chunks: a few bytes per row of
    memory, where sorting the rows' bytes would copy them); rows with equal hashes are then
    compared byte for byte, so a collision never merges different rows.
    """
    A = np.ascontiguousarray(A)
    n = len(A)
    width = A.dtype.itemsize * (A.shape[1] if A.ndim > 1 else 1)
    h = np.empty(n, dtype=np.uint64)
    prime = np.uint64(1099511628211)
    with np.errstate(over="ignore"):
        for start in range(0, n, CHUNK_ROWS):
            part = A[start:start + CHUNK_ROWS].view(np.uint8).reshape(-1, width)
            acc = np.full(len(part), np.uint64(14695981039346656037), dtype=np.uint64)
            for j in range(width):
                acc ^= part[:, j].astype(np.uint64)
                acc *= prime
            h[start:start + CHUNK_ROWS] = acc
    # np.unique(h, return_index=True, return_inverse=True) without its several int64 copies:
    # one stable argsort, group ids as int32
    order = np.argsort(h, kind="stable")
    sorted_h = h[order]
    del h
    new_group = np.empty(n, dtype=bool)
    if n:
        new_group[0] = True
        np.not_equal(sorted_h[1:], sorted_h[:-1], out=new_group[1:])
    del sorted_h
    first = order[new_group]
    gid = np.cumsum(new_group, dtype=np.int32)
    gid -= 1
    del new_group
    inverse = np.empty(n, dtype=np.int32)
    inverse[order] = gid
    del order, gid
    # Equal hashes: make sure the rows are equal too (else give the row its own group).
    same = np.ones(n, dtype=bool)
    for start in range(0, n, CHUNK_ROWS):
        part = slice(start, start + CHUNK_ROWS)
        same[part] = np.all(A[part] == A[first[inverse[part]]], axis=tuple(range(1, A.ndim)))
    if not same.all():
        extra = np.flatnonzero(~same)
        inverse = inverse.copy()
        inverse[extra] = len(first) + np.arange(len(extra))
        first = np.concatenate([first, extra])
    return first, inverse


def detect_spectral(X, y, *, image_shape: ImageShape = None, value: Optional[float] = None,
                    random_state: int = 0, n_directions: int = 2, min_rows: int = 10,
                    max_fit: int = 5000, q: float = FDR_Q,
                    lookalikes: Optional[Lookalikes] = None) -> DetectorResult:
    """Spectral signatures: per label, rows far out along the top singular directions.

    Rows are standardized over the whole data (spreads floored at a tenth of the value range),
    centred per label on the label's median and projected on the label's top ``n_directions``
    right singular vectors (from at most ``max_fit`` rows of it). A row's score is its largest
    distance from the median projection in robust standard deviations (1.4826 x MAD). Per-row
    p-values from the label's own score tail; group evidence (``group_evidence``) for the rows
    farthest out, and those far out along the same direction and side (it projected out).
    """
    X, y = _check(X, y)
    n = len(X)
    rng = np.random.default_rng(random_state)
    ref = X[_sample(n, 20000, rng)].astype(np.float32)
    mean = ref.mean(axis=0)
    scale = np.maximum(ref.std(axis=0), 0.1 * _value_range(X)).astype(np.float32)
    scores = np.zeros(n, dtype=np.float32)
    keys = np.zeros(n, dtype=np.int32)
    labels = distinct_labels(y)
    directions = {}
    for li, label in enumerate(labels):
        rows = np.flatnonzero(y == label)
        if len(rows) < min_rows:
            continue
        fit = rows if len(rows) <= max_fit else np.sort(rng.choice(rows, max_fit, replace=False))
        Z = (X[fit].astype(np.float32) - mean) / scale
        med = np.median(Z, axis=0)
        _, _, vt = np.linalg.svd(Z - med, full_matrices=False)
        V = vt[:n_directions].T  # (features, directions)
        directions[label] = V
        ref_proj = (Z - med) @ V
        centre = np.median(ref_proj, axis=0)
        spread = np.maximum(1.4826 * np.median(np.abs(ref_proj - centre), axis=0), 1e-6)
        for start in range(0, len(rows), CHUNK_ROWS):
            part = rows[start:start + CHUNK_ROWS]
            proj = ((X[part].astype(np.float32) - mean) / scale - med) @ V
            z = (proj - centre) / spread
            a = np.abs(z)
            j = a.argmax(axis=1)
            scores[part] = a[np.arange(len(part)), j]
            keys[part] = li * 2 * n_directions + 2 * j + (z[np.arange(len(part)), j] > 0)
    own = tail_pvalues(scores, y, random_state=random_state, upper=0.9)
    look = lookalikes or Lookalikes(X, y, random_state=random_state)

    def removal(key):
        li, j = divmod(int(key) // 2, n_directions)
        v = directions[labels[li]][:, j] / scale  # the direction in raw features
        return {"direction": (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)}

    group, found = group_evidence(look, X, y, scores, keys, removal, q=q,
                                  random_state=random_state)
    p = np.minimum(1.0, 2.0 * np.minimum(own, group))
    group_of = {}
    for g in found:
        group_of.setdefault(g["label"], []).append(g)

    def why(i):
        d = int(keys[i] % (2 * n_directions)) // 2
        text = (f"lies {scores[i]:.1f} robust sd out along singular direction {d + 1} of label "
                f"{_fmt(y[i])}'s rows")
        g = next((g for g in group_of.get(y[i], []) if g["key"] in (None, keys[i])), None)
        if g and group[i] < 1:
            text += (f"; {g['members']} rows of label {_fmt(y[i])} lie that far out, "
                     f"{g['lookalike']} of them look like {_fmt(g['looks_like'])} without it "
                     f"(chance {g['chance_rate']:.0%}; group p=1e{g['log10_p']:.0f})")
        return text

    return _result("spectral", scores, p, why, q=q, found=found, own_pvalues=own,
                   n_directions=n_directions,
                   groups=[_jsonable_group(g) for g in found][:20])


TRIGGER_SCAN_MAX_ROWS = 10000  # rows the trigger_scan detector's model trains on (a seeded sample)


def detect_trigger_scan(X, y, *, image_shape: ImageShape = None, value: Optional[float] = None,
                        random_state: int = 0, sizes: Sequence[int] = (1, 2, 3),
                        max_rows: int = TRIGGER_SCAN_MAX_ROWS, scan_rows_n: int = 2000,
                        q: float = FDR_Q, model=None) -> DetectorResult:
    """Rows of the target class that carry a candidate trigger the model obeys far more than the
    other candidates.

    The seeded logistic model of ``lineage.poison.estimators`` is trained on the rows (a seeded
    sample of ``max_rows`` above that); ``scan_triggers`` stamps every square candidate patch
    (``sizes`` in eighths of the shorter side, every position, at ``value``, default the data's
    maximum) on ``scan_rows_n`` of the rows and reports, per candidate, the largest share of
    non-target rows flipped to one class. The worst candidate's flip share gets a p-value against
    the other candidates' shares (robust exponential tail, ``tail_pvalues``, times the number of
    candidates); rows labelled with its target class whose block is uniformly at the patch value
    carry that p-value. Score: the worst flip share, on the rows that carry its patch.

    ``model``: that same fit when the caller already has it (the approval gate's shadow model,
    ``lineage.review.evaluation``), used instead of fitting it again.
    """
    X, y = _check(X, y)
    geometry = _geometry(image_shape, X.shape[1])
    n = len(X)
    v = float(X.max()) if value is None else float(value)
    rng = np.random.default_rng(random_state)
    rows = _sample(n, max_rows, rng)
    scores = np.zeros(n, dtype=np.float32)
    p = np.ones(n, dtype=np.float32)
    if len(np.unique(y[rows])) < 2:
        return _empty("trigger_scan", n, "needs at least two labels")
    if model is None:
        model = fit_estimator("logistic", X[rows], y[rows], seed=random_state,
                              value_max=_abs_max(X))
    scan_at = rows if len(rows) <= scan_rows_n else np.sort(rng.choice(rows, scan_rows_n, replace=False))
    ks = tuple(scaled_sizes(geometry, sizes))
    # positions on the grid the sizes are measured in (eighths of the shorter side): the same
    # search on an upscaled image as on 8x8, not one candidate per pixel
    stride = max(1, int(round(min(geometry[:2]) / 8)))
    scan = scan_triggers(model, X[scan_at].astype(np.float64), y[scan_at], image_shape=geometry,
                         value=v, sizes=ks, stride=stride)
    params = dict(sizes=list(ks), value=v)
    worst = scan.worst
    carriers = np.zeros(n, dtype=bool)
    if worst is not None:
        asrs = np.array([c.asr for c in scan.candidates])
        tail = tail_pvalues(asrs, np.zeros(len(asrs)))
        p_worst = min(1.0, float(tail[0]) * len(asrs))
        trigger = worst.trigger
        idx = _block_features(geometry, (trigger.size, trigger.row, trigger.col))
        carriers = (X[:, idx] == trigger.value).all(axis=1) & (y == worst.target)
        scores[carriers] = worst.asr
        p[carriers] = p_worst
        params.update(worst=trigger.describe(), target=_fmt(worst.target),
                      flip_share=round(float(worst.asr), 4), log10_p=round(math.log10(max(p_worst, 1e-300)), 1))

    def why(i):
        return (f"labelled {_fmt(worst.target)} and carries the scanned trigger "
                f"{worst.trigger.describe()}, which turns {worst.asr:.0%} of other rows into "
                f"{_fmt(worst.target)} for a model trained on these rows")

    return _result("trigger_scan", scores, p, why, q=q, **params)


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


def combine(results: Sequence[DetectorResult], n_samples: int, *, q: float = FDR_Q) -> ScanReport:
    """One audit list from several detectors' results.

    Per row, the detectors' p-values are combined by the Cauchy combination test
    (``cauchy_combine``) and the combined p-values pass the Benjamini-Hochberg procedure at false
    discovery rate ``q``: those rows are the combined flags, together with the rows of every
    group a detector discovered at ``q`` (a group of rows that share one anomaly is one
    hypothesis, its p-value corrected for the candidate groups tried; its rows carry it). Every row flagged by any detector
    (at its own level ``q``) or by the combination is listed, most suspicious first, with each
    detector's p-value and the evidence of those that flagged it.
    """
    results = list(results)
    combined = np.ones(n_samples)
    if results:
        for start in range(0, n_samples, CHUNK_ROWS):
            part = slice(start, start + CHUNK_ROWS)
            combined[part] = cauchy_combine(np.column_stack([r.p[part] for r in results]))
    flags = benjamini_hochberg(combined, q)
    for r in results:  # rows of the groups the detectors discovered at q
        grouped = _group_rows(r.found, q, n_samples)
        flags[grouped] = True
        combined[grouped] = np.minimum(combined[grouped], r.p[grouped])
    listed = flags.copy()
    for r in results:
        listed[r.flagged] = True
    entries = []
    for i in np.flatnonzero(listed):
        i = int(i)
        names = tuple(sorted(r.name for r in results if i in r.evidence))
        evidence = {r.name: r.evidence[i] for r in sorted(results, key=lambda r: r.name)
                    if i in r.evidence}
        if not evidence:  # flagged by agreement only: the strongest detector's reading
            strongest = min(results, key=lambda r: r.p[i])
            evidence = {strongest.name: f"p={strongest.p[i]:.2g} (not significant alone)"}
        entries.append(AuditEntry(
            position=i, score=round(-math.log10(max(float(combined[i]), 1e-300)), 3),
            detectors=names, evidence=evidence, pvalue=float(combined[i]),
            pvalues={r.name: float(r.p[i]) for r in results}))
    entries.sort(key=lambda e: (-e.score, e.position))
    return ScanReport(results={r.name: r for r in results}, entries=entries,
                      flagged=np.flatnonzero(flags).astype(np.int64),
                      params={"combination": "cauchy", "fdr_q": q, "n_samples": n_samples},
                      pvalues=combined)


def refine_groups(results: Sequence[DetectorResult], look: Lookalikes, X, y, *,
                  q: float = FDR_Q, min_rows: int = 3) -> list[DetectorResult]:
    """The groups of every detector, retested against the pool without the rows of all the
    groups any detector confirmed.

    Poisoning one label can hide behind poisoning another: with labels s and t flipped into
    each other, t's rows that are s underneath are the nearest rows of s's clean ones, so clean
    rows of s look like t and join a group of (s, looks like t). With every confirmed group's
    rows out of the pool, a member that is another label underneath still looks like it; a
    clean member looks like its own label again and leaves the group (its p-value falls back to
    its own score's). Detectors without a row score of their own (``own_pvalues`` None) keep
    their groups as found.
    """
    results = list(results)
    confirmed = [g for r in results for g in r.found
                 if g.get("log10_p", 0.0) < math.log10(q) and len(g.get("rows", ()))]
    if not confirmed:
        return results
    everything = np.unique(np.concatenate([np.asarray(g["rows"], np.int64) for g in confirmed]))
    n = len(y)
    out = []
    for r in results:
        if r.own_pvalues is None or not r.found:
            out.append(r)
            continue
        found = []
        group = np.ones(n, dtype=np.float32)
        for g in r.found:
            rows = np.asarray(g["rows"], dtype=np.int64)
            if len(rows):
                test = {"mask": g.get("mask"), "direction": g.get("direction")}
                rows = rows[look.looks_like(X, rows, g["looks_like"], test, exclude=everything)]
            if len(rows) < min_rows:
                continue
            g = {**g, "rows": rows, "flagged": int(len(rows))}
            group[rows] = np.minimum(group[rows], 10.0 ** g["log10_p"])
            found.append(g)
        p = np.minimum(r.own_pvalues, group)
        p *= 2.0
        p = np.clip(p, 1e-37, 1.0, out=p)
        mask = benjamini_hochberg(p, q)
        mask[_group_rows(found, q, n)] = True
        flagged = np.flatnonzero(mask).astype(np.int64)
        evidence = {int(i): r.evidence.get(int(i), f"p={p[i]:.2g}") for i in flagged}
        out.append(replace(r, flagged=flagged, evidence=evidence, pvalues=p, found=tuple(found),
                           params={**r.params, "refined": True}))
    return out


def release_free_memory() -> None:
    """Hand the allocator's free pages back to the system (glibc ``malloc_trim``; elsewhere a
    no-op). Between detectors the arrays of the last one are freed, but many sit below glibc's
    mmap threshold and stay in the process's memory until trimmed: on a 1M-row scan that is
    tens of MB of peak memory that no array holds."""
    global _TRIM
    if _TRIM is None:
        try:
            import ctypes

            _TRIM = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)


_TRIM = None


def scan_rows(X, y, *, image_shape: ImageShape = None, value: Optional[float] = None,
              random_state: int = 0, detectors: Optional[Sequence[str]] = None,
              q: float = FDR_Q, progress: Progress = None, reference=None,
              trigger_model=None) -> ScanReport:
    """Run the detectors (default: all of ``DETECTORS``) over (X, y) and combine their p-values.

    X : ndarray of shape (n_samples, h*w*c); y : ndarray of shape (n_samples,).
    ``progress(done, total)`` is called after each detector. The groups of the look-alike
    detectors are retested without every confirmed group's rows (``refine_groups``) before the
    combination. ``reference`` (X_ref, y_ref): trusted rows for the label detector to measure
    the data's natural label noise on (``detect_label_disagreement``). ``trigger_model``: the
    trigger_scan detector's model, already fitted (``detect_trigger_scan``).
    """
    names = list(DETECTORS) if detectors is None else list(detectors)
    unknown = [d for d in names if d not in DETECTORS]
    if unknown:
        raise BadInputError(f"unknown detector {unknown[0]!r}: choose from {', '.join(DETECTORS)}")
    X, y = _check(X, y)
    results = []
    look = None
    for done, name in enumerate(names):
        extra = {}
        if name in ("pixel_blocks", "spectral"):  # one look-alike pool for both
            look = look or Lookalikes(X, y, random_state=random_state)
            extra["lookalikes"] = look
        if name == "label_disagreement" and reference is not None:
            extra["reference"] = reference
        if name == "trigger_scan" and trigger_model is not None:
            extra["model"] = trigger_model
        results.append(DETECTORS[name](X, y, image_shape=image_shape, value=value,
                                       random_state=random_state, q=q, **extra))
        release_free_memory()
        if progress:
            progress(done + 1, len(names))
    if look is not None:
        results = refine_groups(results, look, X, y, q=q)
    report = combine(results, len(X), q=q)
    return replace(report, lookalikes=look)
