"""Audits of poisoning: recorded detector scans, the poisoned rows behind a model, and the
per-source shadow evaluation.

- ``scan_version`` runs the detectors (``lineage.detectors``) on a version or a snapshot and
  records the scan as an event (its parameters, every detector's flag count and the flagged rows
  with their evidence), so a later audit shows what was known when.
- ``audit_poisoned`` answers for a model version through its snapshot: rows implicated by the
  records (trigger injections, edits made outside the store, label changes by actors who are not
  reviewers) and rows flagged by the detectors.
- ``audit_sources`` retrains the policy's reference model without each source in turn and names
  the source whose removal collapses the attack: the worst per-class ASR of the triggers the
  scan found in the data (or, failing one, of the worst square patch), or, for label poisoning,
  the source that holds far more of the scan's flags than its share.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from lineage.data.coverage import origins
from lineage.data.datasets import check_seed, find_version, scan_geometry
from lineage.data.deltas import materialize, version_chain
from lineage.data.sources import source_status
from lineage.errors import BadInputError, NotFoundError
from lineage.models.registry import find_model_version
from lineage.poison.detectors import DETECTORS, scan_rows
from lineage.poison.estimators import make_estimator
from lineage.review.evaluation import evaluation_rows
from lineage.review.policy import policy_in_force
from lineage.review.snapshots import read_snapshot_rows
from lineage.store.engine import Store, release_mapped_pages
from lineage.store.tables import (
    Dataset,
    Event,
    Ingest,
    RowEffect,
    Snapshot,
    SnapshotReview,
    Source,
    SourceReview,
    Transformation,
    Version,
)

MAX_EVIDENCE = 2000  # flagged rows whose evidence text goes into the scan event


@dataclass(frozen=True)
class FlaggedRow:
    """A row that at least one detector flagged."""

    row_id: int
    label: int
    detectors: tuple[str, ...]
    score: float  # -log10 of the combined p-value
    combined: bool  # a combined flag (Cauchy combination, Benjamini-Hochberg at the FDR)
    evidence: dict = field(default_factory=dict)
    pvalue: float = 1.0  # combined p-value
    pvalues: dict = field(default_factory=dict)  # detector -> its p-value for the row


@dataclass(frozen=True)
class ScanRecord:
    """One recorded scan: what was scanned, with which settings, and what was flagged."""

    event_id: int
    target: str
    snapshot: Optional[str]
    version_id: int
    content_digest: str
    n_rows: int
    params: dict
    detectors: dict  # detector -> {"flagged": count, "params": {...}}
    flagged: list  # FlaggedRow in the combined list, most suspicious first
    noted: list  # FlaggedRow flagged by some detector alone but not by the combination


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _resolve(session: Session, ref: str) -> tuple[Optional[Snapshot], Version]:
    """A snapshot by name, else a version by id or name."""

    text = str(ref).strip()
    snap = session.scalars(select(Snapshot).where(Snapshot.name == text)).first()
    if snap is not None:
        return snap, session.get(Version, snap.version_id)
    try:
        return None, find_version(session, text)
    except NotFoundError:
        raise NotFoundError(f"no snapshot or version {text!r} (see `lineage snapshot list` and "
                            "`lineage version list`)") from None


def _rows_of(session: Session, snap: Optional[Snapshot], version: Version):

    if snap is not None:
        return read_snapshot_rows(session, snap)
    m = materialize(session, version, verify=True)
    release_mapped_pages(session)  # the arrays stay; the file pages the read touched go
    return m.row_ids, m.X, m.y


def scan_version(store: Store, ref: str, *, detectors: Optional[Sequence[str]] = None,
                 seed: int = 0, progress=None) -> ScanRecord:
    """Run the detectors on a snapshot or version (rows digest-verified) and record the scan.

    Every detector turns its scores into p-values against the data's own null; the combined
    flags pass Benjamini-Hochberg at FDR 1% (``lineage.poison.detectors``). ``progress(done,
    total)`` is called after each detector (the CLI's progress bar).

    Example: ``scan_version(store, "v7")`` or ``scan_version(store, "digits-train-2026w48")``
    """
    seed = check_seed(seed)
    names = list(DETECTORS) if detectors is None else list(detectors)
    unknown = [d for d in names if d not in DETECTORS]
    if unknown:
        raise BadInputError(f"unknown detector {unknown[0]!r}: choose from {', '.join(DETECTORS)}")
    with store.read() as session:
        snap, version = _resolve(session, ref)
        dataset = session.get(Dataset, version.dataset_id)
        ids, X, y = _rows_of(session, snap, version)
        target = f"snapshot {snap.name}" if snap else f"version v{version.id}"
        snap_name = snap.name if snap else None
        digest = snap.content_digest if snap else version.content_digest
        version_id = version.id
        image_shape = scan_geometry(dataset)
        value = float(dataset.value_max) if dataset.value_max is not None else None
    if len(ids) == 0:
        raise BadInputError(f"{target} has no rows to scan")
    report = scan_rows(X, y, image_shape=image_shape, value=value, random_state=seed,
                       detectors=names, progress=progress)
    combined = set(int(i) for i in report.flagged)
    rows = [FlaggedRow(row_id=int(ids[e.position]), label=int(y[e.position]), detectors=e.detectors,
                       score=e.score, combined=e.position in combined, evidence=dict(e.evidence),
                       pvalue=float(f"{e.pvalue:.3g}"),
                       pvalues={k: float(f"{v:.3g}") for k, v in e.pvalues.items()})
            for e in report.entries]
    flagged = [r for r in rows if r.combined]
    noted = [r for r in rows if not r.combined]
    per_detector = {name: {"flagged": int(len(res.flagged)), "params": _jsonable(res.params)}
                    for name, res in report.results.items()}
    params = {"detectors": names, "seed": seed, "image_shape": image_shape, "value": value,
              "combination": report.params["combination"], "fdr_q": report.params["fdr_q"]}
    with store.write() as tx:
        tx.event("scan", f"scan of {target}: {len(ids)} rows, {len(flagged)} flagged ("
                 + ", ".join(f"{k} {v['flagged']}" for k, v in per_detector.items()) + ")",
                 target=target, snapshot=snap_name, version=version_id, content_digest=digest,
                 n_rows=len(ids), params=_jsonable(params), detectors=per_detector,
                 flagged=[{"row_id": r.row_id, "detectors": list(r.detectors), "score": r.score,
                           "combined": r.combined, "pvalue": r.pvalue, "pvalues": r.pvalues,
                           **({"evidence": r.evidence} if i < MAX_EVIDENCE else {})}
                          for i, r in enumerate(flagged + noted)])
    with store.read() as session:
        event_id = session.scalar(select(Event.id).where(Event.kind == "scan",
                                                         Event.actor == store.actor)
                                  .order_by(Event.id.desc()).limit(1))
    return ScanRecord(event_id=int(event_id), target=target, snapshot=snap_name,
                      version_id=version_id, content_digest=digest, n_rows=len(ids),
                      params=params, detectors=per_detector, flagged=flagged, noted=noted)


def list_scans(store: Store, *, snapshot: Optional[str] = None,
               version: Optional[int] = None) -> list[dict]:
    """Recorded scans (newest first), optionally of one snapshot or version: event id, time,
    actor, target and how many rows were flagged."""
    out = []
    with store.read() as session:
        for ev in session.scalars(select(Event).where(Event.kind == "scan").order_by(Event.id.desc())):
            payload = json.loads(ev.payload)
            if snapshot is not None and payload.get("snapshot") != snapshot:
                continue
            if version is not None and payload.get("version") != version:
                continue
            out.append({"event": ev.id, "at": ev.created_at, "actor": ev.actor,
                        "target": payload.get("target"), "n_rows": payload.get("n_rows"),
                        "flagged": sum(1 for f in payload.get("flagged", []) if f.get("combined"))})
    return out


@dataclass(frozen=True)
class AuditedRow:
    """A row behind a model that the records or the detectors implicate."""

    row_id: int
    label: int
    records: tuple[str, ...]  # why the records implicate it (empty: they do not)
    detectors: tuple[str, ...]  # detectors that flagged it in the combined list
    score: float
    evidence: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PoisonAudit:
    """``audit poisoned``: the rows behind a model version that look poisoned, and how we know."""

    model: str
    snapshot: str
    version_id: int
    n_rows: int
    rows: list  # AuditedRow, records first, then by detector score
    from_records: list  # row ids implicated by records
    from_detectors: list  # row ids in the detectors' combined list
    scan_event: Optional[int]
    earlier_scans: list = field(default_factory=list)


def _reviewers(session: Session) -> set[str]:
    snap = set(session.scalars(select(SnapshotReview.actor).where(SnapshotReview.passed.is_(True))))
    src = set(session.scalars(select(SourceReview.actor).where(SourceReview.decision == "approve")))
    return snap | src


def record_implicated(session: Session, version: Version, members: np.ndarray) -> dict[int, list[str]]:
    """Row id -> why the records implicate it, for the members of ``version``."""

    reviewers = _reviewers(session)
    out: dict[int, list[str]] = {}
    for v in version_chain(session, version):
        if v.transformation_id is None:
            continue
        t = session.get(Transformation, v.transformation_id)
        params = json.loads(t.params)
        effects = session.execute(select(RowEffect.row_id, RowEffect.effect, RowEffect.old_label,
                                         RowEffect.new_label, RowEffect.parent_row_id)
                                  .where(RowEffect.version_id == v.id)).all()
        for row_id, effect, old, new, parent in effects:
            why = None
            if t.kind == "inject_trigger" and effect == "modified":
                why = (f"trigger injected by transformation {t.id} (inject-trigger, v{v.id}) by "
                       f"{t.actor}: {params.get('size')}x{params.get('size')} at "
                       f"{tuple(params.get('position', []))}={params.get('value')}, label {old}->{new}"
                       f", from row {parent}; reason: {t.reason or '-'}")
            elif t.kind == "external_edit" and effect in ("modified", "added", "relabelled"):
                why = (f"changed outside the store (external edit, transformation {t.id}, v{v.id}"
                       f"): {effect}" + (f" label {old}->{new}" if old != new and old is not None
                                         and new is not None else ""))
            elif effect == "relabelled" and t.actor not in reviewers:
                why = (f"label {old}->{new} by {t.actor}, who reviews nothing (transformation "
                       f"{t.id}, {t.kind}, v{v.id}); reason: {t.reason or '-'}")
            if why:
                out.setdefault(int(row_id), []).append(why)
    keep = set(int(i) for i in members)
    return {r: w for r, w in out.items() if r in keep}


def audit_poisoned(store: Store, model: str, *, scan: bool = True, seed: int = 0,
                   detectors: Optional[Sequence[str]] = None) -> PoisonAudit:
    """Which rows behind model version ``model`` (``name:number``) were poisoned, and how we know.

    Answers through the model's snapshot: rows the records implicate, and (``scan=True``) rows
    the detectors flag; the scan is recorded. Example: ``audit_poisoned(store, "digits-clf:3")``
    """
    seed = check_seed(seed)

    with store.read() as session:
        mv = find_model_version(session, model)
        snap = session.get(Snapshot, mv.snapshot_id)
        version = session.get(Version, snap.version_id)
        ids, _, y = read_snapshot_rows(session, snap)
        records = record_implicated(session, version, ids)
        ref = f"{mv.model}:{mv.number}"
        snap_name = snap.name
        version_id = version.id
    earlier = list_scans(store, snapshot=snap_name)
    record = scan_version(store, snap_name, seed=seed, detectors=detectors) if scan else None
    found = {r.row_id: r for r in (record.flagged if record else [])}
    label_of = dict(zip(ids.tolist(), y.tolist()))
    rows = []
    for row_id in sorted(set(records) | set(found)):
        f = found.get(row_id)
        rows.append(AuditedRow(row_id=row_id, label=int(label_of[row_id]),
                               records=tuple(records.get(row_id, ())),
                               detectors=f.detectors if f else (), score=f.score if f else 0.0,
                               evidence=f.evidence if f else {}))
    rows.sort(key=lambda r: (not r.records, -r.score, r.row_id))
    return PoisonAudit(model=ref, snapshot=snap_name, version_id=version_id, n_rows=len(ids),
                       rows=rows, from_records=sorted(records), from_detectors=sorted(found),
                       scan_event=record.event_id if record else None, earlier_scans=earlier)


@dataclass(frozen=True)
class SourceFigures:
    """One source's share of a version and the shadow evaluation without it."""

    source: Optional[str]
    kind: Optional[str]
    status: str
    rows: int
    clean_accuracy_without: Optional[float]
    trigger_asr_without: Optional[float]  # ASR of the attack under suspicion, source removed
    worst_asr_without: Optional[float]  # worst scanned square trigger of the model without it
    worst_trigger_without: Optional[str]
    suspect: bool = False
    flagged_rows: int = 0  # of the source's rows, flagged by the calibrated scan
    flag_log10_p: Optional[float] = None  # flags concentrated in this source (binomial tail)
    why: Optional[str] = None  # the figures behind a blame


@dataclass(frozen=True)
class SourcesAudit:
    """``audit sources``: per-source shadow evaluation of a version (or snapshot)."""

    target: str
    n_rows: int
    evaluation_snapshot: str
    estimator: str
    seed: int
    max_asr: float
    clean_accuracy: float
    worst_trigger: Optional[str]  # the attack under suspicion (see ``audit_sources``)
    worst_asr: float
    sources: list  # SourceFigures, one per source
    event_id: Optional[int] = None
    attack: dict = field(default_factory=dict)  # the attack under suspicion, per class
    scan: dict = field(default_factory=dict)  # the calibrated scan's summary


def audit_sources(store: Store, ref: str, *, estimator: Optional[str] = None,
                  seed: Optional[int] = None, min_drop: float = 0.2) -> SourcesAudit:
    """Retrain without each source and name the source whose removal collapses the attack.

    The reference model (the policy's estimator and seed unless given) is trained on all rows of
    the version or snapshot ``ref``; the rows are scanned by the calibrated detectors (FDR 1%)
    and the triggers they find in the data, as well as every square patch, are measured on the
    policy's evaluation snapshot per source class -> target class, baseline-corrected
    (``lineage.poison.blame.blame_sources``). The attack under suspicion is the worst trigger
    found in the data when its ASR exceeds the policy's ``max_asr``, else the worst square patch
    pooled over the classes (as the approval gate measures it). Per source, the model is
    retrained without that source's rows (derived rows count for their raw row's source) and the
    same attack is measured again: a source is a suspect when removing it collapses that ASR (to
    at most half and by at least ``min_drop``), or, for label poisoning (the label detector
    flags at least 3 rows), when it holds far more of the scan's flags than its share of the
    rows. Every blame comes with its figures (``why``). The audit is recorded as an event.
    Example: ``audit_sources(store, "v7")``
    """
    from lineage.poison.blame import blame_sources

    seed = None if seed is None else check_seed(seed)

    with store.read() as session:
        snap, version = _resolve(session, ref)
        dataset = session.get(Dataset, version.dataset_id)
        target = f"snapshot {snap.name}" if snap else f"version v{version.id}"
        policy = policy_in_force(session)
        evaluation = evaluation_rows(session, policy, dataset, target)
        ids, X, y = _rows_of(session, snap, version)
        ingest_of, _ = origins(session, dataset.id, ids)
        source_of_ingest = {}
        for ingest_id in np.unique(ingest_of):
            if ingest_id < 0:
                source_of_ingest[int(ingest_id)] = (None, None, "outside the store")
                continue
            src = session.get(Source, session.get(Ingest, int(ingest_id)).source_id)
            source_of_ingest[int(ingest_id)] = (src.name, src.kind, source_status(session, src))
    estimator = estimator or policy.reference_estimator
    seed = policy.seed if seed is None else seed
    make_estimator(estimator, seed=seed, value_max=1.0)  # unknown estimator: BadInputError now
    outside = "\x00outside"  # rows from outside the store: a name no source can have
    row_source = np.array([source_of_ingest[int(i)][0] or outside for i in ingest_of],
                          dtype=object)
    names = sorted({v[0] for v in source_of_ingest.values()}, key=lambda s: (s is None, s or ""))
    blame = blame_sources(X.astype(np.float64), y, row_source, evaluation.X, evaluation.y,
                          image_shape=evaluation.image_shape, value_max=evaluation.value_max,
                          estimator=estimator, seed=seed, max_asr=policy.max_asr,
                          sizes=tuple(policy.scan_sizes), min_drop=min_drop)
    by_name = {r.source: r for r in blame.sources}
    figures = []
    for name in names:
        kind, status = next((v[1], v[2]) for v in source_of_ingest.values() if v[0] == name)
        r = by_name[name or outside]
        figures.append(SourceFigures(
            source=name, kind=kind, status=status, rows=r.rows,
            clean_accuracy_without=r.clean_accuracy_without,
            trigger_asr_without=r.attack_asr_without, worst_asr_without=r.worst_asr_without,
            worst_trigger_without=r.worst_trigger_without, suspect=r.suspect,
            flagged_rows=r.flagged_rows, flag_log10_p=r.flag_log10_p, why=r.why))
    suspects = {f.source for f in figures if f.suspect}
    report = blame.scan
    scan_info = {"fdr_q": report.params.get("fdr_q"), "flagged": int(len(report.flagged)),
                 "per_detector": {n: int(len(r.flagged)) for n, r in report.results.items()},
                 "found_triggers": blame.found_triggers}
    result = SourcesAudit(target=target, n_rows=len(ids), evaluation_snapshot=evaluation.name,
                          estimator=estimator, seed=seed, max_asr=policy.max_asr,
                          clean_accuracy=blame.clean_accuracy, worst_trigger=blame.attack,
                          worst_asr=blame.attack_asr, sources=figures, attack=blame.attack_detail,
                          scan=scan_info)
    with store.write() as tx:
        tx.event("audit.sources", f"audit sources of {target}: attack under suspicion "
                 f"{result.worst_trigger} ASR {result.worst_asr:.4f}; suspect: "
                 + (", ".join(sorted(str(s) for s in suspects)) or "none"),
                 target=target, estimator=estimator, seed=seed,
                 evaluation_snapshot=evaluation.name, worst_trigger=result.worst_trigger,
                 worst_asr=result.worst_asr, attack=_jsonable(result.attack),
                 scan=_jsonable(scan_info),
                 sources=[_jsonable(f.__dict__) for f in figures])
    with store.read() as session:
        event_id = session.scalar(select(Event.id).where(Event.kind == "audit.sources",
                                                         Event.actor == store.actor)
                                  .order_by(Event.id.desc()).limit(1))
    return SourcesAudit(**{**result.__dict__, "event_id": int(event_id)})
