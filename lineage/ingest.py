"""Ingest: append raw rows from a source, append-only, validated whole before anything is written.

Readers turn a file into (X, y) or raise BadInputError naming the file, line and column;
``ingest_arrays`` checks the arrays against the dataset's schema (the dataset's first ingest fixes
it), then writes the ingest record, the row chunks and a root version in one transaction.
"""

import csv
import hashlib
import math
import os
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from lineage.chain import canonical
from lineage.errors import BadInputError, NotFoundError, QuarantineError
from lineage.sources import SourceKind, find_source, source_status
from lineage.storage import LABEL_DTYPE, Progress, feature_dtype, next_row_id, write_rows
from lineage.store import Store
from lineage.tables import Dataset, Ingest, Source
from lineage.versions import Members, new_version

DIGITS_SOURCE = "sklearn-digits"


@dataclass(frozen=True)
class IngestInfo:
    id: int
    dataset: str
    source: str
    file_name: str
    file_sha256: str
    n_rows: int
    first_row_id: int
    version_id: int
    actor: str
    created_at: datetime

    @property
    def row_ids(self) -> range:
        return range(self.first_row_id, self.first_row_id + self.n_rows)


# ----------------------------------------------------------------------------- readers

def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_file(path: Path) -> None:
    if not path.exists():
        raise BadInputError(f"{path}: no such file")
    if path.is_dir():
        raise BadInputError(f"{path}: is a folder, not a file")
    if path.stat().st_size == 0:
        raise BadInputError(f"{path}: the file is empty")


