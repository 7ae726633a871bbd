"""Row payloads in contiguous chunks.

Rows are stored CHUNK_ROWS at a time as two blobs (features, labels) with one digest per chunk:
DESIGN.md's measured facts show chunked blobs run ~20x faster than a record per row. Row ids are
global and contiguous within a chunk, so a row is still addressable one by one: its chunk is found
by binary search over the chunks' first row ids.
"""

import itertools
import os
import struct
import threading
from contextlib import closing
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lineage.errors import IntegrityError, NotFoundError
from lineage.store.chain import blob_digest, blob_hash_of, record_digest
from lineage.store.log import chain_listings, check_first_listing
from lineage.store.tables import Chunk, Dataset

CHUNK_ROWS = 8192
CHUNK_BLOB_HASH = "blake3"  # what new chunks' blobs are hashed with (chain.BLOB_HASHES)
LABEL_DTYPE = np.dtype("<i8")
ID_DTYPE = np.dtype("<i8")

Progress = Optional[Callable[[int, int], None]]  # (rows done, rows total)
READ_BATCH = 16  # chunks per query on reads: ~8 MB of blobs alive at once
HASH_THREADS = max(1, min(4, os.cpu_count() or 1))
# Chunks hashed from their blobs (read with gaps) are hashed this many at a time, on every
# core, while the fetch waits: ~9 MB of 64-feature uint8 blobs alive at once.
HASH_BATCH = 16
CHUNK_COLUMNS = [c.name for c in Chunk.__table__.columns]


def ids_to_bytes(ids: np.ndarray) -> bytes:
    return np.ascontiguousarray(ids, dtype=ID_DTYPE).tobytes()


def ids_from_bytes(blob: Optional[bytes]) -> np.ndarray:
    return np.frombuffer(bytes(blob), dtype=ID_DTYPE) if blob else np.empty(0, dtype=ID_DTYPE)


STORED_DTYPES = ("uint8", "float64")  # what ingest stores features as (ingest._infer_dtype)


def feature_dtype(dataset: Dataset) -> np.dtype:
    """The dtype a dataset's feature blobs hold, once its row layout is one lineage writes
    (a dtype of STORED_DTYPES, a positive whole number of features): else an IntegrityError,
    before any blob is sized or read by it (a record changed behind the store's back)."""
    n = dataset.n_features
    if dataset.dtype not in STORED_DTYPES or not _is_int(n) or n < 1:
        raise IntegrityError(f"dataset {dataset.id} records {dataset.dtype!r} x {n!r} features: "
                             "lineage stores uint8 or float64 rows of 1 or more features "
                             "(changed behind the store's back): run `lineage verify`")
    return np.dtype(dataset.dtype).newbyteorder("<")


def next_row_id(session: Session) -> int:
    end = session.scalar(select(func.max(Chunk.first_row_id + Chunk.n_rows)))
    return int(end or 1)


def write_rows(tx, dataset: Dataset, X: np.ndarray, y: np.ndarray, *,
               ingest_id: Optional[int] = None, transformation_id: Optional[int] = None,
               progress: Progress = None) -> int:
    """Append rows as chunks inside the write ``tx``; returns the first assigned row id.

    X : ndarray of shape (n_samples, n_features), already validated for the dataset.
    y : ndarray of shape (n_samples,)
    """
    return write_chunks(tx, dataset, X, y, ingest_id=ingest_id,
                        transformation_id=transformation_id, progress=progress)[0]


def _chunk_views(dataset: Dataset, X: np.ndarray, y: np.ndarray):
    """(features, labels) of each chunk of X and y as byte views: the blobs write_rows stores."""
    X = np.ascontiguousarray(X, dtype=feature_dtype(dataset))
    y = np.ascontiguousarray(y, dtype=LABEL_DTYPE)
    return [(memoryview(X[start:start + CHUNK_ROWS]).cast("B"),
             memoryview(y[start:start + CHUNK_ROWS]).cast("B")) for start in range(0, len(X), CHUNK_ROWS)]


def _both_digests(views) -> dict:
    return {"features": blob_digest(views[0], CHUNK_BLOB_HASH),
            "labels": blob_digest(views[1], CHUNK_BLOB_HASH)}


