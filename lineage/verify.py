"""``lineage verify``: recompute the event chain and every record's content digest.

The chain proves the order and content of events; each event lists the digests of the records
its write inserted, so a record changed, added or removed behind the store's back (triggers
dropped, bytes edited in the file) no longer matches the chain and is named.
"""

import json
from dataclasses import dataclass
from typing import Callable, Optional

from sqlalchemy import select

from lineage.chain import GENESIS, event_digest, record_digest
from lineage.errors import BadInputError, IntegrityError
from lineage.store import Store
from lineage.tables import RECORD_TABLES, Event


@dataclass(frozen=True)
class VerifyReport:
    events: int
    records: int
    head_digest: str


def verify_store(store: Store, *, progress: Optional[Callable[[int, int], None]] = None,
                 expect: Optional[str] = None) -> VerifyReport:
    """Recompute the chain and all record digests; raise IntegrityError naming the first
    broken event or tampered record, else return counts and the chain head's digest.

    The chain alone cannot show that its newest events were cut off (with their records): pass
    ``expect``, a head digest noted earlier (or its first 12+ hex digits), to require that event.
    """
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
            try:
                records = json.loads(ev.payload).get("records", {})
            except ValueError:
                raise IntegrityError(f"event {ev.id} ({ev.kind}): payload is not JSON") from None
            for table, entries in records.items():
                for record_id, record_dig in entries:
                    anchored[(table, record_id)] = (record_dig, ev.id)
            if not found_expected and ev.digest.startswith(expect):
                found_expected = True
            prev, expected_id = ev.digest, expected_id + 1
        if not found_expected:
            raise IntegrityError(f"no event has the expected digest {expect}: the chain was "
                                 f"truncated or rewritten (it has {expected_id - 1} events)")

        total = len(anchored)
        seen = 0
        for table in RECORD_TABLES:
            # Blob tables are read in batches so memory stays bounded on large stores.
            for row in session.execute(select(table).order_by(table.c.id)).mappings().yield_per(64):
                key = (table.name, row["id"])
                what = f"{table.name} record {row['id']}"
                if table.name == "chunks":
                    what += f" (rows {row['first_row_id']}..{row['first_row_id'] + row['n_rows'] - 1})"
                if key not in anchored:
                    raise IntegrityError(f"{what} is not recorded in the event chain "
                                         "(inserted behind the store's back)")
                expected, event_id = anchored.pop(key)
                actual = record_digest(table.name, dict(row))
                if actual != expected or row["record_digest"] != expected:
                    raise IntegrityError(f"{what} was changed after event {event_id} recorded it")
                seen += 1
                if progress:
                    progress(seen, total)
        if anchored:
            (table, record_id), (_, event_id) = min(anchored.items(), key=lambda kv: kv[1][1])
            raise IntegrityError(f"{table} record {record_id}, recorded by event {event_id}, "
                                 "is missing (deleted behind the store's back)")
        # Row effects are anchored through their transformation's params (effects digest).
        from lineage.transforms import check_effects

        check_effects(session)
    return VerifyReport(events=expected_id - 1, records=seen, head_digest=prev)
