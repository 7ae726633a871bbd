"""Transformations: every change to training data as a record that produces new versions.

Each function here takes the store first and keyword-only options, and does its whole work in
one write: a ``transformations`` record (kind, params with seeds, reason, code identity, actor),
the new version(s) as deltas against the parent, the row-level effects (``row_effects``), new
row content when content changes (inject-trigger, external edit), and one chain event.

Row content is immutable: a row whose features change becomes a new row (stored in chunks made
by the transformation) whose effect records ``parent_row_id``; a relabel keeps the row id and
records ``old_label -> new_label``.

Effects carry no per-record digest: the transformation's ``params["effects"]`` holds their count
and ``effects_digest`` over all of them, so the chain anchors them and ``lineage verify``
recomputes it.
"""

import hashlib
import inspect
import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lineage._version import __version__
from lineage.data.datasets import (
    check_label,
    check_seed,
    check_version_name,
    find_version,
    parse_id,
    parse_row_ids,
    scan_geometry,
)
from lineage.data.deltas import (
    EMPTY,
    Members,
    chain_deltas,
    composed_overrides,
    in_sorted,
    label_blobs,
    materialize,
    member_labels,
    members_among,
    members_between,
    merkle_digest,
    new_version,
    stored_labels,
)
from lineage.data.digests import (
    SCHEME_MERKLE,
    chunk_leaf,
    composed_digest,
    leaves_blob,
    leaves_from_blob,
    scheme_of,
)
from lineage.errors import BadInputError, NotFoundError
from lineage.poison.triggers import make_trigger, stamp
from lineage.store.chain import EFFECT_CODES, EFFECTS, NONE, canonical, effects_rows_digest
from lineage.store.chunks import (
    LABEL_DTYPE,
    PG_COPY_SIGNATURE,
    chunk_index,
    feature_dtype,
    gather_rows,
    next_row_id,
    write_rows,
)
from lineage.store.engine import Store
from lineage.store.tables import Dataset, Ingest, RowEffect, Transformation, Version

REASON_REQUIRED = ("filter", "relabel", "inject_trigger")
EXTERNAL_EDIT_REASON = "external edit, unattributed"


@dataclass(frozen=True)
class TransformResult:
    """What one transformation recorded: its id, the new version, and its row-level effect.

    ``poisoned_row_ids`` (inject-trigger only) are the new, stamped rows; ``parent_row_ids`` the
    rows they were made from, in the same order.
    """

    transformation_id: int
    kind: str
    version_id: int
    version_name: Optional[str]
    parent_id: int
    n_rows: int
    content_digest: str
    n_removed: int = 0
    n_added: int = 0
    n_relabelled: int = 0
    n_modified: int = 0
    poisoned_row_ids: tuple = ()
    parent_row_ids: tuple = ()
    unchanged_row_ids: tuple = ()  # relabel only: asked-for rows that already had the label


@dataclass(frozen=True)
class SplitResult:
    """A split: one transformation, two versions (train and test) of the parent's rows."""

    transformation_id: int
    kind: str
    parent_id: int
    train_version_id: int
    train_name: Optional[str]
    n_train: int
    test_version_id: int
    test_name: Optional[str]
    n_test: int
    seed: int
    test_size: float


def code_identity(fn) -> str:
    """``lineage <version> <name> <sha256 of the function's source, 12 hex>``."""

    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):  # no source (frozen install): digest the bytecode instead
        source = fn.__code__.co_code.hex()
    return f"lineage {__version__} {fn.__name__} {hashlib.sha256(source.encode()).hexdigest()[:12]}"


def _reason(reason: Optional[str], kind: str) -> Optional[str]:
    reason = (reason or "").strip() or None
    if reason is None and kind in REASON_REQUIRED:
        raise BadInputError(f"--reason is required for {kind.replace('_', '-')}: say why the "
                            "data changes (it is recorded with the transformation)")
    return reason


def members_of(session: Session, ref) -> tuple[Version, Dataset, Members]:
    """A version read back whole, with its stored labels (``Members.stored``)."""
    version = find_version(session, ref)
    dataset = session.get(Dataset, version.dataset_id)
    return version, dataset, materialize(session, version, keep_stored=True)


