"""Training on approved snapshots, model versions, their artifacts, release, and tracing.

``train`` reads its arrays through ``approved_rows`` only (the path ``load_snapshot`` takes), fits
a seeded scikit-learn estimator, measures it on the policy's evaluation snapshot (clean accuracy,
baseline-corrected ASR of the worst scanned triggers) and records a model version with the
snapshot id and digest, the parameters, the code identity and the pickled artifact (stored in
1 MiB pieces, so ``export_model`` writes the same bytes back out). A model version's status is
derived: ``affected`` when its snapshot was revoked or a source of its rows was rejected or
revoked since the approval, else ``released`` after a passed release
review, else ``trained``.
"""

import hashlib
import io
import json
import pickle
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Optional

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lineage.chain import canonical
from lineage.errors import BadInputError, GateFailedError, IntegrityError, NotFoundError, RefusedError
from lineage.policy import ESTIMATORS, policy_in_force, policy_version
from lineage.snapshots import (approved_rows, find_snapshot, snapshot_reviews, status_of)
from lineage.store import Store
from lineage.tables import (ArtifactChunk, Dataset, Ingest, ModelReview, ModelVersion, Snapshot,
                            SnapshotReview, Source, Transformation, Version)

ARTIFACT_PIECE = 1 << 20
DEFAULT_PARAMS = {
    "logistic": {"C": 1.0, "max_iter": 300},
    "mlp": {"hidden_layer_sizes": [32], "alpha": 1e-4, "max_iter": 200},
}


# ----------------------------------------------------------------------------- estimators

