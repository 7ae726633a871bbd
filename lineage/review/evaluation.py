"""The shadow evaluation: the policy's evaluation snapshot read and verified, and a reference
model trained on candidate rows measured on it (clean accuracy, baseline-corrected trigger ASR).
The approval gate and training both measure through here."""

import hashlib
import json
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
from sqlalchemy.orm import Session

from lineage.data.datasets import scan_geometry
from lineage.errors import BadInputError
from lineage.poison.calibration import FDR_Q
from lineage.poison.candidates import candidate_patterns
from lineage.poison.detectors import TRIGGER_SCAN_MAX_ROWS, ScanReport, scan_rows
from lineage.poison.estimators import fit_estimator
from lineage.poison.trigger_scan import (
    AttackResult,
    baseline_rates,
    class_baseline_rates,
    scan_attacks,
    scan_triggers,
)
from lineage.review.policy import PolicyInfo
from lineage.review.snapshots import find_snapshot, read_snapshot_rows, snapshot_status
from lineage.store.tables import Dataset


@dataclass(frozen=True)
class Evaluation:
    """The policy's evaluation snapshot, read and verified: held-out rows and their schema."""

    name: str
    row_ids: np.ndarray
    X: np.ndarray
    y: np.ndarray
    image_shape: str  # the dataset's, or a 1xN strip for rows that are not images (scan_geometry)
    value_max: float
    actor: Optional[str] = None  # who created the evaluation snapshot
    declared: bool = True  # value_max is the dataset's declared maximum, not the rows' largest

    def covering(self, X: np.ndarray) -> "Evaluation":
        """This evaluation for a model trained on rows X. A dataset that declares no value
        range is stamped, and its rows scaled, at the largest absolute value of the evaluation
        rows and X: a trigger value beyond every clean row raises it."""
        if self.declared or not len(X):
            return self
        top = float(np.abs(X).max())
        return self if top <= self.value_max else replace(self, value_max=top)


def dataset_schema(dataset: Dataset) -> dict:
    return {"n_features": dataset.n_features, "image_shape": dataset.image_shape,
            "classes": json.loads(dataset.classes), "value_max": dataset.value_max}


def evaluation_rows(session: Session, policy: PolicyInfo, dataset: Dataset,
                    for_what: str) -> Evaluation:
    """Read the policy's evaluation snapshot, checked against ``dataset``'s schema.

    Raises BadInputError when the policy names none, it was rejected or revoked, or its schema
    differs; IntegrityError when its rows no longer match its digest.
    """
    if not policy.evaluation_snapshot:
        raise BadInputError(f"the policy (version {policy.version}) names no evaluation snapshot: "
                            "set one with `lineage policy set --evaluation-snapshot NAME`")
    snap = find_snapshot(session, policy.evaluation_snapshot)
    status = snapshot_status(session, snap)
    if status in ("rejected", "revoked"):
        raise BadInputError(f"evaluation snapshot {snap.name!r} is {status}: set another with "
                            "`lineage policy set --evaluation-snapshot NAME`")
    eval_ds = session.get(Dataset, snap.dataset_id)
    mine, theirs = dataset_schema(dataset), dataset_schema(eval_ds)
    if mine != theirs:
        diff = "; ".join(f"{k} {theirs[k]} vs {mine[k]}" for k in mine if mine[k] != theirs[k])
        raise BadInputError(f"evaluation snapshot {snap.name!r} (dataset {eval_ds.name!r}) has a "
                            f"different schema from {for_what} (dataset {dataset.name!r}): {diff}; "
                            "set a matching one with `lineage policy set --evaluation-snapshot NAME`")
    ids, X, y = read_snapshot_rows(session, snap)
    if dataset.value_max is not None:
        value_max, declared = float(dataset.value_max), True
    else:  # see Evaluation.covering
        value_max, declared = (float(np.abs(X).max()) if len(X) else 0.0) or 1.0, False
    return Evaluation(name=snap.name, row_ids=ids, X=X, y=y, image_shape=scan_geometry(dataset),
                      value_max=value_max, actor=snap.actor, declared=declared)


def reference_fitter(estimator: str, *, seed: int, value_max: float, params: Optional[dict],
                     n_equivalent: int):
    """``fit(Xr, yr)`` of the reference models that correct a trigger scan: the same estimator,
    regularized as if it saw ``n_equivalent`` rows (as many as the model under test). A fit is
    kept per rows and labels: the trigger scan's and the attack scan's baselines cross-fit the
    same seeded folds of the evaluation rows, so the gate fits each fold once, not twice."""
    fitted: dict[bytes, object] = {}

    def fit(Xr, yr):
        Xr, yr = np.ascontiguousarray(Xr), np.ascontiguousarray(yr)
        h = hashlib.blake2b(f"{Xr.dtype}{Xr.shape}{yr.dtype}".encode(), digest_size=16)
        h.update(Xr.data)
        h.update(yr.data)
        key = h.digest()
        if key not in fitted:
            fitted[key] = fit_estimator(estimator, Xr, yr, seed=seed, value_max=value_max,
                                        params=params, n_equivalent=n_equivalent)
        return fitted[key]

    return fit


