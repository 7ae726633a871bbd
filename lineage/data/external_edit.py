"""Rows changed outside the store and imported back as a new version of the one they came from:
recorded as an unattributed external edit, so provenance coverage counts them as not covered."""

from pathlib import Path
from typing import Optional

import numpy as np

from lineage.data.datasets import check_version_name, parse_id
from lineage.data.deltas import Members, in_sorted
from lineage.data.ingest import validate_rows
from lineage.data.readers import read_csv_table
from lineage.data.sources import find_source, source_status
from lineage.data.transforms import (
    EXTERNAL_EDIT_REASON,
    Output,
    TransformResult,
    members_of,
    record_transformation,
    transform_result,
)
from lineage.errors import BadInputError, QuarantineError
from lineage.store.chunks import LABEL_DTYPE, next_row_id
from lineage.store.engine import Store
from lineage.store.files import file_sha256


def _read_edit_csv(path: Path, label_column: str, row_id_column: str):
    """(row ids or None, X, y, line numbers) of an edited CSV, read by ingest's CSV reader; a
    blank row id marks a new row (-1)."""

    table = read_csv_table(path, label_column=label_column, text_columns=(row_id_column,))
    ids = None
    if row_id_column in table.text:
        ids = np.empty(len(table.lines), dtype=np.int64)
        for i, (text, line) in enumerate(zip(table.text[row_id_column], table.lines)):
            if not text:
                ids[i] = -1
                continue
            try:
                ids[i] = parse_id(text, "row id")
            except BadInputError as exc:
                raise BadInputError(f"{path} line {line}, column {row_id_column!r}: {exc} (leave "
                                    "it blank for a new row)") from None
    label_at = table.header.index(label_column)
    y = table.values[:, label_at]
    drop = [label_at] + ([table.header.index(row_id_column)] if ids is not None else [])
    X = np.delete(table.values, drop, axis=1)
    if X.shape[1] == 0:
        raise BadInputError(f"{path}: no feature columns besides {label_column!r}")
    features = [c for i, c in enumerate(table.header) if i not in drop]

    def locate(row: int, feature: Optional[int]) -> str:  # for ingest's value checks
        column = label_column if feature is None else features[feature]
        return f"{path} line {table.lines[row]}, column {column!r}"

    return ids, X, y, table.lines, locate


