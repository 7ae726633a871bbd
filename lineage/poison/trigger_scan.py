"""The trigger scan: stamp every candidate patch on held-out rows and measure how many rows flip.

For a candidate patch ``c`` and a class ``t``, the flip rate ``R[c, t]`` is the share of held-out
rows whose true class is not ``t`` and that the model classifies correctly unstamped, which the
model predicts as ``t`` once ``c`` is stamped on them. (Rows the model already gets wrong are left
out: a flip there says nothing about the patch.) A candidate's attack success rate is its largest
rate over ``t``; candidates are reported worst first.

Raw rates of a clean model are high for patches that change what a digit looks like (a blob in
the middle makes a 0 look like an 8). So the scan can be corrected by a baseline: the same
candidates' rates on reference models trained on held-out, trusted rows (``baseline_rates``:
cross-fitted on the evaluation rows). The corrected rate is ``max(0, R - B)``; a backdoor flips the
reviewed model far more than the references, a natural change flips both.
"""

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from lineage.errors import BadInputError
from lineage.poison.triggers import Trigger, candidate_triggers, parse_image_geometry, stamp

BATCH_ROWS = 1 << 13  # stamped rows predicted at once: bounded memory on big evaluation sets


@dataclass(frozen=True)
class CandidateResult:
    """One candidate patch: the class it flips most rows to, and the share flipped."""

    trigger: Trigger
    target: int
    asr: float  # corrected when the scan had a baseline, else equal to raw_asr
    raw_asr: float
    baseline_asr: float
    n_rows: int  # rows the rate is a share of (non-target rows the model got right)

    @property
    def describe(self) -> str:
        return f"{self.trigger.describe()} -> {self.target}"


@dataclass(frozen=True)
class TriggerScanResult:
    """Every candidate, worst first; ``rates`` is the (n_candidates, n_classes) raw matrix."""

    candidates: tuple[CandidateResult, ...]
    classes: tuple[int, ...]
    n_rows: int
    corrected: bool
    rates: np.ndarray = field(repr=False, compare=False)

    @property
    def worst(self) -> Optional[CandidateResult]:
        return self.candidates[0] if self.candidates else None

    def top(self, k: int = 5) -> list[dict]:
        """The ``k`` worst candidates as plain dicts (for reports and metrics)."""
        return [{"trigger": c.trigger.describe(), "size": c.trigger.size, "row": c.trigger.row,
                 "col": c.trigger.col, "value": c.trigger.value, "target": c.target,
                 "asr": round(c.asr, 4), "raw_asr": round(c.raw_asr, 4),
                 "baseline_asr": round(c.baseline_asr, 4), "n_rows": c.n_rows}
                for c in self.candidates[:k]]