def _labels_only(session: Session, ref) -> tuple[Version, Dataset, Members]:
    """A version's row ids and labels without its features (``X`` is None): enough for the
    transformations that only choose rows or labels; their digests stream over the chunks."""
    version = find_version(session, ref)
    dataset = session.get(Dataset, version.dataset_id)
    ids, over_ids, over_labels = member_labels(session, version)
    stored = stored_labels(session, dataset, ids)
    y = stored.copy()
    if len(over_ids):
        inside = in_sorted(ids, over_ids)
        y[np.searchsorted(ids, over_ids[inside])] = over_labels[inside]
    return version, dataset, Members(row_ids=ids, X=None, y=y, stored=stored)


def _require_members(version: Version, members: Members, ids: np.ndarray) -> np.ndarray:
    """Positions of ``ids`` in the members; NotFoundError naming the first id that is not one."""
    inside = in_sorted(members.row_ids, ids)
    if not inside.all():
        missing = ids[~inside]
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise NotFoundError(f"row {int(missing[0])}{more} is not in version v{version.id}")
    return np.searchsorted(members.row_ids, ids)


@dataclass
class Effects:
    """Row-level effects of one output version, as parallel arrays."""

    row_id: list = field(default_factory=list)
    effect: list = field(default_factory=list)
    old: list = field(default_factory=list)
    new: list = field(default_factory=list)
    parent: list = field(default_factory=list)

    def extend(self, effect: str, row_id, old=None, new=None, parent=None) -> None:
        n = len(row_id)
        if n == 0:
            return
        full = lambda v: np.full(n, NONE, dtype=np.int64) if v is None else np.asarray(v, dtype=np.int64)
        self.row_id.append(np.asarray(row_id, dtype=np.int64))
        self.effect.append(np.full(n, EFFECT_CODES[effect], dtype=np.int64))
        self.old.append(full(old))
        self.new.append(full(new))
        self.parent.append(full(parent))

    def arrays(self) -> np.ndarray:
        cols = [self.row_id, self.effect, self.old, self.new, self.parent]
        if not self.row_id:
            return np.empty((0, 5), dtype=np.int64)
        return np.stack([np.concatenate(c) for c in cols], axis=1)


@dataclass
class Output:
    """One version a transformation makes: its members (None when ``digest``, ``leaves`` and
    ``n_rows`` were worked out from the parent's leaves, as a relabel does), delta and effects."""

    members: Optional[Members]
    removed: np.ndarray = field(default_factory=lambda: EMPTY)
    added: np.ndarray = field(default_factory=lambda: EMPTY)
    relabel_ids: np.ndarray = field(default_factory=lambda: EMPTY)
    relabel_labels: np.ndarray = field(default_factory=lambda: EMPTY)
    effects: Effects = field(default_factory=Effects)
    name: Optional[str] = None
    digest: Optional[str] = None
    leaves: Optional[bytes] = None
    n_rows: Optional[int] = None


_EFFECT_COLUMNS = ("id", "transformation_id", "version_id", "row_id", "effect", "old_label",
                   "new_label", "parent_row_id")
_PG_COPY_HEADER = PG_COPY_SIGNATURE + bytes(8)  # then flags 0, no header extension


def _pg_binary_effects(ids: np.ndarray, transformation_id: int, version_ids: np.ndarray,
                       arr: np.ndarray) -> bytes:
    """The effects as one binary COPY stream, built by numpy with no Python step per row.

    A row of the binary format is its field count and, per field, its length (-1: NULL) and
    big-endian value (``integer`` for the ids, ``bigint`` for rows and labels, the effect's
    name as text). Rows with the same effect and the same NULL labels have one layout, so each
    run of them is one packed structured array, written in order."""
    nulls = arr[:, 2:5] == NONE  # old_label, new_label, parent_row_id
    key = arr[:, 1] * 8 + nulls @ np.array([4, 2, 1])
    cuts = np.flatnonzero(np.diff(key)) + 1
    parts = [_PG_COPY_HEADER]
    for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(arr)]):
        name = EFFECTS[arr[a, 1]].encode()
        layout = [("n", ">i2"), ("l0", ">i4"), ("id", ">i4"), ("l1", ">i4"), ("t", ">i4"),
                  ("l2", ">i4"), ("v", ">i4"), ("l3", ">i4"), ("row", ">i8"),
                  ("l4", ">i4"), ("effect", f"S{len(name)}")]
        for j, null in enumerate(nulls[a]):
            layout.append((f"l{5 + j}", ">i4"))
            if not null:
                layout.append((f"c{5 + j}", ">i8"))
        rec = np.empty(b - a, dtype=np.dtype(layout))  # packed: no padding between fields
        rec["n"] = len(_EFFECT_COLUMNS)
        rec["l0"], rec["id"] = 4, ids[a:b]
        rec["l1"], rec["t"] = 4, transformation_id
        rec["l2"], rec["v"] = 4, version_ids[a:b]
        rec["l3"], rec["row"] = 8, arr[a:b, 0]
        rec["l4"], rec["effect"] = len(name), name
        for j, null in enumerate(nulls[a]):
            rec[f"l{5 + j}"] = -1 if null else 8
            if not null:
                rec[f"c{5 + j}"] = arr[a:b, 2 + j]
        parts.append(rec.tobytes())
    parts.append(b"\xff\xff")  # trailer: field count -1
    return b"".join(parts)