def import_external_edit(store: Store, path, *, as_version_of: str | int, source: str,
                         label_column: str = "label", row_id_column: str = "row_id",
                         name: Optional[str] = None,
                         require_row_ids: bool = False) -> TransformResult:
    """Record a copy of a version edited outside the store as an unattributed "external edit".

    The CSV is diffed against the version. Rows are matched by the ``row_id_column`` when the
    header has one (a blank id marks a new row; members missing from the file are removed),
    otherwise by position: the file's i-th row against the version's i-th row in row-id order
    (extra file rows are added, missing trailing rows removed); with ``require_row_ids`` a
    header without the column is refused (it was named). Changed features make new rows
    (parent -> child); a changed label alone is a relabel. The import's actor is recorded with
    the reason "external edit, unattributed"; rows it changed are never provenance-covered.

    Example: ``import_external_edit(store, "edited.csv", as_version_of="v5", source="crowd-batch-7")``
    """

    path = Path(path)
    file_ids, X_file, y_file, file_lines, locate = _read_edit_csv(path, label_column,
                                                                  row_id_column)
    if require_row_ids and file_ids is None:
        raise BadInputError(f"{path}: no column {row_id_column!r} in the header (named by "
                            "--row-id-column)")
    digest = file_sha256(path)
    with store.write() as tx:
        src = find_source(tx.session, source)
        status = source_status(tx.session, src)
        if status in ("rejected", "revoked"):
            raise QuarantineError(f"source {source!r} is {status}: its rows may not be imported")
        parent, ds, m = members_of(tx.session, as_version_of)
        name = check_version_name(tx.session, name)
        X_file, y_file = validate_rows(X_file, y_file, ds, str(path), None, locate)
        X_file = X_file.astype(m.X.dtype)
        n = len(m.row_ids)
        if file_ids is not None:
            known = file_ids[file_ids >= 0]
            uniq, counts = np.unique(known, return_counts=True)
            if (counts > 1).any():
                raise BadInputError(f"{path}: row id {int(uniq[counts > 1][0])} appears twice")
            pos_in_m = np.searchsorted(m.row_ids, known)
            ok = in_sorted(m.row_ids, known)
            if not ok.all():
                bad = int(known[~ok][0])
                line = file_lines[int(np.flatnonzero(file_ids == bad)[0])]
                raise BadInputError(f"{path} line {line}: row {bad} is not in version "
                                    f"v{parent.id}; leave {row_id_column} blank for a new row")
            matched_file = np.flatnonzero(file_ids >= 0)
            matched_m = pos_in_m
            new_file = np.flatnonzero(file_ids < 0)
            matched_by = row_id_column
        else:
            k = min(n, len(X_file))
            matched_file = np.arange(k)
            matched_m = np.arange(k)
            new_file = np.arange(k, len(X_file))
            matched_by = "row order"
        gone = np.ones(n, dtype=bool)
        gone[matched_m] = False
        removed_pos = np.flatnonzero(gone)
        same_X = (X_file[matched_file] == m.X[matched_m]).all(axis=1)
        same_y = y_file[matched_file] == m.y[matched_m]
        relabel_pos, relabel_f = matched_m[same_X & ~same_y], matched_file[same_X & ~same_y]
        mod_pos, mod_f = matched_m[~same_X], matched_file[~same_X]
        if not (len(removed_pos) or len(new_file) or len(relabel_pos) or len(mod_pos)):
            raise BadInputError(f"{path} matches v{parent.id} exactly: no external edit to record")
        first = next_row_id(tx.session)
        n_new_rows = len(mod_pos) + len(new_file)
        new_ids = np.arange(first, first + n_new_rows, dtype=np.int64)
        children, added = new_ids[:len(mod_pos)], new_ids[len(mod_pos):]
        X_new = np.concatenate([X_file[mod_f], X_file[new_file]])
        y_new = np.concatenate([y_file[mod_f], y_file[new_file]]).astype(LABEL_DTYPE)

        keep = np.ones(n, dtype=bool)
        keep[removed_pos] = False
        keep[mod_pos] = False
        y_kept = m.y.copy()
        y_kept[relabel_pos] = y_file[relabel_f]
        members = Members(row_ids=np.concatenate([m.row_ids[keep], new_ids]),
                          X=np.concatenate([m.X[keep], X_new]),
                          y=np.concatenate([y_kept[keep], y_new]))
        out = Output(members=members, removed=np.concatenate([m.row_ids[removed_pos], m.row_ids[mod_pos]]),
                      added=new_ids, relabel_ids=m.row_ids[relabel_pos],
                      relabel_labels=y_file[relabel_f].astype(LABEL_DTYPE), name=name)
        out.effects.extend("removed", m.row_ids[removed_pos], old=m.y[removed_pos])
        out.effects.extend("relabelled", m.row_ids[relabel_pos], old=m.y[relabel_pos],
                           new=y_file[relabel_f])
        out.effects.extend("modified", children, old=m.y[mod_pos], new=y_file[mod_f],
                           parent=m.row_ids[mod_pos])
        out.effects.extend("added", added, new=y_file[new_file])
        params = {"file": str(path), "file_sha256": digest, "source": src.name,
                  "matched_by": matched_by, "label_column": label_column}
        t, (v,) = record_transformation(tx, kind="external_edit", fn=import_external_edit, dataset=ds,
                          parent=parent, params=params, reason=EXTERNAL_EDIT_REASON,
                          outputs=[out], new_rows=(X_new, y_new, first) if n_new_rows else None,
                          summary=f"external edit of v{parent.id} from {path.name}: "
                                  f"{len(removed_pos)} removed, {len(new_file)} added, "
                                  f"{len(relabel_pos)} relabelled, {len(mod_pos)} modified")
        return transform_result(t, v, parent, out)
