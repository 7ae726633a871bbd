"""Walking lineage back from records: one row's history, and what changed between two versions.

Both answer from records, never by recomputing transformations: ``trace_row`` from the chunk
that stores the row, the ``row_effects`` that name it (indexed by row and parent row) and the
versions' deltas; ``version_diff`` composes the deltas of the versions between the two and their
common ancestor, and reads relabel and parent->child effects of those versions only. Neither
reads row features, so both stay fast on large stores.
"""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Optional

import numpy as np
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from lineage.data.coverage import row_sources
from lineage.data.datasets import LAZY_BLOBS, find_version, parse_id
from lineage.data.deltas import (
    added_ids,
    chain_ids,
    in_sorted,
    minus_sorted,
    union_sorted,
    version_chain,
)
from lineage.data.sources import source_status
from lineage.errors import BadInputError, IntegrityError, NotFoundError
from lineage.models.external import (
    external_evaluations,
    external_file,
    external_info,
    external_reviews,
    find_external,
)
from lineage.models.registry import find_model_version, model_artifact, model_info
from lineage.review.snapshots import snapshot_info, snapshot_manifest_digest, snapshot_row_ids
from lineage.store.chunks import ID_DTYPE, LABEL_DTYPE, ids_from_bytes
from lineage.store.engine import Store
from lineage.store.log import anchor_records
from lineage.store.tables import (
    Chunk,
    Dataset,
    Ingest,
    RowEffect,
    Snapshot,
    SnapshotReview,
    Source,
    Transformation,
    Version,
)


@dataclass(frozen=True)
class RowOrigin:
    """The raw row a row derives from: its ingest and source."""

    raw_row_id: int
    ingest_id: int
    file_name: str
    file_sha256: str
    ingest_actor: str
    ingested_at: datetime
    source: str
    source_kind: str
    source_status: str
    uri: Optional[str]
    license: Optional[str]


@dataclass(frozen=True)
class RowStep:
    """One transformation's effect on the row (or on a row it derives from or led to)."""

    transformation_id: int
    kind: str
    actor: str
    reason: Optional[str]
    code_identity: str
    created_at: datetime
    version_id: int
    version_name: Optional[str]
    effect: str  # removed | added | relabelled | modified | split
    row_id: int
    parent_row_id: Optional[int] = None
    old_label: Optional[int] = None
    new_label: Optional[int] = None
    side: Optional[str] = None  # split only: train | test


@dataclass(frozen=True)
class RowVersion:
    id: int
    name: Optional[str]
    kind: str
    transformation_id: Optional[int]


@dataclass(frozen=True)
class RowTrace:
    """A row's history: where it came from, every transformation that touched it or its
    ancestors and descendants, and the versions that hold it."""

    row_id: int
    dataset: str
    stored_label: int
    ancestors: tuple  # parent row ids, nearest first
    descendants: tuple  # rows made from this one (content changed), nearest first
    created_by: Optional[int]  # the transformation that stored this row (None: an ingest)
    origin: Optional[RowOrigin]  # None for a row that came from outside the store
    steps: tuple  # RowStep, oldest first
    versions: tuple  # RowVersion holding this row, oldest first


def _parse_row(row_id) -> int:
    return parse_id(row_id, "row id")


def _chunk_of(session: Session, row_id: int) -> Optional[Chunk]:
    chunk = session.execute(
        select(Chunk.id, Chunk.dataset_id, Chunk.first_row_id, Chunk.n_rows, Chunk.ingest_id,
               Chunk.transformation_id)
        .where(Chunk.first_row_id <= row_id).order_by(Chunk.first_row_id.desc()).limit(1)).first()
    if chunk is None or row_id >= chunk.first_row_id + chunk.n_rows:
        return None
    return chunk


def _stored_label(session: Session, chunk, row_id: int) -> int:
    labels = session.scalar(select(Chunk.labels).where(Chunk.id == chunk.id))
    return int(np.frombuffer(bytes(labels), dtype=LABEL_DTYPE)[row_id - chunk.first_row_id])