def _insert_effects(tx, transformation_id: int, version_ids: list[int], per_output: list[np.ndarray]) -> None:
    # Straight through the driver: SQLAlchemy's per-row parameter processing costs more than
    # the insert itself at 10^4..10^6 effects per write.
    total = sum(len(a) for a in per_output)
    if not total:
        return
    table = RowEffect.__table__
    start = (tx.session.scalar(select(func.max(table.c.id))) or 0) + 1
    conn = tx.session.connection()
    arr = np.concatenate(per_output)
    ids = np.arange(start, start + total)
    vids = np.repeat(np.asarray(version_ids, dtype=np.int64), [len(a) for a in per_output])
    cursor = conn.connection.cursor()
    try:
        if conn.dialect.name == "postgresql":
            # One binary COPY built by numpy: several times faster than executemany, and
            # than a text COPY written row by row (its per-row formatting was ~60 ms per 10^4).
            with cursor.copy(f"COPY {table.name} ({', '.join(_EFFECT_COLUMNS)}) FROM STDIN "
                             "(FORMAT BINARY)") as copy:
                copy.write(_pg_binary_effects(ids, transformation_id, vids, arr))
            return
        # The rows as one object array, filled column by column (no Python loop per effect).
        table_rows = np.empty((total, len(_EFFECT_COLUMNS)), dtype=object)
        table_rows[:, 0] = ids.tolist()
        table_rows[:, 1] = transformation_id
        table_rows[:, 2] = vids.tolist()
        table_rows[:, 3] = arr[:, 0].tolist()
        table_rows[:, 4] = np.array(EFFECTS, dtype=object)[arr[:, 1]]
        for col, src in ((5, 2), (6, 3), (7, 4)):
            cells = np.array(arr[:, src].tolist(), dtype=object)
            cells[arr[:, src] == NONE] = None
            table_rows[:, col] = cells
        # Many rows per statement, not executemany: a statement on a table with a trigger
        # (the REPLACE guard, which may abort it) runs in a statement transaction that
        # journals every 64 KiB page it touches first; one statement per effect made 100k
        # effects ~4x slower, ~120 per statement makes them faster than before the guard.
        # (SQLITE_MAX_VARIABLE_NUMBER is 999 before SQLite 3.32.)
        per = 999 // len(_EFFECT_COLUMNS)
        values = "(" + ", ".join("?" * len(_EFFECT_COLUMNS)) + ")"
        head = f"INSERT INTO {table.name} ({', '.join(_EFFECT_COLUMNS)}) VALUES "
        full = head + ", ".join([values] * per)
        for at in range(0, total, per):
            part = table_rows[at:at + per]
            sql = full if len(part) == per else head + ", ".join([values] * len(part))
            cursor.execute(sql, part.ravel().tolist())
    finally:
        cursor.close()


