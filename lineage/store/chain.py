"""The event chain and content digests.

Every write appends one event whose digest is sha256 over the canonical JSON of (id, previous
digest, kind, actor, time, payload). The payload lists the ``record_digest`` of every record the
write inserted, so the chain anchors all content, blobs included.

A blob enters a record digest as ``{HASH: hex, "len": n}``, HASH naming the function that hashed
it: sha256 for every table's blobs, except the row chunks written since migration 0010, whose
``blob_hash`` column says ``blake3`` (the chunks are the bulk of every read and write, and BLAKE3
hashes them ~2.5x faster on the same core; both are 256-bit cryptographic hashes). The column is
part of the chunk's record, so naming the other function changes the digest: it cannot be
swapped to make other bytes match.
"""

import hashlib
import json
from datetime import datetime
from typing import Any, Mapping

import blake3
import numpy as np

from lineage.errors import IntegrityError

GENESIS = "0" * 64


# One encoder for every call: json.dumps with these options builds a new one each time (a
# quarter of the cost of canonical() for an event's fields).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False)


def canonical(obj: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, no NaN; the bytes that digests cover."""
    return _CANONICAL.encode(obj)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


BLOB_HASHES = {"sha256": hashlib.sha256, "blake3": blake3.blake3}  # blake3 releases the GIL too


def blob_digest(buf, hash_name: str = "sha256") -> dict:
    """The form every digest gives a blob, ``{hash_name: hex, "len": n}``: hashed in place from
    any contiguous buffer (bytes, a memoryview, a numpy array), with no copy."""
    view = memoryview(buf)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return {hash_name: BLOB_HASHES[hash_name](view).hexdigest(), "len": view.nbytes}


def blob_hash_of(values: Mapping[str, Any]) -> str:
    """The function a record's blobs are hashed with: its ``blob_hash`` column (chunks since
    migration 0010), else sha256. An unknown name is an IntegrityError, not a guess."""
    name = values.get("blob_hash")
    if name is None:  # NULL: every record's blobs before the column existed
        return "sha256"
    if not isinstance(name, str) or name not in BLOB_HASHES:
        long = isinstance(name, str) and len(name) > 32
        shown = f"{name[:32]!r}... ({len(name)} chars)" if long else repr(name)
        raise IntegrityError(f"a record names an unknown blob hash {shown}: run `lineage verify`")
    return name


def _canonical_value(value: Any, hash_name: str = "sha256") -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return blob_digest(value, hash_name)
    if isinstance(value, datetime):
        return iso(value)
    return value


# Columns a migration added to a table that already held records: left out of the digest while
# NULL, so records written before the column existed keep the digest the chain anchored.
LATE_COLUMNS = {"versions": ("digest_scheme", "chunk_leaves"), "chunks": ("blob_hash",)}


def record_digest(table_name: str, values: Mapping[str, Any]) -> str:
    """Digest of one record's content: every column except ``record_digest`` itself (and late
    columns that are NULL, see ``LATE_COLUMNS``)."""
    late = LATE_COLUMNS.get(table_name, ())
    hash_name = blob_hash_of(values)
    content = {k: _canonical_value(v, hash_name) for k, v in values.items()
               if k != "record_digest" and not (v is None and k in late)}
    return sha256_hex(canonical({"table": table_name, "values": content}).encode())


def stored_record_digest(table_name: str, values: Mapping[str, Any]) -> str:
    """record_digest of a record as read back: a value no canonical JSON holds (SQLite lets a
    record changed behind the store's back hold Infinity where a number belongs) is an
    IntegrityError naming the record, not the encoder's ValueError."""
    try:
        return record_digest(table_name, values)
    except (ValueError, TypeError):
        raise IntegrityError(f"{table_name} record {values.get('id')!r} holds a value lineage "
                             "never writes (changed behind the store's back): run `lineage "
                             "verify`") from None


def event_digest(*, id: int, prev_digest: str, kind: str, actor: str, created_at: datetime,
                 payload: str) -> str:
    if not isinstance(payload, str) or not isinstance(created_at, datetime):  # never written so
        raise IntegrityError(f"event {id} ({kind}): its payload or time is not what the store "
                             "writes (changed behind the store's back): run `lineage verify`")
    content = {"id": id, "prev": prev_digest, "kind": kind, "actor": actor,
               "at": iso(created_at), "payload": payload}
    return sha256_hex(canonical(content).encode())


def event_payload(id: int, kind: str, payload) -> dict:
    """An event's payload as the store writes it: a JSON object whose ``records`` (if any) map
    table names to ``[[id, digest], ...]``. Anything else (text that is not JSON, nesting
    deeper than the parser goes, another shape) is an IntegrityError naming the event."""
    try:
        obj = json.loads(payload)
        records = obj.get("records", {})
        if isinstance(records, dict) and all(
                isinstance(entries, list) and all(
                    isinstance(e, list) and len(e) == 2 and type(e[0]) is int
                    and isinstance(e[1], str) for e in entries)
                for entries in records.values()):
            return obj
    except (ValueError, TypeError, AttributeError, RecursionError):
        pass
    raise IntegrityError(f"event {id} ({kind}): its payload is not what the store writes "
                         "(changed behind the store's back): run `lineage verify`")


EFFECTS = ("removed", "added", "relabelled", "modified")
EFFECT_CODES = {name: i for i, name in enumerate(EFFECTS)}
NONE = np.iinfo(np.int64).min  # "no value" in the effects digest


def effects_rows_digest(rows: np.ndarray) -> tuple[int, str]:
    """(count, sha256) over effect rows of shape (n, 6): output index, row id, effect code,
    old label, new label, parent row id (NONE for no value), in stored order."""
    h = hashlib.sha256(b"lineage-effects-v1\0")
    h.update(np.ascontiguousarray(rows, dtype="<i8").tobytes())
    return len(rows), h.hexdigest()