def _parent_of(session: Session, row_id: int) -> Optional[int]:
    return session.scalar(select(RowEffect.parent_row_id).where(
        RowEffect.row_id == row_id, RowEffect.effect == "modified").limit(1))


def _children_of(session: Session, row_id: int) -> list[int]:
    return [int(r) for r in session.scalars(select(RowEffect.row_id).where(
        RowEffect.parent_row_id == row_id, RowEffect.effect == "modified").order_by(RowEffect.id))]


def _contains(session: Session, row_id: int, dataset_id: int) -> list[tuple]:
    """(version, role) for every version of the dataset holding ``row_id``, from deltas alone:
    a version holds it when it adds it, or its parent holds it and it does not remove it."""
    versions = session.execute(
        select(Version.id, Version.name, Version.parent_id, Version.ingest_id,
               Version.transformation_id).where(Version.dataset_id == dataset_id)
        .order_by(Version.id)).all()
    ingests = {i.id: (i.first_row_id, i.n_rows) for i in session.execute(
        select(Ingest.id, Ingest.first_row_id, Ingest.n_rows).where(Ingest.dataset_id == dataset_id))}

    def blob_has(version_id: int, column) -> bool:
        ids = ids_from_bytes(session.scalar(select(column).where(Version.id == version_id)))
        pos = np.searchsorted(ids, row_id)
        return bool(pos < len(ids) and ids[pos] == row_id)

    splits = set(session.scalars(select(Transformation.id).where(
        Transformation.dataset_id == dataset_id, Transformation.kind == "split")))
    first_output: dict[int, int] = {}  # split transformation -> its train version
    holds: dict[int, bool] = {}
    for v in versions:
        if v.parent_id is None:
            if v.ingest_id is None:
                raise IntegrityError(f"version v{v.id} has neither a parent version nor an "
                                     "ingest: run `lineage verify`")
            if v.ingest_id not in ingests:
                raise IntegrityError(f"version v{v.id}: its ingest {v.ingest_id} is missing "
                                     "from its dataset: run `lineage verify`")
            first, n = ingests[v.ingest_id]  # a root version holds exactly its ingest's rows
            holds[v.id] = first <= row_id < first + n
        elif v.transformation_id in splits and v.transformation_id in first_output:
            # A split partitions its parent: the test side holds what the train side does not
            # (so only the train side's removed ids, the smaller test share, are read).
            train = first_output[v.transformation_id]
            holds[v.id] = holds.get(v.parent_id, False) and not holds[train]
        elif holds.get(v.parent_id, False):
            holds[v.id] = not blob_has(v.id, Version.removed_ids)
        else:
            holds[v.id] = blob_has(v.id, Version.added_ids)
        if v.transformation_id in splits:
            first_output.setdefault(v.transformation_id, v.id)
    return [v for v in versions if holds[v.id]]


