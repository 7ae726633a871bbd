"""The approval in force: what every load path (``load_snapshot``, ``train``, ``trace``) accepts.

A snapshot's rows are handed out only when it is approved now (not rejected or revoked), the
approval and the snapshot are anchored in the event chain as stored, the review records passed
gates, no source of its rows was rejected or revoked since, and every chunk read matches the
digests the approval bound.
"""

import json
from pathlib import Path
from typing import Optional

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from lineage.data.datasets import LAZY_BLOBS
from lineage.data.sources import latest_review, source_status
from lineage.errors import IntegrityError, SnapshotNotApprovedError
from lineage.review.attestations import Verified, attestation_of, verified_attestation
from lineage.review.checkpoints import InclusionProof, check_checkpoints, event_leaves
from lineage.review.keys import Trust, read_trust
from lineage.review.snapshots import (
    approving_review,
    find_snapshot,
    history_actors,
    read_snapshot_rows,
    snapshot_reviews,
    status_of,
)
from lineage.review.source_reviews import verified_source_status
from lineage.store.engine import Store, open_store
from lineage.store.files import write_atomically
from lineage.store.log import anchor_records, check_listed_present
from lineage.store.merkle import inclusion_proof, tree_root
from lineage.store.names import identity
from lineage.store.tables import Dataset, Event, Snapshot, SnapshotReview, Source, Version

# The events of a snapshot's reviews (lineage.review.gates): each lists its review record.
SNAPSHOT_DECISIONS = ("snapshot.approve", "snapshot.approve-failed", "snapshot.reject",
                      "snapshot.revoke")


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


def blocked_sources(session: Session, review: SnapshotReview,
                    trust: Optional[Trust] = None) -> list[tuple]:
    """Sources of an approved snapshot's rows (as its approval's sources gate listed them) that
    are rejected or revoked now: [(Source, status, the SourceReview that set it, rows)]. Given
    the ``trust`` file (every load and gate), only genuine reviews count
    (``verified_source_status``); without it (listings), the newest review row."""

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
        if trust is not None:
            status, latest = verified_source_status(session, source, trust)
        else:
            status, latest = source_status(session, source), latest_review(session, source.id)
        if status in ("rejected", "revoked"):
            out.append((source, status, latest, entry.get("rows")))
    return out


def check_sources(session: Session, snapshot: Snapshot, review: SnapshotReview,
                  trust: Trust) -> None:
    """Refuse a snapshot holding rows of a source rejected or revoked since its approval."""
    for source, status, latest, rows in blocked_sources(session, review, trust)[:1]:
        why = (f" (by {latest.actor}: {latest.reason})" if latest is not None and latest.reason
               else "")
        raise SnapshotNotApprovedError(
            f"snapshot {snapshot.name!r} holds {rows} rows from source {source.name!r}, now "
            f"{status}{why}: training reads only approved snapshots whose sources are still "
            "approved (revoke the snapshot and create one without them)")


def check_signed_approval(session: Session, snapshot: Snapshot, review: SnapshotReview,
                          trust: Trust) -> Verified:
    """The approval's signed statement: by a trusted key, about this review, approving this
    snapshot's content and manifest, and signed by none of the people under review (those its
    signed four-eyes report named, the creator and the transformation actors, compared as
    identities and as keys)."""
    label = f"review {review.id} (the approval of snapshot {snapshot.name!r})"
    signed = verified_attestation(session, review, trust, what=label)
    p = signed.predicate
    if (p.get("decision"), p.get("passed"), p.get("snapshot"), signed.digest,
            p.get("manifest_digest")) != ("approve", True, snapshot.name, snapshot.content_digest,
                                          snapshot.manifest_digest):
        raise IntegrityError(f"{label}: its signed statement does not approve this snapshot's "
                             "content (decision, digest or manifest differ): run `lineage verify`")
    gates = (p.get("report") or {}).get("gates") or []
    eyes = next((g for g in gates if isinstance(g, dict) and g.get("gate") == "four_eyes"), {})
    people = set(eyes.get("under_review") or {}) | {identity(snapshot.actor)}
    actors, _ = history_actors(session, session.get(Version, snapshot.version_id, options=LAZY_BLOBS))
    people |= {identity(a) for a in actors}
    if identity(signed.signer) in people or signed.keyid in trust.keyids_of(people):
        raise SnapshotNotApprovedError(
            f"snapshot {snapshot.name!r} was approved by {signed.signer!r} (key "
            f"{signed.keyid[:16]}), who is under review: four eyes need a reviewer other than "
            "its creator, its transformation actors and its ingesters")
    return signed


