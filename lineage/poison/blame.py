"""Which source carries the poison: retrain without each source and see whether the attack
collapses, on numpy arrays (``lineage.lab.audit.audit_sources`` runs it on a store's rows).

The attack under suspicion is measured per source class -> target class on trusted held-out
rows: the rows are scanned by the calibrated detectors (``scan_rows``, FDR 1%), the groups they
confirm become trigger candidates (``candidate_patterns``), and each candidate's attack
success rate is corrected by reference models cross-fitted on the held-out rows
(``scan_attacks``). The worst candidate found in the data is under suspicion when its ASR
exceeds ``max_asr``; failing one, the worst square patch pooled over the classes (the approval
gate's measure). A source is blamed when removing its rows collapses that ASR: to at most half
of what it was and by at least ``min_drop``. Label poisoning has no trigger: when the label
detector flags at least ``min_rows`` rows, a source is also blamed when it holds far more of the
scan's flagged rows than its share of all rows (binomial tail below the FDR, Bonferroni over the
sources). Every blame carries its figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from lineage.poison.calibration import FDR_Q
from lineage.poison.candidates import candidate_patterns
from lineage.poison.detectors import ScanReport, scan_rows
from lineage.poison.estimators import fit_estimator
from lineage.poison.trigger_scan import (
    baseline_rates,
    class_baseline_rates,
    scan_attacks,
    scan_triggers,
)
from lineage.poison.triggers import candidate_triggers


@dataclass(frozen=True)
class SourceResult:
    """One source: its rows, the shadow evaluation without it, and whether it is blamed."""

    source: str
    rows: int
    clean_accuracy_without: Optional[float]
    attack_asr_without: Optional[float]
    worst_asr_without: Optional[float]
    worst_trigger_without: Optional[str]
    flagged_rows: int
    flag_log10_p: Optional[float]
    suspect: bool
    why: Optional[str]


@dataclass(frozen=True)
class BlameReport:
    """The attack under suspicion and every source's figures."""

    clean_accuracy: float
    attack: Optional[str]  # the attack under suspicion, described
    attack_asr: float
    attack_detail: dict  # per-class figures of a trigger found in the data (empty: a square)
    sources: list  # SourceResult, in the order given
    scan: ScanReport = field(repr=False, compare=False)
    found_triggers: list = field(default_factory=list)  # AttackResult dicts, worst first

    @property
    def suspects(self) -> list[str]:
        return [s.source for s in self.sources if s.suspect]


