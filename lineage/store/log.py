"""The event log: what happened, who did it, when, in order."""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from lineage.errors import BadInputError, IntegrityError
from lineage.store.chain import GENESIS, event_digest, event_payload, stored_record_digest
from lineage.store.engine import Store
from lineage.store.tables import Event

LIMIT_MAX = 2**63 - 1  # a LIMIT both databases take (PostgreSQL's is a bigint)


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
    if limit is not None and limit < 0:
        raise BadInputError(f"--limit {limit} is negative: give the number of newest events to "
                            "show (0 for all)")
    if limit is not None and limit > LIMIT_MAX:
        raise BadInputError(f"--limit {limit} is out of range: give at most {LIMIT_MAX} (0 for all)")
    with store.read() as session:
        query = select(Event).order_by(Event.id.desc())
        if kind:
            query = query.where(Event.kind == kind)
        if limit:
            query = query.limit(limit)
        out = []
        if kind and session.scalars(select(Event.id).where(Event.kind == kind).limit(1)).first() is None:
            kinds = sorted(session.scalars(select(Event.kind).distinct()))
            raise BadInputError(f"no events of kind {kind!r} in this store (its kinds: "
                                f"{', '.join(kinds) or 'none'})")
        for ev in session.scalars(query):
            payload = dict(event_payload(ev.id, ev.kind, ev.payload))
            payload.pop("records", None)
            out.append(EventInfo(id=ev.id, kind=ev.kind, actor=ev.actor, created_at=ev.created_at,
                                 summary=payload.pop("summary", ""), digest=ev.digest,
                                 details=payload))
        return out


def recomputed_digest(record) -> str:
    """chain.record_digest of an ORM record's columns as stored now (not its digest column)."""
    table = record.__table__
    return stored_record_digest(table.name, {c.name: getattr(record, c.key) for c in table.columns})


def check_listed_present(session: Session, model, *, kinds: tuple[str, ...],
                         detail: Optional[str] = None, value: Optional[str] = None,
                         what: str) -> None:
    """Every ``model`` record that an event of ``kinds`` (whose ``detail`` is ``value``, when
    given) listed is still stored: a decision the chain recorded (a revocation, a rejection, a
    stricter policy) cannot be undone by deleting its record. IntegrityError names the first one
    gone. (Deleting the event too breaks the chain, or, for the chain's last events, the log's
    extension of a checkpoint.)"""
    table = model.__table__.name
    listed: dict[int, int] = {}
    query = select(Event.id, Event.kind, Event.payload).where(Event.kind.in_(kinds))
    needle = json.dumps(value, ensure_ascii=False)  # as the payload spells it (chain.canonical)
    for ev in session.execute(query.order_by(Event.id)):
        if detail is not None and needle not in ev.payload:  # cheap test before parsing
            continue
        try:
            payload = event_payload(ev.id, ev.kind, ev.payload)
        except IntegrityError:
            continue  # not a listing the store wrote (verify names it)
        if detail is not None and payload.get(detail) != value:
            continue
        for entry in payload.get("records", {}).get(table, []):
            listed.setdefault(int(entry[0]), ev.id)
    if not listed:
        return
    present = set(session.scalars(select(model.id).where(model.id.in_(sorted(listed)))))
    gone = sorted(set(listed) - present)
    if gone:
        raise IntegrityError(f"{what}: {table} record {gone[0]}, which event {listed[gone[0]]} "
                             "recorded, is gone (deleted behind the store's back): run "
                             "`lineage verify`")


def anchor_records(session: Session, records: list, *, kinds: Optional[tuple[str, ...]] = None,
                   what: Optional[dict] = None) -> dict:
    """Require that the event chain anchors each record as it is stored now.

    A record is anchored when an event lists ``[id, digest]`` for its table in its payload's
    ``records`` (``store.Tx._finish``), that digest equals the record's recomputed digest (and its
    ``record_digest`` column), and the event's own digest recomputes and follows its predecessor.
    ``kinds`` limits the events searched (cheap: e.g. only ``snapshot.approve`` events); ``what``
    maps ``(table, id)`` to the name used in errors. Returns ``{(table, id): event id}``; raises
    IntegrityError naming the first record that is not anchored (inserted or changed behind the
    store's back).

    The chain has no secret: this refuses a record inserted or edited through the database, not
    one written together with a well-formed event appended at the chain's head; for that, compare
    the head with one noted elsewhere (``lineage verify --expect``).
    """
    what = what or {}
    wanted, columns = {}, {}
    for record in records:
        table = record.__table__.name
        key = (table, int(record.id))
        wanted[key] = recomputed_digest(record)
        columns[key] = record.record_digest
    found: dict = {}
    query = select(Event.id, Event.prev_digest, Event.digest, Event.kind, Event.actor,
                   Event.created_at, Event.payload)
    if kinds:
        query = query.where(Event.kind.in_(kinds))
    digests = set(wanted.values())
    for ev in session.execute(query.order_by(Event.id)):
        if not any(d in ev.payload for d in digests):  # cheap substring test before parsing
            continue
        try:
            listed = event_payload(ev.id, ev.kind, ev.payload).get("records", {})
        except IntegrityError:
            continue  # not a listing the store wrote: it anchors nothing (verify names it)
        hits = [(t, int(i)) for t, entries in listed.items() for i, d in entries
                if wanted.get((t, int(i))) == d]
        if not hits:
            continue
        _check_event(session, ev, what.get(hits[0], f"{hits[0][0]} record {hits[0][1]}"))
        for key in hits:
            found.setdefault(key, ev.id)
        if len(found) == len(wanted):
            break
    for key in wanted:
        if key not in found:
            name = what.get(key, f"{key[0]} record {key[1]}")
            raise IntegrityError(f"{name} is not recorded in the event chain as stored (inserted "
                                 "or changed behind the store's back): run `lineage verify`")
        if columns[key] != wanted[key]:
            raise IntegrityError(f"{what.get(key, f'{key[0]} record {key[1]}')} does not match its "
                                 "digest column: run `lineage verify`")
    return found


