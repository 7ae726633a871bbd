"""The shadow evaluation: the policy's evaluation snapshot read and verified, and a reference
model trained on candidate rows measured on it (clean accuracy, baseline-corrected trigger ASR).
The approval gate and training both measure through here."""

import json
from dataclasses import dataclass
from typing import Optional

import numpy as np
from sqlalchemy.orm import Session

from lineage.errors import BadInputError
from lineage.poison.estimators import fit_estimator
from lineage.poison.trigger_scan import baseline_rates, scan_triggers
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
    image_shape: str
    value_max: float
    actor: Optional[str] = None  # who created the evaluation snapshot


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
    if not dataset.image_shape:
        raise BadInputError(f"dataset {dataset.name!r} has no image shape: the trigger scan needs one")
    if dataset.value_max is None:
        raise BadInputError(f"dataset {dataset.name!r} has no value range: the trigger scan stamps "
                            "patches at the dataset's maximum value")
    ids, X, y = read_snapshot_rows(session, snap)
    return Evaluation(name=snap.name, row_ids=ids, X=X, y=y, image_shape=dataset.image_shape,
                      value_max=float(dataset.value_max), actor=snap.actor)


def shadow_evaluation(X: np.ndarray, y: np.ndarray, evaluation: Evaluation, *, estimator: str,
                      seed: int, sizes, params: Optional[dict] = None):
    """Train ``estimator`` on (X, y) and measure it on the evaluation rows.

    Returns (model, clean accuracy, TriggerScanResult with baseline-corrected rates).
    """

    model = fit_estimator(estimator, X, y, seed=seed, value_max=evaluation.value_max, params=params)
    Xe = evaluation.X.astype(np.float64)
    accuracy = float((model.predict(Xe) == evaluation.y).mean()) if len(Xe) else 0.0
    classes = sorted(set(np.unique(evaluation.y).tolist()) | set(model.classes_.tolist()))

    def fit_reference(Xr, yr):
        # Same estimator, regularized as if it saw as many rows as the model under test.
        return fit_estimator(estimator, Xr, yr, seed=seed, value_max=evaluation.value_max,
                             params=params, n_equivalent=len(X))

    baseline = baseline_rates(fit_reference, Xe, evaluation.y, image_shape=evaluation.image_shape,
                              value=evaluation.value_max, sizes=sizes, classes=classes,
                              random_state=seed)
    scan = scan_triggers(model, Xe, evaluation.y, image_shape=evaluation.image_shape,
                         value=evaluation.value_max, sizes=sizes, target_classes=classes,
                         baseline=baseline)
    return model, accuracy, scan