def blame_sources(X: np.ndarray, y: np.ndarray, sources: np.ndarray, X_eval: np.ndarray,
                  y_eval: np.ndarray, *, image_shape, value_max: float,
                  estimator: str = "logistic", seed: int = 0, max_asr: float = 0.3,
                  sizes: Sequence[int] = (1, 2, 3), min_drop: float = 0.2, min_rows: int = 3,
                  q: float = FDR_Q, report: Optional[ScanReport] = None) -> BlameReport:
    """Name the source(s) whose removal collapses the attack (see the module doc).

    X : ndarray of shape (n_samples, n_features); y : (n_samples,); sources : (n_samples,) the
    source of each row; X_eval, y_eval : trusted held-out rows.
    """
    from scipy.stats import binom

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    sources = np.asarray(sources).astype(str)
    Xe = np.asarray(X_eval, dtype=np.float64)
    ye = np.asarray(y_eval)
    sizes = tuple(sizes)
    squares = candidate_triggers(image_shape, value=value_max, sizes=sizes)

    def fit(Xr, yr, n_equivalent=None):
        return fit_estimator(estimator, Xr, yr, seed=seed, value_max=value_max,
                             n_equivalent=n_equivalent)

    model = fit(X, y)
    classes = sorted(set(np.unique(ye).tolist()) | set(model.classes_.tolist()))
    baseline = baseline_rates(lambda a, b: fit(a, b, n_equivalent=len(X)), Xe, ye,
                              image_shape=image_shape, value=value_max, sizes=sizes,
                              classes=classes, random_state=seed)
    if report is None:
        report = scan_rows(X, y, image_shape=image_shape, value=value_max, random_state=seed,
                           q=q)
    found = candidate_patterns(report, X, y, q=q, random_state=seed)
    class_base = (class_baseline_rates(lambda a, b: fit(a, b, n_equivalent=len(X)), Xe, ye, found,
                                       image_shape=image_shape, classes=classes,
                                       random_state=seed) if found else None)

    def evaluate(m):
        scan = scan_triggers(m, Xe, ye, image_shape=image_shape, value=value_max, sizes=sizes,
                             target_classes=classes, baseline=baseline)
        corrected = np.clip(scan.rates - baseline, 0.0, None)
        attacks = (scan_attacks(m, Xe, ye, found, image_shape=image_shape, classes=classes,
                                baseline=class_base) if found else [])
        return float((m.predict(Xe) == ye).mean()), scan, corrected, attacks

    accuracy, scan, corrected, attacks = evaluate(model)
    worst = scan.worst
    attack = attacks[0] if attacks and attacks[0].asr > max_asr else None
    if attack is not None:
        name, asr = attack.describe, float(attack.asr)
        key = (attack.trigger.describe(), attack.source, attack.target)
        at = None
    else:
        name, asr = (worst.describe if worst else None), (float(worst.asr) if worst else 0.0)
        key = None
        at = ((next(i for i, c in enumerate(squares) if c == worst.trigger),
               classes.index(worst.target)) if worst else None)

    def asr_of(corr, atts):
        if key is not None:
            return next((a.asr for a in atts
                         if (a.trigger.describe(), a.source, a.target) == key), 0.0)
        return float(corr[at]) if at else None

    flagged = np.zeros(len(y), dtype=bool)
    flagged[report.flagged] = True
    label = report.results.get("label_disagreement")
    label_poisoning = label is not None and len(label.flagged) >= min_rows
    names = list(dict.fromkeys(sources.tolist()))
    out = []
    for src in names:
        mask = sources == src
        rest = ~mask
        n_flag = int((flagged & mask).sum())
        flag_p = None
        if n_flag:
            flag_p = float(binom.logsf(n_flag - 1, int(flagged.sum()), float(mask.mean()))
                           / math.log(10) + math.log10(len(names)))
        acc_w = without = worst_w = None
        worst_name_w = None
        if rest.sum() and len(np.unique(y[rest])) >= 2:
            acc_w, scan_w, corr_w, atts_w = evaluate(fit(X[rest], y[rest]))
            without = asr_of(corr_w, atts_w)
            worst_w = float(scan_w.worst.asr) if scan_w.worst else 0.0
            worst_name_w = scan_w.worst.describe if scan_w.worst else None
        why = None
        if without is not None and without <= 0.5 * asr and asr - without >= min_drop:
            why = f"without {src} the ASR of {name} falls from {asr:.2f} to {without:.2f}"
        elif (label_poisoning and flag_p is not None and flag_p < math.log10(q)
              and n_flag >= min_rows):
            why = (f"{n_flag} of the scan's {int(flagged.sum())} flagged rows come from {src}, "
                   f"which holds {int(mask.sum())} of {len(y)} rows (p=1e{flag_p:.0f}); the "
                   f"label detector flags {len(label.flagged)} rows")
        out.append(SourceResult(
            source=src, rows=int(mask.sum()),
            clean_accuracy_without=None if acc_w is None else round(acc_w, 6),
            attack_asr_without=None if without is None else round(float(without), 6),
            worst_asr_without=None if worst_w is None else round(worst_w, 6),
            worst_trigger_without=worst_name_w, flagged_rows=n_flag,
            flag_log10_p=None if flag_p is None else round(flag_p, 1),
            suspect=why is not None, why=why))
    return BlameReport(clean_accuracy=round(accuracy, 6), attack=name, attack_asr=round(asr, 6),
                       attack_detail=attack.as_dict() if attack is not None else {},
                       sources=out, scan=report,
                       found_triggers=[a.as_dict() for a in attacks[:5]])