def _check_event(session: Session, ev, names: str) -> None:
    """The event recomputes to its digest, follows its predecessor and is followed by its
    successor (an event rewritten in place with its digest recomputed breaks the next link),
    else IntegrityError."""
    if event_digest(id=ev.id, prev_digest=ev.prev_digest, kind=ev.kind, actor=ev.actor,
                    created_at=ev.created_at, payload=ev.payload) != ev.digest:
        raise IntegrityError(f"event {ev.id} ({ev.kind}), which records {names}, does not match "
                             "its digest: run `lineage verify`")
    before = (session.scalar(select(Event.digest).where(Event.id == ev.id - 1)) if ev.id > 1
              else GENESIS)
    if before != ev.prev_digest:
        raise IntegrityError(f"event {ev.id} ({ev.kind}) does not follow the event before it: "
                             "run `lineage verify`")
    after = session.scalar(select(Event.prev_digest).where(Event.id == ev.id + 1))
    if after is not None and after != ev.digest:
        raise IntegrityError(f"event {ev.id + 1} does not follow event {ev.id} ({ev.kind}): "
                             "run `lineage verify`")


def record_is(record, digest: Optional[str]) -> bool:
    """Whether ``record`` as stored now (its digest recomputed, and its digest column) has
    ``digest``."""
    return recomputed_digest(record) == digest and record.record_digest == digest


def check_first_listing(record, listed: dict) -> None:
    """IntegrityError unless ``record`` is what ``listed`` (``chain_listings``) says the chain
    first recorded for it."""
    table = record.__table__.name
    if not record_is(record, listed.get(table, {}).get(int(record.id))):
        raise IntegrityError(f"{table} record {record.id} was changed after the event chain "
                             "recorded it: run `lineage verify`")


def chain_listings(session: Session, wanted: dict) -> dict:
    """``{table: {id: digest}}``: the record digest the event chain first lists for each record
    of ``wanted`` (``{table: ids}``), in one walk. A record's digest column can be rewritten
    with the record (the algorithm has no secret); its first listing cannot without rewriting
    the chain from there on, which ``verify --expect`` catches. So the whole chain is walked, as
    verify walks it but without the records: ids 1, 2, ... with no gap, each event following the
    one before and recomputing to its digest (an earlier listing deleted, renumbered or edited
    out of the way would otherwise let a later, forged one count as the first). Events whose
    payload is not a listing the store writes list nothing. IntegrityError names the first id
    the chain does not list."""
    wanted = {table: {int(i) for i in ids} for table, ids in wanted.items()}
    found: dict = {table: {} for table in wanted}
    left = sum(len(ids) for ids in wanted.values())
    prev, expected_id = GENESIS, 1
    query = select(Event.id, Event.prev_digest, Event.digest, Event.kind, Event.actor,
                   Event.created_at, Event.payload).order_by(Event.id)
    markers = [f'"{table}":' for table in wanted]
    # Plain tuples unpacked: attribute access on each row cost a third of the walk.
    for event_id, prev_digest, digest, kind, actor, created_at, payload in session.execute(query):
        if event_id != expected_id or prev_digest != prev or event_digest(
                id=event_id, prev_digest=prev_digest, kind=kind, actor=actor,
                created_at=created_at, payload=payload) != digest:
            raise IntegrityError(f"the event chain is broken at event {event_id} ({kind}): run "
                                 "`lineage verify`")
        prev, expected_id = digest, expected_id + 1
        if left and any(m in payload for m in markers):
            try:
                listed = event_payload(event_id, kind, payload).get("records", {})
            except IntegrityError:
                continue
            for table, ids in wanted.items():
                for i, d in listed.get(table, []):
                    if i in ids and i not in found[table]:
                        found[table][i] = d
                        left -= 1
    for table, ids in wanted.items():
        missing = ids - found[table].keys()
        if missing:
            raise IntegrityError(f"{table} record {min(missing)} is not recorded in the event "
                                 "chain (inserted behind the store's back): run `lineage verify`")
    return found