def trace_row(store: Store, row_id: int | str) -> RowTrace:
    """A row's whole history from records: raw ingest and source, the rows it derives from, every
    transformation that touched it (effect, actor, reason, code identity), the versions holding it.

    Example: ``trace_row(store, 1234)``
    """
    row_id = _parse_row(row_id)
    with store.read() as session:
        chunk = _chunk_of(session, row_id)
        if chunk is None:
            raise NotFoundError(f"no row with id {row_id}")
        dataset = session.get(Dataset, chunk.dataset_id)
        ancestors, cur = [], row_id
        while (parent := _parent_of(session, cur)) is not None:
            ancestors.append(int(parent))
            cur = int(parent)
        descendants, frontier = [], [row_id]
        while frontier:
            nxt = []
            for r in frontier:
                nxt.extend(_children_of(session, r))
            descendants.extend(nxt)
            frontier = nxt
        raw = ancestors[-1] if ancestors else row_id
        raw_chunk = _chunk_of(session, raw)
        origin = None
        if raw_chunk.ingest_id is not None:
            ing = session.get(Ingest, raw_chunk.ingest_id)
            src = session.get(Source, ing.source_id)
            origin = RowOrigin(raw_row_id=raw, ingest_id=ing.id, file_name=ing.file_name,
                               file_sha256=ing.file_sha256, ingest_actor=ing.actor,
                               ingested_at=ing.created_at, source=src.name, source_kind=src.kind,
                               source_status=source_status(session, src), uri=src.uri,
                               license=src.license)
        related = [row_id, *ancestors, *descendants]
        effects = session.execute(
            select(RowEffect, Transformation, Version.name)
            .join(Transformation, Transformation.id == RowEffect.transformation_id)
            .join(Version, Version.id == RowEffect.version_id)
            .where(or_(RowEffect.row_id.in_(related), RowEffect.parent_row_id.in_(related)))
            .order_by(RowEffect.id)).all()
        steps = [RowStep(transformation_id=t.id, kind=t.kind, actor=t.actor, reason=t.reason,
                         code_identity=t.code_identity, created_at=t.created_at,
                         version_id=e.version_id, version_name=vname, effect=e.effect,
                         row_id=e.row_id, parent_row_id=e.parent_row_id, old_label=e.old_label,
                         new_label=e.new_label)
                 for e, t, vname in effects]
        holding = {r: _contains(session, r, dataset.id) for r in [row_id, *ancestors]}
        kinds = {t.id: t for t in session.scalars(select(Transformation).where(
            Transformation.id.in_({v.transformation_id for vs in holding.values() for v in vs
                                   if v.transformation_id})))}
        versions = [RowVersion(id=v.id, name=v.name, kind=kinds[v.transformation_id].kind
                               if v.transformation_id else "ingest",
                               transformation_id=v.transformation_id) for v in holding[row_id]]
        for row, vs in holding.items():
            for v in vs:
                t = kinds.get(v.transformation_id)
                if t is None or t.kind != "split":
                    continue
                outputs = session.scalars(select(Version.id).where(
                    Version.transformation_id == t.id).order_by(Version.id)).all()
                roles = json.loads(t.params).get("outputs", ["train", "test"])
                side = roles[outputs.index(v.id)] if v.id in outputs else None
                steps.append(RowStep(transformation_id=t.id, kind=t.kind, actor=t.actor,
                                     reason=t.reason, code_identity=t.code_identity,
                                     created_at=t.created_at, version_id=v.id,
                                     version_name=v.name, effect="split", row_id=row, side=side))
        steps.sort(key=lambda s: (s.created_at, s.transformation_id))
        return RowTrace(row_id=row_id, dataset=dataset.name,
                        stored_label=_stored_label(session, chunk, row_id),
                        ancestors=tuple(ancestors), descendants=tuple(descendants),
                        created_by=chunk.transformation_id, origin=origin, steps=tuple(steps),
                        versions=tuple(versions))


@dataclass(frozen=True)
class VersionDiff:
    """What changed from version ``from_id`` to ``to_id``: rows added and removed, labels changed
    (old -> new, same row) and contents changed (parent row -> child row). Arrays are sorted
    by row id (``modified`` by parent row id)."""

    from_id: int
    to_id: int
    added: np.ndarray
    removed: np.ndarray
    relabelled_ids: np.ndarray
    relabelled_old: np.ndarray
    relabelled_new: np.ndarray
    modified_parent: np.ndarray
    modified_child: np.ndarray

    def as_dict(self) -> dict:
        """The JSON shape: lists of objects (``row_id``; ``row_id, old, new``;
        ``parent_row_id, row_id``)."""
        return {
            "from": self.from_id, "to": self.to_id,
            "added": [{"row_id": r} for r in self.added.tolist()],
            "removed": [{"row_id": r} for r in self.removed.tolist()],
            "relabelled": [{"row_id": r, "old": o, "new": n} for r, o, n in zip(
                self.relabelled_ids.tolist(), self.relabelled_old.tolist(),
                self.relabelled_new.tolist())],
            "modified": [{"parent_row_id": p, "row_id": c} for p, c in zip(
                self.modified_parent.tolist(), self.modified_child.tolist())],
        }


_E = np.empty(0, dtype=ID_DTYPE)