def shadow_evaluation(X: np.ndarray, y: np.ndarray, evaluation: Evaluation, *, estimator: str,
                      seed: int, sizes, params: Optional[dict] = None, fit_reference=None):
    """Train ``estimator`` on (X, y) and measure it on the evaluation rows.

    Returns (model, clean accuracy, TriggerScanResult with baseline-corrected rates).
    ``fit_reference``: a ``reference_fitter`` to share with ``attack_evidence``.
    """

    model = fit_estimator(estimator, X, y, seed=seed, value_max=evaluation.value_max, params=params)
    Xe = evaluation.X.astype(np.float64)
    accuracy = float((model.predict(Xe) == evaluation.y).mean()) if len(Xe) else 0.0
    classes = sorted(set(np.unique(evaluation.y).tolist()) | set(model.classes_.tolist()))
    fit_reference = fit_reference or reference_fitter(
        estimator, seed=seed, value_max=evaluation.value_max, params=params, n_equivalent=len(X))
    baseline = baseline_rates(fit_reference, Xe, evaluation.y, image_shape=evaluation.image_shape,
                              value=evaluation.value_max, sizes=sizes, classes=classes,
                              random_state=seed)
    scan = scan_triggers(model, Xe, evaluation.y, image_shape=evaluation.image_shape,
                         value=evaluation.value_max, sizes=sizes, target_classes=classes,
                         baseline=baseline)
    return model, accuracy, scan


@dataclass(frozen=True)
class AttackEvidence:
    """What the calibrated scan of a snapshot's rows found, and what its patterns do to a model
    trained on them (per source class -> target class, on the evaluation rows)."""

    report: ScanReport  # the detectors' scan of the rows (combined flags at FDR q)
    groups: list  # confirmed groups: detector, label, looks_like, rows, log10_p
    attacks: list  # AttackResult of the candidates found in the data, worst first
    label_flags: int  # rows the label detector flags at FDR q
    q: float
    # The evaluation rows the label detector flags at the same cut, of how many (the data's own
    # label noise), and the one-sided p-value of the rows' share of flags being no higher.
    label_reference: Optional[dict] = None
    label_excess_p: float = 1.0

    @property
    def worst(self) -> Optional[AttackResult]:
        return self.attacks[0] if self.attacks else None


def attack_evidence(model, X: np.ndarray, y: np.ndarray, evaluation: Evaluation, *,
                    estimator: str, seed: int, params: Optional[dict] = None,
                    q: float = FDR_Q, report: Optional[ScanReport] = None,
                    fit_reference=None) -> AttackEvidence:
    """Scan (X, y) with the calibrated detectors (``lineage.poison.detectors.scan_rows``), turn
    the groups they confirm into trigger candidates (``lineage.poison.candidates``) and measure
    each on the evaluation rows for ``model`` (trained on X, y) per source class -> target class,
    corrected by reference models cross-fitted on the evaluation rows (``scan_attacks``)."""
    if report is None:
        # The trigger_scan detector fits the seeded default logistic model on the rows (a sample
        # above TRIGGER_SCAN_MAX_ROWS) scaled by their largest value: when that is ``model``'s
        # fit, it is reused.
        same_fit = (estimator == "logistic" and not params and 0 < len(X) <= TRIGGER_SCAN_MAX_ROWS
                    and float(np.abs(X).max()) == float(evaluation.value_max))
        report = scan_rows(X, y, image_shape=evaluation.image_shape, value=evaluation.value_max,
                           random_state=seed, q=q, reference=(evaluation.X, evaluation.y),
                           trigger_model=model if same_fit else None)
    groups = [{"detector": name, "label": int(g["label"]), "looks_like": int(g["looks_like"]),
               "rows": int(len(g["rows"])), "log10_p": round(float(g["log10_p"]), 1)}
              for name, r in report.results.items() for g in r.found
              if g["log10_p"] < np.log10(q)]
    groups.sort(key=lambda g: g["log10_p"])
    candidates = candidate_patterns(report, X, y, q=q, random_state=seed)
    attacks = []
    if candidates:
        Xe = evaluation.X.astype(np.float64)
        classes = sorted(set(np.unique(evaluation.y).tolist()) | set(model.classes_.tolist()))

        fit_reference = fit_reference or reference_fitter(
            estimator, seed=seed, value_max=evaluation.value_max, params=params,
            n_equivalent=len(X))
        baseline = class_baseline_rates(fit_reference, Xe, evaluation.y, candidates,
                                        image_shape=evaluation.image_shape, classes=classes,
                                        random_state=seed)
        attacks = scan_attacks(model, Xe, evaluation.y, candidates,
                               image_shape=evaluation.image_shape, classes=classes,
                               baseline=baseline)
    label = report.results.get("label_disagreement")
    flags = len(label.flagged) if label is not None else 0
    reference = label.params.get("reference") if label is not None else None
    excess = 1.0
    if flags and not (reference or {}).get("rows"):
        excess = 0.0  # no evaluation rows to measure the natural rate on: any 3 flags refuse
    elif flags:
        from scipy.stats import fisher_exact

        excess = float(fisher_exact([[flags, len(y) - flags],
                                     [reference["flagged"], reference["rows"] - reference["flagged"]]],
                                    alternative="greater").pvalue)
    return AttackEvidence(report=report, groups=groups, attacks=attacks, label_flags=flags, q=q,
                          label_reference=reference, label_excess_p=excess)


