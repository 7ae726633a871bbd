"""The model registry: model versions, their derived status, their artifacts (stored in 1 MiB
pieces, exported byte for byte) and the release gate (clean accuracy and ASR on the policy's
evaluation snapshot)."""

import hashlib
import json
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
from lineage.models.external import (  # parse_ref: every model reference's parser
    export_external,
    find_external,
    get_external_model,
    load_external,
    parse_ref,
    release_external,
)
from lineage.review.approval import approval_in_force, blocked_sources
from lineage.review.attestations import attest, signing_key_for, verified_attestation
from lineage.review.checkpoints import check_checkpoints, witness
from lineage.review.keys import Trust, read_trust
from lineage.review.policy import policy_in_force
from lineage.review.snapshots import approving_review, snapshot_reviews, status_of
from lineage.store.chain import canonical
from lineage.store.engine import Store
from lineage.store.files import write_atomically
from lineage.store.log import anchor_records
from lineage.store.names import identity
from lineage.store.tables import ArtifactChunk, ModelReview, ModelVersion, Snapshot

ARTIFACT_PIECE = 1 << 20
ARTIFACT_FORMAT = "skops"
# Types beyond skops' safe defaults that lineage's own estimators hold (the scaling step's
# partial of numpy.multiply, the MLP's optimizer); a stored artifact may hold nothing else.
SKOPS_TYPES = ("functools.partial",
               "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
               "sklearn.neural_network._stochastic_optimizers.SGDOptimizer")


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


def model_blocked_sources(session: Session, snap_reviews: list,
                          trust: Optional[Trust] = None) -> list:
    review = approving_review(snap_reviews)
    return blocked_sources(session, review, trust) if review is not None else []


def model_info(session: Session, mv: ModelVersion, *, detail: bool = False,
               trust: Optional[Trust] = None) -> ModelInfo:
    """A model version's record and status; given the ``trust`` file (the release gate), its
    snapshot's sources count only genuine source reviews."""
    snapshot = session.get(Snapshot, mv.snapshot_id)
    snap_reviews = snapshot_reviews(session, snapshot)
    reviews = model_reviews(session, mv)
    affected_reason = None
    if status_of(snap_reviews) == "revoked":
        revoke = [r for r in snap_reviews if r.passed and r.decision == "revoke"][-1]
        status = "affected"
        affected_reason = (f"snapshot {snapshot.name!r} revoked by {revoke.actor} at "
                           f"{revoke.created_at:%Y-%m-%d %H:%M:%S}: {revoke.reason}")
    elif (blocked := model_blocked_sources(session, snap_reviews, trust)):
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


def is_external(store: Store, ref: str) -> bool:
    """Whether ``ref`` names an external model (``lineage.models.external``)."""
    with store.read() as session:
        return find_external(session, ref) is not None


def get_model(store: Store, ref: str):
    """One model version with its metrics, status and release reviews (an external model's
    ``ExternalModelInfo`` with its evaluations and reviews)."""
    if is_external(store, ref):
        return get_external_model(store, ref)
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
    if is_external(store, ref):  # only an approved one: quarantine holds at read
        return export_external(store, ref, path, overwrite=overwrite)
    trusted = read_trust(store.trust)
    with store.read() as session:
        mv = find_model_version(session, ref)
        data = verified_artifact(session, mv, trusted)
        info = model_info(session, mv)
    write_atomically(path, lambda tmp: tmp.write_bytes(data))
    return info


def verified_artifact(session: Session, mv: ModelVersion, trust: Trust) -> bytes:
    """A model version's artifact bytes, checked before any byte is parsed: the model record is
    anchored in the event chain as stored, its trainer signed it with a trusted key, and the
    artifact's sha256 is the one signed."""
    ref = f"{mv.model}:{mv.number}"
    anchor_records(session, [mv], kinds=("model.train",),
                   what={("model_versions", mv.id): f"model {ref}"})
    signed = verified_attestation(session, mv, trust, what=f"model {ref}")
    if signed.digest != mv.artifact_sha256:
        raise IntegrityError(f"model {ref}: its artifact digest is not the one its trainer "
                             "signed: run `lineage verify`")
    return model_artifact(session, mv)


