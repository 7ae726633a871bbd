"""The poisoning metrics the seed names: poison detection (precision, recall, F1), clean accuracy
and attack success rate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from lineage.poison.detectors import ScanReport
from lineage.poison.triggers import Trigger, stamp


@dataclass(frozen=True)
class Detection:
    """Precision, recall and F1 of a set of flags against the poisoned rows (None: undefined,
    e.g. precision without flags or recall without poisoned rows)."""

    precision: Optional[float]
    recall: Optional[float]
    f1: Optional[float]
    n_flagged: int
    clean_flagged: Optional[float] = None  # share of the clean rows flagged (None: no clean row)


def detection(flagged: np.ndarray, poisoned: np.ndarray) -> Detection:
    """Compare flags (boolean mask) with the poisoned rows (boolean mask)."""
    flagged = np.asarray(flagged, dtype=bool)
    poisoned = np.asarray(poisoned, dtype=bool)
    tp = int((flagged & poisoned).sum())
    precision = tp / int(flagged.sum()) if flagged.any() else None
    recall = tp / int(poisoned.sum()) if poisoned.any() else None
    f1 = None
    if precision is not None and recall is not None:
        f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    elif recall is not None:
        f1 = 0.0
    clean = int((~poisoned).sum())
    return Detection(precision=precision, recall=recall, f1=f1, n_flagged=int(flagged.sum()),
                     clean_flagged=(int((flagged & ~poisoned).sum()) / clean) if clean else None)


def scan_detection(report: ScanReport, poisoned: np.ndarray) -> dict[str, Detection]:
    """Per detector and ``combined``: its flags against the poisoned rows."""
    out = {name: detection(result.flag_mask, poisoned) for name, result in report.results.items()}
    combined = np.zeros(len(poisoned), dtype=bool)
    combined[report.flagged] = True
    out["combined"] = detection(combined, poisoned)
    return out


def attack_success_rate(model, X_test: np.ndarray, y_test: np.ndarray, *, trigger: Trigger,
                        source_class: int, target_class: int, image_shape) -> float:
    """The share of held-out ``source_class`` rows predicted ``target_class`` once stamped."""
    rows = np.asarray(y_test) == source_class
    if not rows.any():
        return float("nan")
    stamped = stamp(np.asarray(X_test, dtype=np.float64)[rows], trigger, image_shape)
    return float((model.predict(stamped) == target_class).mean())


def clean_accuracy(model, X_test: np.ndarray, y_test: np.ndarray) -> float:
    return float((model.predict(np.asarray(X_test, dtype=np.float64)) == np.asarray(y_test)).mean())
