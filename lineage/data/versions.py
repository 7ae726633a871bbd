"""Dataset versions: immutable states stored as deltas, read back whole.

A version holds its parent's members minus ``removed_ids``, plus ``added_ids`` (with
``added_labels``, or the rows' own stored labels), with labels of ``relabel_ids`` replaced by
``relabel_labels``; a root version (made by an ingest, no parent) holds exactly its ingest's
rows, which the ingest record holds. Members are kept sorted by row id, and a version's content digest is
a function of its content alone (``lineage.data.digests``: a Merkle root over the digests of
the chunks holding its rows, with their membership and label overrides).

Also here: the one parser of user-typed ids (``parse_id``), the set helpers on sorted id arrays
that trace and transforms share, and reading versions (list, show, members, CSV export).
"""

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Optional

import numpy as np
from sqlalchemy import func, select

from lineage.data.coverage import version_coverage
from lineage.data.datasets import find_version
from lineage.data.deltas import (
    Members,
    ingest_range,
    is_ingest_root,
    materialize,
    version_digest,
)
from lineage.errors import BadInputError, IntegrityError
from lineage.store.chunks import ids_from_bytes
from lineage.store.engine import Store
from lineage.store.files import file_sha256, write_atomically
from lineage.store.tables import Dataset, RowEffect, Transformation, Version


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
    # Rows replaced by a new row pointing at them (inject-trigger): counted here, not as a
    # removed and an added row, as the transformation and version diff count them.
    n_modified: int = 0


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

    with store.read() as session:
        v = find_version(session, version)
        ds = session.get(Dataset, v.dataset_id)
        t = session.get(Transformation, v.transformation_id) if v.transformation_id else None
        params = json.loads(t.params) if t else {}
        n_added = (ingest_range(session, v)[1] if is_ingest_root(v)  # a root: its ingest's rows
                   else len(ids_from_bytes(v.added_ids)))
        n_modified = session.scalar(select(func.count()).select_from(RowEffect).where(
            RowEffect.version_id == v.id, RowEffect.effect == "modified")) if t else 0
        return VersionDetail(
            id=v.id, name=v.name, dataset=ds.name,
            parent_ids=(v.parent_id,) if v.parent_id is not None else (),
            kind=t.kind if t else "ingest", transformation_id=v.transformation_id,
            ingest_id=v.ingest_id, actor=t.actor if t else v.actor, reason=t.reason if t else None,
            params=params, code_identity=t.code_identity if t else None, n_rows=v.n_rows,
            n_removed=len(ids_from_bytes(v.removed_ids)) - n_modified,
            n_added=n_added - n_modified, n_modified=n_modified,
            n_relabelled=len(ids_from_bytes(v.relabel_ids)), content_digest=v.content_digest,
            created_at=v.created_at, coverage=version_coverage(session, v))


def version_members(store: Store, version: str | int) -> Members:
    """A version read back whole, for inspection and audit: (row_ids, X, y) sorted by row id.
    Training reads approved snapshots, not this."""
    with store.read() as session:
        return materialize(session, find_version(session, version))


@dataclass(frozen=True)
class ExportInfo:
    """A version written to a CSV file: ``row_id``, one column per feature, ``label``; and the
    event that records the export."""

    version_id: int
    version_name: Optional[str]
    content_digest: str
    path: str
    n_rows: int
    columns: tuple
    file_sha256: str
    actor: str  # who exported it, as recorded in the event


def export_version(store: Store, version: str | int, path, *, force: bool = False) -> ExportInfo:
    """Write a version to a CSV file that ``lineage ingest csv FILE --as-version-of V`` reads
    back: header ``row_id,f0,...,f{n-1},label``, one line per member in row-id order. Integer
    features are written as integers, float features exactly (shortest round-trip form).

    Every chunk read is re-hashed against its recorded digest, and the rows read back against
    the version's content digest, before a byte is written (IntegrityError: no file). The export
    is recorded as an event (version, content digest, absolute path, the file's sha256, the
    store's actor); the file appears whole, and only once that event is committed (written to a
    temporary file beside it, then renamed). Refuses an existing file unless ``force``.

    Example: ``export_version(store, "v5", "v5.csv")``
    """
    import csv

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
        try:
            m = materialize(session, v, verify=True, keep_stored=True)
            if version_digest(session, v, m) != v.content_digest:
                raise IntegrityError(f"the rows of v{v.id} read back do not match its content "
                                     "digest")
        except IntegrityError as exc:
            raise IntegrityError(f"cannot export v{v.id}: {exc} (run `lineage verify`); nothing "
                                 "was written") from None
        columns = ("row_id", *[f"f{i}" for i in range(ds.n_features)], "label")
        version_id, version_name, digest = v.id, v.name, v.content_digest
    X = m.X if m.X.dtype.kind in "iu" else m.X.astype(np.float64)
    recorded = {}

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(columns)
            for row_id, x, label in zip(m.row_ids.tolist(), X.tolist(), m.y.tolist()):
                writer.writerow([row_id, *x, label])
        # Recorded before the rename: a file that appears is always in the log (a failed
        # write leaves neither), and the write lock is not held while the CSV is written.
        sha = file_sha256(tmp)
        with store.write() as tx:
            tx.event("version.export", f"v{version_id} exported to {path} ({len(m.row_ids)} rows, "
                     f"sha256 {sha[:16]})", version=version_id, content_digest=digest,
                     path=str(path.resolve()), file_sha256=sha, n_rows=len(m.row_ids))
        recorded["sha"] = sha

    write_atomically(path, write)
    return ExportInfo(version_id=version_id, version_name=version_name, content_digest=digest,
                      path=str(path), n_rows=len(m.row_ids), columns=columns,
                      file_sha256=recorded["sha"], actor=store.actor)