class OnThreads:
    """``[fn(*a) for a in args]`` on plain threads that take the next item as they come free:
    for hashing chunks already in memory (the hashes release the GIL). A ThreadPoolExecutor's
    future per chunk hands every item over through the GIL: 123 chunks of 1M rows hashed in
    12.3 ms that way, 6.7-7.0 ms on two plain threads (13.5 on one). ``result()`` waits, then
    returns the results in order or raises the error of the first item (by position) that
    failed: every item before it was taken, so it ran. With ``caller=True`` (what
    ``map_on_threads`` does) the calling thread takes items too in ``result()``; a thread that
    cannot be started leaves its share to the others, or to the caller."""

    def __init__(self, fn: Callable, args: list[tuple], *, caller: bool = False):
        self.fn, self.args, self.out = fn, args, [None] * len(args)
        self.errors: list[tuple[int, BaseException]] = []
        self.stopped = False
        self.next = itertools.count()  # next() of a count is atomic under the GIL
        self.caller = caller
        self.threads = []
        for _ in range(max(0, min(HASH_THREADS, len(args)) - (1 if caller else 0))):
            t = threading.Thread(target=self._work, daemon=True)
            try:
                t.start()
            except RuntimeError:  # no thread to be had: the others, or the caller, do its share
                break
            self.threads.append(t)
        if not self.threads:
            self.caller = True

    def _work(self) -> None:
        while not self.stopped and not self.errors:
            i = next(self.next)
            if i >= len(self.args):
                return
            try:
                self.out[i] = self.fn(*self.args[i])
            except BaseException as exc:  # re-raised in result()
                self.errors.append((i, exc))

    def stop(self) -> None:
        """Stop the threads at their next item and wait for them (no result)."""
        self.stopped = True
        for t in self.threads:
            t.join()

    def result(self) -> list:
        if self.caller and not self.stopped:
            self._work()
            self.caller = False
        for t in self.threads:
            t.join()
        if self.stopped:  # some items may never have run
            raise RuntimeError("OnThreads.result() of a stopped job")
        if self.errors:
            raise min(self.errors, key=lambda e: e[0])[1]
        return self.out


def map_on_threads(fn: Callable, args: list[tuple]) -> list:
    """``[fn(*a) for a in args]`` on HASH_THREADS threads, the caller's among them (``OnThreads``)."""
    return OnThreads(fn, args, caller=True).result()


def blob_digests(dataset: Dataset, X: np.ndarray, y: np.ndarray) -> list[dict]:
    """Each chunk's blobs hashed as chain.record_digest hashes a new chunk's blobs
    ({CHUNK_BLOB_HASH: hex, "len": n}), so a caller can hash them before the write."""
    views = _chunk_views(dataset, X, y)
    # Both hashes release the GIL on large buffers: the chunks hash on every core.
    return map_on_threads(_both_digests, [(v,) for v in views])


class HashAhead:
    """blob_digests of rows already in their stored form (features C-contiguous uint8 or
    float64, labels C-contiguous int64), computed on worker threads while the caller validates
    them and opens its write: the hash and the checks share the cores (1M rows: 24 -> 17 ms
    for both). ``take(X, y)`` hands the digests over only when X and y are the very arrays
    hashed (the checks may have converted them: then None, and the caller hashes what it
    writes). A context manager: leaving it stops the threads at their next chunk."""

    def __init__(self, X, y):
        self.X, self.y = X, y
        stored = (isinstance(X, np.ndarray) and isinstance(y, np.ndarray) and X.ndim == 2
                  and X.dtype in (np.dtype(np.uint8), np.dtype(np.float64))
                  and y.dtype == LABEL_DTYPE and X.flags.c_contiguous and y.flags.c_contiguous
                  and len(X) == len(y))
        self.job = None
        if stored and HASH_THREADS > 1 and len(X) >= 4 * CHUNK_ROWS:
            self.job = OnThreads(_both_digests, [(
                (memoryview(X[i:i + CHUNK_ROWS]).cast("B"), memoryview(y[i:i + CHUNK_ROWS]).cast("B")),)
                for i in range(0, len(X), CHUNK_ROWS)])

    def take(self, X: np.ndarray, y: np.ndarray) -> Optional[list[dict]]:
        if self.job is None or X is not self.X or y is not self.y:
            return None
        return self.job.result()

    def __enter__(self) -> "HashAhead":
        return self

    def __exit__(self, *exc) -> None:
        if self.job is not None:
            self.job.stop()