def _compose(session: Session, path: list[int]):
    """Removed-from-base (R), added-beyond-base (A) and every id ever added (ever) along a path."""
    R, A, ever = _E, _E, _E
    for vid in path:
        v = session.execute(select(Version.id, Version.parent_id, Version.ingest_id,
                                   Version.removed_ids, Version.added_ids)
                            .where(Version.id == vid)).one()
        rem, add = ids_from_bytes(v.removed_ids), added_ids(session, v)
        if len(rem):
            in_a = in_sorted(A, rem)
            A = minus_sorted(A, rem[in_a])
            R = union_sorted(R, rem[~in_a])
        if len(add):
            in_r = in_sorted(R, add)
            R = minus_sorted(R, add[in_r])
            A = union_sorted(A, add[~in_r])
            ever = union_sorted(ever, add[~in_r])
    return R, A, ever


def _last_per_id(ids: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique ids and, for each, the value of its last occurrence."""
    if len(ids) == 0:
        return _E, _E
    rev_ids, rev_vals = ids[::-1], values[::-1]
    uniq, first = np.unique(rev_ids, return_index=True)
    return uniq, rev_vals[first]


def _relabels(session: Session, path: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(ids, newest label) of the relabels recorded by the versions of a path."""
    ids, labels = [], []
    for vid in path:
        rid, rlab = session.execute(select(Version.relabel_ids, Version.relabel_labels)
                                    .where(Version.id == vid)).one()
        ids.append(ids_from_bytes(rid))
        labels.append(np.frombuffer(bytes(rlab), dtype=LABEL_DTYPE) if rlab else _E)
    if not ids:
        return _E, _E
    return _last_per_id(np.concatenate(ids), np.concatenate(labels))


def _raw_rows(session: Session, columns: str, version_ids: list[int], effect: str) -> list[tuple]:
    """Effects of some versions, oldest first, through the driver's cursor: an indexed query
    whose 10^4 result rows cost more in SQLAlchemy's row objects than in the database."""
    conn = session.connection()
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = (f"SELECT {columns} FROM row_effects WHERE version_id IN "
           f"({', '.join([mark] * len(version_ids))}) AND effect = {mark} ORDER BY id")
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, (*[int(v) for v in version_ids], effect))
        return cursor.fetchall()
    finally:
        cursor.close()