def read_csv(path: str | os.PathLike, *, label_column: str = "label") -> tuple[np.ndarray, np.ndarray]:
    """Read a CSV with a header line; every column but ``label_column`` is a feature.

    Returns X of shape (n_samples, n_features) float64 and y of shape (n_samples,) float64.
    """
    path = Path(path)
    _check_file(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header or not any(h.strip() for h in header):
                raise BadInputError(f"{path}: the file is empty (no header line)")
            header = [h.strip() for h in header]
            if label_column not in header:
                raise BadInputError(f"{path} line 1: no label column {label_column!r} in the header "
                                    f"(columns: {', '.join(header[:8])}{' ...' if len(header) > 8 else ''}); "
                                    "name it with --label-column")
            label_at = header.index(label_column)
            rows = []
            for line_no, record in enumerate(reader, start=2):
                if not record or (len(record) == 1 and not record[0].strip()):
                    continue  # blank line
                if len(record) != len(header):
                    raise BadInputError(f"{path} line {line_no}: {len(record)} columns, the header "
                                        f"has {len(header)}")
                values = []
                for col, cell in enumerate(record):
                    try:
                        value = float(cell)
                    except ValueError:
                        raise BadInputError(f"{path} line {line_no}, column {header[col]!r}: "
                                            f"{cell.strip()!r} is not a number") from None
                    if not math.isfinite(value):
                        raise BadInputError(f"{path} line {line_no}, column {header[col]!r}: "
                                            f"{cell.strip()!r} is not a finite number")
                    values.append(value)
                rows.append(values)
    except UnicodeDecodeError:
        raise BadInputError(f"{path}: not a UTF-8 text file") from None
    if not rows:
        raise BadInputError(f"{path}: no data rows after the header")
    data = np.array(rows, dtype=np.float64)
    y = data[:, label_at]
    X = np.delete(data, label_at, axis=1)
    if X.shape[1] == 0:
        raise BadInputError(f"{path}: no feature columns besides {label_column!r}")
    return X, y


def read_npz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read arrays ``X`` of shape (n_samples, n_features) and ``y`` of shape (n_samples,)."""
    path = Path(path)
    _check_file(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("X", "y") if k not in npz.files]
            if missing:
                raise BadInputError(f"{path}: no array {' or '.join(missing)} (found: "
                                    f"{', '.join(npz.files) or 'none'}); save with np.savez(f, X=X, y=y)")
            X, y = npz["X"], npz["y"]
    except BadInputError:
        raise
    except Exception as exc:  # zipfile/pickle/format errors all mean: not an npz we can read
        raise BadInputError(f"{path}: not a readable .npz file ({exc})") from None
    if X.ndim == 3:
        X = X.reshape(len(X), -1)
    if X.ndim != 2:
        raise BadInputError(f"{path}: X must have shape (n_samples, n_features), got {X.shape}")
    if y.ndim != 1 or len(y) != len(X):
        raise BadInputError(f"{path}: y must have shape ({len(X)},), got {y.shape}")
    if len(X) == 0:
        raise BadInputError(f"{path}: no rows")
    if not (np.issubdtype(X.dtype, np.number) and np.issubdtype(y.dtype, np.number)):
        raise BadInputError(f"{path}: X and y must be numeric (got {X.dtype}, {y.dtype})")
    return X, y


def digits_file() -> Path:
    return Path(str(resources.files("sklearn.datasets") / "data" / "digits.csv.gz"))


# ----------------------------------------------------------------------------- validation

def _bad_rows_message(where: str, mask: np.ndarray, what: str) -> str:
    first = int(np.flatnonzero(mask.any(axis=1) if mask.ndim == 2 else mask)[0])
    col = f", feature {int(np.flatnonzero(mask[first])[0])}" if mask.ndim == 2 else ""
    return f"{where} row {first}{col}: {what}"


def _validate(X: np.ndarray, y: np.ndarray, dataset: Optional[Dataset], where: str,
              value_range: Optional[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2 or len(X) == 0 or X.shape[1] == 0:
        raise BadInputError(f"{where}: expected rows of features, got an array of shape {X.shape}")
    if y.shape != (len(X),):
        raise BadInputError(f"{where}: {len(X)} rows but {y.shape} labels")
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise BadInputError(f"{where}: features must be real numbers (got {X.dtype})")
    if np.issubdtype(X.dtype, np.floating) and not np.isfinite(X).all():
        raise BadInputError(_bad_rows_message(where, ~np.isfinite(X), "NaN or infinite value"))
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all():
            raise BadInputError(_bad_rows_message(where, ~np.isfinite(y), "label is NaN or infinite"))
        if (y != np.round(y)).any():
            raise BadInputError(_bad_rows_message(where, y != np.round(y), "label is not a whole number"))
    y = y.astype(LABEL_DTYPE)
    if dataset is not None:
        if X.shape[1] != dataset.n_features:
            raise BadInputError(f"{where}: {X.shape[1]} features, dataset {dataset.name!r} has "
                                f"{dataset.n_features}")
        lo, hi = dataset.value_min, dataset.value_max
    else:
        lo, hi = value_range if value_range else (None, None)
    if lo is not None and (X < lo).any():
        raise BadInputError(_bad_rows_message(where, X < lo, f"value below the dataset's range {lo:g}..{hi:g}"))
    if hi is not None and (X > hi).any():
        raise BadInputError(_bad_rows_message(where, X > hi, f"value above the dataset's range {lo:g}..{hi:g}"))
    if dataset is not None:
        dtype = feature_dtype(dataset)
        if dtype.kind == "u":
            info = np.iinfo(dtype)
            if (X != np.round(X)).any() or (X < info.min).any() or (X > info.max).any():
                raise BadInputError(f"{where}: dataset {dataset.name!r} stores whole numbers "
                                    f"{info.min}..{info.max}; this input has other values")
        classes = set(_classes(dataset))
        unknown = ~np.isin(y, list(classes))
        if unknown.any():
            raise BadInputError(_bad_rows_message(where, unknown, f"label {int(y[unknown][0])} is not "
                                f"one of dataset {dataset.name!r}'s classes {sorted(classes)}"))
    return X, y


def _classes(dataset: Dataset) -> list[int]:
    import json

    return json.loads(dataset.classes)


def _infer_dtype(X: np.ndarray) -> str:
    if (X == np.round(X)).all() and X.min() >= 0 and X.max() <= 255:
        return "uint8"
    return "float64"


def _parse_shape(image_shape: Optional[str], n_features: int) -> Optional[str]:
    if image_shape is None:
        side = int(round(math.sqrt(n_features)))
        return f"{side}x{side}" if side * side == n_features else None
    try:
        h, w = (int(p) for p in image_shape.lower().split("x"))
    except ValueError:
        raise BadInputError(f"image shape {image_shape!r}: write it as HxW, e.g. 8x8") from None
    if h * w != n_features:
        raise BadInputError(f"image shape {image_shape} holds {h * w} values, rows have {n_features}")
    return f"{h}x{w}"


def find_dataset(session: Session, name: Optional[str]) -> Dataset:
    """The dataset ``name``, or the store's only dataset when ``name`` is None."""
    if name is not None:
        dataset = session.scalars(select(Dataset).where(Dataset.name == name)).first()
        if dataset is None:
            raise NotFoundError(f"no dataset named {name!r}")
        return dataset
    datasets = session.scalars(select(Dataset).limit(2)).all()
    if len(datasets) != 1:
        raise BadInputError("the store has " + ("no datasets" if not datasets else "several datasets")
                            + ": name one with --dataset")
    return datasets[0]


# ----------------------------------------------------------------------------- ingest

def ingest_arrays(store: Store, X: np.ndarray, y: np.ndarray, *, source: str,
                  dataset: Optional[str] = None, file_name: str = "<arrays>",
                  file_digest: Optional[str] = None,
                  value_range: Optional[tuple[float, float]] = None,
                  image_shape: Optional[str] = None, classes: Optional[Sequence[int]] = None,
                  progress: Progress = None) -> IngestInfo:
    """Append rows to ``dataset`` from ``source``: one ingest record, chunks, a root version.

    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,), whole-number class labels
    The dataset's first ingest fixes its schema (feature count, dtype, ``value_range``,
    ``image_shape``, ``classes``); later ingests that disagree are refused. ``file_digest`` is the
    sha256 of the original file (default: of the arrays' bytes).
    """
    if value_range is not None and not value_range[0] <= value_range[1]:
        raise BadInputError(f"value range {value_range[0]:g}..{value_range[1]:g} is empty")
    where = file_name
    with store.write() as tx:
        session = tx.session
        src: Source = find_source(session, source)
        status = source_status(session, src)
        if status in ("rejected", "revoked"):
            raise QuarantineError(f"source {source!r} is {status}: its rows may not be ingested")
        ds = None
        if dataset is not None or session.scalars(select(Dataset).limit(1)).first() is not None:
            try:
                ds = find_dataset(session, dataset)
            except NotFoundError:
                ds = None  # a new dataset, named by the caller
        X, y = _validate(X, y, ds, where, value_range)
        if ds is None:
            if dataset is None:
                raise BadInputError("the store has no datasets yet: name one with --dataset")
            class_list = sorted({int(c) for c in (classes if classes is not None else np.unique(y))})
            missing = sorted(set(np.unique(y).tolist()) - set(class_list))
            if missing:
                raise BadInputError(f"{where}: labels {missing} are not among the declared classes")
            ds = tx.add(Dataset(
                name=dataset, n_features=int(X.shape[1]), dtype=_infer_dtype(X),
                value_min=None if value_range is None else float(value_range[0]),
                value_max=None if value_range is None else float(value_range[1]),
                image_shape=_parse_shape(image_shape, int(X.shape[1])),
                classes=canonical(class_list)))
        elif image_shape is not None and _parse_shape(image_shape, ds.n_features) != ds.image_shape:
            raise BadInputError(f"image shape {image_shape} disagrees with dataset {ds.name!r} "
                                f"({ds.image_shape})")
        X = X.astype(feature_dtype(ds), copy=False)
        digest = file_digest or hashlib.sha256(np.ascontiguousarray(X).tobytes()
                                                + y.tobytes()).hexdigest()
        first = next_row_id(session)
        ingest = tx.add(Ingest(dataset_id=ds.id, source_id=src.id, file_name=file_name,
                               file_sha256=digest, n_rows=len(X), first_row_id=first))
        write_rows(tx, ds, X, y, ingest_id=ingest.id, progress=progress)
        row_ids = np.arange(first, first + len(X), dtype=np.int64)
        root = new_version(tx, ds, Members(row_ids=row_ids, X=X, y=y), ingest_id=ingest.id,
                           added=row_ids)
        tx.event("ingest", f"ingest {ingest.id}: {len(X)} rows from {src.name} into {ds.name} "
                 f"(rows {first}..{first + len(X) - 1}, version v{root.id})",
                 dataset=ds.name, source=src.name, file_sha256=digest, n_rows=len(X),
                 first_row_id=first, version=root.id)
        return IngestInfo(id=ingest.id, dataset=ds.name, source=src.name, file_name=file_name,
                          file_sha256=digest, n_rows=len(X), first_row_id=first,
                          version_id=root.id, actor=ingest.actor, created_at=ingest.created_at)


def ingest_csv(store: Store, path: str | os.PathLike, *, source: str, label_column: str = "label",
               dataset: Optional[str] = None, **schema) -> IngestInfo:
    """Ingest a CSV file (header line; ``label_column`` holds the class label)."""
    X, y = read_csv(path, label_column=label_column)
    return ingest_arrays(store, X, y, source=source, dataset=dataset, file_name=str(path),
                         file_digest=file_sha256(Path(path)), **schema)


def ingest_npz(store: Store, path: str | os.PathLike, *, source: str,
               dataset: Optional[str] = None, **schema) -> IngestInfo:
    """Ingest a .npz file holding arrays ``X`` (n_samples, n_features) and ``y`` (n_samples,)."""
    X, y = read_npz(path)
    return ingest_arrays(store, X, y, source=source, dataset=dataset, file_name=str(path),
                         file_digest=file_sha256(Path(path)), **schema)


def ingest_digits(store: Store, *, dataset: str = "digits", source: str = DIGITS_SOURCE,
                  progress: Progress = None) -> IngestInfo:
    """Ingest scikit-learn's ``load_digits`` (1797 rows, 8x8 images, values 0..16) as rows of
    ``source``, registering the internal source sklearn-digits first if it is not there yet."""
    from sklearn.datasets import load_digits

    from lineage.sources import add_source

    with store.read() as session:
        exists = session.scalars(select(Source).where(Source.name == source)).first() is not None
    if not exists:
        if source != DIGITS_SOURCE:
            raise NotFoundError(f"no source named {source!r} (see `lineage source list`)")
        add_source(store, DIGITS_SOURCE, kind=SourceKind.internal.value, uri="sklearn:load_digits",
                   license="BSD-3-Clause", owner="scikit-learn")
    X, y = load_digits(return_X_y=True)
    path = digits_file()
    return ingest_arrays(store, X, y, source=source, dataset=dataset,
                         file_name="sklearn:load_digits (sklearn/datasets/data/digits.csv.gz)",
                         file_digest=file_sha256(path), value_range=(0, 16), image_shape="8x8",
                         classes=range(10), progress=progress)


def list_ingests(store: Store) -> list[IngestInfo]:
    """Every ingest, oldest first."""
    from lineage.tables import Version

    with store.read() as session:
        rows = session.execute(
            select(Ingest, Dataset.name, Source.name, Version.id)
            .join(Dataset, Dataset.id == Ingest.dataset_id)
            .join(Source, Source.id == Ingest.source_id)
            .join(Version, (Version.ingest_id == Ingest.id) & Version.parent_id.is_(None))
            .order_by(Ingest.id)).all()
        return [IngestInfo(id=i.id, dataset=d, source=s, file_name=i.file_name,
                           file_sha256=i.file_sha256, n_rows=i.n_rows, first_row_id=i.first_row_id,
                           version_id=v, actor=i.actor, created_at=i.created_at)
                for i, d, s, v in rows]
