"""The event log: what happened, who did it, when, in order."""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Optional

from sqlalchemy import select

from lineage.store import Store
from lineage.tables import Event


@dataclass(frozen=True)
class EventInfo:
    id: int
    kind: str
    actor: str
    created_at: datetime
    summary: str
    digest: str
    details: dict


def list_events(store: Store, *, limit: Optional[int] = None, kind: Optional[str] = None) -> list[EventInfo]:
    """Events newest first (all, or the ``limit`` newest; optionally of one ``kind``)."""
    with store.read() as session:
        query = select(Event).order_by(Event.id.desc())
        if kind:
            query = query.where(Event.kind == kind)
        if limit:
            query = query.limit(limit)
        out = []
        for ev in session.scalars(query):
            payload = json.loads(ev.payload)
            payload.pop("records", None)
            out.append(EventInfo(id=ev.id, kind=ev.kind, actor=ev.actor, created_at=ev.created_at,
                                 summary=payload.pop("summary", ""), digest=ev.digest,
                                 details=payload))
        return out
