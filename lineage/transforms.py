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
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lineage.chain import canonical
from lineage.errors import AlreadyExistsError, BadInputError, NotFoundError, QuarantineError
from lineage.storage import ID_DTYPE, LABEL_DTYPE, feature_dtype, next_row_id, write_rows
from lineage.store import Store
from lineage.tables import Chunk, Dataset, Ingest, RowEffect, Transformation, Version
from lineage.versions import (EMPTY, Members, find_version, in_sorted, materialize, member_labels,
                              new_version, parse_id)

EFFECTS = ("removed", "added", "relabelled", "modified")
_CODE = {name: i for i, name in enumerate(EFFECTS)}
NONE = np.iinfo(np.int64).min  # "no value" in the effects digest
REASON_REQUIRED = ("filter", "relabel", "inject_trigger")
EXTERNAL_EDIT_REASON = "external edit, unattributed"


# ----------------------------------------------------------------------------- results

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


# ----------------------------------------------------------------------------- helpers

def code_identity(fn) -> str:
    """``lineage <version> <name> <sha256 of the function's source, 12 hex>``."""
    from lineage import __version__  # at call time: lineage/__init__ imports this module

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


def _check_name(session: Session, name: Optional[str]) -> Optional[str]:
    if name is None:
        return None
    name = name.strip()
    if not name:
        raise BadInputError("a version name may not be empty")
    digits = name[1:] if name[:1] in ("v", "V") else name
    if digits.isdigit():
        raise BadInputError(f"version name {name!r} looks like a version id: choose another name")
    if session.scalars(select(Version.id).where(Version.name == name)).first() is not None:
        raise AlreadyExistsError(f"a version named {name!r} already exists")
    return name


def _classes(dataset: Dataset) -> list[int]:
    return json.loads(dataset.classes)


def _check_label(dataset: Dataset, label: int, what: str) -> int:
    classes = _classes(dataset)
    if int(label) not in classes:
        raise BadInputError(f"{what} {label} is not one of the classes of dataset "
                            f"{dataset.name!r}: {classes}")
    return int(label)


MAX_ROW_IDS = 10_000_000  # ids one --rows may list (ranges expanded): a guard on memory


def parse_row_ids(text: str | Sequence[int]) -> np.ndarray:
    """``"10,11,12"`` or ``"10-12"`` (or a sequence of ints) -> sorted unique int64 ids.
    Each id goes through ``versions.parse_id`` (whole, 0..2**63-1)."""
    if not isinstance(text, str):
        try:
            ids = [parse_id(int(x), "row id") for x in text]
        except (TypeError, ValueError):
            raise BadInputError(f"row ids must be whole numbers, got {text!r}") from None
        parts = np.asarray(ids, dtype=np.int64)
    else:
        singles, ranges, total = [], [], 0
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            lo, sep, hi = part.partition("-")
            if not all(x.strip().isdigit() for x in ((lo, hi) if sep else (part,))):
                raise BadInputError(f"row ids {text!r}: {part!r} is not a row id or a range "
                                    "A-B; write e.g. 10,11,12 or 10-12")
            if sep:
                a, b = parse_id(lo, "row id"), parse_id(hi, "row id")
                if b < a:
                    raise BadInputError(f"row ids {text!r}: {part!r} is not a row id or a range "
                                        "A-B; write e.g. 10,11,12 or 10-12")
                ranges.append((a, b))
                total += b - a + 1
            else:
                singles.append(parse_id(part, "row id"))
                total += 1
            if total > MAX_ROW_IDS:
                raise BadInputError(f"row ids {text!r} name more than {MAX_ROW_IDS:,} rows: "
                                    "filter by --label, or in several steps")
        parts = np.concatenate([np.asarray(singles, dtype=np.int64),
                                *[np.arange(a, b + 1, dtype=np.int64) for a, b in ranges]])
    if not len(parts):
        raise BadInputError("no row ids given; write e.g. --rows 10,11,12")
    return np.unique(parts)


