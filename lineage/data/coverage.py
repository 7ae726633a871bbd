"""Provenance coverage: the share of a version's rows whose whole history is known.

A row is covered (DESIGN.md) when
- its source has a uri, a license and an approving newest review;
- its ingest has a file digest and an actor;
- every transformation on its path has an actor, a reason and a code identity. A transformation
  is on a row's path when it touched the row, or a row it derives from: added it (append,
  external edit, a child row of inject-trigger or external edit), changed its label, or placed
  it (a split places every row on one side or the other). Rows a filter or dedupe merely kept
  were not touched, so a dedupe without a reason leaves the rows it kept covered;
- it was not changed outside the store: rows added, changed or relabelled by an external edit
  are never covered.
A row derived from another (inject-trigger, external edit) inherits its parent's source and
ingest. An uncovered row may fail several checks; ``breakdown`` counts rows per reason, so its
counts can add up to more than ``n_rows - n_covered``.
"""

from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from lineage.data.datasets import find_version
from lineage.data.deltas import in_sorted, member_labels, version_chain
from lineage.data.sources import source_status
from lineage.store.chunks import chunk_index, ids_from_bytes
from lineage.store.engine import Store
from lineage.store.tables import Ingest, RowEffect, Source, Transformation, Version

EXTERNAL_EDIT = "external_edit"
NO_INGEST = -1

# The reasons a row is not covered, in the order reports list them.
REASONS = (
    "source without uri", "no license", "source not approved", "ingest without file digest",
    "ingest without actor", "transformation without actor", "transformation without reason",
    "transformation without code identity", "external edit",
)


@dataclass(frozen=True)
class CoverageReport:
    """Provenance coverage of one version.

    ``breakdown`` maps each reason (see ``REASONS``) to the number of rows it leaves uncovered;
    ``examples`` gives up to five row ids per reason.
    """

    version_id: int
    n_rows: int
    n_covered: int
    coverage: float  # n_covered / n_rows, 1.0 for an empty version
    breakdown: dict = field(default_factory=dict)
    examples: dict = field(default_factory=dict)