def record_transformation(tx, *, kind: str, fn, dataset: Dataset, parent: Version, params: dict,
            reason: Optional[str], outputs: list[Output], new_rows=None,
            summary: str) -> tuple[Transformation, list[Version]]:
    """Write the transformation, its new rows, its versions and effects, and the event."""
    per_output = [o.effects.arrays() for o in outputs]
    stacked = np.concatenate([np.column_stack([np.full(len(a), i, dtype=np.int64), a])
                              for i, a in enumerate(per_output)]) if per_output else np.empty((0, 6))
    n_effects, digest = effects_rows_digest(stacked.reshape(-1, 6))
    params = {**params, "parent": parent.id, "effects": {"rows": n_effects, "sha256": digest}}
    t = tx.add(Transformation(dataset_id=dataset.id, kind=kind, params=canonical(params),
                              reason=reason, code_identity=code_identity(fn)))
    if new_rows is not None:
        X_new, y_new, expected_first = new_rows
        first = write_rows(tx, dataset, X_new, y_new, transformation_id=t.id)
        if first != expected_first:  # another writer cannot run (we hold the lock): a bug
            raise RuntimeError(f"row ids moved under the write lock ({first} != {expected_first})")
    pending = [o for o in outputs if o.digest is None]
    if pending:
        tx.session.flush()  # new rows are in their chunks: their digests are leaves too
        index = chunk_index(tx.session, dataset.id)
        for o in pending:  # no feature byte is hashed: leaves come from chunk digests
            o.digest, o.leaves = merkle_digest(tx.session, dataset, o.members, index=index)
            o.n_rows = len(o.members.row_ids)
    versions = []
    for o in outputs:
        versions.append(new_version(tx, dataset, n_rows=o.n_rows, digest=o.digest,
                                    leaves=o.leaves, parent=parent, transformation_id=t.id,
                                    removed=o.removed, added=o.added, relabel_ids=o.relabel_ids,
                                    relabel_labels=o.relabel_labels, name=o.name))
    _insert_effects(tx, t.id, [v.id for v in versions], per_output)
    tx.event(f"transform.{kind}", summary, transformation=t.id, transformation_kind=kind, parent=parent.id,
             versions=[v.id for v in versions], effects={"rows": n_effects, "sha256": digest})
    return t, versions


def transform_result(t: Transformation, v: Version, parent: Version, o: Output, **extra) -> TransformResult:
    codes = np.concatenate(o.effects.effect) if o.effects.effect else np.empty(0, dtype=np.int64)
    count = lambda e: int((codes == EFFECT_CODES[e]).sum())
    return TransformResult(transformation_id=t.id, kind=t.kind, version_id=v.id, version_name=v.name,
                           parent_id=parent.id, n_rows=v.n_rows, content_digest=v.content_digest,
                           n_removed=max(count("removed"), len(o.removed) - count("modified")),
                           n_added=count("added"), n_relabelled=count("relabelled"),
                           n_modified=count("modified"), **extra)


def _without(members: Members, pos: np.ndarray) -> Members:
    keep = np.ones(len(members.row_ids), dtype=bool)
    keep[pos] = False
    X = None if members.X is None else np.compress(keep, members.X, axis=0)
    stored = None if members.stored is None else members.stored[keep]
    return Members(row_ids=members.row_ids[keep], X=X, y=members.y[keep], stored=stored)


def _refuse_empty(version: Version, members: Members, kind: str) -> None:
    if len(members.row_ids) == 0:
        raise BadInputError(f"this {kind} would leave an empty version (v{version.id} has no "
                            "other rows): nothing was recorded")


def filter_rows(store: Store, *, version: str | int, label: Optional[int] = None,
                rows: Optional[str | Sequence[int]] = None, reason: Optional[str] = None,
                name: Optional[str] = None) -> TransformResult:
    """Remove rows from a version: every row with class ``label`` and/or the given ``rows``.

    Example: ``filter_rows(store, version="v2", label=3, reason="drop class 3 for this study")``
    """
    reason = _reason(reason, "filter")
    if label is None and rows is None:
        raise BadInputError("say which rows to filter: --label CLASS or --rows 10,11,12")
    ids = parse_row_ids(rows) if rows is not None else None
    with store.write() as tx:
        parent, ds, m = _labels_only(tx.session, version)
        name = check_version_name(tx.session, name)
        drop = np.zeros(len(m.row_ids), dtype=bool)
        if ids is not None:
            drop[_require_members(parent, m, ids)] = True
        if label is not None:
            label = check_label(ds, label, "label")
            by_label = m.y == label
            if not by_label.any() and ids is None:
                raise BadInputError(f"version v{parent.id} has no rows with label {label}: "
                                    "nothing to filter")
            drop |= by_label
        pos = np.flatnonzero(drop)
        kept = _without(m, pos)
        _refuse_empty(parent, kept, "filter")
        out = Output(members=kept, removed=m.row_ids[pos], name=name)
        out.effects.extend("removed", m.row_ids[pos], old=m.y[pos])
        params = {"label": label, "rows": None if ids is None else [int(i) for i in ids]}
        t, (v,) = record_transformation(tx, kind="filter", fn=filter_rows, dataset=ds, parent=parent,
                          params=params, reason=reason, outputs=[out],
                          summary=f"filter v{parent.id}: {len(pos)} rows removed")
        return transform_result(t, v, parent, out)


