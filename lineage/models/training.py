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
from typing import Optional

from sqlalchemy import func, select

from lineage.data.datasets import check_seed
from lineage.errors import AlreadyExistsError, BadInputError, SnapshotNotApprovedError
from lineage.models.registry import (
    ARTIFACT_FORMAT,
    ARTIFACT_PIECE,
    ModelInfo,
    dump_artifact,
    model_info,
)
from lineage.poison.estimators import DEFAULT_PARAMS, estimator_identity, fit_plan, make_estimator
from lineage.review.approval import approved_rows
from lineage.review.attestations import attest, signing_key_for
from lineage.review.checkpoints import check_checkpoints
from lineage.review.evaluation import evaluation_rows, shadow_evaluation
from lineage.review.policy import policy_in_force
from lineage.review.snapshots import find_snapshot, snapshot_reviews, status_of
from lineage.store.chain import canonical
from lineage.store.engine import Store
from lineage.store.names import check_name
from lineage.store.tables import ArtifactChunk, Dataset, ExternalModel, ModelVersion, Snapshot


def train(store: Store, *, snapshot: str, model: str, estimator: str = "logistic", seed: int = 0,
          params: Optional[dict] = None, checkpoint: Optional[str] = None) -> ModelInfo:
    """Train ``estimator`` on an approved snapshot and register model version ``model:N``.

    The snapshot's approval must be signed by a trusted reviewer other than those under review,
    and the log must extend ``checkpoint`` (default ``LINEAGE_WITNESS``). Raises
    SnapshotNotApprovedError for a pending, rejected, revoked or unsigned snapshot (nothing is
    written), IntegrityError when its rows or signatures no longer match what was approved.
    Example: ``train(store, snapshot="digits-train-2026w48", model="digits-clf", seed=0)``
    """

    model = (model or "").strip()
    if not model or ":" in model:
        raise BadInputError("a model needs a name without ':' (versions are numbered for you)")
    model = check_name(model, "model name")
    seed = check_seed(seed)
    make_estimator(estimator, seed=seed, value_max=1.0, params=params)  # validate first
    key, trust = signing_key_for(store)  # the trainer signs the model version it records
    check_checkpoints(store, checkpoint, trust=trust)  # history up to it intact (or none given)
    with store.read() as session:
        if session.scalars(select(ExternalModel.id).where(ExternalModel.model == model)).first():
            raise AlreadyExistsError(f"model name {model!r} is an external model's: train under "
                                     "another name")
        snap = find_snapshot(session, snapshot)
        _, X, y = approved_rows(session, snap, trust)  # the ids are not needed: free them
        snap_id, snap_digest = snap.id, snap.content_digest
        dataset = session.get(Dataset, snap.dataset_id)
        policy = policy_in_force(session, trust)
        evaluation = evaluation_rows(session, policy, dataset, f"snapshot {snapshot!r}").covering(X)
    fitted, accuracy, scan = shadow_evaluation(X, y, evaluation, estimator=estimator, seed=seed,
                                               sizes=policy.scan_sizes, params=params)
    artifact = dump_artifact(fitted)
    sha = hashlib.sha256(artifact).hexdigest()
    worst = scan.worst
    metrics = {"clean_accuracy": round(accuracy, 6),
               "evaluation_snapshot": evaluation.name, "evaluation_rows": len(evaluation.y),
               "worst_asr": round(worst.asr, 6) if worst else 0.0,
               "worst_trigger": worst.describe if worst else None,
               "asr_corrected": scan.corrected, "n_candidates": len(scan.candidates),
               "triggers": scan.top(10), "n_train_rows": len(y)}
    full_params = {**DEFAULT_PARAMS[estimator], **(params or {}), "random_state": seed,
                   "scale": f"1/{evaluation.value_max:g}", "fit": fit_plan(estimator, X, params)}
    with store.write() as tx:
        session = tx.session
        snap = session.get(Snapshot, snap_id)
        if status_of(snapshot_reviews(session, snap)) != "approved":  # revoked meanwhile

            raise SnapshotNotApprovedError(f"snapshot {snapshot!r} lost its approval while "
                                           "training ran: nothing was recorded")
        number = (session.scalar(select(func.max(ModelVersion.number))
                                 .where(ModelVersion.model == model)) or 0) + 1
        mv = tx.add(ModelVersion(
            model=model, number=number, snapshot_id=snap_id, snapshot_digest=snap_digest,
            estimator=estimator, params=canonical(full_params), code_identity=estimator_identity(estimator),
            artifact_sha256=sha, artifact_size=len(artifact), metrics=canonical(metrics),
            policy_id=policy.version or None))
        tx.add_rows(ArtifactChunk, [{"model_version_id": mv.id, "seq": i // ARTIFACT_PIECE,
                                     "data": artifact[i:i + ARTIFACT_PIECE]}
                                    for i in range(0, len(artifact), ARTIFACT_PIECE)])
        attest(tx, key, mv, subject=f"model:{model}:{number}", digest=sha,
               predicate={"kind": "model_version", "snapshot": snapshot,
                          "snapshot_digest": snap_digest, "estimator": estimator,
                          "params": full_params, "code_identity": mv.code_identity,
                          "artifact_format": ARTIFACT_FORMAT, "metrics": metrics})
        tx.event("model.train", f"model {model}:{number} ({estimator}, seed {seed}) trained on "
                 f"snapshot {snapshot}: clean accuracy {accuracy:.4f}, worst trigger ASR "
                 f"{metrics['worst_asr']:.4f}", model=f"{model}:{number}", snapshot=snapshot,
                 snapshot_digest=snap_digest, artifact_sha256=sha)
        return model_info(session, mv)