def dump_artifact(model) -> bytes:
    """A fitted scikit-learn model as a skops file, never a pickle; byte for byte the same for
    the same model, so one seed gives one artifact digest. skops names objects and array files
    by ``id()`` and stamps zip members with the time: both are renumbered in order of first
    appearance and the times reset to 1980-01-01."""
    import io
    import re
    import zipfile

    import skops.io

    written = zipfile.ZipFile(io.BytesIO(skops.io.dumps(model)))
    schema = written.read("schema.json").decode()
    numbers: dict[str, str] = {}
    for m in re.finditer(r'"__id__": (\d+)|"file": "(\d+)\.npy"', schema):
        numbers.setdefault(m.group(1) or m.group(2), str(len(numbers)))
    schema = re.sub(r'("__id__": )(\d+)|("file": ")(\d+)(\.npy")',
                    lambda m: (m.group(1) + numbers[m.group(2)]) if m.group(1) else
                    (m.group(3) + numbers[m.group(4)] + m.group(5)), schema)
    files = {"schema.json": schema.encode()}
    for name in written.namelist():
        if name != "schema.json":
            stem = name[:-len(".npy")] if name.endswith(".npy") else name
            files[f"{numbers.get(stem, stem)}.npy" if name.endswith(".npy") else name] = \
                written.read(name)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as fixed:
        for name in sorted(files):
            fixed.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), files[name],
                           compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def load_artifact(data: bytes, *, what: str):
    """Parse a skops artifact, allowing only the types lineage itself stores (``SKOPS_TYPES``
    beyond skops' own safe defaults); anything else, a pickle included, is refused unparsed."""
    import skops.io

    if data[:4] != b"PK\x03\x04":
        raise IntegrityError(f"{what}: the artifact is not a skops file (a pickle from an older "
                             "lineage, or replaced behind the store's back); it is never "
                             "unpickled: train the model again")
    try:
        untrusted = skops.io.get_untrusted_types(data=data)
    except Exception as exc:  # a corrupt zip or schema: refuse, never guess
        raise IntegrityError(f"{what}: the artifact cannot be read as skops ({exc})") from None
    unknown = sorted(set(untrusted) - set(SKOPS_TYPES))
    if unknown:
        raise IntegrityError(f"{what}: the artifact holds types lineage never stores "
                             f"({', '.join(unknown)}): refused unparsed")
    return skops.io.loads(data, trusted=untrusted)


def load_model(store: Store, ref: str, *, trust: Optional[str] = None,
               checkpoint: Optional[str] = None):
    """The fitted estimator of a model version: its snapshot's approval still in force, the
    model record chain-anchored and signed by a trusted trainer, the artifact's digest the
    signed one, the log consistent with ``checkpoint`` (default ``LINEAGE_WITNESS``); then
    parsed as skops with only the types lineage stores (never unpickled). An external model is
    loaded only once a signed review approved it (``lineage.models.external.load_external``):
    a quarantined, rejected or revoked one is refused (RefusedError, exit 4)."""
    if is_external(store, ref):
        return load_external(store, ref, trust=trust, checkpoint=checkpoint)
    trusted = read_trust(trust or store.trust)
    check_checkpoints(store, checkpoint, trust=trusted)
    with store.read() as session:
        mv = find_model_version(session, ref)
        approval_in_force(session, session.get(Snapshot, mv.snapshot_id), trusted)
        data = verified_artifact(session, mv, trusted)
        what = f"model {mv.model}:{mv.number}"
    return load_artifact(data, what=what)


def release_model(store: Store, ref: str, *, reason: Optional[str] = None) -> ModelInfo:
    """The release gate, run as the store's actor; the review is recorded pass or fail.

    Checks, against the policy in force: the snapshot is still approved (a revoked snapshot's
    models are affected and refused), clean accuracy >= ``min_clean_accuracy``, worst trigger ASR
    <= ``max_asr``, and four eyes (the releaser did not train the model). Raises GateFailedError
    listing each failed check; RefusedError for an already released version (nothing recorded).
    An external model goes through ``lineage.models.external.release_external`` (approved,
    its evaluation passed under the policy in force, four eyes; refused writes nothing).
    Example: ``release_model(open_store(actor="reviewer"), "digits-clf:1")``
    """
    if is_external(store, ref):
        return release_external(store, ref, reason=reason)
    key, trust = signing_key_for(store)
    with store.write() as tx:
        session = tx.session
        mv = find_model_version(session, ref)
        info = model_info(session, mv, trust=trust)
        if info.status == "released":
            raise RefusedError(f"model {info.ref} is already released")
        policy = policy_in_force(session, trust)
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
        same_person = identity(store.actor) == identity(mv.actor)
        same_key = key.keyid in trust.keyids_of([mv.actor])
        eyes = not same_person and not same_key
        checks.append({"check": "four_eyes", "passed": eyes, "releaser": store.actor,
                       "releaser_keyid": key.keyid, "trainer": mv.actor,
                       "message": f"releaser {store.actor!r} " + (
                           "did not train the model" if eyes else "trained the model"
                           if same_person else f"signs with a key trusted as {mv.actor!r}, "
                           "who trained the model")})
        passed = all(c["passed"] for c in checks)
        report = {"model": info.ref, "passed": passed, "policy_version": policy.version,
                  "policy": policy.settings(), "artifact_sha256": mv.artifact_sha256,
                  "checks": checks}
        review = tx.add(ModelReview(model_version_id=mv.id, decision="release", passed=passed,
                                    reason=reason, policy_id=policy.version or None,
                                    report=canonical(report)))
        attest(tx, key, review, subject=f"model:{info.ref}", digest=mv.artifact_sha256,
               predicate={"decision": "release", "passed": passed, "model": info.ref,
                          "reason": reason, "policy_version": policy.version, "report": report})
        failed = [c for c in checks if not c["passed"]]
        tx.event("model.release" if passed else "model.release-failed",
                 f"model {info.ref} " + ("released" if passed else "not released: "
                                         + "; ".join(c["message"] for c in failed)),
                 model=info.ref, review=review.id, passed=passed, policy_version=policy.version)
        result = model_info(session, mv, detail=True)
    witness(store)
    if not passed:
        raise GateFailedError(f"model {info.ref} not released ({len(failed)} of {len(checks)} checks "
                              f"failed; review {review.id} recorded, policy version {policy.version}): "
                              + "; ".join(f"{c['check']}: {c['message']}" for c in failed))
    return result
