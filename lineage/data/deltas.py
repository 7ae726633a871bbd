"""A version's state from its deltas: the chain of parent versions, member ids and label overrides
composed root first, the whole rows read back (``materialize``), a new version recorded as a delta,
and the version content digest (the one definition; ``stream_digests`` computes the same value
chunk by chunk). Also the set helpers on sorted id arrays that trace and transforms share."""

import hashlib
from dataclasses import dataclass
from typing import Optional

import numpy as np
from sqlalchemy import literal, select
from sqlalchemy.orm import Session

from lineage.data.datasets import LAZY_BLOBS
from lineage.errors import NotFoundError
from lineage.store.chunks import (
    ID_DTYPE,
    LABEL_DTYPE,
    chunk_blobs,
    feature_dtype,
    gather_rows,
    ids_from_bytes,
    ids_to_bytes,
)
from lineage.store.tables import Chunk, Dataset, Version

EMPTY = np.empty(0, dtype=ID_DTYPE)


@dataclass(frozen=True)
class Members:
    """The members of a version: row ids (sorted), their labels, and their features."""

    row_ids: np.ndarray  # (n_samples,) int64
    X: np.ndarray  # (n_samples, n_features)
    y: np.ndarray  # (n_samples,) int64


def content_hasher(row_ids: np.ndarray, y: np.ndarray):
    """The version content digest's sha256, fed its ids and labels; its feature bytes follow, in
    row-id order (``content_digest`` at once, ``stream_digests`` chunk by chunk)."""
    # hashlib reads the contiguous arrays' buffers in place: the same bytes as .tobytes(), no copy.
    h = hashlib.sha256(b"lineage-version-v1\0")
    h.update(np.ascontiguousarray(row_ids, dtype=ID_DTYPE))
    h.update(np.ascontiguousarray(y, dtype=LABEL_DTYPE))
    return h


def content_digest(row_ids: np.ndarray, X: np.ndarray, y: np.ndarray) -> str:
    """A version's content digest: sha256 over its sorted member ids, their labels, their features."""
    h = content_hasher(row_ids, y)
    h.update(np.ascontiguousarray(X))
    return h.hexdigest()


def chain_ids(session: Session, version: Version) -> list[int]:
    """The ids of ``version`` and its ancestors, root first: the one walk up the parent links,
    over one query of the dataset's (id, parent) pairs."""
    parents = dict(session.execute(select(Version.id, Version.parent_id)
                                   .where(Version.dataset_id == version.dataset_id)).all())
    chain = [version.id]
    while parents.get(chain[-1]) is not None and len(chain) <= len(parents):
        chain.append(parents[chain[-1]])
    return chain[::-1]


def version_chain(session: Session, version: Version) -> list[Version]:
    """``version`` and its ancestors, root first (delta blobs deferred: walking never reads a
    root's id array)."""
    return [version if vid == version.id else session.get(Version, vid, options=LAZY_BLOBS)
            for vid in chain_ids(session, version)]


