"""A version's state from its deltas: the chain of parent versions, member ids and label overrides
composed root first, the whole rows read back (``materialize``), a new version recorded as a delta
with its content digest (``lineage.data.digests`` defines the schemes), and the set helpers on
sorted id arrays that trace and transforms share."""

from dataclasses import dataclass
from functools import cached_property
from typing import Optional

import numpy as np
from sqlalchemy import and_, case, literal, null, select
from sqlalchemy.orm import Session

from lineage.data.datasets import LAZY_BLOBS
from lineage.data.digests import (
    SCHEME_FLAT,
    SCHEME_MERKLE,
    composed_digest,
    flat_digest,
    flat_hasher,
    leaves_blob,
    overrides_of,
    scheme_of,
    version_leaves,
)
from lineage.errors import IntegrityError, NotFoundError
from lineage.store.chunks import (
    ID_DTYPE,
    LABEL_DTYPE,
    chunk_blobs,
    chunk_index,
    feature_dtype,
    fetch_chunks,
    gather_rows,
    ids_from_bytes,
    ids_to_bytes,
)
from lineage.store.tables import Chunk, Dataset, Ingest, Version

EMPTY = np.empty(0, dtype=ID_DTYPE)


@dataclass(frozen=True)
class Members:
    """The members of a version: row ids (sorted), their labels, and their features; ``stored``
    (when known) the labels their chunks store, which the label overrides differ from."""

    row_ids: np.ndarray  # (n_samples,) int64
    X: Optional[np.ndarray]  # (n_samples, n_features), or None where only ids and labels count
    y: np.ndarray  # (n_samples,) int64
    stored: Optional[np.ndarray] = None  # (n_samples,) int64


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


# Delta columns of a version, in the order Delta takes them.
_DELTAS = (Version.removed_ids, Version.added_ids, Version.added_labels, Version.relabel_ids,
           Version.relabel_labels)
_MAX_DEPTH = 100_000  # a chain deeper than this (only a damaged store) is walked one by one


class Delta:
    """One version's delta as arrays. An ingest's root version adds exactly the ingest's row
    range, which ``run`` holds: its ``added_ids`` blob is never read (``ingest_root_ids``)."""

    def __init__(self, removed, added, added_labels, relabel_ids, relabel_labels,
                 run: Optional[tuple[int, int]] = None):
        self.removed = ids_from_bytes(removed)
        self._added_blob = added
        self.run = run  # (first id, count)
        self.added_labels = added_labels
        self.relabel_ids = ids_from_bytes(relabel_ids)
        self.relabel_labels = relabel_labels

    @cached_property
    def added(self) -> np.ndarray:
        if self.run is not None:
            return np.arange(self.run[0], self.run[0] + self.run[1], dtype=ID_DTYPE)
        return ids_from_bytes(self._added_blob)

    def added_between(self, lo: int, hi: int) -> np.ndarray:
        """Sorted added ids in [lo, hi)."""
        if self.run is not None:
            a, b = max(lo, self.run[0]), min(hi, self.run[0] + self.run[1])
            return np.arange(a, max(a, b), dtype=ID_DTYPE)
        a, b = np.searchsorted(self.added, [lo, hi])
        return self.added[a:b]

    def adds(self, ids: np.ndarray) -> np.ndarray:
        """Mask over ``ids``: which of them this delta adds."""
        if self.run is not None:
            return (ids >= self.run[0]) & (ids < self.run[0] + self.run[1])
        return in_sorted(self.added, ids)

    def relabels(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, labels) this delta sets: added rows' labels (when given), then relabels."""
        ids = self.relabel_ids
        labels = (np.frombuffer(bytes(self.relabel_labels), dtype=LABEL_DTYPE)
                  if self.relabel_labels else EMPTY)
        if self.added_labels:
            ids = np.concatenate([self.added, ids])
            labels = np.concatenate([np.frombuffer(bytes(self.added_labels), dtype=LABEL_DTYPE),
                                     labels])
        return ids, labels


def is_ingest_root(version) -> bool:
    return version.parent_id is None and version.ingest_id is not None


def ingest_range(session: Session, version) -> tuple[int, int]:
    """(first row id, row count) an ingest's root version adds: exactly its ingest's rows. The
    ingest record holds that range once: a root holds an empty ``added_ids`` blob (migration
    0009 on), or the same range at 8 bytes a row (written before). ``lineage verify``, fast or
    not, checks that the root's leaves are those of the ingest's chunks, and an older root's
    list against the range."""
    ingest = session.get(Ingest, version.ingest_id)
    if ingest is None:
        raise IntegrityError(f"version v{version.id}: its ingest {version.ingest_id} is missing")
    return int(ingest.first_row_id), int(ingest.n_rows)