def flip_rates(model, X: np.ndarray, y: np.ndarray, candidates: Sequence[Trigger], *,
               image_shape, classes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """R of shape (n_candidates, n_classes) and the row count behind each class's rates.

    X : ndarray of shape (n_samples, n_features); y : ndarray of shape (n_samples,)
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # see lineage.training.fit_estimator
        return _flip_rates(model, X, y, candidates, image_shape=image_shape, classes=classes)


def _flip_rates(model, X, y, candidates, *, image_shape, classes):
    shape = parse_image_geometry(image_shape)
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    classes = np.asarray(classes)
    correct = model.predict(X) == y
    eligible = correct[:, None] & (y[:, None] != classes[None, :])  # (n, n_classes)
    counts = eligible.sum(axis=0)
    flips = np.zeros((len(candidates), len(classes)))
    per_batch = max(1, BATCH_ROWS // max(len(X), 1))
    for start in range(0, len(candidates), per_batch):
        group = candidates[start:start + per_batch]
        stamped = np.concatenate([stamp(X, c, shape) for c in group])
        pred = model.predict(stamped).reshape(len(group), len(X))
        onehot = pred[:, :, None] == classes[None, None, :]  # (group, n, n_classes)
        flips[start:start + len(group)] = np.einsum("gnk,nk->gk", onehot, eligible, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.where(counts > 0, flips / np.maximum(counts, 1), 0.0)
    return rates, counts


def baseline_rates(fit: Callable[[np.ndarray, np.ndarray], object], X: np.ndarray, y: np.ndarray, *,
                   image_shape, value: float, sizes: Sequence[int] = (1, 2, 3),
                   classes: Optional[Sequence[int]] = None, folds: int = 2,
                   random_state: int = 0) -> np.ndarray:
    """Reference flip rates, cross-fitted on trusted held-out rows: ``fit`` trains a model on
    each fold's complement and the rates on the fold are averaged. Returns (n_candidates,
    n_classes), the ``baseline`` for ``scan_triggers``."""
    from sklearn.model_selection import StratifiedKFold

    if len(np.unique(y)) < 2 or np.bincount(np.unique(y, return_inverse=True)[1]).min() < 2:
        raise BadInputError(f"the evaluation rows ({len(y)}) need at least 2 rows of each of at "
                            "least 2 classes for the reference models of the trigger scan")
    candidates = candidate_triggers(image_shape, value=value, sizes=tuple(sizes))
    classes = np.unique(y) if classes is None else np.asarray(classes)
    y = np.asarray(y)
    min_count = np.bincount(np.searchsorted(np.unique(y), y)).min()
    folds = max(2, min(folds, int(min_count)))
    total = np.zeros((len(candidates), len(classes)))
    splitter = StratifiedKFold(folds, shuffle=True, random_state=random_state)
    for train_idx, test_idx in splitter.split(X, y):
        model = fit(np.asarray(X)[train_idx], y[train_idx])
        rates, _ = flip_rates(model, np.asarray(X)[test_idx], y[test_idx], candidates,
                              image_shape=image_shape, classes=classes)
        total += rates
    return total / folds


def scan_triggers(model, X: np.ndarray, y: np.ndarray, *, image_shape, value: float,
                  sizes: Sequence[int] = (1, 2, 3), target_classes: Optional[Sequence[int]] = None,
                  baseline: Optional[np.ndarray] = None, stride: int = 1) -> TriggerScanResult:
    """Scan every square patch of ``sizes`` at every position (``stride``: every stride-th row
    and column), set to ``value`` (the dataset's maximum), on the held-out rows X, y;
    candidates come back worst first.

    X : ndarray of shape (n_samples, n_features); y : ndarray of shape (n_samples,)
    ``target_classes`` limits the classes a flip may go to (default: every class in y and the
    model's classes). ``baseline`` (from ``baseline_rates`` with the same sizes and classes)
    turns rates into baseline-corrected rates.
    """
    candidates = candidate_triggers(image_shape, value=value, sizes=tuple(sizes), stride=stride)
    if target_classes is None:
        known = getattr(model, "classes_", None)
        target_classes = np.union1d(np.unique(y), known if known is not None else [])
    classes = np.asarray(sorted(int(c) for c in target_classes))
    rates, counts = flip_rates(model, X, y, candidates, image_shape=image_shape, classes=classes)
    base = np.zeros_like(rates) if baseline is None else np.asarray(baseline)
    if base.shape != rates.shape:
        raise ValueError(f"baseline has shape {base.shape}, the scan {rates.shape}")
    corrected = np.clip(rates - base, 0.0, None)
    best_t = corrected.argmax(axis=1)
    rows = np.arange(len(candidates))
    results = [CandidateResult(trigger=candidates[i], target=int(classes[best_t[i]]),
                               asr=float(corrected[i, best_t[i]]), raw_asr=float(rates[i, best_t[i]]),
                               baseline_asr=float(base[i, best_t[i]]),
                               n_rows=int(counts[best_t[i]]))
               for i in rows]
    # Worst first; ties by raw rate, then smaller patches and scan order (stable).
    results.sort(key=lambda c: (-c.asr, -c.raw_asr, c.trigger.size))
    return TriggerScanResult(candidates=tuple(results), classes=tuple(int(c) for c in classes),
                             n_rows=len(X), corrected=baseline is not None, rates=rates)


@dataclass(frozen=True)
class AttackResult:
    """One candidate trigger and one source class -> target class: the share of held-out
    source-class rows (classified right unstamped) that the model predicts as the target once
    the candidate is stamped, minus the same share on reference models (baseline)."""

    trigger: object  # Trigger or Pattern
    source: int
    target: int
    asr: float  # baseline-corrected
    raw_asr: float
    baseline_asr: float
    n_rows: int  # source-class rows the rate is a share of
    flips: int  # of them, flipped to the target by the model

    @property
    def describe(self) -> str:
        return f"{self.trigger.describe()} -> {self.target} from class {self.source}"

    def as_dict(self) -> dict:
        return {"trigger": self.trigger.describe(), "source": self.source, "target": self.target,
                "asr": round(self.asr, 4), "raw_asr": round(self.raw_asr, 4),
                "baseline_asr": round(self.baseline_asr, 4), "n_rows": self.n_rows,
                "flips": self.flips,
                "origin": getattr(self.trigger, "origin", "") or "square scan"}


def class_flip_rates(model, X: np.ndarray, y: np.ndarray, candidates: Sequence, *, image_shape,
                     classes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """R of shape (n_candidates, n_classes, n_classes): R[c, s, t] is the share of rows of
    class s that the model gets right unstamped and predicts as t once candidate c is stamped;
    and the row count per source class."""
    from threadpoolctl import threadpool_limits

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    classes = np.asarray(classes)
    with threadpool_limits(limits=1):
        correct = model.predict(X) == y
        src = np.searchsorted(classes, y)
        known = np.isin(y, classes)
        eligible = correct & known
        counts = np.bincount(src[eligible], minlength=len(classes)).astype(np.int64)
        R = np.zeros((len(candidates), len(classes), len(classes)))
        rows = np.flatnonzero(eligible)
        if not len(rows):
            return R, counts
        per_batch = max(1, BATCH_ROWS // 4 // max(len(rows), 1))
        for start in range(0, len(candidates), per_batch):
            group = candidates[start:start + per_batch]
            stamped = np.concatenate([stamp(X[rows], c, image_shape) for c in group])
            pred = np.searchsorted(classes, model.predict(stamped)).reshape(len(group), len(rows))
            pred = np.clip(pred, 0, len(classes) - 1)
            for g in range(len(group)):
                np.add.at(R[start + g], (src[rows], pred[g]), 1.0)
    R /= np.maximum(counts, 1)[None, :, None]
    return R, counts


def class_baseline_rates(fit: Callable[[np.ndarray, np.ndarray], object], X: np.ndarray,
                         y: np.ndarray, candidates: Sequence, *, image_shape,
                         classes: Sequence[int], folds: int = 2,
                         random_state: int = 0) -> np.ndarray:
    """``class_flip_rates`` of reference models cross-fitted on trusted held-out rows (each fold
    scanned by a model trained on the others), averaged: the baseline of ``scan_attacks``."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y)
    min_count = int(np.bincount(np.searchsorted(np.unique(y), y)).min())
    folds = max(2, min(folds, min_count))
    total = np.zeros((len(candidates), len(classes), len(classes)))
    splitter = StratifiedKFold(folds, shuffle=True, random_state=random_state)
    for train_idx, test_idx in splitter.split(X, y):
        model = fit(np.asarray(X)[train_idx], y[train_idx])
        R, _ = class_flip_rates(model, np.asarray(X)[test_idx], y[test_idx], candidates,
                                image_shape=image_shape, classes=classes)
        total += R
    return total / folds


def scan_attacks(model, X: np.ndarray, y: np.ndarray, candidates: Sequence, *, image_shape,
                 classes: Sequence[int], baseline: Optional[np.ndarray] = None
                 ) -> list[AttackResult]:
    """Per candidate (square patches and patterns found in the data alike) and per source
    class -> target class: the baseline-corrected attack success rate on held-out rows X, y;
    worst first (one entry per candidate and source class: its worst target).

    X : ndarray of shape (n_samples, n_features); y : ndarray of shape (n_samples,)
    """
    classes = np.asarray(sorted(int(c) for c in classes))
    R, counts = class_flip_rates(model, X, y, candidates, image_shape=image_shape, classes=classes)
    B = np.zeros_like(R) if baseline is None else np.asarray(baseline)
    if B.shape != R.shape:
        raise ValueError(f"baseline has shape {B.shape}, the scan {R.shape}")
    corrected = np.clip(R - B, 0.0, None)
    k = len(classes)
    corrected[:, np.arange(k), np.arange(k)] = 0.0  # a row staying in its class is no attack
    out = []
    for c in range(len(candidates)):
        for s in range(k):
            if counts[s] == 0:
                continue
            t = int(corrected[c, s].argmax())
            out.append(AttackResult(trigger=candidates[c], source=int(classes[s]),
                                    target=int(classes[t]), asr=float(corrected[c, s, t]),
                                    raw_asr=float(R[c, s, t]), baseline_asr=float(B[c, s, t]),
                                    n_rows=int(counts[s]), flips=int(round(R[c, s, t] * counts[s]))))
    out.sort(key=lambda a: (-a.asr, -a.raw_asr))
    return out
