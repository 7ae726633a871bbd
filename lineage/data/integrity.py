"""``lineage verify`` of versions: every version's content digest recomputed under its own scheme
(``lineage.data.digests``), in the transaction that ``store.verify.verify_store`` checks the chain
and the records in (the store layer cannot read versions' membership itself).
"""

from collections import Counter
from typing import Callable, Optional

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lineage.data.deltas import (
    Members,
    canonical_overrides,
    is_ingest_root,
    member_state,
    stored_labels,
    stream_digests,
)
from lineage.data.digests import (
    SCHEME_FLAT,
    SCHEME_MERKLE,
    composed_digest,
    leaves_from_blob,
    scheme_of,
    version_leaves,
)
from lineage.errors import IntegrityError, NotFoundError
from lineage.store.chunks import (
    LABEL_DTYPE,
    check_chunk_layout,
    chunk_index,
    feature_dtype,
    ids_from_bytes,
)
from lineage.store.engine import Store
from lineage.store.tables import Chunk, Dataset, Ingest, Transformation, Version
from lineage.store.verify import VerifyReport, verify_store


def verify_all(store: Store, *, expect: Optional[str] = None, fast: bool = False,
               progress: Optional[Callable[..., None]] = None) -> VerifyReport:
    """``lineage verify``: the chain, every record digest and every version's content digest;
    IntegrityError naming the first problem. ``fast`` leaves chunk payloads unread (the chunk
    digests as recorded; flat, scheme-1 digests are then not recomputed, as they hash the
    payloads themselves) and says so in the report's ``fast``."""
    return verify_store(store, expect=expect, fast=fast, progress=progress,
                        content_check=check_content_digests)


def check_content_digests(session: Session, *, fast: bool = False,
                          progress: Optional[Callable[..., None]] = None) -> int:
    """Check the chunks' layout (``check_chunk_origins``), then recompute every version's
    content digest; returns how many digests were recomputed.

    Scheme 2: the recorded leaves must fold into the content digest; unless ``fast``, the leaves
    are rebuilt from the version's deltas, the stored labels of its overrides and the chunks'
    record digests (which ``verify_store`` has just re-hashed from the payloads) and must be the
    recorded ones. Scheme 1 (unless ``fast``): the flat sha256, streamed over the chunks once per
    dataset for all its flat versions. An ingest's root version must add exactly the ingest's rows
    (reads use the ingest's range instead of the root's id blob), and its leaves are rebuilt even
    when ``fast`` (from the chunk index: no payload read); every other version has a parent."""
    check_chunk_origins(session)
    checked = 0
    datasets = session.scalars(select(Dataset).order_by(Dataset.id)).all()
    for ds in datasets:
        index = chunk_index(session, ds.id)
        versions = session.scalars(select(Version).where(Version.dataset_id == ds.id)
                                   .order_by(Version.id)).all()
        flat: list[tuple[Version, Members]] = []
        for done, v in enumerate(versions, 1):
            if progress:
                progress(done, len(versions), f"content digests of {ds.name}")
            if v.parent_id is None and v.ingest_id is None:
                raise IntegrityError(f"version v{v.id} has neither a parent version nor an "
                                     "ingest: lineage writes no such version")
            if is_ingest_root(v):
                _check_root(session, v)
            if scheme_of(v) == SCHEME_MERKLE:
                _check_merkle(session, ds, v, index, fast)
                checked += 1
            elif scheme_of(v) == SCHEME_FLAT:
                if not fast:
                    ids, over_ids, over_labels, _ = member_state(session, v)
                    y = stored_labels(session, ds, ids).copy()
                    if len(over_ids):
                        inside = np.isin(over_ids, ids)
                        y[np.searchsorted(ids, over_ids[inside])] = over_labels[inside]
                    flat.append((v, Members(row_ids=ids, X=None, y=y)))
            else:
                raise IntegrityError(f"version v{v.id} records an unknown digest scheme "
                                     f"{v.digest_scheme}: run `lineage verify` with a newer lineage")
        if flat:
            for (v, _), digest in zip(flat, stream_digests(session, ds, [m for _, m in flat])):
                if digest != v.content_digest:
                    raise IntegrityError(f"version v{v.id}: its rows no longer match its content "
                                         "digest (flat, scheme 1)")
                checked += 1
    return checked


