"""Dataset versions: immutable states stored as deltas, read back whole.

A version holds its parent's members minus ``removed_ids``, plus ``added_ids`` (with
``added_labels``, or the rows' own stored labels), with labels of ``relabel_ids`` replaced by
``relabel_labels``. Members are kept sorted by row id, so a version's content digest is
deterministic: sha256 over the member row ids, their labels and their feature bytes.
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Optional

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, defer

from lineage.errors import NotFoundError
from lineage.storage import LABEL_DTYPE, ID_DTYPE, ids_from_bytes, ids_to_bytes, gather_rows
from lineage.tables import Dataset, Version

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


def find_version(session: Session, ref: str | int) -> Version:
    """A version by id (``5`` or ``v5``) or by name."""
    text_ref = str(ref).strip()
    version = None
    digits = text_ref[1:] if text_ref[:1] in ("v", "V") else text_ref
    # Delta blobs load on first access: finding a version never reads a root's id array.
    version = session.scalars(select(Version).options(*_LAZY_BLOBS)
                              .where(Version.name == text_ref)).first()
    if version is None and digits.isdigit():
        version = session.get(Version, int(digits), options=_LAZY_BLOBS)
    if version is None:
        raise NotFoundError(f"no version {text_ref!r} (see `lineage version list`)")
    return version


def _chain(session: Session, version: Version) -> list[Version]:
    chain = [version]
    while chain[-1].parent_id is not None:
        chain.append(session.get(Version, chain[-1].parent_id))
    return chain[::-1]


# Set operations on sorted unique id arrays by binary search: O(k log n) for a delta of k ids
# against n members, where np.isin / np.union1d would sort or hash all n each time.
def _in_sorted(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Mask over ``ids``: which of them are in ``sorted_ids``."""
    if len(sorted_ids) == 0:
        return np.zeros(len(ids), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return sorted_ids[pos] == ids


def member_labels(session: Session, version: Version) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row ids, label overrides' ids, override labels) of a version, from its deltas alone."""
    # Removals clear an ``alive`` mask instead of copying the ids each time: one compaction at
    # the end, so a version many transformations deep costs about what its root does.
    ids, alive = EMPTY, np.empty(0, dtype=bool)
    over_ids, over_labels = EMPTY, EMPTY
    for v in _chain(session, version):
        removed = ids_from_bytes(v.removed_ids)
        if len(removed) and len(ids):
            pos = np.minimum(np.searchsorted(ids, removed), len(ids) - 1)
            alive[pos[ids[pos] == removed]] = False
        added = ids_from_bytes(v.added_ids)
        relabel_ids = ids_from_bytes(v.relabel_ids)
        relabels = np.frombuffer(bytes(v.relabel_labels), dtype=LABEL_DTYPE) if v.relabel_labels else EMPTY
        if v.added_labels:
            relabel_ids = np.concatenate([added, relabel_ids])
            relabels = np.concatenate([np.frombuffer(bytes(v.added_labels), dtype=LABEL_DTYPE), relabels])
        if len(added):
            if not len(ids):
                ids, alive = added.copy(), np.ones(len(added), dtype=bool)
            else:
                known = _in_sorted(ids, added)
                if known.any():
                    alive[np.searchsorted(ids, added[known])] = True
                new = added[~known]
                if len(new) and new[0] > ids[-1]:  # new rows get the highest ids: the common case
                    ids = np.concatenate([ids, new])
                    alive = np.concatenate([alive, np.ones(len(new), dtype=bool)])
                elif len(new):
                    at = np.searchsorted(ids, new)
                    ids, alive = np.insert(ids, at, new), np.insert(alive, at, True)
        if len(relabel_ids):
            # Newest override wins: drop older overrides of the same ids, then append.
            keep = ~_in_sorted(np.sort(relabel_ids), over_ids)
            over_ids = np.concatenate([over_ids[keep], relabel_ids])
            over_labels = np.concatenate([over_labels[keep], relabels])
    if not alive.all():
        ids = ids[alive]
    return ids, over_ids, over_labels


def materialize(session: Session, version: Version, *, verify: bool = False) -> Members:
    """Read a version back whole: members sorted by row id, with their current labels."""
    dataset = session.get(Dataset, version.dataset_id)
    ids, over_ids, over_labels = member_labels(session, version)
    X, y = gather_rows(session, dataset, ids, verify=verify)
    if len(over_ids):
        inside = _in_sorted(ids, over_ids)
        pos = np.searchsorted(ids, over_ids[inside])
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


@dataclass(frozen=True)
class VersionInfo:
    id: int
    name: Optional[str]
    dataset: str
    parent_id: Optional[int]
    transformation_id: Optional[int]
    ingest_id: Optional[int]
    n_rows: int
    content_digest: str
    actor: str
    created_at: datetime


def version_info(session: Session, version: Version) -> VersionInfo:
    dataset = session.get(Dataset, version.dataset_id)
    return VersionInfo(id=version.id, name=version.name, dataset=dataset.name,
                       parent_id=version.parent_id, transformation_id=version.transformation_id,
                       ingest_id=version.ingest_id, n_rows=version.n_rows,
                       content_digest=version.content_digest, actor=version.actor,
                       created_at=version.created_at)