def _old_labels(session: Session, path: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(ids, label before the path) of rows relabelled on a path, from the first effect."""
    if not path:
        return _E, _E
    rows = _raw_rows(session, "row_id, old_label", path, "relabelled")
    arr = np.array(rows, dtype=np.int64).reshape(-1, 2)
    if not len(arr):
        return _E, _E
    uniq, first = np.unique(arr[:, 0], return_index=True)
    return uniq, arr[first, 1]


def _lookup(keys: np.ndarray, values: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(found mask, value) of ``ids`` in sorted ``keys``."""
    if len(keys) == 0:
        return np.zeros(len(ids), dtype=bool), np.zeros(len(ids), dtype=np.int64)
    pos = np.minimum(np.searchsorted(keys, ids), len(keys) - 1)
    found = keys[pos] == ids
    return found, values[pos]


def version_diff(store: Store, a: str | int, b: str | int) -> VersionDiff:
    """Rows added, removed, relabelled (old -> new) and modified (parent -> child) from version
    ``a`` to version ``b``, from the versions' deltas and recorded effects.

    Example: ``version_diff(store, "v2", "v5")``
    """
    with store.read() as session:
        va, vb = find_version(session, a), find_version(session, b)
        if va.dataset_id != vb.dataset_id:
            raise BadInputError(f"v{va.id} and v{vb.id} belong to different datasets")
        chain_a, chain_b = chain_ids(session, va), chain_ids(session, vb)
        common = 0
        while common < min(len(chain_a), len(chain_b)) and chain_a[common] == chain_b[common]:
            common += 1
        path_a, path_b = chain_a[common:], chain_b[common:]
        Ra, Aa, ever_a = _compose(session, path_a)
        Rb, Ab, ever_b = _compose(session, path_b)
        added = union_sorted(minus_sorted(Ra, Rb), minus_sorted(Ab, Aa))
        removed = union_sorted(minus_sorted(Rb, Ra), minus_sorted(Aa, Ab))

        # Contents changed on the way to b: parent removed, (last) child added.
        par = chi = _E
        if path_b:
            mods = np.array(_raw_rows(session, "parent_row_id, row_id", path_b, "modified"),
                            dtype=np.int64).reshape(-1, 2)
            if len(mods):
                child_of = dict(mods.tolist())
                final = np.array([_last_child(child_of, int(c)) for c in mods[:, 1]]
                                 if np.isin(mods[:, 1], mods[:, 0]).any() else mods[:, 1],
                                 dtype=np.int64)
                ok = in_sorted(removed, mods[:, 0]) & in_sorted(added, final)
                par, chi = mods[ok, 0], final[ok]
                order = np.argsort(par)
                par, chi = par[order], chi[order]
                removed = minus_sorted(removed, par)
                added = minus_sorted(added, np.sort(chi))

        # Labels changed on rows both versions hold: newest label on each side, else the
        # label before the paths (the first relabel effect's old label on the other side).
        new_a, lab_a = _relabels(session, path_a)
        new_b, lab_b = _relabels(session, path_b)
        cand = union_sorted(new_a, new_b)
        rel_ids = rel_old = rel_new = _E
        if len(cand):
            nonbase = union_sorted(ever_a, ever_b)
            outside = in_sorted(nonbase, cand)
            holds_a = np.where(outside, in_sorted(Aa, cand), ~in_sorted(Ra, cand))
            holds_b = np.where(outside, in_sorted(Ab, cand), ~in_sorted(Rb, cand))
            cand = cand[holds_a & holds_b]
            old_a_ids, old_a = _old_labels(session, path_a)
            old_b_ids, old_b = _old_labels(session, path_b)
            fa, va_lab = _lookup(new_a, lab_a, cand)
            fb, vb_lab = _lookup(new_b, lab_b, cand)
            _, base_from_b = _lookup(old_b_ids, old_b, cand)
            _, base_from_a = _lookup(old_a_ids, old_a, cand)
            label_a = np.where(fa, va_lab, base_from_b)
            label_b = np.where(fb, vb_lab, base_from_a)
            diff = label_a != label_b
            rel_ids, rel_old, rel_new = cand[diff], label_a[diff], label_b[diff]
        return VersionDiff(from_id=va.id, to_id=vb.id, added=added, removed=removed,
                           relabelled_ids=rel_ids, relabelled_old=rel_old,
                           relabelled_new=rel_new, modified_parent=par, modified_child=chi)


def _last_child(child_of: dict, row: int) -> int:
    while row in child_of:
        row = child_of[row]
    return row


@dataclass(frozen=True)
class ModelTrace:
    """model -> snapshot -> versions -> transformations -> ingests -> sources, every record's
    digest re-checked on the way (``verified`` lists what was checked)."""

    model: dict
    snapshot: dict
    versions: list
    transformations: list
    ingests: list
    sources: list
    verified: dict


@dataclass(frozen=True)
class ExternalModelTrace:
    """An external model's lineage: its source, the file's digest, every evaluation and review,
    each record checked against the event chain and the stored file against its sha256."""

    model: dict
    source: dict
    evaluations: list
    reviews: list
    verified: dict
    external: bool = True


def trace_external(store: Store, ref: str) -> ExternalModelTrace:
    """An external model back to its source: the import (file name, sha256, format, size,
    importer), the evaluations (snapshot digest, figures) and the signed reviews.

    Example: ``trace_model(store, "vendor-clf:1")``
    """
    with store.read() as session:
        em = find_external(session, ref)
        if em is None:
            raise NotFoundError(f"no external model {ref!r} (see `lineage model list`)")
        external_file(session, em)  # IntegrityError when the stored bytes changed
        src = session.get(Source, em.source_id)
        evaluations = external_evaluations(session, em)
        reviews = external_reviews(session, em)
        records = [em, src, *evaluations, *reviews]
        names = {(r.__table__.name, int(r.id)): f"{r.__table__.name} record {r.id}"
                 for r in records}
        anchored = anchor_records(session, records, what=names)
        info = external_info(session, em)
        source = {"name": src.name, "kind": src.kind, "uri": src.uri, "license": src.license,
                  "owner": src.owner, "status": info.source_status}
        evals = []
        for e in evaluations:
            report = json.loads(e.report)
            best = (report.get("reverse") or {}).get("smallest") or {}
            evals.append({"id": e.id, "passed": e.passed, "actor": e.actor,
                          "created_at": e.created_at, "policy_version": e.policy_id or 0,
                          "evaluation_snapshot": report.get("evaluation_snapshot"),
                          "snapshot_digest": e.snapshot_digest,
                          "clean_accuracy": report.get("clean_accuracy"),
                          "worst_trigger": report.get("worst_trigger"),
                          "worst_asr": report.get("worst_asr"),
                          "reverse_flagged": (report.get("reverse") or {}).get("flagged"),
                          "smallest_trigger": {k: best.get(k) for k in
                                               ("source", "target", "pixels", "asr", "ratio")}
                          if best else None, "message": report.get("message")})
        revs = [{"id": r.id, "decision": r.decision, "reason": r.reason, "actor": r.actor,
                 "evaluation": r.evaluation_id, "policy_version": r.policy_id or 0,
                 "created_at": r.created_at} for r in reviews]
    model = {"ref": info.ref, "status": info.status, "format": info.format,
             "file_name": info.file_name, "file_sha256": info.file_sha256,
             "file_size": info.file_size, "dataset": info.dataset, "input": info.input_schema,
             "trusted_types": list(info.trusted_types), "actor": info.actor,
             "created_at": info.created_at, "status_reason": info.status_reason}
    verified = {"records": len(anchored), "anchoring_events": sorted(set(anchored.values())),
                "records_anchored_in_chain": len(anchored) == len(records),
                "file_sha256": True}
    verified["ok"] = verified["records_anchored_in_chain"]
    return ExternalModelTrace(model=model, source=source, evaluations=evals, reviews=revs,
                              verified=verified)


def trace_model(store: Store, ref: str) -> ModelTrace:
    """Walk a model version back to every source, with row counts and coverage, verifying each
    record's digest, the artifact's sha256 and the snapshot's manifest digest on the way.

    Coverage is the one recorded by the snapshot's approval (recomputing it reads every row).
    An external model's trace is ``trace_external``'s (source, file digest, evaluations,
    reviews).
    Example: ``trace_model(store, "digits-clf:1")``
    """
    with store.read() as session:
        external = find_external(session, ref) is not None
    if external:
        return trace_external(store, ref)

    anchors: list = []  # every record on the way, checked against the event chain at the end
    names: dict = {}

    def _check(record, name: str) -> None:
        anchors.append(record)
        names[(record.__table__.name, int(record.id))] = name

    with store.read() as session:
        mv = find_model_version(session, ref)
        _check(mv, f"model version {mv.model}:{mv.number}")
        model_artifact(session, mv)
        snap = session.get(Snapshot, mv.snapshot_id)
        _check(snap, f"snapshot {snap.name!r}")
        if snapshot_manifest_digest(snap) != snap.manifest_digest:
            raise IntegrityError(f"snapshot {snap.name!r}: its manifest does not match its digest")
        if snap.content_digest != mv.snapshot_digest:
            raise IntegrityError(f"model {mv.model}:{mv.number} was trained on digest "
                                 f"{mv.snapshot_digest[:16]}, snapshot {snap.name!r} now has "
                                 f"{snap.content_digest[:16]}")
        sinfo = snapshot_info(session, snap, detail=True)
        approval = next((r for r in reversed(sinfo.reviews) if r.decision == "approve" and r.passed), None)
        if approval is not None:
            _check(session.get(SnapshotReview, approval.id),
                   f"review {approval.id} (the approval of snapshot {snap.name!r})")
        ids = snapshot_row_ids(snap)
        versions, transformations = [], []
        for v in reversed(version_chain(session, session.get(Version, snap.version_id, options=LAZY_BLOBS))):
            _check(v, f"version v{v.id}" + (f" ({v.name})" if v.name else ""))
            versions.append({"id": v.id, "name": v.name, "n_rows": v.n_rows,
                             "content_digest": v.content_digest, "parent_id": v.parent_id,
                             "transformation_id": v.transformation_id, "ingest_id": v.ingest_id,
                             "actor": v.actor, "created_at": v.created_at})
            if v.transformation_id is not None:
                t = session.get(Transformation, v.transformation_id)
                _check(t, f"transformation {t.id} ({t.kind})")
                transformations.append({"id": t.id, "kind": t.kind, "actor": t.actor,
                                        "reason": t.reason, "code_identity": t.code_identity,
                                        "params": json.loads(t.params), "version": v.id,
                                        "created_at": t.created_at})
        per_ingest = row_sources(session, snap.dataset_id, ids)
        ingests, sources = [], {}
        for entry in per_ingest:
            if entry["ingest"] is None:
                ingests.append({"id": None, "rows": entry["rows"], "source": None})
                continue
            ing = session.get(Ingest, entry["ingest"])
            src = session.get(Source, ing.source_id)
            _check(ing, f"ingest {ing.id}")
            if src.name not in sources:
                _check(src, f"source {src.name!r}")
                sources[src.name] = {"name": src.name, "kind": src.kind, "uri": src.uri,
                                     "license": src.license, "owner": src.owner,
                                     "status": entry["status"], "rows": 0, "ingests": []}
            sources[src.name]["rows"] += entry["rows"]
            sources[src.name]["ingests"].append(ing.id)
            ingests.append({"id": ing.id, "source": src.name, "file_name": ing.file_name,
                            "file_sha256": ing.file_sha256, "n_rows": ing.n_rows,
                            "rows_in_snapshot": entry["rows"], "actor": ing.actor,
                            "created_at": ing.created_at})
        anchored = anchor_records(session, anchors, what=names)  # raises IntegrityError naming one
        info = model_info(session, mv)
        coverage = None
        if approval is not None:
            coverage = next((g for g in approval.report.get("gates", []) if g.get("gate") == "coverage"), None)
    model = {"ref": info.ref, "status": info.status, "estimator": info.estimator,
             "params": info.params, "code_identity": info.code_identity,
             "artifact_sha256": info.artifact_sha256, "clean_accuracy": info.clean_accuracy,
             "worst_asr": info.worst_asr, "worst_trigger": info.metrics.get("worst_trigger"),
             "actor": info.actor, "created_at": info.created_at,
             "affected_reason": info.affected_reason}
    snapshot = {"name": sinfo.name, "status": sinfo.status, "n_rows": sinfo.n_rows,
                "content_digest": sinfo.content_digest, "manifest_digest": sinfo.manifest_digest,
                "actor": sinfo.actor, "created_at": sinfo.created_at,
                "approved_by": approval.actor if approval else None,
                "approval_review": approval.id if approval else None,
                "policy_version": approval.policy_version if approval else None,
                "coverage": None if coverage is None else coverage["coverage"],
                "covered_rows": None if coverage is None else coverage["n_covered"],
                "coverage_breakdown": None if coverage is None else coverage["breakdown"]}
    # Every check above raises IntegrityError when it fails, so reaching here means each passed;
    # the fields say what was checked (and the events that anchor the records).
    verified = {"records": len(anchored), "anchoring_events": sorted(set(anchored.values())),
                "records_anchored_in_chain": len(anchored) == len(anchors),
                "artifact_sha256": True, "manifest_digest": True,
                "snapshot_digest_matches_model": True,
                "approval_anchored": approval is not None}
    verified["ok"] = all(verified[k] for k in ("records_anchored_in_chain", "artifact_sha256",
                                               "manifest_digest", "snapshot_digest_matches_model"))
    return ModelTrace(model=model, snapshot=snapshot, versions=versions[::-1],
                      transformations=transformations[::-1], ingests=ingests,
                      sources=list(sources.values()), verified=verified)