def row_makers(session: Session, dataset_id: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row id: the ingest that stored it (or -1) and the transformation that stored it
    (or -1)."""
    index = chunk_index(session, dataset_id)
    if len(ids) == 0 or len(index) == 0:
        return np.full(len(ids), NO_INGEST), np.full(len(ids), -1)
    pos = np.searchsorted(index.firsts, ids, side="right") - 1
    return index.ingest_ids[pos], index.transformation_ids[pos]


def derived_parents(session: Session, child_ids: np.ndarray) -> dict[int, int]:
    """child row id -> parent row id, for rows whose content a transformation changed."""
    out: dict[int, int] = {}
    child_list = [int(c) for c in child_ids]
    for start in range(0, len(child_list), 5000):
        part = child_list[start:start + 5000]
        for row_id, parent in session.execute(
                select(RowEffect.row_id, RowEffect.parent_row_id)
                .where(RowEffect.effect == "modified", RowEffect.row_id.in_(part))):
            out[int(row_id)] = int(parent)
    return out


def origins(session: Session, dataset_id: int, ids: np.ndarray):
    """Walk derived rows back to raw rows.

    Returns (ingest id per row or -1, ancestors: dict row -> list of ancestor row ids, nearest
    first, and the set of transformation ids that created rows on the way).
    """
    ingest_of, made_by = row_makers(session, dataset_id, ids)
    ingest_of = ingest_of.copy()
    ancestors: dict[int, list[int]] = {}
    pending = {int(r): int(r) for r in ids[made_by >= 0]}  # row -> current ancestor
    while pending:
        parents = derived_parents(session, np.fromiter(set(pending.values()), dtype=np.int64))
        nxt = {}
        for row, cur in pending.items():
            parent = parents.get(cur)
            if parent is None:
                continue  # a row added by a transformation from outside (external edit)
            ancestors.setdefault(row, []).append(parent)
            nxt[row] = parent
        if not nxt:
            break
        cur_ids = np.fromiter(nxt.values(), dtype=np.int64, count=len(nxt))
        ing, made = row_makers(session, dataset_id, cur_ids)
        pending = {}
        for (row, cur), i, m in zip(nxt.items(), ing, made):
            if m >= 0:
                pending[row] = cur
            else:
                ingest_of[np.searchsorted(ids, row)] = i
    return ingest_of, ancestors


def _touched(session: Session, version: Version, t: Transformation) -> np.ndarray:
    """Sorted ids of the rows transformation ``t`` touched in making ``version``, from the
    version's delta: rows it added (appended, or new child rows), rows it relabelled, and for a
    split every row it placed. Removed rows are not members, so they never count."""
    if t.kind == "split":
        return member_labels(session, version)[0]
    return np.unique(np.concatenate([ids_from_bytes(version.added_ids),
                                     ids_from_bytes(version.relabel_ids)]))


def version_coverage(session: Session, version: Version) -> CoverageReport:
    """Provenance coverage of ``version`` with the reason each uncovered row is uncovered."""
    ids, _, _ = member_labels(session, version)
    n = len(ids)
    flags: dict[str, np.ndarray] = {}

    def flag(reason: str, mask: np.ndarray) -> None:
        if mask.any():
            flags[reason] = flags.get(reason, np.zeros(n, dtype=bool)) | mask

    ingest_of, ancestors = origins(session, version.dataset_id, ids)
    _, made_by = row_makers(session, version.dataset_id, ids)

    # Sources and ingests.
    for ingest_id in np.unique(ingest_of):
        mask = ingest_of == ingest_id
        if ingest_id == NO_INGEST:
            continue  # rows from outside the store: flagged as external edits below
        ingest = session.get(Ingest, int(ingest_id))
        source = session.get(Source, ingest.source_id)
        if not (source.uri or "").strip():
            flag("source without uri", mask)
        if not (source.license or "").strip():
            flag("no license", mask)
        if source_status(session, source) != "approved":
            flag("source not approved", mask)
        if not (ingest.file_sha256 or "").strip():
            flag("ingest without file digest", mask)
        if not (ingest.actor or "").strip():
            flag("ingest without actor", mask)

    # Transformations on the path.
    chain = version_chain(session, version)
    for v in chain:
        if v.transformation_id is None:
            continue
        t = session.get(Transformation, v.transformation_id)
        missing = [r for r, ok in (("transformation without actor", (t.actor or "").strip()),
                                   ("transformation without reason", (t.reason or "").strip()),
                                   ("transformation without code identity",
                                    (t.code_identity or "").strip())) if not ok]
        if t.kind == EXTERNAL_EDIT:
            touched = np.array(session.scalars(
                select(RowEffect.row_id).where(RowEffect.transformation_id == t.id,
                                               RowEffect.effect != "removed")).all(), dtype=np.int64)
            flag("external edit", np.isin(ids, touched) | (made_by == t.id))
        if not missing:
            continue
        touched = _touched(session, v, t)
        mask = in_sorted(touched, ids)
        for row, ups in ancestors.items():
            if in_sorted(touched, np.asarray(ups, dtype=np.int64)).any():
                mask[np.searchsorted(ids, row)] = True
        for reason in missing:
            flag(reason, mask)

    # Rows stored by an external edit (and rows derived from them) have no ingest at all.
    flag("external edit", ingest_of == NO_INGEST)

    uncovered = np.zeros(n, dtype=bool)
    for mask in flags.values():
        uncovered |= mask
    n_covered = int(n - uncovered.sum())
    breakdown = {r: int(flags[r].sum()) for r in REASONS if r in flags}
    examples = {r: [int(x) for x in ids[flags[r]][:5]] for r in REASONS if r in flags}
    return CoverageReport(version_id=version.id, n_rows=n, n_covered=n_covered,
                          coverage=n_covered / n if n else 1.0, breakdown=breakdown,
                          examples=examples)


def get_coverage(store: Store, version: str | int):
    """Provenance coverage of a version (see ``lineage.coverage``)."""
    with store.read() as session:
        return version_coverage(session, find_version(session, version))


def row_sources(session: Session, dataset_id: int, ids: np.ndarray) -> list[dict]:
    """Rows per source (derived rows count for their raw row's source), with the source's status."""

    ingest_of, _ = origins(session, dataset_id, ids)
    out = []
    for ingest_id, count in zip(*np.unique(ingest_of, return_counts=True)):
        if ingest_id < 0:
            out.append({"source": None, "ingest": None, "status": "outside the store", "rows": int(count)})
            continue
        ingest = session.get(Ingest, int(ingest_id))
        source = session.get(Source, ingest.source_id)
        out.append({"source": source.name, "ingest": ingest.id, "ingest_actor": ingest.actor,
                    "kind": source.kind,
                    "status": source_status(session, source), "rows": int(count)})
    return out