def approved_rows(session: Session, snapshot: Snapshot,
                  trust: Trust) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of an approved, unrevoked snapshot, verified against the digests its signed
    approval bound.

    Raises SnapshotNotApprovedError for a pending, rejected or revoked snapshot, one holding
    rows of a source rejected or revoked since, or one whose approval is unsigned, untrusted or
    by someone under review; IntegrityError when the approval or the snapshot is not the one the
    event chain recorded, a signature does not verify, or the rows no longer match.
    """
    signed = approval_in_force(session, snapshot, trust)
    return read_snapshot_rows(session, snapshot,
                              expect_manifest=signed.predicate["manifest_digest"],
                              expect_dataset=signed.predicate.get("dataset_digest"))


def approval_in_force(session: Session, snapshot: Snapshot, trust: Trust) -> Verified:
    """The snapshot's approval, checked: approved now, anchored in the event chain, signed by a
    trusted reviewer not under review, its sources still approved. Returns the verified signed
    statement. Raises SnapshotNotApprovedError or IntegrityError (see ``approved_rows``)."""
    check_listed_present(session, SnapshotReview, kinds=SNAPSHOT_DECISIONS, detail="snapshot",
                         value=snapshot.name, what=f"snapshot {snapshot.name!r}")
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
    signed = check_signed_approval(session, snapshot, review, trust)
    check_sources(session, snapshot, review, trust)
    return signed


class Bunch(dict):
    """A dict whose keys are also attributes (``b.data`` is ``b["data"]``), like scikit-learn's
    ``sklearn.utils.Bunch``: lineage's own, so that a load does not import scikit-learn, which
    costs a training script that does not use it 1.1 s and ~120 MB (the first load of a
    process took 1.1-1.7 s, the next ones 50 ms)."""

    def __getattr__(self, key: str):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value) -> None:
        self[key] = value

    def __dir__(self):
        return list(self.keys())


def load_snapshot(name: str, *, db: Optional[str] = None, store: Optional[Store] = None,
                  trust: Optional[str] = None, checkpoint: Optional[str] = None,
                  return_X_y: bool = False):
    """Training data from an approved snapshot: the only public way to get training arrays.

    Returns a ``Bunch`` (a dict whose keys are also attributes, as scikit-learn's dataset
    loaders return) with ``data`` of shape (n_samples, n_features) in the
    dataset's stored dtype, ``target`` of shape (n_samples,) int64, ``row_ids`` of shape
    (n_samples,), ``digest`` (the approved content digest), ``name``, ``feature_names``,
    ``image_shape`` and ``dataset``; or ``(data, target)`` with ``return_X_y=True``.
    ``trust`` is the trust file whose keys may sign approvals (default: the store's, else
    ``LINEAGE_TRUST`` or ./lineage-trust.json); ``checkpoint`` a checkpoint or witness file the
    log must extend (default ``LINEAGE_WITNESS``; none: not checked).
    Raises SnapshotNotApprovedError (pending, rejected, revoked, or not approved by a trusted
    reviewer other than those under review) and IntegrityError (stored rows or signatures no
    longer match what was approved).

    Example: ``X, y = load_snapshot("digits-train-2026w48", db="sqlite:///lineage.db", return_X_y=True)``
    """
    own = store is None
    store = store or open_store(db, create=False)
    try:
        trusted = read_trust(trust or store.trust)
        check_checkpoints(store, checkpoint, trust=trusted)
        with store.read() as session:
            snapshot = find_snapshot(session, name)
            ids, X, y = approved_rows(session, snapshot, trusted)
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


def prove_approval(store: Store, name: str) -> InclusionProof:
    """The inclusion proof of the event that recorded snapshot ``name``'s approval in force."""
    trust = read_trust(store.trust)
    with store.read() as session:
        snapshot = find_snapshot(session, name)
        approval_in_force(session, snapshot, trust)
        review = approving_review(snapshot_reviews(session, snapshot))
        found = anchor_records(session, [review], kinds=("snapshot.approve",))
        event_id = found[("snapshot_reviews", review.id)]
        leaves, ids = event_leaves(session)
        index = ids.index(event_id)
        digest = session.get(Event, event_id).digest
        review_id = review.id
    return InclusionProof(what=f"approval of snapshot {name!r} (review {review_id})",
                          event_id=event_id, event_digest=digest, leaf_index=index,
                          tree_size=len(leaves), root=tree_root(leaves).hex(),
                          path=tuple(h.hex() for h in inclusion_proof(leaves, index)))


def write_attestation(store: Store, name: str, path) -> dict:
    """Write the DSSE envelope of snapshot ``name``'s approval in force to ``path`` (checked
    first as every load path checks it); returns what was written.

    Example: ``write_attestation(store, "digits-train-2026w48", "train.intoto.json")``
    """
    trust = read_trust(store.trust)
    with store.read() as session:
        snapshot = find_snapshot(session, name)
        signed = approval_in_force(session, snapshot, trust)
        review = approving_review(snapshot_reviews(session, snapshot))
        envelope = attestation_of(session, review).envelope
        review_id = review.id
    path = Path(path)
    write_atomically(path, lambda tmp: tmp.write_text(envelope + "\n", encoding="utf-8"))
    return {"snapshot": name, "review": review_id, "signer": signed.signer,
            "keyid": signed.keyid, "digest": signed.digest, "path": str(path)}

