"""A few rows out of chunks, without reading the chunks whole.

A snapshot that takes few of a chunk's rows (the 2,000-row evaluation snapshot of a 10M-row
dataset holds one or two rows of each of its 1,221 chunks) freezes, beside the chunk's record
digest, a digest of just those rows' bytes (``rows_digest``) in its manifest. Reading it then
fetches only those rows (SQLite: incremental blob reads, which walk the blob's overflow pages
instead of copying them; PostgreSQL: substring of the bytea, which with STORAGE EXTERNAL reads
only the TOAST slices holding it) and checks every byte it returns against that digest.
"""

import hashlib
import sqlite3

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

# A chunk is read row by row when a snapshot takes at most 1/SPARSE_SHARE of its rows (32 of
# 8,192). Measured on a 10M-row SQLite store (64 features, 2 loaded cores): 2 to 16 rows of a
# chunk read and hashed in 0.06-0.23 ms against 0.9-1.5 ms for the whole chunk; at 64 to 128
# rows the two cross (1.0-2.0 ms either way); at 256 rows, 3.2 ms against 1.8 ms.
SPARSE_SHARE = 256


def is_sparse(taken: int, n_rows: int) -> bool:
    return 0 < taken and taken * SPARSE_SHARE <= n_rows


def can_read_sparse(session: Session) -> bool:
    return session.get_bind().dialect.name in ("sqlite", "postgresql")


def rows_digest(feats: np.ndarray, labels: np.ndarray) -> str:
    """sha256 of some rows of one chunk: their feature bytes (C order) then their stored labels
    (int64 little-endian), in row order."""
    h = hashlib.sha256(b"lineage-chunk-rows-v1\0")
    h.update(np.ascontiguousarray(feats).data)
    h.update(np.ascontiguousarray(labels, dtype="<i8").data)
    return h.hexdigest()


def read_rows_at(session: Session, wanted, ids: np.ndarray, X: np.ndarray, y: np.ndarray) -> None:
    """Fill X[lo:hi], y[lo:hi] with the stored rows ``ids[lo:hi]`` of each chunk in ``wanted``
    ((chunk id, first row id, n_rows, lo, hi), ids sorted). Raises ValueError when a chunk is
    missing or its blobs do not have the size its n_rows gives. Checks no digest: the caller
    compares ``rows_digest`` of what was filled with the one it trusts."""
    d, dtype = X.shape[1], X.dtype
    row_bytes, label_bytes = d * dtype.itemsize, y.dtype.itemsize
    if session.get_bind().dialect.name == "sqlite":
        raw = session.connection().connection.driver_connection
        for chunk_id, first, n, lo, hi in wanted:
            offsets = ids[lo:hi] - first
            breaks = np.flatnonzero(np.diff(offsets) != 1) + 1
            starts = np.concatenate([[0], breaks]).astype(np.int64)
            ends = np.concatenate([breaks, [len(offsets)]]).astype(np.int64)
            try:
                fb = raw.blobopen("chunks", "features", int(chunk_id), readonly=True)
                lb = raw.blobopen("chunks", "labels", int(chunk_id), readonly=True)
            except sqlite3.OperationalError:  # no such row
                raise ValueError(f"chunk {chunk_id} is missing") from None
            with fb, lb:
                if len(fb) != n * row_bytes or len(lb) != n * label_bytes:
                    raise ValueError(f"chunk {chunk_id} does not hold {n} rows")
                for s, e in zip(starts.tolist(), ends.tolist()):
                    a, b = int(offsets[s]), int(offsets[e - 1]) + 1
                    X[lo + s:lo + e] = np.frombuffer(fb[a * row_bytes:b * row_bytes],
                                                     dtype=dtype).reshape(-1, d)
                    y[lo + s:lo + e] = np.frombuffer(lb[a * label_bytes:b * label_bytes],
                                                     dtype=y.dtype)
        return
    cids, offs, pos = [], [], []
    for chunk_id, first, n, lo, hi in wanted:
        cids += [int(chunk_id)] * (hi - lo)
        offs += (ids[lo:hi] - first).tolist()
        pos += list(range(lo, hi))
    sizes = {int(c): int(n) for c, _, n, _, _ in wanted}
    rows = session.connection().execute(text(
        "SELECT k.cid, k.pos, substring(c.features FROM CAST(k.off * :rb + 1 AS integer) FOR "
        "CAST(:rb AS integer)), substring(c.labels FROM CAST(k.off * :lb + 1 AS integer) FOR "
        "CAST(:lb AS integer)), octet_length(c.features), "
        "octet_length(c.labels) FROM unnest(CAST(:cids AS bigint[]), CAST(:offs AS bigint[]), "
        "CAST(:pos AS bigint[])) AS k(cid, off, pos) JOIN chunks c ON c.id = k.cid"),
        {"rb": row_bytes, "lb": label_bytes, "cids": cids, "offs": offs, "pos": pos}).all()
    if len(rows) != len(pos):
        raise ValueError(f"{len(pos) - len(rows)} rows have no chunk")
    for cid, p, feats, labs, n_feat, n_lab in rows:
        if n_feat != sizes[cid] * row_bytes or n_lab != sizes[cid] * label_bytes:
            raise ValueError(f"chunk {cid} does not hold {sizes[cid]} rows")
        X[p] = np.frombuffer(feats, dtype=dtype)
        y[p] = np.frombuffer(labs, dtype=y.dtype)[0]