def ingest_root_ids(session: Session, version) -> np.ndarray:
    """The ids an ingest's root version adds (``ingest_range``), sorted."""
    first, n = ingest_range(session, version)
    return np.arange(first, first + n, dtype=ID_DTYPE)


def added_ids(session: Session, version: Version) -> np.ndarray:
    """Sorted ids ``version`` adds (an ingest's root: its ingest's rows)."""
    if is_ingest_root(version):
        return ingest_root_ids(session, version)
    return ids_from_bytes(version.added_ids)


def _delta_of(session: Session, v: Version) -> Delta:
    if v.parent_id is None and v.ingest_id is None:
        raise IntegrityError(f"version v{v.id} has neither a parent version nor an ingest")
    if is_ingest_root(v):
        first, n = ingest_range(session, v)
        return Delta(v.removed_ids, None, v.added_labels, v.relabel_ids, v.relabel_labels,
                     run=(first, n) if n else None)
    return Delta(*(getattr(v, c.key) for c in _DELTAS))


def chain_deltas(session: Session, version: Version) -> list[Delta]:
    """The deltas of ``version``'s chain, root first: one recursive query for all of them
    instead of a query (and an ORM object) per ancestor and another per deferred blob."""
    walk = (select(Version.id, Version.parent_id, literal(0).label("depth"))
            .where(Version.id == version.id).cte("chain_walk", recursive=True))
    walk = walk.union_all(select(Version.id, Version.parent_id, walk.c.depth + 1)
                          .where(Version.id == walk.c.parent_id, walk.c.depth < _MAX_DEPTH))
    ingest_root = and_(Version.parent_id.is_(None), Version.ingest_id.isnot(None))
    # No ORDER BY: SQLite would copy the blobs through a sorter; ordered here instead.
    rows = session.execute(
        select(walk.c.depth, walk.c.parent_id, Version.ingest_id, Ingest.first_row_id,
               Ingest.n_rows, Version.removed_ids,
               case((ingest_root, null()), else_=Version.added_ids), *_DELTAS[2:])
        .join(walk, Version.id == walk.c.id)
        .outerjoin(Ingest, and_(ingest_root, Ingest.id == Version.ingest_id))).all()
    rows.sort(key=lambda r: r[0], reverse=True)
    if not rows or rows[0][1] is not None or len(rows) != rows[0][0] + 1:
        return [_delta_of(session, v) for v in version_chain(session, version)]
    out = []
    for r in rows:
        if r[1] is None and r[2] is None:
            raise IntegrityError(f"version v{chain_ids(session, version)[0]} has neither a "
                                 "parent version nor an ingest")
        if r[1] is None and r[2] is not None:  # an ingest's root: its ingest's rows
            if r[3] is None:
                raise IntegrityError(f"version v{chain_ids(session, version)[0]}: its ingest "
                                     f"{r[2]} is missing")
            out.append(Delta(*r[5:], run=(int(r[3]), int(r[4])) if r[4] else None))
            continue
        out.append(Delta(*r[5:]))
    return out


def _increasing(a: np.ndarray) -> bool:
    return len(a) < 2 or bool((a[1:] > a[:-1]).all())


def member_labels(session: Session, version: Version) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row ids, label overrides' ids, override labels) of a version, from its deltas alone."""
    return member_state(session, version)[:3]


def composed_overrides(deltas: list[Delta]) -> tuple[np.ndarray, np.ndarray]:
    """(ids, labels) every label the chain sets, newest winning; not limited to members and
    not compared with stored labels (see ``canonical_overrides``). Unsorted."""
    over_ids, over_labels = EMPTY, EMPTY
    for d in deltas:
        relabel_ids, relabels = d.relabels()
        if len(relabel_ids):
            # Newest override wins: drop older overrides of the same ids, then append.
            keep = ~in_sorted(np.sort(relabel_ids), over_ids)
            over_ids = np.concatenate([over_ids[keep], relabel_ids])
            over_labels = np.concatenate([over_labels[keep], relabels])
    return over_ids, over_labels


def member_state(session: Session, version: Version, deltas: Optional[list] = None) -> tuple:
    """member_labels' three arrays, then (lo, membership mask by id - lo) when the ids were
    dense enough for one (see _members), else None."""
    deltas = chain_deltas(session, version) if deltas is None else deltas
    over_ids, over_labels = composed_overrides(deltas)
    ids, dense = _members(deltas)
    return ids, over_ids, over_labels, dense


