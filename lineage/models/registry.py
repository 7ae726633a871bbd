"""The model registry: model versions, their derived status, their artifacts (stored in 1 MiB
pieces, exported byte for byte) and the release gate (clean accuracy and ASR on the policy's
evaluation snapshot)."""

import hashlib
import json
import pickle
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from lineage.errors import (
    BadInputError,
    GateFailedError,
    IntegrityError,
    NotFoundError,
    RefusedError,
)
from lineage.review.approval import blocked_sources
from lineage.review.policy import policy_in_force
from lineage.review.snapshots import approving_review, snapshot_reviews, status_of
from lineage.store.chain import canonical
from lineage.store.engine import Store
from lineage.store.files import write_atomically
from lineage.store.tables import ArtifactChunk, ModelReview, ModelVersion, Snapshot

ARTIFACT_PIECE = 1 << 20


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


def model_reviews(session: Session, mv: ModelVersion) -> list[ModelReview]:
    return list(session.scalars(select(ModelReview).where(ModelReview.model_version_id == mv.id)
                                .order_by(ModelReview.id)))


def model_blocked_sources(session: Session, snap_reviews: list) -> list:

    review = approving_review(snap_reviews)
    return blocked_sources(session, review) if review is not None else []


def model_info(session: Session, mv: ModelVersion, *, detail: bool = False) -> ModelInfo:
    snapshot = session.get(Snapshot, mv.snapshot_id)
    snap_reviews = snapshot_reviews(session, snapshot)
    reviews = model_reviews(session, mv)
    affected_reason = None
    if status_of(snap_reviews) == "revoked":
        revoke = [r for r in snap_reviews if r.passed and r.decision == "revoke"][-1]
        status = "affected"
        affected_reason = (f"snapshot {snapshot.name!r} revoked by {revoke.actor} at "
                           f"{revoke.created_at:%Y-%m-%d %H:%M:%S}: {revoke.reason}")
    elif (blocked := model_blocked_sources(session, snap_reviews)):
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
        return [model_info(session, mv) for mv in
                session.scalars(select(ModelVersion).order_by(ModelVersion.id))]


def get_model(store: Store, ref: str) -> ModelInfo:
    """One model version with its metrics, status and release reviews."""
    with store.read() as session:
        return model_info(session, find_model_version(session, ref), detail=True)


def model_artifact(session: Session, mv: ModelVersion) -> bytes:
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
        data = model_artifact(session, mv)
        info = model_info(session, mv)
    write_atomically(path, lambda tmp: tmp.write_bytes(data))
    return info


def load_model(store: Store, ref: str):
    """The fitted estimator of a model version (artifact verified before unpickling)."""
    with store.read() as session:
        data = model_artifact(session, find_model_version(session, ref))
    return pickle.loads(data)


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
        info = model_info(session, mv)
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
        result = model_info(session, mv, detail=True)
    if not passed:
        raise GateFailedError(f"model {info.ref} not released ({len(failed)} of {len(checks)} checks "
                              f"failed; review {review.id} recorded, policy version {policy.version}): "
                              + "; ".join(f"{c['check']}: {c['message']}" for c in failed))
    return result