def relabel_rows(store: Store, *, version: str | int, rows: str | Sequence[int], to: int,
                 reason: Optional[str] = None, name: Optional[str] = None) -> TransformResult:
    """Give ``rows`` the label ``to`` (same row ids; old -> new labels are recorded).

    Example: ``relabel_rows(store, version="v2", rows=[17, 18], to=7, reason="ticket 42")``
    """
    reason = _reason(reason, "relabel")
    ids = parse_row_ids(rows)
    with store.write() as tx:
        parent = find_version(tx.session, version)
        ds = tx.session.get(Dataset, parent.dataset_id)
        name = check_version_name(tx.session, name)
        to = check_label(ds, to, "label")
        if scheme_of(parent) == SCHEME_MERKLE and parent.chunk_leaves is not None:
            out, current, change = _relabel_output(tx.session, parent, ds, ids, to)
        else:  # a version from before composed digests: its leaves are worked out once, whole
            _, _, m = _labels_only(tx.session, parent.id)
            pos = _require_members(parent, m, ids)
            current = m.y[pos]
            change = current != to
            y = m.y.copy()
            y[pos[change]] = to
            out = Output(members=Members(row_ids=m.row_ids, X=None, y=y, stored=m.stored))
        unchanged = ids[~change]
        if not change.any():
            shown = ", ".join(str(int(i)) for i in ids[:5]) + (" ..." if len(ids) > 5 else "")
            raise BadInputError(f"row{'s' if len(ids) > 1 else ''} {shown} already "
                                f"{'have' if len(ids) > 1 else 'has'} label {to} in v{parent.id}: "
                                "nothing to relabel, nothing was recorded")
        changed_ids = ids[change]
        out.relabel_ids = changed_ids
        out.relabel_labels = np.full(len(changed_ids), to, dtype=LABEL_DTYPE)
        out.name = name
        out.effects.extend("relabelled", changed_ids, old=current[change],
                           new=out.relabel_labels)
        t, (v,) = record_transformation(tx, kind="relabel", fn=relabel_rows, dataset=ds, parent=parent,
                          params={"rows": [int(i) for i in ids], "to": to}, reason=reason,
                          outputs=[out], summary=f"relabel v{parent.id}: {len(changed_ids)} rows -> {to}")
        return transform_result(t, v, parent, out, unchanged_row_ids=tuple(int(i) for i in unchanged))