def members_among(deltas: list[Delta], ids: np.ndarray) -> np.ndarray:
    """Mask over sorted ``ids``: which are members after the chain ``deltas`` (root first),
    in O(len(ids) log delta) per delta, without listing the members."""
    alive = np.zeros(len(ids), dtype=bool)
    for d in deltas:
        if len(d.removed):
            alive[in_sorted(d.removed, ids)] = False
        alive |= d.adds(ids)
    return alive


def members_between(deltas: list[Delta], lo: int, hi: int) -> np.ndarray:
    """Sorted member ids in [lo, hi) after the chain ``deltas`` (one chunk's worth)."""
    alive = np.zeros(hi - lo, dtype=bool)
    for d in deltas:
        if len(d.removed):
            a, b = np.searchsorted(d.removed, [lo, hi])
            alive[d.removed[a:b] - lo] = False
        if d.run is not None:  # a slice, not an arange of the chunk's ids
            a, b = max(lo, d.run[0]), min(hi, d.run[0] + d.run[1])
            alive[a - lo:max(a, b) - lo] = True
        else:
            alive[d.added_between(lo, hi) - lo] = True
    return np.flatnonzero(alive).astype(ID_DTYPE) + lo


def _members(deltas: list[Delta]) -> tuple:
    """Sorted member ids after applying each delta's removals, then its additions, root first;
    and (lo, alive) when they were listed from a membership mask, else None."""
    if len(deltas) == 1 and deltas[0].run is not None:  # an ingest's root: its row range
        return deltas[0].added, None
    adds = [d for d in deltas if d.run is not None or len(d.added)]
    if len(deltas) > 1 and adds and all(d.run is not None or _increasing(d.added) for d in adds):
        bounds = [(d.run[0], d.run[0] + d.run[1] - 1) if d.run is not None
                  else (int(d.added[0]), int(d.added[-1])) for d in adds]
        lo = min(b[0] for b in bounds)
        span = max(b[1] for b in bounds) - lo + 1
        total = sum(d.run[1] if d.run is not None else len(d.added) for d in adds)
        if span <= 4 * total + (1 << 16):
            # Ids packed densely (the usual case: rows get increasing ids, chunk by chunk): a
            # membership mask over the id range, indexed by id - lo. Each delta costs O(its size)
            # with no binary search over the members; one pass at the end lists them, sorted.
            alive = np.zeros(span, dtype=bool)
            for d in deltas:
                if len(d.removed):
                    at = d.removed - lo
                    alive[at[(at >= 0) & (at < span)]] = False
                if d.run is not None:
                    alive[d.run[0] - lo:d.run[0] - lo + d.run[1]] = True
                    continue
                added = d.added
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
    for d in deltas:
        removed, added = d.removed, d.added
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


def materialize(session: Session, version: Version, *, verify: bool = False,
                keep_stored: bool = False) -> Members:
    """Read a version back whole: members sorted by row id, with their current labels (and,
    with ``keep_stored``, the labels their chunks store, as ``Members.stored``)."""
    dataset = session.get(Dataset, version.dataset_id)
    ids, over_ids, over_labels, dense = member_state(session, version)
    X, y = gather_rows(session, dataset, ids, verify=verify)
    stored = y.copy() if keep_stored else None
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
    return Members(row_ids=ids, X=X, y=y, stored=stored)


def new_version(tx, dataset: Dataset, *, n_rows: int, digest: str, leaves: Optional[bytes],
                parent: Optional[Version] = None, transformation_id: Optional[int] = None,
                ingest_id: Optional[int] = None, removed: np.ndarray = EMPTY,
                added: np.ndarray = EMPTY, added_labels: Optional[np.ndarray] = None,
                relabel_ids: np.ndarray = EMPTY, relabel_labels: np.ndarray = EMPTY,
                name: Optional[str] = None) -> Version:
    """Record a version as a delta against ``parent`` with its scheme-2 content ``digest`` and
    its ``leaves`` blob (``digests.leaves_blob``)."""
    return tx.add(Version(
        dataset_id=dataset.id, name=name, parent_id=parent.id if parent else None,
        transformation_id=transformation_id, ingest_id=ingest_id, n_rows=int(n_rows),
        content_digest=digest, digest_scheme=SCHEME_MERKLE, chunk_leaves=leaves,
        removed_ids=ids_to_bytes(_sorted(removed)), added_ids=ids_to_bytes(_sorted(added)),
        added_labels=None if added_labels is None else np.ascontiguousarray(
            added_labels[np.argsort(added)], dtype=LABEL_DTYPE).tobytes(),
        relabel_ids=ids_to_bytes(relabel_ids),
        relabel_labels=np.ascontiguousarray(relabel_labels, dtype=LABEL_DTYPE).tobytes(),
    ))