LABEL_MIN_FLAGS = 3  # fewer label flags than this never refuse a snapshot


SHADOW_ROWS_PER_CLASS = 1000  # rows of each class the shadow gate trains on and scans


def shadow_sample(y: np.ndarray, *, rows_per_class: Optional[int] = SHADOW_ROWS_PER_CLASS,
                  seed: int = 0) -> np.ndarray:
    """Sorted positions of the shadow gate's stratified sample of rows labelled ``y``: every
    row of a class that has at most ``rows_per_class`` rows, else ``rows_per_class`` of its rows
    drawn without replacement (seeded). None: every row.

    Per class, so a small class keeps all its rows and a poisoned share of one class keeps its
    share in the sample (2% of a class's rows are about 2% of its sampled rows, 20 of 1000).
    """
    y = np.asarray(y)
    if rows_per_class is None:
        return np.arange(len(y))
    if rows_per_class < 1:
        raise BadInputError(f"rows_per_class must be at least 1, got {rows_per_class}")
    from lineage.poison.calibration import label_index

    labels, idx = label_index(y)
    counts = np.bincount(idx, minlength=len(labels))
    if counts.max(initial=0) <= rows_per_class:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    parts = []
    for k in range(len(labels)):
        rows = np.flatnonzero(idx == k)
        parts.append(rows if len(rows) <= rows_per_class
                     else rng.choice(rows, rows_per_class, replace=False))
    return np.sort(np.concatenate(parts))