def check_seed(seed) -> int:
    """A random seed: a whole number, 0 or more (numpy's generators refuse negative seeds)."""
    try:
        value = int(seed)
    except (TypeError, ValueError):
        raise BadInputError(f"--seed {seed!r} is not a whole number") from None
    if value < 0:
        raise BadInputError(f"--seed {value} is negative: give a whole number, 0 or more")
    return value


def _members_of(session: Session, ref) -> tuple[Version, Dataset, Members]:
    version = find_version(session, ref)
    dataset = session.get(Dataset, version.dataset_id)
    return version, dataset, materialize(session, version)


def _chunk_blobs(session: Session, dataset: Dataset, column):
    """(first row id, n rows, blob) of the dataset's chunks in row order, 16 chunks a query.
    The order comes from the blob-free index: ORDER BY on the blob query itself makes SQLite
    sort every blob through a temporary B-tree (5x slower)."""
    index = session.execute(select(Chunk.id, Chunk.first_row_id, Chunk.n_rows)
                            .where(Chunk.dataset_id == dataset.id)
                            .order_by(Chunk.first_row_id)).all()
    for start in range(0, len(index), 16):
        part = index[start:start + 16]
        blobs = dict(session.execute(select(Chunk.id, column)
                                     .where(Chunk.id.in_([c.id for c in part]))).all())
        for c in part:
            yield c.first_row_id, c.n_rows, blobs[c.id]


