"""Source reviews: the signed decisions (approve, reject, revoke) that set a source's status."""

from typing import Optional

from sqlalchemy.orm import Session

from lineage.data.sources import (
    STATUS_OF_DECISION,
    SourceInfo,
    find_source,
    latest_review,
    source_info,
    status_from,
)
from lineage.errors import BadInputError, IntegrityError, LineageError, RefusedError
from lineage.review.attestations import attest, signing_key_for, verified_attestation
from lineage.review.checkpoints import witness
from lineage.review.keys import Trust
from lineage.store.engine import Store
from lineage.store.log import anchor_records, check_listed_present
from lineage.store.tables import Source, SourceReview


def verified_source_status(session: Session, source: Source,
                           trust: Trust) -> tuple[str, Optional[SourceReview]]:
    """A source's status as the gates and the loads decide by it: set by its newest review,
    which must be one the event chain records and a trusted key signed about this source and
    decision. Fails closed (IntegrityError) when it is not - inserted or edited through the
    database, its signature deleted or broken, signed by nobody trusted - rather than falling
    back to an older review: otherwise deleting a revocation's signature would undo the
    revocation. Likewise when a review the chain recorded is gone. A signed review recorded
    again (``review_source``) is the way out. Returns (status, that review or None: a source
    never reviewed has its kind's default)."""
    what = f"source {source.name!r}"
    check_listed_present(session, SourceReview, kinds=("source.review",), detail="source",
                         value=source.name, what=what)
    review = latest_review(session, source.id)
    if review is None:
        return status_from(source, None), None
    what = f"review {review.id} of source {source.name!r}"
    try:
        anchor_records(session, [review], kinds=("source.review",),
                       what={("source_reviews", review.id): what})
        signed = verified_attestation(session, review, trust, what=what)
    except LineageError as exc:  # IntegrityError or RefusedError
        raise IntegrityError(f"{exc}; the source's status is unknown until it is "
                             "reviewed again (`lineage source review`)") from None
    p = signed.predicate
    if (p.get("decision"), p.get("source"), signed.digest) != (
            review.decision, source.name, source.record_digest):
        raise IntegrityError(f"{what}: its signed statement is about another source or decision; "
                             "the source's status is unknown until it is reviewed again "
                             "(`lineage source review`)")
    return STATUS_OF_DECISION[review.decision], review


def review_source(store: Store, name: str, *, decision: str,
                  reason: Optional[str] = None) -> SourceInfo:
    """Record a signed review (approve, reject or revoke) of a source by the store's actor: the
    statement's subject is the source record's digest (name, kind, uri, license, owner).

    Example: ``review_source(store, "crowd-batch-7", decision="approve", reason="license checked")``
    """
    if decision not in STATUS_OF_DECISION:
        raise BadInputError("a review decision is one of: approve, reject, revoke")
    if decision in ("reject", "revoke") and not (reason or "").strip():
        raise BadInputError(f"--reason is required to {decision} a source")
    key, _ = signing_key_for(store)
    with store.write() as tx:
        source = find_source(tx.session, name)
        current = status_from(source, latest_review(tx.session, source.id))
        if decision == "revoke" and current != "approved":
            raise RefusedError(f"source {name!r} is {current}: only an approved source can be revoked")
        review = tx.add(SourceReview(source_id=source.id, decision=decision, reason=reason))
        attest(tx, key, review, subject=f"source:{source.name}", digest=source.record_digest,
               predicate={"decision": decision, "source": source.name, "kind": source.kind,
                          "uri": source.uri, "license": source.license, "reason": reason})
        tx.event("source.review", f"source {name} {STATUS_OF_DECISION[decision]}",
                 source=name, decision=decision)
        info = source_info(tx.session, source)
    witness(store)
    return info