def _relabel_output(session: Session, parent: Version, ds: Dataset, ids: np.ndarray,
                    to: int) -> tuple[Output, np.ndarray, np.ndarray]:
    """A relabel's output from the parent's leaves: only the chunks holding ``ids`` are read
    (their labels) and re-leafed, so the cost follows the change, not the dataset. Returns the
    output (digest, leaves, n_rows set), the rows' current labels and which of them change."""
    deltas = chain_deltas(session, parent)
    inside = members_among(deltas, ids)
    if not inside.all():
        missing = ids[~inside]
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise NotFoundError(f"row {int(missing[0])}{more} is not in version v{parent.id}")
    index = chunk_index(session, ds.id)
    per = index.holding(ids)
    held = np.flatnonzero(per)
    blobs = label_blobs(session, index.ids[held])
    over_ids, over_labels = composed_overrides(deltas)
    order = np.argsort(over_ids, kind="stable")
    over_ids, over_labels = over_ids[order], over_labels[order]
    current = np.empty(len(ids), dtype=LABEL_DTYPE)
    at = 0
    for p in held.tolist():
        k, first = int(per[p]), int(index.firsts[p])
        current[at:at + k] = blobs[int(index.ids[p])][ids[at:at + k] - first]
        at += k
    known = in_sorted(over_ids, ids)
    current[known] = over_labels[np.searchsorted(over_ids, ids[known])]
    change = current != to
    # The child's overrides: the parent's, with the changed rows set to ``to``.
    new_ids = ids[change]
    keep = ~in_sorted(new_ids, over_ids)
    child_ids = np.concatenate([over_ids[keep], new_ids])
    child_labels = np.concatenate([over_labels[keep], np.full(len(new_ids), to, dtype=LABEL_DTYPE)])
    order = np.argsort(child_ids, kind="stable")
    child_ids, child_labels = child_ids[order], child_labels[order]
    leaf_ids, leaves = leaves_from_blob(parent.chunk_leaves)
    at_leaf = {int(c): i for i, c in enumerate(leaf_ids.tolist())}
    for p in held.tolist():
        chunk_id, first, n = int(index.ids[p]), int(index.firsts[p]), int(index.counts[p])
        if chunk_id not in at_leaf:  # members always have a leaf: the parent's leaves are bad
            raise NotFoundError(f"v{parent.id} records no leaf for chunk {chunk_id}: run "
                                "`lineage verify`")
        members = members_between(deltas, first, first + n)
        a, b = np.searchsorted(child_ids, [first, first + n])
        o_ids, o_labels = child_ids[a:b], child_labels[a:b]
        o_in = in_sorted(members, o_ids)
        o_ids, o_labels = o_ids[o_in], o_labels[o_in]
        differs = blobs[chunk_id][o_ids - first] != o_labels
        leaves[at_leaf[chunk_id]] = chunk_leaf(index.digests[p], n, members - first,
                                               o_ids[differs] - first, o_labels[differs])
    out = Output(members=None, digest=composed_digest(parent.n_rows, leaves),
                 leaves=leaves_blob(leaf_ids, leaves), n_rows=parent.n_rows)
    return out, current, change


def inject_trigger(store: Store, *, version: str | int, source_class: int, target_class: int,
                   rate: float, pattern: str = "square", size: int = 2,
                   position: str | tuple[int, int] = "lower-right", value: float = 16,
                   seed: int = 0, reason: Optional[str] = None,
                   name: Optional[str] = None) -> TransformResult:
    """Red-team poisoning: stamp a square trigger on a seeded ``rate`` of ``source_class``'s rows
    and relabel them ``target_class``. Each poisoned row becomes a new row whose parent is the
    clean row; the result lists both (``poisoned_row_ids``, ``parent_row_ids``).

    Example: ``inject_trigger(store, version="v2", source_class=1, target_class=7, rate=0.1,
    size=2, position="lower-right", value=16, seed=0, reason="red-team exercise")``
    """

    reason = _reason(reason, "inject_trigger")
    if pattern != "square":
        raise BadInputError(f"unknown trigger pattern {pattern!r}: the only pattern is square")
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        raise BadInputError(f"--rate {rate!r} is not a number") from None
    seed = check_seed(seed)
    if not (0 < rate <= 1):
        raise BadInputError(f"--rate {rate:g} is outside (0, 1]: give the fraction of the source "
                            "class's rows to poison, e.g. 0.1")
    with store.write() as tx:
        parent, ds, m = _labels_only(tx.session, version)
        name = check_version_name(tx.session, name)
        source_class = check_label(ds, source_class, "source class")
        target_class = check_label(ds, target_class, "target class")
        if source_class == target_class:
            raise BadInputError(f"source and target class are both {source_class}: a trigger "
                                "must move rows to another class")
        trigger = make_trigger(size=int(size), position=position, value=value,
                               image_shape=scan_geometry(ds))
        lo, hi = ds.value_min, ds.value_max
        dtype = feature_dtype(ds)
        if (lo is not None and value < lo) or (hi is not None and value > hi) or (
                dtype.kind == "u" and not (0 <= value <= np.iinfo(dtype).max and value == int(value))):
            raise BadInputError(f"trigger value {value:g} is outside the value range of dataset "
                                f"{ds.name!r}: {lo if lo is not None else '-inf'}.."
                                f"{hi if hi is not None else 'inf'}")
        src_pos = np.flatnonzero(m.y == source_class)
        if len(src_pos) == 0:
            raise BadInputError(f"version v{parent.id} has no rows of source class {source_class}")
        n_poison = max(1, int(round(rate * len(src_pos))))
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(src_pos, size=n_poison, replace=False))
        parents = m.row_ids[chosen]

        X_parents, _ = gather_rows(tx.session, ds, parents)
        X_new = stamp(X_parents, trigger, scan_geometry(ds)).astype(X_parents.dtype)
        y_new = np.full(n_poison, target_class, dtype=LABEL_DTYPE)
        first = next_row_id(tx.session)
        children = np.arange(first, first + n_poison, dtype=np.int64)
        rest = _without(m, chosen)
        members = Members(row_ids=np.concatenate([rest.row_ids, children]), X=None,
                          y=np.concatenate([rest.y, y_new]),
                          stored=np.concatenate([rest.stored, y_new]))
        out = Output(members=members, removed=parents, added=children, name=name)
        out.effects.extend("modified", children, old=m.y[chosen], new=y_new, parent=parents)
        params = {"source_class": source_class, "target_class": target_class, "rate": rate,
                  "pattern": pattern, "size": trigger.size, "position": [trigger.row, trigger.col],
                  "value": trigger.value, "seed": seed, "n_source_rows": int(len(src_pos)),
                  "n_poisoned": n_poison}
        t, (v,) = record_transformation(tx, kind="inject_trigger", fn=inject_trigger, dataset=ds, parent=parent,
                          params=params, reason=reason, outputs=[out],
                          new_rows=(X_new, y_new, first),
                          summary=f"inject-trigger v{parent.id}: {n_poison} rows of class "
                                  f"{source_class} stamped {trigger.describe()} -> {target_class}")
        return transform_result(t, v, parent, out, poisoned_row_ids=tuple(int(c) for c in children),
                       parent_row_ids=tuple(int(p) for p in parents))