def make_estimator(name: str, *, seed: int, value_max: float, params: Optional[dict] = None,
                   n_equivalent: Optional[int] = None, n_samples: Optional[int] = None):
    """A scikit-learn pipeline: features scaled by 1/value_max, then the classifier.

    ``n_equivalent`` (reference models of the trigger scan): scale a logistic model's C by
    n_equivalent / n_samples so it is regularized as a model trained on n_equivalent rows.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    if name not in ESTIMATORS:
        raise BadInputError(f"unknown estimator {name!r}: use one of {', '.join(ESTIMATORS)}")
    p = {**DEFAULT_PARAMS[name], **(params or {})}
    unknown = set(p) - set(DEFAULT_PARAMS[name])
    if unknown:
        raise BadInputError(f"estimator {name} has no parameter {sorted(unknown)[0]!r} (known: "
                            f"{', '.join(sorted(DEFAULT_PARAMS[name]))})")

    def number(key: str, kind, low, example: str):
        value = p[key]
        try:
            if isinstance(value, bool) or (kind is int and isinstance(value, float)
                                           and not value.is_integer()):
                raise ValueError
            out = kind(value)
        except (TypeError, ValueError):
            out = None
        if out is None or not np.isfinite(out) or out < low or (kind is float and low > 0 and out == 0):
            raise BadInputError(f"--param {key}={value!r}: {example}")
        return out

    if name == "logistic":
        C = number("C", float, 1e-300, "give a positive number, e.g. C=1.0")
        max_iter = number("max_iter", int, 1, "give a whole number of at least 1, e.g. max_iter=300")
        if n_equivalent and n_samples:
            C *= n_equivalent / n_samples
        clf = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    else:
        sizes = p["hidden_layer_sizes"]
        sizes = [sizes] if isinstance(sizes, (int, float)) and not isinstance(sizes, bool) else sizes
        try:
            if isinstance(sizes, (str, bytes)) or any(isinstance(h, bool) or int(h) != h or h < 1
                                                      for h in sizes):
                raise ValueError
            hidden = tuple(int(h) for h in sizes)
        except (TypeError, ValueError):
            hidden = ()
        if not hidden:
            raise BadInputError(f"--param hidden_layer_sizes={p['hidden_layer_sizes']!r}: give layer "
                                "sizes of at least 1 as a JSON list, e.g. hidden_layer_sizes=[32,16]")
        alpha = number("alpha", float, 0.0, "give a number of at least 0, e.g. alpha=0.0001")
        max_iter = number("max_iter", int, 1, "give a whole number of at least 1, e.g. max_iter=200")
        clf = MLPClassifier(hidden_layer_sizes=hidden, alpha=alpha, max_iter=max_iter,
                            random_state=seed)
    scale = FunctionTransformer(partial(np.multiply, 1.0 / float(value_max or 1.0)))
    return Pipeline([("scale", scale), ("clf", clf)])


def fit_estimator(name: str, X: np.ndarray, y: np.ndarray, *, seed: int, value_max: float,
                  params: Optional[dict] = None, n_equivalent: Optional[int] = None):
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    model = make_estimator(name, seed=seed, value_max=value_max, params=params,
                           n_equivalent=n_equivalent, n_samples=len(X))
    # Small problems: a multi-threaded BLAS only fights other processes for the cores (measured
    # 0.4 s single-threaded vs 11 s on a loaded 2-core machine for the digits logistic model).
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter is recorded; fine here
        try:
            model.fit(np.asarray(X, dtype=np.float64), y)
        except ValueError as exc:  # e.g. one class only, or no rows
            raise BadInputError(f"cannot train {name} on these {len(X)} rows: "
                                f"{str(exc).splitlines()[0]}") from None
    return model


def code_identity(estimator: str) -> str:
    import sklearn

    from lineage import __version__

    return (f"lineage {__version__} lineage.training.make_estimator[{estimator}]; "
            f"scikit-learn {sklearn.__version__}; numpy {np.__version__}")


# ----------------------------------------------------------------------------- records

@dataclass(frozen=True)
class ModelInfo:
    """One model version (``ref`` is ``name:number``)."""

    id: int
    ref: str
    model: str
    number: int
    status: str  # trained | released | affected
    snapshot: str
    snapshot_digest: str
    estimator: str
    params: dict
    code_identity: str
    artifact_sha256: str
    artifact_size: int
    clean_accuracy: Optional[float]
    worst_asr: Optional[float]
    metrics: dict
    policy_version: int
    actor: str
    created_at: datetime
    affected_reason: Optional[str] = None
    reviews: tuple = field(default=())


def parse_ref(ref: str) -> tuple[str, Optional[int]]:
    name, _, number = str(ref).strip().rpartition(":")
    if not name:
        return number, None
    if not number.isdigit():
        raise BadInputError(f"model reference {ref!r}: write NAME:NUMBER, e.g. digits-clf:1")
    return name, int(number)


def find_model_version(session: Session, ref: str) -> ModelVersion:
    """``name:number``, or ``name`` for its newest version."""
    name, number = parse_ref(ref)
    query = select(ModelVersion).where(ModelVersion.model == name)
    query = (query.where(ModelVersion.number == number) if number is not None
             else query.order_by(ModelVersion.number.desc()).limit(1))
    found = session.scalars(query).first()
    if found is None:
        raise NotFoundError(f"no model version {ref!r} (see `lineage model list`)")
    return found


def _reviews(session: Session, mv: ModelVersion) -> list[ModelReview]:
    return list(session.scalars(select(ModelReview).where(ModelReview.model_version_id == mv.id)
                                .order_by(ModelReview.id)))


def _blocked_sources(session: Session, snap_reviews: list) -> list:
    from lineage.snapshots import approving_review, blocked_sources

    review = approving_review(snap_reviews)
    return blocked_sources(session, review) if review is not None else []


def _model_info(session: Session, mv: ModelVersion, *, detail: bool = False) -> ModelInfo:
    snapshot = session.get(Snapshot, mv.snapshot_id)
    snap_reviews = snapshot_reviews(session, snapshot)
    reviews = _reviews(session, mv)
    affected_reason = None
    if status_of(snap_reviews) == "revoked":
        revoke = [r for r in snap_reviews if r.passed and r.decision == "revoke"][-1]
        status = "affected"
        affected_reason = (f"snapshot {snapshot.name!r} revoked by {revoke.actor} at "
                           f"{revoke.created_at:%Y-%m-%d %H:%M:%S}: {revoke.reason}")
    elif (blocked := _blocked_sources(session, snap_reviews)):
        source, source_state, latest, _ = blocked[0]
        status = "affected"
        affected_reason = (f"source {source.name!r} of snapshot {snapshot.name!r} {source_state}"
                           + (f" by {latest.actor} at {latest.created_at:%Y-%m-%d %H:%M:%S}: "
                              f"{latest.reason}" if latest is not None else ""))
    elif any(r.passed for r in reviews):
        status = "released"
    else:
        status = "trained"
    metrics = json.loads(mv.metrics)
    return ModelInfo(
        id=mv.id, ref=f"{mv.model}:{mv.number}", model=mv.model, number=mv.number, status=status,
        snapshot=snapshot.name, snapshot_digest=mv.snapshot_digest, estimator=mv.estimator,
        params=json.loads(mv.params), code_identity=mv.code_identity,
        artifact_sha256=mv.artifact_sha256, artifact_size=mv.artifact_size,
        clean_accuracy=metrics.get("clean_accuracy"), worst_asr=metrics.get("worst_asr"),
        metrics=metrics, policy_version=mv.policy_id or 0, actor=mv.actor,
        created_at=mv.created_at, affected_reason=affected_reason,
        reviews=tuple({"id": r.id, "decision": r.decision, "passed": r.passed, "reason": r.reason,
                       "policy_version": r.policy_id or 0, "actor": r.actor,
                       "created_at": r.created_at, "report": json.loads(r.report)}
                      for r in reviews) if detail else ())


def list_models(store: Store) -> list[ModelInfo]:
    """Every model version, oldest first."""
    with store.read() as session:
        return [_model_info(session, mv) for mv in
                session.scalars(select(ModelVersion).order_by(ModelVersion.id))]


def get_model(store: Store, ref: str) -> ModelInfo:
    """One model version with its metrics, status and release reviews."""
    with store.read() as session:
        return _model_info(session, find_model_version(session, ref), detail=True)


# ----------------------------------------------------------------------------- train

def train(store: Store, *, snapshot: str, model: str, estimator: str = "logistic", seed: int = 0,
          params: Optional[dict] = None) -> ModelInfo:
    """Train ``estimator`` on an approved snapshot and register model version ``model:N``.

    Raises SnapshotNotApprovedError for a pending, rejected or revoked snapshot (nothing is
    written), IntegrityError when its rows no longer match the approved digest.
    Example: ``train(store, snapshot="digits-train-2026w48", model="digits-clf", seed=0)``
    """
    from lineage.gates import evaluation_rows, shadow_evaluation

    model = (model or "").strip()
    if not model or ":" in model:
        raise BadInputError("a model needs a name without ':' (versions are numbered for you)")
    make_estimator(estimator, seed=seed, value_max=1.0, params=params)  # validate first
    with store.read() as session:
        snap = find_snapshot(session, snapshot)
        ids, X, y = approved_rows(session, snap)
        snap_id, snap_digest = snap.id, snap.content_digest
        dataset = session.get(Dataset, snap.dataset_id)
        policy = policy_in_force(session)
        evaluation = evaluation_rows(session, policy, dataset, f"snapshot {snapshot!r}")
    fitted, accuracy, scan = shadow_evaluation(X, y, evaluation, estimator=estimator, seed=seed,
                                               sizes=policy.scan_sizes, params=params)
    buffer = io.BytesIO()
    pickle.dump(fitted, buffer, protocol=5)
    artifact = buffer.getvalue()
    sha = hashlib.sha256(artifact).hexdigest()
    worst = scan.worst
    metrics = {"clean_accuracy": round(accuracy, 6),
               "evaluation_snapshot": evaluation.name, "evaluation_rows": len(evaluation.y),
               "worst_asr": round(worst.asr, 6) if worst else 0.0,
               "worst_trigger": worst.describe if worst else None,
               "asr_corrected": scan.corrected, "n_candidates": len(scan.candidates),
               "triggers": scan.top(10), "n_train_rows": len(y)}
    full_params = {**DEFAULT_PARAMS[estimator], **(params or {}), "random_state": seed,
                   "scale": f"1/{evaluation.value_max:g}"}
    with store.write() as tx:
        session = tx.session
        snap = session.get(Snapshot, snap_id)
        if status_of(snapshot_reviews(session, snap)) != "approved":  # revoked meanwhile
            from lineage.errors import SnapshotNotApprovedError

            raise SnapshotNotApprovedError(f"snapshot {snapshot!r} lost its approval while "
                                           "training ran: nothing was recorded")
        number = (session.scalar(select(func.max(ModelVersion.number))
                                 .where(ModelVersion.model == model)) or 0) + 1
        mv = tx.add(ModelVersion(
            model=model, number=number, snapshot_id=snap_id, snapshot_digest=snap_digest,
            estimator=estimator, params=canonical(full_params), code_identity=code_identity(estimator),
            artifact_sha256=sha, artifact_size=len(artifact), metrics=canonical(metrics),
            policy_id=policy.version or None))
        tx.add_rows(ArtifactChunk, [{"model_version_id": mv.id, "seq": i // ARTIFACT_PIECE,
                                     "data": artifact[i:i + ARTIFACT_PIECE]}
                                    for i in range(0, len(artifact), ARTIFACT_PIECE)])
        tx.event("model.train", f"model {model}:{number} ({estimator}, seed {seed}) trained on "
                 f"snapshot {snapshot}: clean accuracy {accuracy:.4f}, worst trigger ASR "
                 f"{metrics['worst_asr']:.4f}", model=f"{model}:{number}", snapshot=snapshot,
                 snapshot_digest=snap_digest, artifact_sha256=sha)
        return _model_info(session, mv)


# ----------------------------------------------------------------------------- artifacts

def _artifact(session: Session, mv: ModelVersion) -> bytes:
    pieces = list(session.scalars(select(ArtifactChunk).where(ArtifactChunk.model_version_id == mv.id)
                                  .order_by(ArtifactChunk.seq)))
    data = b"".join(bytes(p.data) for p in pieces)
    if hashlib.sha256(data).hexdigest() != mv.artifact_sha256 or len(data) != mv.artifact_size:
        raise IntegrityError(f"model {mv.model}:{mv.number}: the stored artifact does not match "
                             "its recorded sha256: run `lineage verify`")
    return data


def export_model(store: Store, ref: str, path: str | Path, *, overwrite: bool = False) -> ModelInfo:
    """Write a model version's artifact (a pickled scikit-learn pipeline) to ``path``, verified.

    Example: ``export_model(store, "digits-clf:1", "digits-clf-1.pkl")``
    """
    path = Path(path)
    if path.is_dir():
        raise BadInputError(f"{path}: is a folder; give a file name, e.g. {path / 'model.pkl'}")
    if path.exists() and not overwrite:
        raise BadInputError(f"{path}: already exists (use --force to overwrite)")
    if not path.parent.exists():
        raise BadInputError(f"{path.parent}: no such folder")
    with store.read() as session:
        mv = find_model_version(session, ref)
        data = _artifact(session, mv)
        info = _model_info(session, mv)
    path.write_bytes(data)
    return info


def load_model(store: Store, ref: str):
    """The fitted estimator of a model version (artifact verified before unpickling)."""
    with store.read() as session:
        data = _artifact(session, find_model_version(session, ref))
    return pickle.loads(data)


# ----------------------------------------------------------------------------- release

def release_model(store: Store, ref: str, *, reason: Optional[str] = None) -> ModelInfo:
    """The release gate, run as the store's actor; the review is recorded pass or fail.

    Checks, against the policy in force: the snapshot is still approved (a revoked snapshot's
    models are affected and refused), clean accuracy >= ``min_clean_accuracy``, worst trigger ASR
    <= ``max_asr``, and four eyes (the releaser did not train the model). Raises GateFailedError
    listing each failed check; RefusedError for an already released version (nothing recorded).
    Example: ``release_model(open_store(actor="reviewer"), "digits-clf:1")``
    """
    with store.write() as tx:
        session = tx.session
        mv = find_model_version(session, ref)
        info = _model_info(session, mv)
        if info.status == "released":
            raise RefusedError(f"model {info.ref} is already released")
        policy = policy_in_force(session)
        checks = []
        snapshot_ok = info.status != "affected"
        checks.append({"check": "snapshot", "passed": snapshot_ok,
                       "message": f"snapshot {info.snapshot!r} approved" if snapshot_ok else
                       f"model is affected: {info.affected_reason}"})
        acc = info.clean_accuracy if info.clean_accuracy is not None else 0.0
        checks.append({"check": "clean_accuracy", "passed": acc >= policy.min_clean_accuracy,
                       "value": acc, "min": policy.min_clean_accuracy,
                       "message": f"clean accuracy {acc:.4f} "
                       f"{'>=' if acc >= policy.min_clean_accuracy else '<'} {policy.min_clean_accuracy:g}"})
        asr = info.worst_asr if info.worst_asr is not None else 1.0
        checks.append({"check": "asr", "passed": asr <= policy.max_asr, "value": asr,
                       "max": policy.max_asr, "trigger": info.metrics.get("worst_trigger"),
                       "message": f"worst trigger {info.metrics.get('worst_trigger')} ASR {asr:.4f} "
                       f"{'<=' if asr <= policy.max_asr else '>'} {policy.max_asr:g}"})
        eyes = store.actor != mv.actor
        checks.append({"check": "four_eyes", "passed": eyes, "releaser": store.actor,
                       "trainer": mv.actor, "message": f"releaser {store.actor!r} "
                       + ("did not train the model" if eyes else "trained the model")})
        passed = all(c["passed"] for c in checks)
        report = {"model": info.ref, "passed": passed, "policy_version": policy.version,
                  "policy": policy.settings(), "artifact_sha256": mv.artifact_sha256,
                  "checks": checks}
        review = tx.add(ModelReview(model_version_id=mv.id, decision="release", passed=passed,
                                    reason=reason, policy_id=policy.version or None,
                                    report=canonical(report)))
        failed = [c for c in checks if not c["passed"]]
        tx.event("model.release" if passed else "model.release-failed",
                 f"model {info.ref} " + ("released" if passed else "not released: "
                                         + "; ".join(c["message"] for c in failed)),
                 model=info.ref, review=review.id, passed=passed, policy_version=policy.version)
        result = _model_info(session, mv, detail=True)
    if not passed:
        raise GateFailedError(f"model {info.ref} not released ({len(failed)} of {len(checks)} checks "
                              f"failed; review {review.id} recorded, policy version {policy.version}): "
                              + "; ".join(f"{c['check']}: {c['message']}" for c in failed))
    return result


# ----------------------------------------------------------------------------- trace

@dataclass(frozen=True)
class ModelTrace:
    """model -> snapshot -> versions -> transformations -> ingests -> sources, every record's
    digest re-checked on the way (``verified`` lists what was checked)."""

    model: dict
    snapshot: dict
    versions: list
    transformations: list
    ingests: list
    sources: list
    verified: dict


def trace_model(store: Store, ref: str) -> ModelTrace:
    """Walk a model version back to every source, with row counts and coverage, verifying each
    record's digest, the artifact's sha256 and the snapshot's manifest digest on the way.

    Coverage is the one recorded by the snapshot's approval (recomputing it reads every row).
    Example: ``trace_model(store, "digits-clf:1")``
    """
    from lineage.gates import row_sources
    from lineage.snapshots import (_snapshot_manifest_digest, anchor_records, snapshot_info,
                                   snapshot_row_ids)

    anchors: list = []  # every record on the way, checked against the event chain at the end
    names: dict = {}

    def _check(record, name: str) -> None:
        anchors.append(record)
        names[(record.__table__.name, int(record.id))] = name

    with store.read() as session:
        mv = find_model_version(session, ref)
        _check(mv, f"model version {mv.model}:{mv.number}")
        _artifact(session, mv)
        snap = session.get(Snapshot, mv.snapshot_id)
        _check(snap, f"snapshot {snap.name!r}")
        if _snapshot_manifest_digest(snap) != snap.manifest_digest:
            raise IntegrityError(f"snapshot {snap.name!r}: its manifest does not match its digest")
        if snap.content_digest != mv.snapshot_digest:
            raise IntegrityError(f"model {mv.model}:{mv.number} was trained on digest "
                                 f"{mv.snapshot_digest[:16]}, snapshot {snap.name!r} now has "
                                 f"{snap.content_digest[:16]}")
        sinfo = snapshot_info(session, snap, detail=True)
        approval = next((r for r in reversed(sinfo.reviews) if r.decision == "approve" and r.passed), None)
        if approval is not None:
            _check(session.get(SnapshotReview, approval.id),
                   f"review {approval.id} (the approval of snapshot {snap.name!r})")
        ids = snapshot_row_ids(snap)
        versions, transformations = [], []
        v = session.get(Version, snap.version_id)
        while v is not None:
            _check(v, f"version v{v.id}" + (f" ({v.name})" if v.name else ""))
            versions.append({"id": v.id, "name": v.name, "n_rows": v.n_rows,
                             "content_digest": v.content_digest, "parent_id": v.parent_id,
                             "transformation_id": v.transformation_id, "ingest_id": v.ingest_id,
                             "actor": v.actor, "created_at": v.created_at})
            if v.transformation_id is not None:
                t = session.get(Transformation, v.transformation_id)
                _check(t, f"transformation {t.id} ({t.kind})")
                transformations.append({"id": t.id, "kind": t.kind, "actor": t.actor,
                                        "reason": t.reason, "code_identity": t.code_identity,
                                        "params": json.loads(t.params), "version": v.id,
                                        "created_at": t.created_at})
            v = session.get(Version, v.parent_id) if v.parent_id is not None else None
        per_ingest = row_sources(session, snap.dataset_id, ids)
        ingests, sources = [], {}
        for entry in per_ingest:
            if entry["ingest"] is None:
                ingests.append({"id": None, "rows": entry["rows"], "source": None})
                continue
            ing = session.get(Ingest, entry["ingest"])
            src = session.get(Source, ing.source_id)
            _check(ing, f"ingest {ing.id}")
            if src.name not in sources:
                _check(src, f"source {src.name!r}")
                sources[src.name] = {"name": src.name, "kind": src.kind, "uri": src.uri,
                                     "license": src.license, "owner": src.owner,
                                     "status": entry["status"], "rows": 0, "ingests": []}
            sources[src.name]["rows"] += entry["rows"]
            sources[src.name]["ingests"].append(ing.id)
            ingests.append({"id": ing.id, "source": src.name, "file_name": ing.file_name,
                            "file_sha256": ing.file_sha256, "n_rows": ing.n_rows,
                            "rows_in_snapshot": entry["rows"], "actor": ing.actor,
                            "created_at": ing.created_at})
        anchored = anchor_records(session, anchors, what=names)  # raises IntegrityError naming one
        info = _model_info(session, mv)
        coverage = None
        if approval is not None:
            coverage = next((g for g in approval.report.get("gates", []) if g.get("gate") == "coverage"), None)
    model = {"ref": info.ref, "status": info.status, "estimator": info.estimator,
             "params": info.params, "code_identity": info.code_identity,
             "artifact_sha256": info.artifact_sha256, "clean_accuracy": info.clean_accuracy,
             "worst_asr": info.worst_asr, "worst_trigger": info.metrics.get("worst_trigger"),
             "actor": info.actor, "created_at": info.created_at,
             "affected_reason": info.affected_reason}
    snapshot = {"name": sinfo.name, "status": sinfo.status, "n_rows": sinfo.n_rows,
                "content_digest": sinfo.content_digest, "manifest_digest": sinfo.manifest_digest,
                "actor": sinfo.actor, "created_at": sinfo.created_at,
                "approved_by": approval.actor if approval else None,
                "approval_review": approval.id if approval else None,
                "policy_version": approval.policy_version if approval else None,
                "coverage": None if coverage is None else coverage["coverage"],
                "covered_rows": None if coverage is None else coverage["n_covered"],
                "coverage_breakdown": None if coverage is None else coverage["breakdown"]}
    # Every check above raises IntegrityError when it fails, so reaching here means each passed;
    # the fields say what was checked (and the events that anchor the records).
    verified = {"records": len(anchored), "anchoring_events": sorted(set(anchored.values())),
                "records_anchored_in_chain": len(anchored) == len(anchors),
                "artifact_sha256": True, "manifest_digest": True,
                "snapshot_digest_matches_model": True,
                "approval_anchored": approval is not None}
    verified["ok"] = all(verified[k] for k in ("records_anchored_in_chain", "artifact_sha256",
                                               "manifest_digest", "snapshot_digest_matches_model"))
    return ModelTrace(model=model, snapshot=snapshot, versions=versions[::-1],
                      transformations=transformations[::-1], ingests=ingests,
                      sources=list(sources.values()), verified=verified)