def shadow_gate(X: np.ndarray, y: np.ndarray, ids: np.ndarray, evaluation: Evaluation,
                policy: PolicyInfo, *,
                rows_per_class: Optional[int] = SHADOW_ROWS_PER_CLASS) -> dict:
    """The approval gate's shadow evaluation of a snapshot's rows (X, y, row ids ``ids``): its
    report (``passed``, ``message`` and the figures).

    A model of the policy's reference estimator and seed is trained on the rows and measured on
    the evaluation snapshot, and the rows are scanned by the calibrated detectors
    (``attack_evidence``, false discovery rate q = 1%). Refused when clean accuracy <
    ``min_clean_accuracy``; when the worst square trigger's baseline-corrected ASR (pooled over
    the non-target classes) > ``max_asr``; when a trigger found in the rows (a pattern or
    direction a detector confirmed at the FDR) reaches a baseline-corrected ASR > ``max_asr``
    for one source class -> target class; or, for label poisoning without a trigger, when the
    label detector flags at least ``LABEL_MIN_FLAGS`` rows at the FDR and a larger share of them
    than of the evaluation rows, judged by the same models at the same cut (one-sided Fisher exact
    test, p < q): every real dataset holds some labels a model does not believe, and the
    evaluation snapshot, held out and made by nobody under review, shows how many. The test's
    power is bounded by the evaluation snapshot's size: with none of its rows flagged, a sample
    of n rows against m evaluation rows needs ln(q) / ln(n / (n + m)) flags (12 at 1,257 vs 540,
    26 at 10,000 vs 2,000). ``max_asr`` 1 makes the gate measure only (the lab's red-team
    sandbox): then only clean accuracy and overlap refuse.

    The model trains on, and the scan reads, a stratified seeded sample of at most
    ``rows_per_class`` rows of each class (``shadow_sample``, the policy's seed; None: every
    row): the gate's time and memory stay bounded on a snapshot of millions of rows, and a
    snapshot of at most that many rows a class is measured whole. The overlap check reads
    every row id.
    """
    overlap = int(np.isin(ids, evaluation.row_ids).sum())
    n_rows = len(y)
    evaluation = evaluation.covering(X)
    sample = shadow_sample(y, rows_per_class=rows_per_class, seed=policy.seed)
    if len(sample) < n_rows:
        X, y = X[sample], np.asarray(y)[sample]
    fit_reference = reference_fitter(policy.reference_estimator, seed=policy.seed,
                                     value_max=evaluation.value_max, params=None,
                                     n_equivalent=len(y))
    model, accuracy, scan = shadow_evaluation(X, y, evaluation,
                                              estimator=policy.reference_estimator,
                                              seed=policy.seed, sizes=policy.scan_sizes,
                                              fit_reference=fit_reference)
    evidence = attack_evidence(model, X, y, evaluation, estimator=policy.reference_estimator,
                               seed=policy.seed, fit_reference=fit_reference)
    worst = scan.worst
    worst_asr = worst.asr if worst else 0.0
    found = evidence.worst
    found_asr = found.asr if found else 0.0
    gating = policy.max_asr < 1.0
    problems = []
    if overlap:
        problems.append(f"{overlap} evaluation rows are also in the snapshot (not held out)")
    if accuracy < policy.min_clean_accuracy:
        problems.append(f"clean accuracy {accuracy:.4f} < {policy.min_clean_accuracy:g}")
    if worst_asr > policy.max_asr:
        problems.append(f"trigger {worst.describe} ASR {worst_asr:.4f} > {policy.max_asr:g} "
                        f"(raw {worst.raw_asr:.4f}, baseline {worst.baseline_asr:.4f})")
    if gating and found_asr > policy.max_asr:
        group = next((g for g in evidence.groups if g["detector"] == found.trigger.origin), None)
        problems.append(
            f"the scan found {found.trigger.describe()} in the rows"
            + (f" ({group['rows']} rows of label {group['label']} that look like "
               f"{group['looks_like']}, p=1e{group['log10_p']:.0f})" if group else "")
            + f": ASR {found_asr:.4f} > {policy.max_asr:g} on class {found.source} -> "
            f"{found.target} (raw {found.raw_asr:.4f}, baseline {found.baseline_asr:.4f})")
    ref = evidence.label_reference or {}
    if gating and evidence.label_flags >= LABEL_MIN_FLAGS and evidence.label_excess_p < evidence.q:
        problems.append(f"the label detector flags {evidence.label_flags} rows whose labels a "
                        f"model that never saw them does not believe (FDR {evidence.q:g}), "
                        f"against {ref.get('flagged', 0)} of the {ref.get('rows', 0)} evaluation "
                        f"rows (p={evidence.label_excess_p:.2g} that the share is no higher)")
    report = evidence.report
    if len(y) < n_rows:  # say what the figures were measured on
        problems = [f"{p} (on a stratified sample of {len(y)} of {n_rows} rows)"
                    if i == len(problems) - 1 else p for i, p in enumerate(problems)]
    return {"gate": "shadow_evaluation", "passed": not problems,
            "evaluation_snapshot": evaluation.name, "evaluation_rows": len(evaluation.y),
            "overlap_rows": overlap, "estimator": policy.reference_estimator, "seed": policy.seed,
            "sample": {"rows": int(len(y)), "of": int(n_rows), "rows_per_class": rows_per_class,
                       "seed": policy.seed},
            "clean_accuracy": round(accuracy, 6), "min_clean_accuracy": policy.min_clean_accuracy,
            "worst_asr": round(worst_asr, 6), "max_asr": policy.max_asr,
            "worst_trigger": worst.describe if worst else None,
            "n_candidates": len(scan.candidates), "top_triggers": scan.top(5),
            "scan": {"fdr_q": evidence.q, "flagged": len(report.flagged),
                     "per_detector": {n: len(r.flagged) for n, r in report.results.items()},
                     "groups": evidence.groups[:10], "label_flags": evidence.label_flags,
                     "label_reference": evidence.label_reference,
                     "label_excess_p": round(evidence.label_excess_p, 6)},
            "found_asr": round(found_asr, 6),
            "found_trigger": found.describe if found else None,
            "found_triggers": [a.as_dict() for a in evidence.attacks[:5]],
            "message": "; ".join(problems) if problems else
            f"clean accuracy {accuracy:.4f} >= {policy.min_clean_accuracy:g}, worst trigger ASR "
            f"{worst_asr:.4f} <= {policy.max_asr:g}; the scan (FDR {evidence.q:g}) flags "
            f"{len(report.flagged)} rows, worst ASR of a trigger found in them {found_asr:.4f}"
            + (f" (on a stratified sample of {len(y)} of {n_rows} rows)" if len(y) < n_rows
               else "")}