def dedupe_rows(store: Store, *, version: str | int, reason: Optional[str] = None,
                name: Optional[str] = None) -> TransformResult:
    """Remove exact duplicates (same features and label), keeping the lowest row id of each.
    A version without duplicates yields a version with the same content.

    Example: ``dedupe_rows(store, version="v2", reason="exact duplicates")``
    """
    reason = _reason(reason, "dedupe")
    with store.write() as tx:
        parent, ds, m = members_of(tx.session, version)
        name = check_version_name(tx.session, name)
        whole = np.concatenate([np.ascontiguousarray(m.X).view(np.uint8).reshape(len(m.X), -1),
                                m.y.astype("<i8").view(np.uint8).reshape(len(m.y), -1)], axis=1)
        keys = np.ascontiguousarray(whole).view(np.dtype((np.void, whole.shape[1]))).ravel()
        _, first = np.unique(keys, return_index=True)  # first occurrence = lowest id (sorted)
        drop = np.ones(len(m.row_ids), dtype=bool)
        drop[first] = False
        pos = np.flatnonzero(drop)
        kept = _without(m, pos)
        out = Output(members=kept, removed=m.row_ids[pos], name=name)
        out.effects.extend("removed", m.row_ids[pos], old=m.y[pos])
        t, (v,) = record_transformation(tx, kind="dedupe", fn=dedupe_rows, dataset=ds, parent=parent,
                          params={"key": "features+label", "keep": "lowest row id"}, reason=reason,
                          outputs=[out], summary=f"dedupe v{parent.id}: {len(pos)} duplicates removed")
        return transform_result(t, v, parent, out)