def write_chunks(tx, dataset: Dataset, X: np.ndarray, y: np.ndarray, *, ingest_id: Optional[int],
                  transformation_id: Optional[int], progress: Progress,
                  digests: Optional[list[dict]] = None) -> tuple[int, list[int], list[str]]:
    """write_rows, returning (first row id, the new chunks' ids, their record digests)."""
    first = next_row_id(tx.session)
    n = len(X)
    batch: list[dict] = []
    chunk_ids: list[int] = []
    chunk_digests: list[str] = []
    for i, (features, labels) in enumerate(_chunk_views(dataset, X, y)):
        start = i * CHUNK_ROWS
        stop = min(start + CHUNK_ROWS, n)
        batch.append({
            "dataset_id": dataset.id, "first_row_id": first + start, "n_rows": stop - start,
            # Views, not tobytes() copies: the driver copies them into the database once.
            "features": features, "labels": labels,
            "ingest_id": ingest_id, "transformation_id": transformation_id,
        })
        if CHUNK_BLOB_HASH != "sha256":  # no value (NULL) means sha256, as before migration 0010
            batch[-1]["blob_hash"] = CHUNK_BLOB_HASH
        if digests is not None:  # blobs hashed already by blob_digests (see Tx.add_rows)
            batch[-1]["_blob_digests"] = digests[i]
        if len(batch) == 16 or stop == n:  # bounded memory: a few MB of blobs per insert
            chunk_ids += tx.add_rows(Chunk, batch)
            chunk_digests += [row["record_digest"] for row in batch]
            batch = []
            if progress:
                progress(stop, n)
    return first, chunk_ids, chunk_digests


@dataclass(frozen=True)
class ChunkIndex:
    """The chunks of one dataset (or of the whole store) in row order, as parallel arrays; the
    one query of chunk metadata (no blobs). ``ingest_ids`` and ``transformation_ids`` hold -1
    where a chunk has none."""

    ids: np.ndarray
    firsts: np.ndarray
    counts: np.ndarray
    ingest_ids: np.ndarray
    transformation_ids: np.ndarray
    digests: list

    def __len__(self) -> int:
        return len(self.ids)

    def holding(self, sorted_ids: np.ndarray) -> np.ndarray:
        """How many of ``sorted_ids`` fall in each chunk."""
        ends = self.firsts + self.counts
        return (np.searchsorted(sorted_ids, ends, side="left")
                - np.searchsorted(sorted_ids, self.firsts, side="left"))


def chunk_index(session: Session, dataset_id: Optional[int] = None) -> ChunkIndex:
    """Every chunk of ``dataset_id`` (None: of the store), ordered by first row id."""
    query = select(Chunk.id, Chunk.first_row_id, Chunk.n_rows, Chunk.ingest_id,
                   Chunk.transformation_id, Chunk.record_digest).order_by(Chunk.first_row_id)
    if dataset_id is not None:
        query = query.where(Chunk.dataset_id == dataset_id)
    rows = session.execute(query).all()
    for r in rows:
        check_chunk_layout(r[0], r[1], r[2], r[3], r[4])
    # Plain tuples: numpy probing each Row for array interfaces costs more than the query.
    arr = np.array([(r[0], r[1], r[2], -1 if r[3] is None else r[3], -1 if r[4] is None else r[4])
                    for r in rows], dtype=np.int64).reshape(-1, 5)
    return ChunkIndex(ids=arr[:, 0], firsts=arr[:, 1], counts=arr[:, 2], ingest_ids=arr[:, 3],
                      transformation_ids=arr[:, 4], digests=[r[5] for r in rows])


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_chunk_layout(chunk_id, first, n, ingest_id=None, transformation_id=None,
                       dataset_id=0) -> None:
    """A chunk's id, first row id and row count are whole numbers, 1 to CHUNK_ROWS rows (what
    lineage writes), its origins whole numbers or none: else an IntegrityError, before anything
    is sized or placed by them (SQLite's dynamic types let a record changed behind the store's
    back hold text there; a count of 2**40 would be a MemoryError)."""
    for name, value in (("id", chunk_id), ("first row id", first), ("row count", n)):
        if not _is_int(value):
            raise IntegrityError(f"chunk {chunk_id!r} holds {value!r} as its {name}, not a whole "
                                 "number (changed behind the store's back)")
    for name, value in (("ingest id", ingest_id), ("transformation id", transformation_id),
                        ("dataset id", dataset_id)):
        if value is not None and not _is_int(value):
            raise IntegrityError(f"chunk {chunk_id} holds {value!r} as its {name}, not a whole "
                                 "number (changed behind the store's back)")
    if not 1 <= n <= CHUNK_ROWS:  # never written so; a read would skip or size by it
        raise _no_rows(chunk_id, n)


