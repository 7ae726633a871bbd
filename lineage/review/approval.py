"""The approval in force: what every load path (``load_snapshot``, ``train``, ``trace``) accepts.

A snapshot's rows are handed out only when it is approved now (not rejected or revoked), the
approval and the snapshot are anchored in the event chain as stored, the review records passed
gates, no source of its rows was rejected or revoked since, and every chunk read matches the
digests the approval bound.
"""

import json
from typing import Optional

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from lineage.data.sources import latest_review, source_status
from lineage.errors import IntegrityError, SnapshotNotApprovedError
from lineage.review.snapshots import (
    approving_review,
    find_snapshot,
    read_snapshot_rows,
    snapshot_reviews,
    status_of,
)
from lineage.store.engine import Store, open_store
from lineage.store.log import anchor_records
from lineage.store.tables import Dataset, Snapshot, SnapshotReview, Source


def check_approval(session: Session, snapshot: Snapshot, review: SnapshotReview) -> None:
    """The approval in force and the snapshot it approves must be what the chain recorded, and
    the review must say that every gate passed."""
    label = f"review {review.id} (the approval of snapshot {snapshot.name!r})"
    try:
        report = json.loads(review.report)
    except ValueError:
        report = None
    anchor_records(session, [review, snapshot], kinds=("snapshot.approve", "snapshot.create"),
                   what={("snapshot_reviews", review.id): label,
                         ("snapshots", snapshot.id): f"snapshot {snapshot.name!r}"})
    gates = report.get("gates") if isinstance(report, dict) else None
    if (report.get("passed") is not True if isinstance(report, dict) else True) or not gates or not all(
            isinstance(g, dict) and g.get("passed") is True for g in gates):
        raise IntegrityError(f"{label} does not record passed gates: run `lineage verify`")


def blocked_sources(session: Session, review: SnapshotReview) -> list[tuple]:
    """Sources of an approved snapshot's rows (as its approval's sources gate listed them) that
    are rejected or revoked now: [(Source, status, its newest SourceReview, rows)]."""

    try:
        report = json.loads(review.report)
    except ValueError:
        return []
    gate = next((g for g in report.get("gates", []) if isinstance(g, dict)
                 and g.get("gate") == "sources"), None)
    out = []
    for entry in (gate or {}).get("sources", []):
        if not entry.get("source"):
            continue
        source = session.scalars(select(Source).where(Source.name == entry["source"])).first()
        if source is None:
            continue
        status = source_status(session, source)
        if status in ("rejected", "revoked"):
            out.append((source, status, latest_review(session, source.id), entry.get("rows")))
    return out


def check_sources(session: Session, snapshot: Snapshot, review: SnapshotReview) -> None:
    """Refuse a snapshot holding rows of a source rejected or revoked since its approval."""
    for source, status, latest, rows in blocked_sources(session, review)[:1]:
        why = (f" (by {latest.actor}: {latest.reason})" if latest is not None and latest.reason
               else "")
        raise SnapshotNotApprovedError(
            f"snapshot {snapshot.name!r} holds {rows} rows from source {source.name!r}, now "
            f"{status}{why}: training reads only approved snapshots whose sources are still "
            "approved (revoke the snapshot and create one without them)")


def approved_rows(session: Session, snapshot: Snapshot) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of an approved, unrevoked snapshot, verified against the approval's digests.

    Raises SnapshotNotApprovedError for a pending, rejected or revoked snapshot, or one holding
    rows of a source rejected or revoked since; IntegrityError when the approval or the snapshot
    is not the one the event chain recorded, or the rows no longer match.
    """
    review = approval_in_force(session, snapshot)
    bound = json.loads(review.report).get("manifest_digest")
    return read_snapshot_rows(session, snapshot, expect_manifest=bound)


def approval_in_force(session: Session, snapshot: Snapshot) -> SnapshotReview:
    """The snapshot's approval, checked: approved now, anchored in the event chain, its sources
    still approved. Raises SnapshotNotApprovedError or IntegrityError (see ``approved_rows``)."""
    reviews = snapshot_reviews(session, snapshot)
    status = status_of(reviews)
    if status != "approved":
        hint = {"pending": "approve it first with `lineage snapshot approve`",
                "rejected": "it was rejected; create and review a new snapshot",
                "revoked": "its approval was revoked; create and review a new snapshot"}[status]
        raise SnapshotNotApprovedError(f"snapshot {snapshot.name!r} is {status}: training reads "
                                       f"only approved snapshots ({hint})")
    review = approving_review(reviews)
    check_approval(session, snapshot, review)
    if review.content_digest != snapshot.content_digest:
        raise IntegrityError(f"snapshot {snapshot.name!r}: its content digest is not the one "
                             f"review {review.id} approved: run `lineage verify`")
    check_sources(session, snapshot, review)
    return review


def load_snapshot(name: str, *, db: Optional[str] = None, store: Optional[Store] = None,
                  return_X_y: bool = False):
    """Training data from an approved snapshot: the only public way to get training arrays.

    Returns a ``sklearn.utils.Bunch`` with ``data`` of shape (n_samples, n_features) in the
    dataset's stored dtype, ``target`` of shape (n_samples,) int64, ``row_ids`` of shape
    (n_samples,), ``digest`` (the approved content digest), ``name``, ``feature_names``,
    ``image_shape`` and ``dataset``; or ``(data, target)`` with ``return_X_y=True``.
    Raises SnapshotNotApprovedError (pending, rejected or revoked) and IntegrityError (stored
    rows no longer match the approved digest).

    Example: ``X, y = load_snapshot("digits-train-2026w48", db="sqlite:///lineage.db", return_X_y=True)``
    """
    from sklearn.utils import Bunch

    own = store is None
    store = store or open_store(db)
    try:
        with store.read() as session:
            snapshot = find_snapshot(session, name)
            ids, X, y = approved_rows(session, snapshot)
            dataset = session.get(Dataset, snapshot.dataset_id)
            digest, dataset_name, image_shape = snapshot.content_digest, dataset.name, dataset.image_shape
    finally:
        if own:
            store.close()
    if return_X_y:
        return X, y
    return Bunch(data=X, target=y, row_ids=ids, digest=digest, name=name, dataset=dataset_name,
                 image_shape=image_shape,
                 feature_names=[f"pixel_{i}" for i in range(X.shape[1])])