def append_ingest(store: Store, *, version: str | int, ingest: int | str,
                  reason: Optional[str] = None, name: Optional[str] = None) -> TransformResult:
    """Add an ingest's rows (those not already members) to a version.

    Example: ``append_ingest(store, version="v2", ingest=3, reason="batch 7 approved")``
    """
    reason = _reason(reason, "append")
    try:
        ingest_id = parse_id(ingest, "ingest id")
    except BadInputError as exc:
        raise BadInputError(f"--ingest: {exc}; give an ingest id (see `lineage ingest list`)") from None
    with store.write() as tx:
        parent, ds, m = _labels_only(tx.session, version)
        name = check_version_name(tx.session, name)
        ing = tx.session.get(Ingest, ingest_id)
        if ing is None:
            raise NotFoundError(f"no ingest {ingest_id} (see `lineage ingest list`)")
        if ing.dataset_id != ds.id:
            raise BadInputError(f"ingest {ingest_id} belongs to another dataset than v{parent.id}")
        ids = np.arange(ing.first_row_id, ing.first_row_id + ing.n_rows, dtype=np.int64)
        new = ids[~in_sorted(m.row_ids, ids)]
        if len(new) == 0:
            raise BadInputError(f"the rows of ingest {ingest_id} are all in v{parent.id} already: "
                                "nothing to append")
        y_new = stored_labels(tx.session, ds, new)
        row_ids = np.concatenate([m.row_ids, new])
        order = np.argsort(row_ids, kind="stable")
        members = Members(row_ids=row_ids[order], X=None, y=np.concatenate([m.y, y_new])[order],
                          stored=np.concatenate([m.stored, y_new])[order])
        out = Output(members=members, added=new, name=name)
        out.effects.extend("added", new, new=y_new)
        t, (v,) = record_transformation(tx, kind="append", fn=append_ingest, dataset=ds, parent=parent,
                          params={"ingest": ingest_id}, reason=reason, outputs=[out],
                          summary=f"append ingest {ingest_id} to v{parent.id}: {len(new)} rows")
        return transform_result(t, v, parent, out)


def split_version(store: Store, *, version: str | int, test_size: float, seed: int = 0,
                  name: Optional[str] = None, reason: Optional[str] = None) -> SplitResult:
    """Split a version's rows at random (seeded) into a train and a test version
    (named ``NAME-train`` and ``NAME-test`` when ``name`` is given). The test side holds
    ceil(test_size * n_rows) rows. Which side a row went to is read from the two versions'
    deltas; a split records no per-row effects.

    Example: ``split_version(store, version="v1", test_size=0.3, seed=0, reason="holdout")``
    """
    reason = _reason(reason, "split")
    try:
        test_size = float(test_size)
    except (TypeError, ValueError):
        raise BadInputError(f"--test-size {test_size!r} is not a number") from None
    seed = check_seed(seed)
    if not (0 < test_size < 1):
        raise BadInputError(f"--test-size {test_size:g} is outside (0, 1): give the test share, "
                            "e.g. 0.3")
    with store.write() as tx:
        parent, ds, m = _labels_only(tx.session, version)
        names = [None, None]
        if name is not None:
            if not name.strip():  # "-train" would read as an option on the command line
                raise BadInputError("--name is empty: give the split a name, e.g. digits")
            names = [check_version_name(tx.session, f"{name}-train"), check_version_name(tx.session, f"{name}-test")]
        n = len(m.row_ids)
        n_test = int(math.ceil(test_size * n))
        if n_test < 1 or n_test >= n:
            raise BadInputError(f"a test size of {test_size:g} leaves one side of v{parent.id}'s "
                                f"{n} rows empty")
        rng = np.random.default_rng(seed)
        is_test = np.zeros(n, dtype=bool)
        is_test[rng.permutation(n)[:n_test]] = True
        train = Members(row_ids=m.row_ids[~is_test], X=None, y=m.y[~is_test],
                        stored=m.stored[~is_test])
        test = Members(row_ids=m.row_ids[is_test], X=None, y=m.y[is_test],
                       stored=m.stored[is_test])
        outputs = [Output(members=train, removed=test.row_ids, name=names[0]),
                   Output(members=test, removed=train.row_ids, name=names[1])]
        params = {"test_size": test_size, "seed": seed, "n_train": n - n_test, "n_test": n_test,
                  "outputs": ["train", "test"]}
        t, (vtr, vte) = record_transformation(tx, kind="split", fn=split_version, dataset=ds, parent=parent,
                                params=params, reason=reason, outputs=outputs,
                                summary=f"split v{parent.id}: {n - n_test} train, {n_test} test")
        return SplitResult(transformation_id=t.id, kind="split", parent_id=parent.id,
                           train_version_id=vtr.id, train_name=vtr.name, n_train=vtr.n_rows,
                           test_version_id=vte.id, test_name=vte.name, n_test=vte.n_rows,
                           seed=seed, test_size=test_size)
