"""``lineage verify``: recompute the event chain and every record's content digest.

The chain proves the order and content of events; each event lists the digests of the records
its write inserted, so a record changed, added or removed behind the store's back (triggers
dropped, bytes edited in the file) no longer matches the chain and is named. Versions' content
digests are checked by a hook from the data layer (``deltas.check_content_digests``), in the
same read transaction.

``fast`` skips the chunk payloads: a chunk's record digest column must still be the digest the
chain recorded, but its blobs (and the ``blob_hash`` naming their hash) are not re-read and
re-hashed (what makes a full verify cost a hash pass over every stored byte: BLAKE3, or sha256
for chunks written before migration 0010), so a payload edited behind the store's back is found
only by a full verify or by loading it.
"""

import json
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from lineage.errors import BadInputError, IntegrityError
from lineage.store.chain import (
    EFFECT_CODES,
    GENESIS,
    NONE,
    effects_rows_digest,
    event_digest,
    event_payload,
    stored_record_digest,
)
from lineage.store.chunks import check_chunk_layout
from lineage.store.engine import Store
from lineage.store.tables import RECORD_TABLES, Event, RowEffect, Transformation, Version


@dataclass(frozen=True)
class VerifyReport:
    events: int
    records: int
    head_digest: str
    fast: bool = False  # chunk payloads not re-read
    chunk_rows: int = 0  # rows whose chunk payloads were re-hashed
    chunk_bytes: int = 0
    versions: int = 0  # content digests recomputed (the hook's count)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Chunk payload bytes re-hashed a second (0 with ``fast``)."""
        return self.chunk_bytes / self.seconds if self.seconds > 0 else 0.0


def verify_store(store: Store, *, progress: Optional[Callable[..., None]] = None,
                 expect: Optional[str] = None, fast: bool = False,
                 content_check: Optional[Callable[..., int]] = None) -> VerifyReport:
    """Recompute the chain and all record digests; raise IntegrityError naming the first
    broken event or tampered record, else return counts and the chain head's digest.

    The chain alone cannot show that its newest events were cut off (with their records): pass
    ``expect``, a head digest noted earlier (or its first 12+ hex digits), to require that event.
    ``fast``: chunk payloads are not re-read (see the module docstring). ``content_check(session,
    fast=, progress=)`` runs last, in the same transaction, and returns how many content
    digests it recomputed. ``progress(done, total, what)`` is called as records are checked.
    """
    started = time.perf_counter()
    if expect is not None:
        expect = expect.strip().lower()
        if len(expect) < 12 or any(c not in "0123456789abcdef" for c in expect):
            raise BadInputError(f"--expect {expect!r}: give a chain head digest (at least 12 hex "
                                "digits, as `lineage verify` prints it)")
    found_expected = expect is None
    anchored: dict[tuple[str, int], tuple[str, int]] = {}
    prev, expected_id = GENESIS, 1
    with store.read() as session:
        for ev in session.scalars(select(Event).order_by(Event.id)).yield_per(1000):
            if ev.id != expected_id:
                raise IntegrityError(f"event chain broken: event {expected_id} is missing "
                                     f"(next is {ev.id})")
            if ev.prev_digest != prev:
                raise IntegrityError(f"event chain broken at event {ev.id} ({ev.kind}): it does "
                                     "not follow the event before it")
            digest = event_digest(id=ev.id, prev_digest=ev.prev_digest, kind=ev.kind,
                                  actor=ev.actor, created_at=ev.created_at, payload=ev.payload)
            if digest != ev.digest:
                raise IntegrityError(f"event chain broken at event {ev.id} ({ev.kind}): its "
                                     "content does not match its digest")
            records = event_payload(ev.id, ev.kind, ev.payload).get("records", {})
            for table, entries in records.items():
                for record_id, record_dig in entries:
                    # The first listing holds: lineage lists a record once, when it writes it.
                    # A later one with another digest is a record rewritten and listed again at
                    # the head (the chain has no secret), which reads ignore as well
                    # (log.chain_listings).
                    first = anchored.setdefault((table, record_id), (record_dig, ev.id))
                    if first[0] != record_dig:
                        raise IntegrityError(f"{table} record {record_id} is listed by event "
                                             f"{first[1]} and again, with another digest, by "
                                             f"event {ev.id} ({ev.kind}): records are append-only")
            if not found_expected and ev.digest.startswith(expect):
                found_expected = True
            prev, expected_id = ev.digest, expected_id + 1
        if not found_expected:
            raise IntegrityError(f"no event has the expected digest {expect}: the chain was "
                                 f"truncated or rewritten (it has {expected_id - 1} events)")

        total = len(anchored)
        seen = chunk_rows = chunk_bytes = 0
        for table in RECORD_TABLES:
            columns = list(table.c)
            if fast and table.name == "chunks":
                # blob_hash too: it is outside the covering index, and only a re-hash needs it.
                columns = [c for c in columns if c.name not in ("features", "labels", "blob_hash")]
            query = select(*columns).order_by(table.c.id)
            if fast and table.name == "chunks":
                # From the covering index alone: in the table SQLite reaches the columns after
                # the blobs only by walking their overflow pages, i.e. reading the payloads.
                query = query.with_hint(table, "INDEXED BY ix_chunks_covering", "sqlite")
            # Blob tables are read in batches so memory stays bounded on large stores.
            for row in session.execute(query).mappings().yield_per(64):
                key = (table.name, row["id"])
                what = f"{table.name} record {row['id']}"
                if table.name == "chunks":
                    check_chunk_layout(row["id"], row["first_row_id"], row["n_rows"],
                                       row["ingest_id"], row["transformation_id"],
                                       row["dataset_id"])
                    what += f" (rows {row['first_row_id']}..{row['first_row_id'] + row['n_rows'] - 1})"
                if key not in anchored:
                    raise IntegrityError(f"{what} is not recorded in the event chain "
                                         "(inserted behind the store's back)")
                expected, event_id = anchored.pop(key)
                if fast and table.name == "chunks":  # the digest column only, payload unread
                    actual = row["record_digest"]
                else:
                    actual = stored_record_digest(table.name, dict(row))
                if actual != expected or row["record_digest"] != expected:
                    raise IntegrityError(f"{what} was changed after event {event_id} recorded it")
                if table.name == "chunks" and not fast:  # counted once known to be its blobs
                    for name in ("features", "labels"):
                        if not isinstance(row[name], (bytes, bytearray, memoryview)):
                            raise IntegrityError(f"{what} holds {type(row[name]).__name__} as "
                                                 f"its {name}, not bytes")
                    chunk_rows += row["n_rows"]
                    chunk_bytes += len(row["features"]) + len(row["labels"])
                seen += 1
                if progress and (seen % 64 == 0 or seen == total):
                    elapsed = time.perf_counter() - started
                    rate = (f", {chunk_bytes / elapsed / 1e6:.0f} MB/s" if chunk_bytes and elapsed
                            else "")
                    progress(seen, total, f"verifying {table.name}{rate}")
        if anchored:
            (table, record_id), (_, event_id) = min(anchored.items(), key=lambda kv: kv[1][1])
            raise IntegrityError(f"{table} record {record_id}, recorded by event {event_id}, "
                                 "is missing (deleted behind the store's back)")
        # Row effects are anchored through their transformation's params (effects digest).

        check_effects(session)
        versions = content_check(session, fast=fast, progress=progress) if content_check else 0
    return VerifyReport(events=expected_id - 1, records=seen, head_digest=prev, fast=fast,
                        chunk_rows=chunk_rows, chunk_bytes=chunk_bytes, versions=versions,
                        seconds=time.perf_counter() - started)


