"""Row payloads in contiguous chunks.

Rows are stored CHUNK_ROWS at a time as two blobs (features, labels) with one digest per chunk:
DESIGN.md's measured facts show chunked blobs run ~20x faster than a record per row. Row ids are
global and contiguous within a chunk, so a row is still addressable one by one: its chunk is found
by binary search over the chunks' first row ids.
"""

from typing import Callable, Optional

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lineage.chain import record_digest
from lineage.errors import IntegrityError, NotFoundError
from lineage.tables import Chunk, Dataset

CHUNK_ROWS = 8192
LABEL_DTYPE = np.dtype("<i8")
ID_DTYPE = np.dtype("<i8")

Progress = Optional[Callable[[int, int], None]]  # (rows done, rows total)


def ids_to_bytes(ids: np.ndarray) -> bytes:
    return np.ascontiguousarray(ids, dtype=ID_DTYPE).tobytes()


def ids_from_bytes(blob: Optional[bytes]) -> np.ndarray:
    return np.frombuffer(bytes(blob), dtype=ID_DTYPE) if blob else np.empty(0, dtype=ID_DTYPE)


def feature_dtype(dataset: Dataset) -> np.dtype:
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
    first = next_row_id(tx.session)
    X = np.ascontiguousarray(X, dtype=feature_dtype(dataset))
    y = np.ascontiguousarray(y, dtype=LABEL_DTYPE)
    n = len(X)
    batch: list[dict] = []
    for start in range(0, n, CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, n)
        batch.append({
            "dataset_id": dataset.id, "first_row_id": first + start, "n_rows": stop - start,
            "features": X[start:stop].tobytes(), "labels": y[start:stop].tobytes(),
            "ingest_id": ingest_id, "transformation_id": transformation_id,
        })
        if len(batch) == 16 or stop == n:  # bounded memory: a few MB of blobs per insert
            tx.add_rows(Chunk, batch)
            batch = []
            if progress:
                progress(stop, n)
    return first


def _chunk_index(session: Session) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = session.execute(select(Chunk.id, Chunk.first_row_id, Chunk.n_rows)
                           .order_by(Chunk.first_row_id)).all()
    arr = np.array(rows, dtype=np.int64).reshape(-1, 3)
    return arr[:, 0], arr[:, 1], arr[:, 2]


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
    chunk_ids, firsts, counts = _chunk_index(session)
    per_chunk = _count_sorted(row_ids, firsts, counts)
    if per_chunk is None:  # ids in any order (or some missing): locate each id on its own
        pos = np.searchsorted(firsts, row_ids, side="right") - 1
        bad = (pos < 0) | (row_ids >= firsts[np.maximum(pos, 0)] + counts[np.maximum(pos, 0)])
        if bad.any():
            raise NotFoundError(f"no row with id {int(row_ids[bad][0])}")
        needed = np.unique(pos)
    else:
        pos = None
        needed = np.flatnonzero(per_chunk)
    wanted = [int(chunk_ids[p]) for p in needed]
    blobs: dict[int, Chunk] = {}
    for start in range(0, len(wanted), 256):
        for chunk in session.scalars(select(Chunk).where(Chunk.id.in_(wanted[start:start + 256]))):
            if chunk.dataset_id != dataset.id:
                raise NotFoundError(f"rows of chunk {chunk.id} belong to another dataset")
            if verify:
                verify_chunk(chunk)
            blobs[chunk.id] = chunk
    if pos is None and not (per_chunk[needed] == counts[needed]).all():
        # Sorted ids with gaps (a version after filters): copy each chunk's rows straight into
        # the result, one copy per row, as a whole read's concatenation does.
        X_out = np.empty((len(row_ids), n_features), dtype=dtype)
        keep = np.zeros(int(counts[needed].sum()), dtype=bool)
        start = base = 0
        for p, c in zip(needed, wanted):
            stop = start + int(per_chunk[p])
            mask = keep[base:base + int(counts[p])]
            mask[row_ids[start:stop] - firsts[p]] = True  # compress runs ~2x faster than take
            np.compress(mask, np.frombuffer(blobs[c].features, dtype=dtype).reshape(-1, n_features),
                        axis=0, out=X_out[start:stop])
            start, base = stop, base + int(counts[p])
        y_all = np.concatenate([np.frombuffer(blobs[c].labels, dtype=LABEL_DTYPE) for c in wanted])
        return X_out, y_all[keep]
    # Concatenate the needed chunks once, then gather every row with one fancy index.
    feats = [np.frombuffer(blobs[c].features, dtype=dtype) for c in wanted]
    labs = [np.frombuffer(blobs[c].labels, dtype=LABEL_DTYPE) for c in wanted]
    all_X = np.concatenate(feats).reshape(-1, n_features)
    all_y = np.concatenate(labs)
    if pos is None:
        if len(all_y) == len(row_ids) and (per_chunk[needed] == counts[needed]).all():
            return all_X, all_y  # sorted ids filling whole chunks (a whole read): no gather copy
        pos = np.repeat(np.arange(len(firsts)), per_chunk)
    base = np.zeros(len(chunk_ids), dtype=np.int64)
    base[needed] = np.concatenate([[0], np.cumsum(counts[needed])[:-1]])
    offsets = base[pos] + (row_ids - firsts[pos])
    return all_X[offsets], all_y[offsets]


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


def read_rows(store, row_ids=None, *, dataset: Optional[str] = None,
              verify: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stored rows as numpy arrays, for inspection and audit (training reads approved snapshots).

    ``row_ids`` : sequence of ints, or None for every row of the dataset (the store's only dataset
    unless ``dataset`` names one). Returns (row_ids, X, y): row_ids of shape (n_samples,), X of shape
    (n_samples, n_features) and y of shape (n_samples,) with the labels the rows were stored with.
    Chunks read are checked against their digests unless ``verify`` is False.
    """
    from lineage.ingest import find_dataset

    with store.read() as session:
        ds = find_dataset(session, dataset)
        if row_ids is None:
            chunks = session.execute(select(Chunk.first_row_id, Chunk.n_rows)
                                     .where(Chunk.dataset_id == ds.id)
                                     .order_by(Chunk.first_row_id)).all()
            ids = (np.concatenate([np.arange(f, f + n, dtype=np.int64) for f, n in chunks])
                   if chunks else np.empty(0, dtype=np.int64))
        else:
            ids = np.asarray(list(row_ids) if not hasattr(row_ids, "dtype") else row_ids, dtype=np.int64)
        X, y = gather_rows(session, ds, ids, verify=verify)
        return ids, X, y