def _no_rows(chunk_id, n) -> IntegrityError:
    return IntegrityError(f"chunk {chunk_id} claims {n!r} rows, lineage writes 1 to {CHUNK_ROWS} "
                          "(changed behind the store's back)")


def fetch_chunks(session: Session, columns: list[str], chunk_ids: list[int]) -> list[tuple]:
    """Raw driver rows of ``columns`` of the chunks ``chunk_ids`` (in any order), in the
    session's transaction: no ORM objects, no per-blob result processing. PostgreSQL through
    ``COPY ... TO STDOUT (FORMAT BINARY)`` (``pg_copy_chunks``): bytea in text format is hex,
    twice the bytes and a decode (a 1M-row read measured 0.5 s in text, 0.15 s binary), and
    COPY hands each row over as one message, its blobs sliced out of it without a copy."""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        return list(pg_copy_chunks(conn.connection.driver_connection, columns, chunk_ids))
    names = ", ".join(columns)
    marks = ", ".join(str(int(c)) for c in chunk_ids)
    return conn.exec_driver_sql(f"SELECT {names} FROM chunks WHERE id IN ({marks})").fetchall()


_BLOB_COLUMNS = ("features", "labels")
_TEXT_COLUMNS = ("record_digest", "blob_hash")
PG_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"  # binary COPY's first 11 bytes (read and written)
_INT8 = struct.Struct(">q")
_INT4 = struct.Struct(">i")
_INT2 = struct.Struct(">h")


def pg_copy_chunks(driver_conn, columns: list[str], chunk_ids) -> Iterator[tuple]:
    """Rows of ``columns`` of the chunks ``chunk_ids`` from a psycopg connection, read with
    ``COPY (SELECT ...) TO STDOUT (FORMAT BINARY)``: blobs come as memoryviews into the row's
    message (no copy; bytes-like, as the driver's bytes), integers as int, the digest as str,
    NULL as None (``CopyParser``)."""
    parser = CopyParser(columns)
    for message in copy_messages(driver_conn, columns, chunk_ids):
        yield from parser.feed(message)


def copy_messages(driver_conn, columns: list[str], chunk_ids) -> Iterator:
    """The raw messages of the binary COPY of ``columns`` of chunks ``chunk_ids``."""
    kinds = CopyParser(columns).kinds
    # Casts pin each field's wire form whatever the column's type became (a retyped column
    # is then a value lineage refuses, not bytes it cannot parse).
    select_list = ", ".join(c if k == "blob" else f"{c}::int8" if k == "int" else f"{c}::text"
                            for c, k in zip(columns, kinds))
    query = f"COPY (SELECT {select_list} FROM chunks WHERE id = ANY(%s)) TO STDOUT (FORMAT BINARY)"
    params = ([int(c) for c in chunk_ids],)
    with driver_conn.cursor() as cursor, cursor.copy(query, params) as copy:
        yield from copy


class CopyParser:
    """Rows out of PostgreSQL's binary COPY format, message by message: a signature, flags
    and a header extension first; per row a field count, then each field's length (-1: NULL)
    and bytes; a count of -1 ends it. The server sends one message per row (psycopg's own
    parser relies on it too); anything else raises IntegrityError."""

    def __init__(self, columns: list[str]):
        self.kinds = ["blob" if c in _BLOB_COLUMNS else "text" if c in _TEXT_COLUMNS else "int"
                      for c in columns]
        self.header = True

    @staticmethod
    def malformed(what: str) -> IntegrityError:
        return IntegrityError(f"the database sent a malformed COPY stream ({what})")

    def feed(self, data) -> list[tuple]:
        view = memoryview(data)
        pos, end = 0, len(view)
        if self.header:
            if end < 19 or bytes(view[:11]) != PG_COPY_SIGNATURE:
                raise self.malformed("no binary COPY signature")
            pos = 19 + _INT4.unpack_from(view, 15)[0]
            self.header = False
        rows = []
        kinds = self.kinds
        while pos < end:
            count = _INT2.unpack_from(view, pos)[0]
            pos += 2
            if count == -1:  # the trailer
                break
            if count != len(kinds):
                raise self.malformed(f"{count} fields, not {len(kinds)}")
            row = []
            for kind in kinds:
                size = _INT4.unpack_from(view, pos)[0]
                pos += 4
                if size < 0:
                    row.append(None)
                    continue
                if pos + size > end:
                    raise self.malformed("a row split over messages")
                if kind == "blob":
                    row.append(view[pos:pos + size])
                elif kind == "int":
                    row.append(_INT8.unpack_from(view, pos)[0])
                else:
                    try:
                        row.append(str(view[pos:pos + size], "utf-8"))
                    except UnicodeDecodeError:
                        raise self.malformed("a text field is not UTF-8") from None
                pos += size
            rows.append(tuple(row))
        return rows