def check_chunk_origins(session: Session) -> None:
    """Every stored row is in one chunk, and every chunk is laid out as lineage writes it: 1 to
    CHUNK_ROWS rows, blobs of exactly that many rows of its dataset, one origin; an ingest's
    chunks tile exactly the ingest's rows and the ingest has its root version; a
    transformation's chunks hold rows one of its versions adds. From the chunk index, the blob
    lengths and the record tables alone (no payload), so ``verify --fast`` runs it too. The event
    chain cannot tell records appended with events of their own from a write (it has no secret),
    and no version's digest covers a chunk no version holds, yet ``read_rows`` of every stored
    row would return it. A whole ingest forged with its root version is such an append: only
    ``verify --expect`` or a checkpoint can tell it (DESIGN's threat model)."""
    rows = session.execute(select(Chunk.id, Chunk.dataset_id, Chunk.first_row_id, Chunk.n_rows,
                                  Chunk.ingest_id, Chunk.transformation_id)
                           .order_by(Chunk.first_row_id)).all()
    for chunk_id, _, first, n, ingest_id, transformation_id in rows:
        check_chunk_layout(chunk_id, first, n, ingest_id, transformation_id)
    _check_blob_lengths(session)
    ingests = {i.id: i for i in session.scalars(select(Ingest))}
    both = session.scalar(select(Version.id).where(Version.ingest_id.is_not(None),
                                                   Version.parent_id.is_not(None)).limit(1))
    if both is not None:
        raise IntegrityError(f"version v{both} has both a parent version and an ingest: "
                             "lineage writes no such version")
    roots = Counter(session.scalars(select(Version.ingest_id).where(Version.ingest_id.is_not(None))))
    for ingest_id in ingests:
        if not roots[ingest_id]:
            raise IntegrityError(f"ingest {ingest_id} has no root version: lineage writes one "
                                 "with every ingest")
    held = dict.fromkeys(ingests, 0)
    by_transformation: dict[int, list] = {}
    end, end_chunk = None, None
    for chunk_id, dataset_id, first, n, ingest_id, transformation_id in rows:
        where = f"chunk {chunk_id} (rows {first}..{first + n - 1})"
        if end is not None and first < end:
            raise IntegrityError(f"chunks {end_chunk} and {chunk_id} both hold row {first}: "
                                 "lineage writes each row once")
        end, end_chunk = first + n, chunk_id
        if (ingest_id is None) == (transformation_id is None):
            raise IntegrityError(f"{where} comes from " + (
                "neither an ingest nor a transformation" if ingest_id is None else
                "both an ingest and a transformation") + ": lineage writes no such chunk")
        if ingest_id is not None:
            ingest = ingests.get(ingest_id)
            if (ingest is None or ingest.dataset_id != dataset_id or first < ingest.first_row_id
                    or first + n > ingest.first_row_id + ingest.n_rows):
                raise IntegrityError(f"{where} lies outside the rows of ingest {ingest_id}")
            held[ingest_id] += n
        else:
            by_transformation.setdefault(transformation_id, []).append((chunk_id, dataset_id,
                                                                        first, n))
    for ingest_id, n in held.items():
        if n != ingests[ingest_id].n_rows:
            raise IntegrityError(f"ingest {ingest_id}: its chunks hold {n} of its "
                                 f"{ingests[ingest_id].n_rows} rows")
    for transformation_id, chunks in by_transformation.items():
        t = session.get(Transformation, transformation_id)
        added = [ids_from_bytes(a) for a in session.scalars(
            select(Version.added_ids).where(Version.transformation_id == transformation_id))]
        added = np.unique(np.concatenate(added)) if added else np.empty(0, dtype=np.int64)
        for chunk_id, dataset_id, first, n in chunks:
            # Rows first .. first + n - 1 all added: that many added ids in the range (no
            # array of the chunk's claimed size is built).
            inside = np.searchsorted(added, first + n) - np.searchsorted(added, first)
            if t is None or t.dataset_id != dataset_id or inside != n:
                raise IntegrityError(f"chunk {chunk_id} (rows {first}..{first + n - 1}) holds "
                                     f"rows no version of transformation {transformation_id} adds")