def effects_digest(session: Session, transformation_id: int) -> tuple[int, str]:
    """Recompute (count, sha256) of a transformation's stored effects, for ``verify``; raise
    IntegrityError naming the first effect whose version the transformation did not make."""
    outputs = session.scalars(select(Version.id).where(Version.transformation_id == transformation_id)
                              .order_by(Version.id)).all()
    index = {vid: i for i, vid in enumerate(outputs)}
    t = RowEffect.__table__
    result = session.execute(select(t.c.version_id, t.c.row_id, t.c.effect, t.c.old_label,
                                    t.c.new_label, t.c.parent_row_id)
                             .where(t.c.transformation_id == transformation_id).order_by(t.c.id))
    none = int(NONE)
    rows = [(index.get(v, -1), r, EFFECT_CODES.get(e, -1), none if o is None else o,
             none if n is None else n, none if p is None else p) for v, r, e, o, n, p in result]
    arr = np.array(rows, dtype=np.int64).reshape(-1, 6)
    if (arr[:, 0] < 0).any():  # no foreign keys (migration 0008): a version id is what was stored
        effect_id, version_id = session.execute(
            select(t.c.id, t.c.version_id).where(t.c.transformation_id == transformation_id,
                                                 t.c.version_id.not_in(outputs))
            .order_by(t.c.id).limit(1)).one()
        exists = session.scalar(select(Version.id).where(Version.id == version_id)) is not None
        raise IntegrityError(
            f"row effect {effect_id} of transformation {transformation_id} names version "
            f"{version_id}, " + (f"which transformation {transformation_id} did not make" if exists
                                 else "which does not exist") + " (inserted behind the store's back)")
    return effects_rows_digest(arr)


def check_effects(session: Session) -> None:
    """Raise IntegrityError when any transformation's stored effects differ from the digest in
    its (chain-anchored) params, effects exist for a transformation that records none or that
    does not exist, or an effect names a version its transformation did not make. (The table
    has no foreign keys since migration 0008: these checks are what holds its references.)"""

    with_effects = set(session.scalars(select(RowEffect.transformation_id).distinct()).all())
    orphans = with_effects - set(session.scalars(select(Transformation.id)).all())
    if orphans:
        t = RowEffect.__table__
        effect_id = session.scalar(select(t.c.id).where(t.c.transformation_id == min(orphans))
                                   .order_by(t.c.id).limit(1))
        raise IntegrityError(f"row effect {effect_id} names transformation {min(orphans)}, which "
                             "does not exist (inserted behind the store's back)")
    for t in session.scalars(select(Transformation).order_by(Transformation.id)):
        try:
            recorded = json.loads(t.params).get("effects")
        except ValueError:
            recorded = None
        if recorded is None:
            if t.id in with_effects:
                raise IntegrityError(f"row effects of transformation {t.id} are not recorded in "
                                     "its params (inserted behind the store's back)")
            continue
        n, digest = effects_digest(session, t.id)
        if n != recorded.get("rows") or digest != recorded.get("sha256"):
            raise IntegrityError(f"row effects of transformation {t.id} ({t.kind}) were changed: "
                                 f"{n} stored, {recorded.get('rows')} recorded, digest differs"
                                 if n != recorded.get("rows") else
                                 f"row effects of transformation {t.id} ({t.kind}) were changed "
                                 "after it recorded them")
