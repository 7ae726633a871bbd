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
from sqlalchemy.orm import Session

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
    h = hashlib.sha256(b"lineage-version-v1\0")
    h.update(np.ascontiguousarray(row_ids, dtype=ID_DTYPE).tobytes())
    h.update(np.ascontiguousarray(y, dtype=LABEL_DTYPE).tobytes())
    h.update(np.ascontiguousarray(X).tobytes())
    return h.hexdigest()


def find_version(session: Session, ref: str | int) -> Version:
    """A version by id (``5`` or ``v5``) or by name."""
    text_ref = str(ref).strip()
    version = None
    digits = text_ref[1:] if text_ref[:1] in ("v", "V") else text_ref
    version = session.scalars(select(Version).where(Version.name == text_ref)).first()
    if version is None and digits.isdigit():
        version = session.get(Version, int(digits))
    if version is None:
        raise NotFoundError(f"no version {text_ref!r} (see `lineage version list`)")
    return version


def _chain(session: Session, version: Version) -> list[Version]:
    chain = [version]
    while chain[-1].parent_id is not None:
        chain.append(session.get(Version, chain[-1].parent_id))
    return chain[::-1]


def member_labels(session: Session, version: Version) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row ids, label overrides' ids, override labels) of a version, from its deltas alone."""
    ids = EMPTY
    over_ids, over_labels = EMPTY, EMPTY
    for v in _chain(session, version):
        removed = ids_from_bytes(v.removed_ids)
        if len(removed):
            ids = ids[~np.isin(ids, removed, assume_unique=True)]
        added = ids_from_bytes(v.added_ids)
        relabel_ids = ids_from_bytes(v.relabel_ids)
        relabels = np.frombuffer(bytes(v.relabel_labels), dtype=LABEL_DTYPE) if v.relabel_labels else EMPTY
        if v.added_labels:
            relabel_ids = np.concatenate([added, relabel_ids])
            relabels = np.concatenate([np.frombuffer(bytes(v.added_labels), dtype=LABEL_DTYPE), relabels])
        if len(added):
            ids = np.union1d(ids, added) if len(ids) else added.copy()
        if len(relabel_ids):
            # Newest override wins: drop older overrides of the same ids, then append.
            keep = ~np.isin(over_ids, relabel_ids)
            over_ids = np.concatenate([over_ids[keep], relabel_ids])
            over_labels = np.concatenate([over_labels[keep], relabels])
    return ids, over_ids, over_labels


def materialize(session: Session, version: Version, *, verify: bool = False) -> Members:
    """Read a version back whole: members sorted by row id, with their current labels."""
    dataset = session.get(Dataset, version.dataset_id)
    ids, over_ids, over_labels = member_labels(session, version)
    X, y = gather_rows(session, dataset, ids, verify=verify)
    if len(over_ids):
        inside = np.isin(over_ids, ids)
        pos = np.searchsorted(ids, over_ids[inside])
        y = y.copy()
        y[pos] = over_labels[inside]
    return Members(row_ids=ids, X=X, y=y)


def new_version(tx, dataset: Dataset, members: Members, *, parent: Optional[Version] = None,
                transformation_id: Optional[int] = None, ingest_id: Optional[int] = None,
                removed: np.ndarray = EMPTY, added: np.ndarray = EMPTY,
                added_labels: Optional[np.ndarray] = None, relabel_ids: np.ndarray = EMPTY,
                relabel_labels: np.ndarray = EMPTY, name: Optional[str] = None) -> Version:
    """Record a version as a delta against ``parent``; ``members`` is its full content, used
    only for the row count and the content digest."""
    return tx.add(Version(
        dataset_id=dataset.id, name=name, parent_id=parent.id if parent else None,
        transformation_id=transformation_id, ingest_id=ingest_id, n_rows=len(members.row_ids),
        content_digest=content_digest(members.row_ids, members.X, members.y),
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
