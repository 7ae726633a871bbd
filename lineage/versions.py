"""Dataset versions: immutable states stored as deltas, read back whole.

A version holds its parent's members minus ``removed_ids``, plus ``added_ids`` (with
``added_labels``, or the rows' own stored labels), with labels of ``relabel_ids`` replaced by
``relabel_labels``. Members are kept sorted by row id, so a version's content digest is
deterministic: sha256 over the member row ids, their labels and their feature bytes.

Also here: the one parser of user-typed ids (``parse_id``), the set helpers on sorted id arrays
that trace and transforms share, and reading versions (list, show, members, CSV export).
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Optional

import numpy as np
from sqlalchemy import literal, select
from sqlalchemy.orm import Session, defer

from lineage.errors import BadInputError, NotFoundError
from lineage.storage import LABEL_DTYPE, ID_DTYPE, ids_from_bytes, ids_to_bytes, gather_rows
from lineage.store import Store
from lineage.tables import Dataset, Transformation, Version

EMPTY = np.empty(0, dtype=ID_DTYPE)


@dataclass(frozen=True)
class Members:
    """The members of a version: row ids (sorted), their labels, and their features."""

    row_ids: np.ndarray  # (n_samples,) int64
    X: np.ndarray  # (n_samples, n_features)
    y: np.ndarray  # (n_samples,) int64


def content_digest(row_ids: np.ndarray, X: np.ndarray, y: np.ndarray) -> str:
    # hashlib reads the contiguous arrays' buffers in place: the same bytes as .tobytes(), no copy.
    h = hashlib.sha256(b"lineage-version-v1\0")
    h.update(np.ascontiguousarray(row_ids, dtype=ID_DTYPE))
    h.update(np.ascontiguousarray(y, dtype=LABEL_DTYPE))
    h.update(np.ascontiguousarray(X))
    return h.hexdigest()


_LAZY_BLOBS = [defer(Version.removed_ids), defer(Version.added_ids), defer(Version.added_labels),
               defer(Version.relabel_ids), defer(Version.relabel_labels)]


ID_MAX = int(np.iinfo(np.int64).max)


def parse_id(value, what: str) -> int:
    """One id typed by a user (``"5"``, ``5``; ``prefix`` letters are the caller's business) as
    an int, or a one-line BadInputError: not a whole number, negative, or beyond int64 (ids are
    stored as 64-bit integers, so a larger number can never name anything)."""
    text = str(value).strip()
    try:
        number = int(text)
    except ValueError:
        raise BadInputError(f"{what} {text!r} is not a whole number") from None
    if number < 0 or number > ID_MAX:
        raise BadInputError(f"{what} {text} is out of range: ids are whole numbers from 0 to "
                            f"{ID_MAX}")
    return number


def find_version(session: Session, ref: str | int) -> Version:
    """A version by id (``5`` or ``v5``) or by name."""
    text_ref = str(ref).strip()
    digits = text_ref[1:] if text_ref[:1] in ("v", "V") else text_ref
    # Delta blobs load on first access: finding a version never reads a root's id array.
    version = session.scalars(select(Version).options(*_LAZY_BLOBS)
                              .where(Version.name == text_ref)).first()
    if version is None and digits.isdigit():
        version = session.get(Version, parse_id(digits, "version id"), options=_LAZY_BLOBS)
    if version is None:
        raise NotFoundError(f"no version {text_ref!r} (see `lineage version list`)")
    return version


def _chain(session: Session, version: Version) -> list[Version]:
    chain = [version]
    while chain[-1].parent_id is not None:
        chain.append(session.get(Version, chain[-1].parent_id))
    return chain[::-1]


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
        return [tuple(getattr(v, c.key) for c in _DELTAS) for v in _chain(session, version)]
    return [tuple(r[2:]) for r in rows]


def _increasing(a: np.ndarray) -> bool:
    return len(a) < 2 or bool((a[1:] > a[:-1]).all())


def member_labels(session: Session, version: Version) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row ids, label overrides' ids, override labels) of a version, from its deltas alone."""
    return _member_state(session, version)[:3]


def _member_state(session: Session, version: Version) -> tuple:
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
    ids, over_ids, over_labels, dense = _member_state(session, version)
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


# ----------------------------------------------------------------------------- reading versions

@dataclass(frozen=True)
class VersionSummary:
    id: int
    name: Optional[str]
    dataset: str
    parent_id: Optional[int]
    kind: str  # "ingest" for a root version, else the transformation's kind
    transformation_id: Optional[int]
    ingest_id: Optional[int]
    n_rows: int
    content_digest: str
    actor: str
    created_at: datetime


@dataclass(frozen=True)
class VersionDetail:
    """A version with the transformation that made it, its delta counts and its coverage."""

    id: int
    name: Optional[str]
    dataset: str
    parent_ids: tuple
    kind: str
    transformation_id: Optional[int]
    ingest_id: Optional[int]
    actor: str
    reason: Optional[str]
    params: dict
    code_identity: Optional[str]
    n_rows: int
    n_removed: int
    n_added: int
    n_relabelled: int
    content_digest: str
    created_at: datetime
    coverage: object  # CoverageReport


def list_versions(store: Store) -> list[VersionSummary]:
    """Every version, newest first: the version DAG (each names its parent)."""
    with store.read() as session:
        rows = session.execute(
            select(Version.id, Version.name, Dataset.name, Version.parent_id, Transformation.kind,
                   Version.transformation_id, Version.ingest_id, Version.n_rows,
                   Version.content_digest, Version.actor, Version.created_at)
            .join(Dataset, Dataset.id == Version.dataset_id)
            .outerjoin(Transformation, Transformation.id == Version.transformation_id)
            .order_by(Version.id.desc())).all()
        return [VersionSummary(id=r[0], name=r[1], dataset=r[2], parent_id=r[3],
                               kind=r[4] or ("ingest" if r[6] is not None else "-"),
                               transformation_id=r[5], ingest_id=r[6], n_rows=r[7],
                               content_digest=r[8], actor=r[9], created_at=r[10]) for r in rows]


def show_version(store: Store, version: str | int) -> VersionDetail:
    """One version: parent, transformation (actor, reason, params, code identity), counts,
    content digest and provenance coverage."""
    from lineage.coverage import version_coverage  # coverage imports this module

    with store.read() as session:
        v = find_version(session, version)
        ds = session.get(Dataset, v.dataset_id)
        t = session.get(Transformation, v.transformation_id) if v.transformation_id else None
        params = json.loads(t.params) if t else {}
        return VersionDetail(
            id=v.id, name=v.name, dataset=ds.name,
            parent_ids=(v.parent_id,) if v.parent_id is not None else (),
            kind=t.kind if t else "ingest", transformation_id=v.transformation_id,
            ingest_id=v.ingest_id, actor=t.actor if t else v.actor, reason=t.reason if t else None,
            params=params, code_identity=t.code_identity if t else None, n_rows=v.n_rows,
            n_removed=len(ids_from_bytes(v.removed_ids)), n_added=len(ids_from_bytes(v.added_ids)),
            n_relabelled=len(ids_from_bytes(v.relabel_ids)), content_digest=v.content_digest,
            created_at=v.created_at, coverage=version_coverage(session, v))


def version_members(store: Store, version: str | int) -> Members:
    """A version read back whole, for inspection and audit: (row_ids, X, y) sorted by row id.
    Training reads approved snapshots, not this."""
    with store.read() as session:
        return materialize(session, find_version(session, version))


@dataclass(frozen=True)
class ExportInfo:
    """A version written to a CSV file: ``row_id``, one column per feature, ``label``."""

    version_id: int
    version_name: Optional[str]
    path: str
    n_rows: int
    columns: tuple
    file_sha256: str


def export_version(store: Store, version: str | int, path, *, force: bool = False) -> ExportInfo:
    """Write a version to a CSV file that ``lineage ingest csv FILE --as-version-of V`` reads
    back: header ``row_id,f0,...,f{n-1},label``, one line per member in row-id order. Integer
    features are written as integers, float features exactly (shortest round-trip form).

    Refuses an existing file unless ``force``; the file appears whole or not at all (written
    to a temporary file beside it, then renamed). Writes nothing to the store.

    Example: ``export_version(store, "v5", "v5.csv")``
    """
    import csv
    import os
    import tempfile
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        raise BadInputError(f"{path}: is a folder; give a file name, e.g. {path / 'version.csv'}")
    if path.exists() and not force:
        raise BadInputError(f"{path} exists: pass --force to overwrite it")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise BadInputError(f"{path}: no folder {folder}; create it first")
    with store.read() as session:
        v = find_version(session, version)
        ds = session.get(Dataset, v.dataset_id)
        m = materialize(session, v)
        columns = ("row_id", *[f"f{i}" for i in range(ds.n_features)], "label")
        version_id, version_name = v.id, v.name
    X = m.X if m.X.dtype.kind in "iu" else m.X.astype(np.float64)
    h = hashlib.sha256()
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(columns)
            for row_id, x, label in zip(m.row_ids.tolist(), X.tolist(), m.y.tolist()):
                writer.writerow([row_id, *x, label])
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise BadInputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return ExportInfo(version_id=version_id, version_name=version_name, path=str(path),
                      n_rows=len(m.row_ids),
                      columns=columns, file_sha256=h.hexdigest())