def chunk_blobs(session: Session, dataset: Dataset, column):
    """(first row id, n rows, blob) of the dataset's chunks in row order, READ_BATCH chunks a
    query. The order comes from the blob-free index: ORDER BY on the blob query itself makes
    SQLite sort every blob through a temporary B-tree (5x slower)."""
    index = chunk_index(session, dataset.id)
    for start in range(0, len(index), READ_BATCH):
        part = [int(i) for i in index.ids[start:start + READ_BATCH]]
        blobs = dict(fetch_chunks(session, ["id", column.name], part))
        for k, chunk_id in enumerate(part):
            yield int(index.firsts[start + k]), int(index.counts[start + k]), blobs[chunk_id]


def gather_rows(session: Session, dataset: Dataset, row_ids: np.ndarray, *,
              verify: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Features and stored labels of ``row_ids`` (in the order given).

    Returns X of shape (n_samples, n_features) in the dataset's dtype and y of shape (n_samples,).
    With ``verify``, each chunk read is re-hashed against its recorded digest first.
    """
    row_ids = np.asarray(row_ids, dtype=np.int64)
    n_features = dataset.n_features
    dtype = feature_dtype(dataset)
    if len(row_ids) == 0:
        return np.empty((0, n_features), dtype=dtype), np.empty(0, dtype=LABEL_DTYPE)
    index = chunk_index(session, dataset.id)  # the covering index: no chunk row is read
    chunk_ids, firsts, counts = index.ids, index.firsts, index.counts
    per_chunk = _count_sorted(row_ids, firsts, counts)
    if per_chunk is None:  # ids in any order (or some missing): locate each id on its own
        pos = np.searchsorted(firsts, row_ids, side="right") - 1
        bad = (pos < 0) | (row_ids >= firsts[np.maximum(pos, 0)] + counts[np.maximum(pos, 0)])
        if bad.any():
            raise NotFoundError(f"no row with id {int(row_ids[bad][0])}")
        needed = np.unique(pos)
    else:
        needed = np.flatnonzero(per_chunk)
        # Sorted ids: every needed chunk's rows land in one slice of the result, in place.
        stops = np.cumsum(per_chunk[needed])
        X_out = np.empty((len(row_ids), n_features), dtype=dtype)
        y_out = np.empty(len(row_ids), dtype=LABEL_DTYPE)
        row_void = np.dtype((np.void, n_features * dtype.itemsize))  # one row as one item
        X_rows = X_out.view(row_void).reshape(-1)
        slots = {int(chunk_ids[p]): (int(s - per_chunk[p]), int(s), int(firsts[p]))
                 for p, s in zip(needed, stops)}

        def place(chunk_id, feats, labs):
            start, stop, first = slots[chunk_id]
            if stop - start == len(labs):  # the whole chunk (a whole read, a root version)
                X_out[start:stop] = feats
                y_out[start:stop] = labs
                return X_out[start:stop], y_out[start:stop]  # the same bytes, hashed from here
            # Sorted ids with gaps (a version after filters): one take of whole rows (each row
            # one void item) at the in-chunk offsets, straight into place. mode="clip" (the
            # offsets are in range by construction) lets numpy skip buffering ``out``: about 2x
            # faster than a mask and compress, close to a plain copy of the chunk.
            offsets = row_ids[start:stop] - first
            np.take(feats.view(row_void).reshape(-1), offsets, out=X_rows[start:stop], mode="clip")
            np.take(labs, offsets, out=y_out[start:stop], mode="clip")
            return None

        _read_chunks(session, dataset, list(slots), verify, place, layout=_layout(index, needed))
        return X_out, y_out
    # Ids in any order: concatenate the needed chunks once, then one fancy index.
    wanted = [int(chunk_ids[p]) for p in needed]
    parts: dict = {}
    _read_chunks(session, dataset, wanted, verify,
                 lambda c, f, lab: parts.__setitem__(c, (f, lab)), layout=_layout(index, needed))
    all_X = np.concatenate([parts[c][0] for c in wanted])
    all_y = np.concatenate([parts[c][1] for c in wanted])
    base = np.zeros(len(chunk_ids), dtype=np.int64)
    base[needed] = np.concatenate([[0], np.cumsum(counts[needed])[:-1]])
    offsets = base[pos] + (row_ids - firsts[pos])
    return all_X[offsets], all_y[offsets]


def _layout(index: ChunkIndex, at) -> dict[int, tuple[int, int]]:
    return {int(index.ids[p]): (int(index.firsts[p]), int(index.counts[p])) for p in at}


def _read_chunks(session: Session, dataset: Dataset, wanted: list[int], verify: bool,
                 place: Callable, layout: Optional[dict] = None) -> None:
    """Read the chunks ``wanted`` (in any order) and hand each to ``place(chunk id, features
    (n_rows, n_features), labels (n_rows,))`` as read-only views over the driver's blobs.
    ``place`` copies them out and returns (features, labels) buffers holding the same bytes to
    hash, or None to hash the blobs themselves. ``layout`` ({chunk id: (first row id, n_rows)},
    from the chunk index the caller placed rows by) must be what each chunk's row says: on
    SQLite the index is a B-tree of its own, which a file edited behind the store's back can
    put out of step with the table, and rows would land where another chunk's belong with
    every digest matching.

    Plain Core rows (no ORM objects, no identity map), READ_BATCH chunks a query on SQLite, one
    binary COPY handed over row by row on PostgreSQL, so only a few MB of blobs are alive at once
    and their memory is reused. With ``verify`` every chunk's record digest is recomputed on
    worker threads (the hashes release the GIL): one pass over each chunk's bytes, compared with
    its digest column and with the digest the event chain lists for it (the column alone can be
    rewritten with the chunk). The hashes run on plain threads (``map_on_threads``), never while
    the fetching thread runs (a pool's workers waiting for the GIL between hashes serialised
    them): chunks copied whole into the result are hashed from there once every read is done,
    the others from their blobs HASH_BATCH chunks at a time. Raises IntegrityError for the first
    chunk (in the order read) that does not match, before returning, so a caller never returns
    unverified rows.
    """
    dtype = feature_dtype(dataset)
    d = dataset.n_features
    checks: list = []  # [row values without blobs, its digest or the buffers to hash], read order
    blobs: list = []  # where in checks the chunks hashed from their blobs still to hash are
    # The digests the chain recorded: the chunk's own digest column can be rewritten with it.
    # The dataset's record too: its dtype and feature count say how the blobs are read.
    expected = {}
    if verify:
        listed = chain_listings(session, {"chunks": wanted, "datasets": [dataset.id]})
        check_first_listing(dataset, listed)
        expected = listed["chunks"]

    def hash_checks(at: list) -> None:
        hashed = map_on_threads(digest_or_error, [(checks[k][0], *checks[k][1]) for k in at])
        for k, digest in zip(at, hashed):
            checks[k][1] = digest

    def settle():
        hash_checks([k for k, check in enumerate(checks) if isinstance(check[1], tuple)])
        for values, actual in checks:
            if isinstance(actual, IntegrityError):
                raise actual
            if actual != values["record_digest"] or actual != expected.get(values["id"]):
                which = ("its digest" if actual != values["record_digest"] else
                         "the digest the event chain recorded for it")
                raise IntegrityError(f"chunk {values['id']} (rows {values['first_row_id']}.."
                                     f"{values['first_row_id'] + values['n_rows'] - 1}) does not "
                                     f"match {which}")

    def handle(row) -> None:
        values = dict(zip(CHUNK_COLUMNS, row))
        if values["dataset_id"] != dataset.id:
            settle()
            raise NotFoundError(f"rows of chunk {values['id']} belong to another dataset")
        feats, labs = values.pop("features"), values.pop("labels")
        n = int(values["n_rows"])
        if layout is not None and layout.get(values["id"]) != (values["first_row_id"], n):
            settle()
            first, count = layout.get(values["id"], (0, 0))
            raise IntegrityError(f"chunk {values['id']} holds rows {values['first_row_id']}.."
                                 f"{values['first_row_id'] + n - 1}, its index entry says "
                                 f"{first}..{first + count - 1}: run `lineage verify`")
        if len(feats) != n * d * dtype.itemsize or len(labs) != n * LABEL_DTYPE.itemsize:
            if verify:
                checks.append([values, (feats, labs)])
            settle()
            raise IntegrityError(f"chunk {values['id']} holds {len(feats)} feature and "
                                 f"{len(labs)} label bytes, not {n} rows' worth")
        copied = place(values["id"], np.frombuffer(feats, dtype=dtype).reshape(n, d),
                       np.frombuffer(labs, dtype=LABEL_DTYPE))
        if verify and copied is not None:  # hashed from the result, after the reads
            checks.append([values, copied])
        elif verify:  # hashed from its blobs, a batch at a time, so they are freed soon
            blobs.append(len(checks))
            checks.append([values, (feats, labs)])
            if len(blobs) >= HASH_BATCH:
                hash_checks(blobs)
                blobs.clear()

    with closing(read_chunk_rows(session, wanted)) as rows:
        for row in rows:
            handle(row)
            row = None  # free the blobs before the next chunk
    settle()


def read_chunk_rows(session: Session, chunk_ids: list[int]) -> Iterator[tuple]:
    """Every chunk row of ``chunk_ids`` (columns as ``CHUNK_COLUMNS``, in any order), in the
    session's transaction, one at a time, so only one chunk's blobs need be alive; a chunk that
    is not there is an IntegrityError. PostgreSQL: one binary COPY (``pg_copy_chunks``; 1M
    rows, 123 chunks, root version read, 15 interleaved rounds: 306 ms with SELECTs of 16
    chunks in binary, 195 ms by COPY; a second pooled connection on a helper thread measured
    no faster on this 2-core machine, 210 ms). SQLite: ``_sqlite_chunk_rows``."""
    if session.get_bind().dialect.name == "postgresql":
        rows = pg_copy_chunks(session.connection().connection.driver_connection,
                              CHUNK_COLUMNS, chunk_ids)
    else:
        rows = _sqlite_chunk_rows(session, chunk_ids)
    seen: set = set()
    at = {name: CHUNK_COLUMNS.index(name) for name in (
        "first_row_id", "n_rows", "ingest_id", "transformation_id", "dataset_id", *_BLOB_COLUMNS)}
    try:
        for row in rows:
            check_chunk_layout(row[0], row[at["first_row_id"]], row[at["n_rows"]],
                               row[at["ingest_id"]], row[at["transformation_id"]],
                               row[at["dataset_id"]])
            for name in _BLOB_COLUMNS:  # PostgreSQL's COPY hands a NULL over as None
                if not isinstance(row[at[name]], (bytes, bytearray, memoryview)):
                    raise _not_a_blob(row[0], name, type(row[at[name]]).__name__)
            seen.add(row[0])
            yield row
            row = None
    finally:
        # Ends PostgreSQL's COPY at once when a row is refused, here or by the caller: a COPY
        # left open would hang the transaction's rollback.
        rows.close()
    if len(seen) != len(set(chunk_ids)):
        missing = sorted(set(chunk_ids) - seen)
        raise IntegrityError(f"chunk {missing[0]} is missing: run `lineage verify`")


def _sqlite_chunk_rows(session: Session, chunk_ids: list[int]) -> Iterator[tuple]:
    """The blobs are read with SQLite's incremental blob API, straight from the pages into one
    bytes object each: a SELECT of the blob assembles its overflow pages into a buffer of
    SQLite's first and copies that into the bytes (1M rows, verified read_rows in 21
    alternating rounds: 61.0 -> 57.7 ms). The other columns come from one blob-free query per
    READ_BATCH chunks (``typeof`` reads no blob). SQLite's dynamic types let a record changed
    behind the store's back hold text or a number where a blob belongs: an IntegrityError. A
    chunks table rebuilt behind the store's back, whose id is not its rowid
    (``_id_is_the_rowid``), is read with plain SELECTs."""
    driver = session.connection().connection.driver_connection
    meta = [n for n in CHUNK_COLUMNS if n not in _BLOB_COLUMNS]
    by_rowid = _id_is_the_rowid(driver)
    for start in range(0, len(chunk_ids), READ_BATCH):
        marks = ", ".join(str(int(c)) for c in chunk_ids[start:start + READ_BATCH])
        if not by_rowid:  # a chunks table rebuilt behind the store's back: plain SELECTs
            for row in driver.execute(f"SELECT {', '.join(CHUNK_COLUMNS)} FROM chunks "
                                      f"WHERE id IN ({marks})").fetchall():
                yield _blob_typed(dict(zip(CHUNK_COLUMNS, row)))
            continue
        rows = driver.execute(f"SELECT {', '.join(meta)}, typeof(features), typeof(labels) "
                              f"FROM chunks WHERE id IN ({marks})").fetchall()
        for row in rows:
            values = dict(zip(meta, row))
            for name, kind in zip(_BLOB_COLUMNS, row[len(meta):]):
                if kind != "blob":
                    raise _not_a_blob(values["id"], name, kind)
                with driver.blobopen("chunks", name, values["id"], readonly=True) as blob:
                    values[name] = blob.read()
            yield tuple(values[n] for n in CHUNK_COLUMNS)
            values = None


def _id_is_the_rowid(driver) -> bool:
    """The blob API opens a row by its rowid. In the table lineage creates, ``id INTEGER``
    primary key is the rowid; a table rebuilt otherwise (WITHOUT ROWID, another key, a column
    named like the rowid) is read by SELECT, so the blobs always come from the row named."""
    columns = driver.execute("PRAGMA table_info(chunks)").fetchall()
    sql = driver.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'chunks'"
                         ).fetchone()
    keys = [c for c in columns if c[5]]
    return (sql is not None and "WITHOUT ROWID" not in " ".join(sql[0].upper().split())
            and not {c[1].lower() for c in columns} & {"rowid", "oid", "_rowid_"}
            and len(keys) == 1 and keys[0][1] == "id" and keys[0][2].upper() == "INTEGER")


def _not_a_blob(chunk_id, name: str, kind: str) -> IntegrityError:
    return IntegrityError(f"chunk {chunk_id} holds {kind} as its {name}, not bytes: "
                          "run `lineage verify`")


def _blob_typed(values: dict) -> tuple:
    for name in _BLOB_COLUMNS:
        if not isinstance(values[name], bytes):
            kind = {str: "text", int: "integer", float: "real"}.get(type(values[name]), "null")
            raise _not_a_blob(values["id"], name, kind)
    return tuple(values[n] for n in CHUNK_COLUMNS)


def chunk_digest(values: dict, feats, labs) -> str:
    """chain.record_digest of a chunk row, its blobs' bytes given as any contiguous buffers:
    each is hashed once, in place, with the function the row names (``blob_hash``)."""
    hash_name = blob_hash_of(values)
    return record_digest("chunks", {**values, "features": blob_digest(feats, hash_name),
                                    "labels": blob_digest(labs, hash_name)})


def digest_or_error(values: dict, feats, labs):
    """chunk_digest, or the IntegrityError it met (a blob hash lineage does not know) naming
    the chunk, returned rather than raised: a reader that hashes many chunks at once still
    reports the first chunk in read order that fails, whatever failed."""
    first, n = values["first_row_id"], values["n_rows"]
    try:
        return chunk_digest(values, feats, labs)
    except IntegrityError as exc:
        return IntegrityError(f"chunk {values['id']} (rows {first}..{first + n - 1}): {exc}")
    except (ValueError, TypeError):  # a value no canonical JSON holds, e.g. SQLite's Infinity
        return IntegrityError(f"chunk {values['id']} (rows {first}..{first + n - 1}) holds a "
                              "value lineage never writes: run `lineage verify`")


def _count_sorted(row_ids: np.ndarray, firsts: np.ndarray,
                  counts: np.ndarray) -> Optional[np.ndarray]:
    """For strictly increasing ``row_ids`` that all exist: how many fall in each chunk (chunks
    ordered by first row id), found with one binary search per chunk instead of one per row.
    None when the ids are not sorted, chunks overlap, or some id is in no chunk."""
    if len(row_ids) > 1 and not (row_ids[1:] > row_ids[:-1]).all():
        return None
    ends = firsts + counts
    if len(firsts) > 1 and not (firsts[1:] >= ends[:-1]).all():
        return None
    per_chunk = (np.searchsorted(row_ids, ends, side="left")
                 - np.searchsorted(row_ids, firsts, side="left"))
    return per_chunk if int(per_chunk.sum()) == len(row_ids) else None


def verify_chunk(chunk: Chunk) -> None:
    values = {c.name: getattr(chunk, c.key) for c in Chunk.__table__.columns}
    if record_digest("chunks", values) != chunk.record_digest:
        raise IntegrityError(f"chunk {chunk.id} (rows {chunk.first_row_id}.."
                             f"{chunk.first_row_id + chunk.n_rows - 1}) does not match its digest")
