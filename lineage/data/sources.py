"""Sources: where rows come from, and the reviews that set their status.

A source's status is never stored: it is the newest review's decision, or, with no review,
``quarantined`` for external kinds and ``unreviewed`` for internal ones. Rows from a quarantined
source may be ingested (they stay in quarantine: snapshot gates refuse them); a rejected or revoked
source takes no more rows.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from lineage.data.kinds import Decision, SourceKind  # noqa: F401 (re-exported)
from lineage.errors import AlreadyExistsError, BadInputError, NotFoundError
from lineage.store.engine import Store
from lineage.store.names import check_name
from lineage.store.tables import Source, SourceReview

EXTERNAL_KINDS = {k.value for k in SourceKind} - {SourceKind.internal.value}


STATUS_OF_DECISION = {"approve": "approved", "reject": "rejected", "revoke": "revoked"}


@dataclass(frozen=True)
class SourceInfo:
    id: int
    name: str
    kind: str
    uri: Optional[str]
    license: Optional[str]
    owner: Optional[str]
    status: str
    actor: str
    created_at: datetime
    reviewed_by: Optional[str] = None
    review_reason: Optional[str] = None


def status_from(source: Source, review: Optional[SourceReview]) -> str:
    if review is not None:
        return STATUS_OF_DECISION[review.decision]
    return "quarantined" if source.kind in EXTERNAL_KINDS else "unreviewed"


def latest_review(session: Session, source_id: int) -> Optional[SourceReview]:
    return session.scalars(select(SourceReview).where(SourceReview.source_id == source_id)
                           .order_by(SourceReview.id.desc()).limit(1)).first()


def source_info(session: Session, source: Source) -> SourceInfo:
    review = latest_review(session, source.id)
    return SourceInfo(id=source.id, name=source.name, kind=source.kind, uri=source.uri,
                      license=source.license, owner=source.owner, status=status_from(source, review),
                      actor=source.actor, created_at=source.created_at,
                      reviewed_by=review.actor if review else None,
                      review_reason=review.reason if review else None)


def find_source(session: Session, name: str) -> Source:
    source = session.scalars(select(Source).where(Source.name == name)).first()
    if source is None:
        raise NotFoundError(f"no source named {name!r} (see `lineage source list`)")
    return source


def add_source(store: Store, name: str, *, kind: str, uri: Optional[str] = None,
               license: Optional[str] = None, owner: Optional[str] = None) -> SourceInfo:
    """Register a source. External kinds start quarantined until a review approves them.

    Example: ``add_source(store, "crowd-batch-7", kind="crowdsourced", uri="s3://...")``
    """
    name = (name or "").strip()
    if not name:
        raise BadInputError("a source needs a name")
    name = check_name(name, "source name")
    license = None if license is None else check_name(license, "license")
    owner = None if owner is None else check_name(owner, "owner")
    kind = SourceKind(kind).value if kind in {k.value for k in SourceKind} else None
    if kind is None:
        raise BadInputError(f"unknown source kind; use one of: {', '.join(k.value for k in SourceKind)}")
    with store.write() as tx:
        if tx.session.scalars(select(Source).where(Source.name == name)).first():
            raise AlreadyExistsError(f"a source named {name!r} already exists")
        source = tx.add(Source(name=name, kind=kind, uri=uri, license=license, owner=owner))
        tx.event("source.add", f"source {name} added ({kind})", source=name)
        return source_info(tx.session, source)


def list_sources(store: Store) -> list[SourceInfo]:
    """All sources with their current status, oldest first."""
    with store.read() as session:
        return [source_info(session, s) for s in session.scalars(select(Source).order_by(Source.id))]


def get_source(store: Store, name: str) -> SourceInfo:
    with store.read() as session:
        return source_info(session, find_source(session, name))


def source_status(session: Session, source: Source) -> str:
    return status_from(source, latest_review(session, source.id))