def _check_blob_lengths(session: Session) -> None:
    # length() of a blob is read from the record's header on SQLite and from the value's
    # header on PostgreSQL: the payloads stay unread. Only columns up to the blobs are asked
    # for, so SQLite need not walk the overflow pages to the columns after them.
    datasets = {ds.id: (ds.n_features * feature_dtype(ds).itemsize)
                for ds in session.scalars(select(Dataset))}
    for chunk_id, dataset_id, n, features, labels in session.execute(
            select(Chunk.id, Chunk.dataset_id, Chunk.n_rows, func.length(Chunk.features),
                   func.length(Chunk.labels)).order_by(Chunk.id)):
        row_bytes = datasets.get(dataset_id)
        if row_bytes is None or features != n * row_bytes or labels != n * LABEL_DTYPE.itemsize:
            raise IntegrityError(f"chunk {chunk_id} holds {features} feature and {labels} label "
                                 f"bytes, not {n} rows' worth of its dataset's")


def _check_root(session: Session, v: Version) -> None:
    # A root adds exactly its ingest's rows: an empty blob says so (migration 0009 on), an
    # older root lists them (``deltas.ingest_root_ids``). That its leaves are those of its
    # ingest's chunks is _check_merkle's (fast or not).
    ingest = session.get(Ingest, v.ingest_id)
    added = ids_from_bytes(v.added_ids)
    if ingest is None or len(added) not in (0, ingest.n_rows) or v.n_rows != ingest.n_rows or (
            len(added) and (int(added[0]) != ingest.first_row_id
                            or int(added[-1]) != ingest.first_row_id + ingest.n_rows - 1
                            or not bool((np.diff(added) == 1).all()))):
        raise IntegrityError(f"version v{v.id}: its rows are not those of ingest {v.ingest_id}")


def _check_merkle(session: Session, ds: Dataset, v: Version, index, fast: bool) -> None:
    try:
        leaf_ids, leaves = leaves_from_blob(v.chunk_leaves)
    except ValueError as exc:
        raise IntegrityError(f"version v{v.id}: {exc}") from None
    if composed_digest(v.n_rows, leaves) != v.content_digest:
        raise IntegrityError(f"version v{v.id}: its content digest is not the Merkle root of "
                             "its recorded leaves")
    if fast and not is_ingest_root(v):
        return
    # An ingest's root is rebuilt in fast mode too: its rows are its ingest's range, it has no
    # overrides, so its leaves come from the chunk index alone (no payload read), and a forged
    # ingest range or root-to-ingest link is caught without re-reading the chunks.
    ids, over_ids, over_labels, _ = member_state(session, v)
    if len(ids) != v.n_rows:
        raise IntegrityError(f"version v{v.id}: its deltas give {len(ids)} rows, it records "
                             f"{v.n_rows}")
    try:
        o_ids, o_labels = canonical_overrides(session, ds, ids, over_ids, over_labels, index=index)
        chunk_ids, rebuilt = version_leaves(index, ids, o_ids, o_labels)
    except (ValueError, NotFoundError):
        raise IntegrityError(f"version v{v.id}: some of its rows have no stored chunk") from None
    if rebuilt != leaves or not np.array_equal(chunk_ids, leaf_ids):
        raise IntegrityError(f"version v{v.id}: its rows, labels or chunks no longer compose to "
                             "its content digest")