def _sorted(ids: np.ndarray) -> np.ndarray:
    # Most deltas come sorted (an ingest's range, a split's sides): a check, not a sort.
    return ids if _increasing(ids) else np.sort(ids)


def label_blobs(session: Session, chunk_ids) -> dict:
    """{chunk id: stored labels (int64 array)} of the given chunks, 64 chunks a query."""
    wanted = [int(c) for c in chunk_ids]
    out = {}
    for start in range(0, len(wanted), 64):
        for cid, blob in fetch_chunks(session, ["id", "labels"], wanted[start:start + 64]):
            out[int(cid)] = np.frombuffer(blob, dtype=LABEL_DTYPE)
    return out


def stored_labels(session: Session, dataset: Dataset, ids: np.ndarray, *,
                  index=None) -> np.ndarray:
    """Stored labels of sorted row ids, reading the label blobs of only the chunks that hold
    them."""
    if len(ids) == 0:
        return np.empty(0, dtype=LABEL_DTYPE)
    index = chunk_index(session, dataset.id) if index is None else index
    per = index.holding(ids)
    if int(per.sum()) != len(ids):
        raise NotFoundError("some member rows have no stored chunk")
    held = np.flatnonzero(per)
    blobs = label_blobs(session, index.ids[held])
    out = np.empty(len(ids), dtype=LABEL_DTYPE)
    at = 0
    for p in held.tolist():
        k = int(per[p])
        labels = blobs.get(int(index.ids[p]))
        if labels is None or len(labels) != int(index.counts[p]):
            raise NotFoundError(f"chunk {int(index.ids[p])} does not hold its rows' labels")
        if k == len(labels):
            out[at:at + k] = labels
        else:
            out[at:at + k] = labels[ids[at:at + k] - int(index.firsts[p])]
        at += k
    return out


def canonical_overrides(session: Session, dataset: Dataset, ids: np.ndarray,
                        over_ids: np.ndarray, over_labels: np.ndarray, *,
                        index=None) -> tuple[np.ndarray, np.ndarray]:
    """The label overrides a version's digest covers: of the chain's composed overrides, those
    of members (sorted ``ids``) whose label differs from the stored one (only the chunks
    holding them are read)."""
    inside = in_sorted(ids, over_ids)
    o_ids, o_labels = over_ids[inside], over_labels[inside]
    order = np.argsort(o_ids, kind="stable")
    o_ids, o_labels = o_ids[order], o_labels[order]
    stored = stored_labels(session, dataset, o_ids, index=index)
    return overrides_of(o_ids, o_labels, stored)


def merkle_digest(session: Session, dataset: Dataset, members: Members, *,
                  index=None) -> tuple[str, bytes]:
    """Scheme 2's (content digest, leaves blob) of ``members`` (``stored`` read when None),
    over the chunks' record digests as stored."""
    index = chunk_index(session, dataset.id) if index is None else index
    stored = members.stored
    if stored is None:
        stored = stored_labels(session, dataset, members.row_ids, index=index)
    over_ids, over_labels = overrides_of(members.row_ids, members.y, stored)
    chunk_ids, leaves = version_leaves(index, members.row_ids, over_ids, over_labels)
    return composed_digest(len(members.row_ids), leaves), leaves_blob(chunk_ids, leaves)


def version_digest(session: Session, version: Version, members: Members) -> str:
    """The content digest of ``members`` read back for ``version`` (its rows, features, labels
    and, for scheme 2, stored labels), under the version's own scheme, for comparing with
    ``version.content_digest``. Chunk digests are taken as stored: read the rows verified."""
    if scheme_of(version) == SCHEME_FLAT:
        return flat_digest(members.row_ids, members.X, members.y)
    dataset = session.get(Dataset, version.dataset_id)
    return merkle_digest(session, dataset, members)[0]


def stream_digests(session: Session, dataset: Dataset, outputs: list[Members]) -> list[str]:
    """Scheme-1 (flat) digests of members given by sorted row ids and labels, hashing their
    features chunk by chunk instead of building X (``lineage verify`` of older versions)."""
    dtype = feature_dtype(dataset)
    hashers = [flat_hasher(m.row_ids, m.y) for m in outputs]
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