# Set operations on sorted unique id arrays by binary search and merge: O(k log n) for a delta
# of k ids against n members, where np.isin / np.union1d would sort or hash all n each time.
# The one set of these helpers: trace and transforms import them.
def in_sorted(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Mask over ``ids``: which of them are in ``sorted_ids``."""
    if len(sorted_ids) == 0:
        return np.zeros(len(ids), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return sorted_ids[pos] == ids


def union_sorted(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The sorted unique union of two sorted unique id arrays."""
    if not len(a) or not len(b):
        return b if not len(a) else a
    c = np.concatenate([a, b])
    c.sort(kind="stable")
    return c[np.concatenate([[True], c[1:] != c[:-1]])]


def minus_sorted(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The ids of sorted ``a`` that are not in sorted ``b``."""
    return a[~in_sorted(b, a)] if len(a) and len(b) else a


# Delta columns of a version, in the order member_labels reads them.
_DELTAS = (Version.removed_ids, Version.added_ids, Version.added_labels, Version.relabel_ids,
           Version.relabel_labels)
_MAX_DEPTH = 100_000  # a chain deeper than this (only a damaged store) is walked one by one


def _chain_deltas(session: Session, version: Version) -> list[tuple]:
    """The delta blobs of ``version``'s chain, root first: one recursive query for all of them
    instead of a query (and an ORM object) per ancestor and another per deferred blob."""
    walk = (select(Version.id, Version.parent_id, literal(0).label("depth"))
            .where(Version.id == version.id).cte("chain_walk", recursive=True))
    walk = walk.union_all(select(Version.id, Version.parent_id, walk.c.depth + 1)
                          .where(Version.id == walk.c.parent_id, walk.c.depth < _MAX_DEPTH))
    # No ORDER BY: SQLite would copy the blobs through a sorter; ordered here instead.
    rows = session.execute(select(walk.c.depth, walk.c.parent_id, *_DELTAS)
                           .join(walk, Version.id == walk.c.id)).all()
    rows.sort(key=lambda r: r[0], reverse=True)
    if not rows or rows[0][1] is not None or len(rows) != rows[0][0] + 1:
        return [tuple(getattr(v, c.key) for c in _DELTAS) for v in version_chain(session, version)]
    return [tuple(r[2:]) for r in rows]


def _increasing(a: np.ndarray) -> bool:
    return len(a) < 2 or bool((a[1:] > a[:-1]).all())


def member_labels(session: Session, version: Version) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row ids, label overrides' ids, override labels) of a version, from its deltas alone."""
    return member_state(session, version)[:3]


def member_state(session: Session, version: Version) -> tuple:
    """member_labels' three arrays, then (lo, membership mask by id - lo) when the ids were
    dense enough for one (see _members), else None."""
    deltas = []
    for removed, added, added_labels, relabel_ids, relabel_labels in _chain_deltas(session, version):
        deltas.append((ids_from_bytes(removed), ids_from_bytes(added), added_labels,
                       ids_from_bytes(relabel_ids), relabel_labels))
    over_ids, over_labels = EMPTY, EMPTY
    for _, added, added_labels, relabel_ids, relabel_labels in deltas:
        relabels = np.frombuffer(bytes(relabel_labels), dtype=LABEL_DTYPE) if relabel_labels else EMPTY
        if added_labels:
            relabel_ids = np.concatenate([added, relabel_ids])
            relabels = np.concatenate([np.frombuffer(bytes(added_labels), dtype=LABEL_DTYPE), relabels])
        if len(relabel_ids):
            # Newest override wins: drop older overrides of the same ids, then append.
            keep = ~in_sorted(np.sort(relabel_ids), over_ids)
            over_ids = np.concatenate([over_ids[keep], relabel_ids])
            over_labels = np.concatenate([over_labels[keep], relabels])
    ids, dense = _members(deltas)
    return ids, over_ids, over_labels, dense


def _members(deltas: list[tuple]) -> tuple:
    """Sorted member ids after applying each delta's removals, then its additions, root first;
    and (lo, alive) when they were listed from a membership mask, else None."""
    adds = [d[1] for d in deltas if len(d[1])]
    if len(deltas) > 1 and adds and all(_increasing(a) for a in adds):
        lo = min(int(a[0]) for a in adds)
        span = max(int(a[-1]) for a in adds) - lo + 1
        if span <= 4 * sum(len(a) for a in adds) + (1 << 16):
            # Ids packed densely (the usual case: rows get increasing ids, chunk by chunk): a
            # membership mask over the id range, indexed by id - lo. Each delta costs O(its size)
            # with no binary search over the members; one pass at the end lists them, sorted.
            alive = np.zeros(span, dtype=bool)
            for removed, added, *_ in deltas:
                if len(removed):
                    at = removed - lo
                    alive[at[(at >= 0) & (at < span)]] = False
                if len(added):
                    a0 = int(added[0]) - lo
                    if int(added[-1]) - lo - a0 + 1 == len(added):  # one run of ids: a slice
                        alive[a0:a0 + len(added)] = True
                    else:
                        alive[added - lo] = True
            ids = np.flatnonzero(alive).astype(ID_DTYPE, copy=False)
            if lo:
                ids += lo
            return ids, (lo, alive)
    # Removals clear an ``alive`` mask instead of copying the ids each time: one compaction at
    # the end, so a version many transformations deep costs about what its root does.
    ids, alive = EMPTY, np.empty(0, dtype=bool)
    for removed, added, *_ in deltas:
        if len(removed) and len(ids):
            pos = np.minimum(np.searchsorted(ids, removed), len(ids) - 1)
            alive[pos[ids[pos] == removed]] = False
        if len(added):
            if not len(ids):
                ids, alive = added.copy(), np.ones(len(added), dtype=bool)
            else:
                known = in_sorted(ids, added)
                if known.any():
                    alive[np.searchsorted(ids, added[known])] = True
                new = added[~known]
                if len(new) and new[0] > ids[-1]:  # new rows get the highest ids: the common case
                    ids = np.concatenate([ids, new])
                    alive = np.concatenate([alive, np.ones(len(new), dtype=bool)])
                elif len(new):
                    at = np.searchsorted(ids, new)
                    ids, alive = np.insert(ids, at, new), np.insert(alive, at, True)
    if not alive.all():
        ids = ids[alive]
    return ids, None


def materialize(session: Session, version: Version, *, verify: bool = False) -> Members:
    """Read a version back whole: members sorted by row id, with their current labels."""
    dataset = session.get(Dataset, version.dataset_id)
    ids, over_ids, over_labels, dense = member_state(session, version)
    X, y = gather_rows(session, dataset, ids, verify=verify)
    if len(over_ids) and len(ids):
        if dense is not None:
            # Membership from the mask; a member's position is its offset from lo minus the
            # non-members below it: binary searches in that short list, not in all the ids.
            lo, alive = dense
            at = over_ids - lo
            inside = (at >= 0) & (at < len(alive))
            inside[inside] = alive[at[inside]]
            at = at[inside]
            pos = at - np.searchsorted(np.flatnonzero(~alive), at)
        else:  # one binary search per override locates it and tells whether it is a member
            pos = np.minimum(np.searchsorted(ids, over_ids), len(ids) - 1)
            inside = ids[pos] == over_ids
            pos = pos[inside]
        if not y.flags.writeable:  # gather_rows returns a new array: written in place
            y = y.copy()
        y[pos] = over_labels[inside]
    return Members(row_ids=ids, X=X, y=y)


def new_version(tx, dataset: Dataset, members: Members, *, parent: Optional[Version] = None,
                transformation_id: Optional[int] = None, ingest_id: Optional[int] = None,
                removed: np.ndarray = EMPTY, added: np.ndarray = EMPTY,
                added_labels: Optional[np.ndarray] = None, relabel_ids: np.ndarray = EMPTY,
                relabel_labels: np.ndarray = EMPTY, name: Optional[str] = None,
                digest: Optional[str] = None) -> Version:
    """Record a version as a delta against ``parent``; ``members`` is its full content, used
    only for the row count and the content digest (``digest``, when the caller computed it
    already, e.g. streaming over chunks; then ``members.X`` is not needed)."""
    return tx.add(Version(
        dataset_id=dataset.id, name=name, parent_id=parent.id if parent else None,
        transformation_id=transformation_id, ingest_id=ingest_id, n_rows=len(members.row_ids),
        content_digest=digest or content_digest(members.row_ids, members.X, members.y),
        removed_ids=ids_to_bytes(np.sort(removed)), added_ids=ids_to_bytes(np.sort(added)),
        added_labels=None if added_labels is None else np.ascontiguousarray(
            added_labels[np.argsort(added)], dtype=LABEL_DTYPE).tobytes(),
        relabel_ids=ids_to_bytes(relabel_ids),
        relabel_labels=np.ascontiguousarray(relabel_labels, dtype=LABEL_DTYPE).tobytes(),
    ))


def stored_labels(session: Session, dataset: Dataset, ids: np.ndarray) -> np.ndarray:
    """Stored labels of sorted row ids, reading only the chunks' label blobs."""
    if len(ids) == 0:
        return np.empty(0, dtype=LABEL_DTYPE)
    rows = [r for r in chunk_blobs(session, dataset, Chunk.labels)
            if r[0] + r[1] > int(ids[0]) and r[0] <= int(ids[-1])]
    firsts = np.array([r[0] for r in rows], dtype=np.int64)
    counts = np.array([r[1] for r in rows], dtype=np.int64)
    all_y = np.concatenate([np.frombuffer(r[2], dtype=LABEL_DTYPE) for r in rows])
    # ids are sorted: one mask over the concatenated chunks, set chunk by chunk.
    keep = np.zeros(len(all_y), dtype=bool)
    bounds = np.searchsorted(ids, np.concatenate([firsts, [firsts[-1] + counts[-1]]]))
    base = np.concatenate([[0], np.cumsum(counts)])
    for i in range(len(firsts)):
        lo, hi = bounds[i], bounds[i + 1]
        if hi > lo:
            keep[base[i] + ids[lo:hi] - firsts[i]] = True
    if int(keep.sum()) != len(ids):
        raise NotFoundError("some member rows have no stored chunk")
    return all_y[keep]


def stream_digests(session: Session, dataset: Dataset, outputs: list[Members]) -> list[str]:
    """Content digests (as ``versions.content_digest``) of members given by sorted row ids and
    labels, hashing their features chunk by chunk instead of building X."""
    dtype = feature_dtype(dataset)
    hashers = [content_hasher(m.row_ids, m.y) for m in outputs]
    for first, n, blob in chunk_blobs(session, dataset, Chunk.features):
        X = None
        for m, h in zip(outputs, hashers):
            lo, hi = np.searchsorted(m.row_ids, [first, first + n])
            if hi == lo:
                continue
            if hi - lo == n:
                h.update(blob)
                continue
            if X is None:
                X = np.frombuffer(blob, dtype=dtype).reshape(n, dataset.n_features)
            keep = np.zeros(n, dtype=bool)
            keep[m.row_ids[lo:hi] - first] = True
            h.update(np.ascontiguousarray(np.compress(keep, X, axis=0)))
    return [h.hexdigest() for h in hashers]