def _labels_of(session: Session, dataset: Dataset, ids: np.ndarray) -> np.ndarray:
    """Stored labels of sorted row ids, reading only the chunks' label blobs."""
    if len(ids) == 0:
        return np.empty(0, dtype=LABEL_DTYPE)
    rows = [r for r in _chunk_blobs(session, dataset, Chunk.labels)
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


def _labels_only(session: Session, ref) -> tuple[Version, Dataset, Members]:
    """A version's row ids and labels without its features (``X`` is None): enough for the
    transformations that only choose rows or labels; their digests stream over the chunks."""
    version = find_version(session, ref)
    dataset = session.get(Dataset, version.dataset_id)
    ids, over_ids, over_labels = member_labels(session, version)
    y = _labels_of(session, dataset, ids).copy()
    if len(over_ids):
        inside = in_sorted(ids, over_ids)
        y[np.searchsorted(ids, over_ids[inside])] = over_labels[inside]
    return version, dataset, Members(row_ids=ids, X=None, y=y)


def _stream_digests(session: Session, dataset: Dataset, outputs: list[Members]) -> list[str]:
    """Content digests (as ``versions.content_digest``) of members given by sorted row ids and
    labels, hashing their features chunk by chunk instead of building X."""
    dtype = feature_dtype(dataset)
    hashers = []
    for m in outputs:
        h = hashlib.sha256(b"lineage-version-v1\0")
        h.update(np.ascontiguousarray(m.row_ids, dtype=ID_DTYPE))
        h.update(np.ascontiguousarray(m.y, dtype=LABEL_DTYPE))
        hashers.append(h)
    for first, n, blob in _chunk_blobs(session, dataset, Chunk.features):
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


def _require_members(version: Version, members: Members, ids: np.ndarray) -> np.ndarray:
    """Positions of ``ids`` in the members; NotFoundError naming the first id that is not one."""
    inside = in_sorted(members.row_ids, ids)
    if not inside.all():
        missing = ids[~inside]
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise NotFoundError(f"row {int(missing[0])}{more} is not in version v{version.id}")
    return np.searchsorted(members.row_ids, ids)


@dataclass
class _Effects:
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
        self.effect.append(np.full(n, _CODE[effect], dtype=np.int64))
        self.old.append(full(old))
        self.new.append(full(new))
        self.parent.append(full(parent))

    def arrays(self) -> np.ndarray:
        cols = [self.row_id, self.effect, self.old, self.new, self.parent]
        if not self.row_id:
            return np.empty((0, 5), dtype=np.int64)
        return np.stack([np.concatenate(c) for c in cols], axis=1)


def _digest_rows(rows: np.ndarray) -> tuple[int, str]:
    """(count, sha256) over effect rows of shape (n, 6): output index, row id, effect code,
    old label, new label, parent row id (NONE for no value), in stored order."""
    h = hashlib.sha256(b"lineage-effects-v1\0")
    h.update(np.ascontiguousarray(rows, dtype="<i8").tobytes())
    return len(rows), h.hexdigest()


def effects_digest(session: Session, transformation_id: int) -> tuple[int, str]:
    """Recompute (count, sha256) of a transformation's stored effects, for ``verify``."""
    outputs = session.scalars(select(Version.id).where(Version.transformation_id == transformation_id)
                              .order_by(Version.id)).all()
    index = {vid: i for i, vid in enumerate(outputs)}
    t = RowEffect.__table__
    result = session.execute(select(t.c.version_id, t.c.row_id, t.c.effect, t.c.old_label,
                                    t.c.new_label, t.c.parent_row_id)
                             .where(t.c.transformation_id == transformation_id).order_by(t.c.id))
    none = int(NONE)
    rows = [(index.get(v, -1), r, _CODE.get(e, -1), none if o is None else o,
             none if n is None else n, none if p is None else p) for v, r, e, o, n, p in result]
    return _digest_rows(np.array(rows, dtype=np.int64).reshape(-1, 6))


def check_effects(session: Session) -> None:
    """Raise IntegrityError when any transformation's stored effects differ from the digest in
    its (chain-anchored) params, or effects exist for a transformation that records none."""
    from lineage.errors import IntegrityError

    with_effects = set(session.scalars(select(RowEffect.transformation_id).distinct()).all())
    for t in session.scalars(select(Transformation).order_by(Transformation.id)):
        try:
            recorded = json.loads(t.params).get("effects")
        except ValueError:
            recorded = None
        if recorded is None:
            if t.id in with_effects:
                raise IntegrityError(f"row effects of transformation {t.id} are not recorded in "
                                     "its params (inserted behind the store's back)")
            continue
        n, digest = effects_digest(session, t.id)
        if n != recorded.get("rows") or digest != recorded.get("sha256"):
            raise IntegrityError(f"row effects of transformation {t.id} ({t.kind}) were changed: "
                                 f"{n} stored, {recorded.get('rows')} recorded, digest differs"
                                 if n != recorded.get("rows") else
                                 f"row effects of transformation {t.id} ({t.kind}) were changed "
                                 "after it recorded them")


@dataclass
class _Output:
    members: Members
    removed: np.ndarray = field(default_factory=lambda: EMPTY)
    added: np.ndarray = field(default_factory=lambda: EMPTY)
    relabel_ids: np.ndarray = field(default_factory=lambda: EMPTY)
    relabel_labels: np.ndarray = field(default_factory=lambda: EMPTY)
    effects: _Effects = field(default_factory=_Effects)
    name: Optional[str] = None
    digest: Optional[str] = None


_EFFECT_COLUMNS = ("id", "transformation_id", "version_id", "row_id", "effect", "old_label",
                   "new_label", "parent_row_id")


def _insert_effects(tx, transformation_id: int, version_ids: list[int], per_output: list[np.ndarray]) -> None:
    # Straight through the driver's executemany: SQLAlchemy's per-row parameter processing
    # costs more than the insert itself at 10^4..10^6 effects per write.
    total = sum(len(a) for a in per_output)
    if not total:
        return
    table = RowEffect.__table__
    start = (tx.session.scalar(select(func.max(table.c.id))) or 0) + 1
    conn = tx.session.connection()
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = (f"INSERT INTO {table.name} ({', '.join(_EFFECT_COLUMNS)}) "
           f"VALUES ({', '.join([mark] * len(_EFFECT_COLUMNS))})")
    none = int(NONE)
    rows = []
    next_id = start
    for version_id, arr in zip(version_ids, per_output):
        for row_id, code, old, new, parent in arr.tolist():
            rows.append((next_id, transformation_id, version_id, row_id, EFFECTS[code],
                         None if old == none else old, None if new == none else new,
                         None if parent == none else parent))
            next_id += 1
    cursor = conn.connection.cursor()
    try:
        if conn.dialect.name == "postgresql":  # COPY: several times faster than executemany
            with cursor.copy(f"COPY {table.name} ({', '.join(_EFFECT_COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            for at in range(0, len(rows), 50000):
                cursor.executemany(sql, rows[at:at + 50000])
    finally:
        cursor.close()


def _record(tx, *, kind: str, fn, dataset: Dataset, parent: Version, params: dict,
            reason: Optional[str], outputs: list[_Output], new_rows=None,
            summary: str) -> tuple[Transformation, list[Version]]:
    """Write the transformation, its new rows, its versions and effects, and the event."""
    per_output = [o.effects.arrays() for o in outputs]
    stacked = np.concatenate([np.column_stack([np.full(len(a), i, dtype=np.int64), a])
                              for i, a in enumerate(per_output)]) if per_output else np.empty((0, 6))
    n_effects, digest = _digest_rows(stacked.reshape(-1, 6))
    params = {**params, "parent": parent.id, "effects": {"rows": n_effects, "sha256": digest}}
    t = tx.add(Transformation(dataset_id=dataset.id, kind=kind, params=canonical(params),
                              reason=reason, code_identity=code_identity(fn)))
    if new_rows is not None:
        X_new, y_new, expected_first = new_rows
        first = write_rows(tx, dataset, X_new, y_new, transformation_id=t.id)
        if first != expected_first:  # another writer cannot run (we hold the lock): a bug
            raise RuntimeError(f"row ids moved under the write lock ({first} != {expected_first})")
    lazy = [o for o in outputs if o.members.X is None]
    if lazy:
        tx.session.flush()  # new rows are in their chunks: the digests read them from there
        for o, d in zip(lazy, _stream_digests(tx.session, dataset, [o.members for o in lazy])):
            o.digest = d
    versions = []
    for o in outputs:
        versions.append(new_version(tx, dataset, o.members, parent=parent, transformation_id=t.id,
                                    removed=o.removed, added=o.added, relabel_ids=o.relabel_ids,
                                    relabel_labels=o.relabel_labels, name=o.name,
                                    digest=o.digest))
    _insert_effects(tx, t.id, [v.id for v in versions], per_output)
    tx.event(f"transform.{kind}", summary, transformation=t.id, transformation_kind=kind, parent=parent.id,
             versions=[v.id for v in versions], effects={"rows": n_effects, "sha256": digest})
    return t, versions


def _result(t: Transformation, v: Version, parent: Version, o: _Output, **extra) -> TransformResult:
    codes = np.concatenate(o.effects.effect) if o.effects.effect else np.empty(0, dtype=np.int64)
    count = lambda e: int((codes == _CODE[e]).sum())
    return TransformResult(transformation_id=t.id, kind=t.kind, version_id=v.id, version_name=v.name,
                           parent_id=parent.id, n_rows=v.n_rows, content_digest=v.content_digest,
                           n_removed=max(count("removed"), len(o.removed) - count("modified")),
                           n_added=count("added"), n_relabelled=count("relabelled"),
                           n_modified=count("modified"), **extra)


def _without(members: Members, pos: np.ndarray) -> Members:
    keep = np.ones(len(members.row_ids), dtype=bool)
    keep[pos] = False
    X = None if members.X is None else np.compress(keep, members.X, axis=0)
    return Members(row_ids=members.row_ids[keep], X=X, y=members.y[keep])


def _refuse_empty(version: Version, members: Members, kind: str) -> None:
    if len(members.row_ids) == 0:
        raise BadInputError(f"this {kind} would leave an empty version (v{version.id} has no "
                            "other rows): nothing was recorded")


# ----------------------------------------------------------------------------- transformations

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
        name = _check_name(tx.session, name)
        drop = np.zeros(len(m.row_ids), dtype=bool)
        if ids is not None:
            drop[_require_members(parent, m, ids)] = True
        if label is not None:
            label = _check_label(ds, label, "label")
            by_label = m.y == label
            if not by_label.any() and ids is None:
                raise BadInputError(f"version v{parent.id} has no rows with label {label}: "
                                    "nothing to filter")
            drop |= by_label
        pos = np.flatnonzero(drop)
        kept = _without(m, pos)
        _refuse_empty(parent, kept, "filter")
        out = _Output(members=kept, removed=m.row_ids[pos], name=name)
        out.effects.extend("removed", m.row_ids[pos], old=m.y[pos])
        params = {"label": label, "rows": None if ids is None else [int(i) for i in ids]}
        t, (v,) = _record(tx, kind="filter", fn=filter_rows, dataset=ds, parent=parent,
                          params=params, reason=reason, outputs=[out],
                          summary=f"filter v{parent.id}: {len(pos)} rows removed")
        return _result(t, v, parent, out)


def relabel_rows(store: Store, *, version: str | int, rows: str | Sequence[int], to: int,
                 reason: Optional[str] = None, name: Optional[str] = None) -> TransformResult:
    """Give ``rows`` the label ``to`` (same row ids; old -> new labels are recorded).

    Example: ``relabel_rows(store, version="v2", rows=[17, 18], to=7, reason="ticket 42")``
    """
    reason = _reason(reason, "relabel")
    ids = parse_row_ids(rows)
    with store.write() as tx:
        parent, ds, m = _labels_only(tx.session, version)
        name = _check_name(tx.session, name)
        to = _check_label(ds, to, "label")
        pos = _require_members(parent, m, ids)
        change = pos[m.y[pos] != to]
        unchanged = m.row_ids[pos[m.y[pos] == to]]
        if len(change) == 0:
            shown = ", ".join(str(int(i)) for i in ids[:5]) + (" ..." if len(ids) > 5 else "")
            raise BadInputError(f"row{'s' if len(ids) > 1 else ''} {shown} already "
                                f"{'have' if len(ids) > 1 else 'has'} label {to} in v{parent.id}: "
                                "nothing to relabel, nothing was recorded")
        y = m.y.copy()
        y[change] = to
        changed_ids = m.row_ids[change]
        out = _Output(members=Members(row_ids=m.row_ids, X=None, y=y), relabel_ids=changed_ids,
                      relabel_labels=np.full(len(change), to, dtype=LABEL_DTYPE), name=name)
        out.effects.extend("relabelled", changed_ids, old=m.y[change], new=y[change])
        t, (v,) = _record(tx, kind="relabel", fn=relabel_rows, dataset=ds, parent=parent,
                          params={"rows": [int(i) for i in ids], "to": to}, reason=reason,
                          outputs=[out], summary=f"relabel v{parent.id}: {len(change)} rows -> {to}")
        return _result(t, v, parent, out, unchanged_row_ids=tuple(int(i) for i in unchanged))


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
    from lineage.triggers import make_trigger, stamp

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
        name = _check_name(tx.session, name)
        source_class = _check_label(ds, source_class, "source class")
        target_class = _check_label(ds, target_class, "target class")
        if source_class == target_class:
            raise BadInputError(f"source and target class are both {source_class}: a trigger "
                                "must move rows to another class")
        if ds.image_shape is None:
            raise BadInputError(f"dataset {ds.name!r} has no image shape: a trigger needs images")
        trigger = make_trigger(size=int(size), position=position, value=value,
                               image_shape=ds.image_shape)
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
        from lineage.storage import gather_rows

        X_parents, _ = gather_rows(tx.session, ds, parents)
        X_new = stamp(X_parents, trigger, ds.image_shape).astype(X_parents.dtype)
        y_new = np.full(n_poison, target_class, dtype=LABEL_DTYPE)
        first = next_row_id(tx.session)
        children = np.arange(first, first + n_poison, dtype=np.int64)
        rest = _without(m, chosen)
        members = Members(row_ids=np.concatenate([rest.row_ids, children]), X=None,
                          y=np.concatenate([rest.y, y_new]))
        out = _Output(members=members, removed=parents, added=children, name=name)
        out.effects.extend("modified", children, old=m.y[chosen], new=y_new, parent=parents)
        params = {"source_class": source_class, "target_class": target_class, "rate": rate,
                  "pattern": pattern, "size": trigger.size, "position": [trigger.row, trigger.col],
                  "value": trigger.value, "seed": seed, "n_source_rows": int(len(src_pos)),
                  "n_poisoned": n_poison}
        t, (v,) = _record(tx, kind="inject_trigger", fn=inject_trigger, dataset=ds, parent=parent,
                          params=params, reason=reason, outputs=[out],
                          new_rows=(X_new, y_new, first),
                          summary=f"inject-trigger v{parent.id}: {n_poison} rows of class "
                                  f"{source_class} stamped {trigger.describe()} -> {target_class}")
        return _result(t, v, parent, out, poisoned_row_ids=tuple(int(c) for c in children),
                       parent_row_ids=tuple(int(p) for p in parents))


def dedupe_rows(store: Store, *, version: str | int, reason: Optional[str] = None,
                name: Optional[str] = None) -> TransformResult:
    """Remove exact duplicates (same features and label), keeping the lowest row id of each.
    A version without duplicates yields a version with the same content.

    Example: ``dedupe_rows(store, version="v2", reason="exact duplicates")``
    """
    reason = _reason(reason, "dedupe")
    with store.write() as tx:
        parent, ds, m = _members_of(tx.session, version)
        name = _check_name(tx.session, name)
        whole = np.concatenate([np.ascontiguousarray(m.X).view(np.uint8).reshape(len(m.X), -1),
                                m.y.astype("<i8").view(np.uint8).reshape(len(m.y), -1)], axis=1)
        keys = np.ascontiguousarray(whole).view(np.dtype((np.void, whole.shape[1]))).ravel()
        _, first = np.unique(keys, return_index=True)  # first occurrence = lowest id (sorted)
        drop = np.ones(len(m.row_ids), dtype=bool)
        drop[first] = False
        pos = np.flatnonzero(drop)
        kept = _without(m, pos)
        out = _Output(members=kept, removed=m.row_ids[pos], name=name)
        out.effects.extend("removed", m.row_ids[pos], old=m.y[pos])
        t, (v,) = _record(tx, kind="dedupe", fn=dedupe_rows, dataset=ds, parent=parent,
                          params={"key": "features+label", "keep": "lowest row id"}, reason=reason,
                          outputs=[out], summary=f"dedupe v{parent.id}: {len(pos)} duplicates removed")
        return _result(t, v, parent, out)


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
        name = _check_name(tx.session, name)
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
        y_new = _labels_of(tx.session, ds, new)
        row_ids = np.concatenate([m.row_ids, new])
        order = np.argsort(row_ids, kind="stable")
        members = Members(row_ids=row_ids[order], X=None, y=np.concatenate([m.y, y_new])[order])
        out = _Output(members=members, added=new, name=name)
        out.effects.extend("added", new, new=y_new)
        t, (v,) = _record(tx, kind="append", fn=append_ingest, dataset=ds, parent=parent,
                          params={"ingest": ingest_id}, reason=reason, outputs=[out],
                          summary=f"append ingest {ingest_id} to v{parent.id}: {len(new)} rows")
        return _result(t, v, parent, out)


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
            names = [_check_name(tx.session, f"{name}-train"), _check_name(tx.session, f"{name}-test")]
        n = len(m.row_ids)
        n_test = int(math.ceil(test_size * n))
        if n_test < 1 or n_test >= n:
            raise BadInputError(f"a test size of {test_size:g} leaves one side of v{parent.id}'s "
                                f"{n} rows empty")
        rng = np.random.default_rng(seed)
        is_test = np.zeros(n, dtype=bool)
        is_test[rng.permutation(n)[:n_test]] = True
        train = Members(row_ids=m.row_ids[~is_test], X=None, y=m.y[~is_test])
        test = Members(row_ids=m.row_ids[is_test], X=None, y=m.y[is_test])
        outputs = [_Output(members=train, removed=test.row_ids, name=names[0]),
                   _Output(members=test, removed=train.row_ids, name=names[1])]
        params = {"test_size": test_size, "seed": seed, "n_train": n - n_test, "n_test": n_test,
                  "outputs": ["train", "test"]}
        t, (vtr, vte) = _record(tx, kind="split", fn=split_version, dataset=ds, parent=parent,
                                params=params, reason=reason, outputs=outputs,
                                summary=f"split v{parent.id}: {n - n_test} train, {n_test} test")
        return SplitResult(transformation_id=t.id, kind="split", parent_id=parent.id,
                           train_version_id=vtr.id, train_name=vtr.name, n_train=vtr.n_rows,
                           test_version_id=vte.id, test_name=vte.name, n_test=vte.n_rows,
                           seed=seed, test_size=test_size)


# ----------------------------------------------------------------------------- external edits

def _read_edit_csv(path: Path, label_column: str, row_id_column: str):
    """(row ids or None, X, y, line numbers) of an edited CSV, read by ingest's CSV reader; a
    blank row id marks a new row (-1)."""
    from lineage.ingest import read_csv_table

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
                         name: Optional[str] = None) -> TransformResult:
    """Record a copy of a version edited outside the store as an unattributed "external edit".

    The CSV is diffed against the version. Rows are matched by the ``row_id_column`` when the
    header has one (a blank id marks a new row; members missing from the file are removed),
    otherwise by position: the file's i-th row against the version's i-th row in row-id order
    (extra file rows are added, missing trailing rows removed). Changed features make new rows
    (parent -> child); a changed label alone is a relabel. The import's actor is recorded with
    the reason "external edit, unattributed"; rows it changed are never provenance-covered.

    Example: ``import_external_edit(store, "edited.csv", as_version_of="v5", source="crowd-batch-7")``
    """
    from lineage.ingest import file_sha256, validate_rows
    from lineage.sources import find_source, source_status

    path = Path(path)
    file_ids, X_file, y_file, file_lines, locate = _read_edit_csv(path, label_column,
                                                                  row_id_column)
    digest = file_sha256(path)
    with store.write() as tx:
        src = find_source(tx.session, source)
        status = source_status(tx.session, src)
        if status in ("rejected", "revoked"):
            raise QuarantineError(f"source {source!r} is {status}: its rows may not be imported")
        parent, ds, m = _members_of(tx.session, as_version_of)
        name = _check_name(tx.session, name)
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
        out = _Output(members=members, removed=np.concatenate([m.row_ids[removed_pos], m.row_ids[mod_pos]]),
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
        t, (v,) = _record(tx, kind="external_edit", fn=import_external_edit, dataset=ds,
                          parent=parent, params=params, reason=EXTERNAL_EDIT_REASON,
                          outputs=[out], new_rows=(X_new, y_new, first) if n_new_rows else None,
                          summary=f"external edit of v{parent.id} from {path.name}: "
                                  f"{len(removed_pos)} removed, {len(new_file)} added, "
                                  f"{len(relabel_pos)} relabelled, {len(mod_pos)} modified")
        return _result(t, v, parent, out)
