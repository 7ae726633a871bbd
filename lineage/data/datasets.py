"""Datasets and the values users type: finding a dataset or a version by name, parsing ids, row
lists, seeds and image shapes, checking labels and version names; ``read_rows`` for inspection."""

import json
from typing import Optional, Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, defer

from lineage.errors import AlreadyExistsError, BadInputError, NotFoundError
from lineage.poison.triggers import image_shape_for
from lineage.store.chunks import chunk_index, gather_rows
from lineage.store.names import check_name
from lineage.store.tables import Dataset, Version


def dataset_classes(dataset: Dataset) -> list[int]:
    return json.loads(dataset.classes)


def check_image_shape(image_shape: Optional[str], n_features: int) -> Optional[str]:
    """A dataset's image shape as stored ("HxW"): the one given, checked, or square when none is
    given and the rows are square; None for rows that are not images."""
    if image_shape is None:
        try:
            h, w = image_shape_for(None, n_features)
        except BadInputError:
            return None
    else:
        h, w = image_shape_for(image_shape, n_features)
    return f"{h}x{w}"


def scan_geometry(dataset: Dataset) -> str:
    """The image shape triggers, trigger scans and pixel detectors use for ``dataset``'s rows:
    its own, or for rows that are not images (tabular data) a strip ``1xN``: each feature is a
    pixel, so a trigger (a 1x1 patch) sets one feature to a value and a scan tries every
    feature. Larger square patches do not fit a strip."""
    return dataset.image_shape or f"1x{dataset.n_features}"


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


LAZY_BLOBS = [defer(Version.removed_ids), defer(Version.added_ids), defer(Version.added_labels),
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
    version = session.scalars(select(Version).options(*LAZY_BLOBS)
                              .where(Version.name == text_ref)).first()
    if version is None and digits.isdigit():
        version = session.get(Version, parse_id(digits, "version id"), options=LAZY_BLOBS)
    if version is None:
        raise NotFoundError(f"no version {text_ref!r} (see `lineage version list`)")
    return version


def check_version_name(session: Session, name: Optional[str]) -> Optional[str]:
    if name is None:
        return None
    name = name.strip()
    if not name:
        raise BadInputError("a version name may not be empty")
    name = check_name(name, "version name")
    digits = name[1:] if name[:1] in ("v", "V") else name
    if digits.isdigit():
        raise BadInputError(f"version name {name!r} looks like a version id: choose another name")
    if session.scalars(select(Version.id).where(Version.name == name)).first() is not None:
        raise AlreadyExistsError(f"a version named {name!r} already exists")
    return name


def check_label(dataset: Dataset, label: int, what: str) -> int:
    classes = dataset_classes(dataset)
    if int(label) not in classes:
        raise BadInputError(f"{what} {label} is not one of the classes of dataset "
                            f"{dataset.name!r}: {classes}")
    return int(label)


MAX_ROW_IDS = 10_000_000  # ids one --rows may list (ranges expanded): a guard on memory


def parse_row_ids(text: str | Sequence[int]) -> np.ndarray:
    """``"10,11,12"`` or ``"10-12"`` (or a sequence of ints) -> sorted unique int64 ids.
    Each id goes through ``versions.parse_id`` (whole, 0..2**63-1)."""
    if not isinstance(text, str):
        array = np.asarray(text) if not isinstance(text, np.ndarray) else text
        if (array.ndim == 1 and array.dtype.kind in "iu" and len(array)
                and int(array.min()) >= 0 and int(array.max()) <= ID_MAX):
            parts = array.astype(np.int64)  # whole, in range: no per-id parse (10^4+ ids)
        else:
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


SEED_MAX = 2**32 - 1  # scikit-learn's random_state: one range for every seed


def check_seed(seed) -> int:
    """A random seed: a whole number from 0 (numpy's generators refuse negative seeds) to
    ``SEED_MAX`` (scikit-learn's estimators refuse larger ones)."""
    try:
        value = int(seed)
    except (TypeError, ValueError):
        raise BadInputError(f"--seed {seed!r} is not a whole number") from None
    if value < 0:
        raise BadInputError(f"--seed {value} is negative: give a whole number, 0 or more")
    if value > SEED_MAX:
        raise BadInputError(f"--seed {value} is out of range: give a whole number from 0 to "
                            f"{SEED_MAX}")
    return value


def read_rows(store, row_ids=None, *, dataset: Optional[str] = None,
              verify: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stored rows as numpy arrays, for inspection and audit (training reads approved snapshots).

    ``row_ids`` : sequence of ints, or None for every row of the dataset (the store's only dataset
    unless ``dataset`` names one). Returns (row_ids, X, y): row_ids of shape (n_samples,), X of shape
    (n_samples, n_features) and y of shape (n_samples,) with the labels the rows were stored with.
    Chunks read are checked against their digests unless ``verify`` is False.
    """

    with store.read() as session:
        ds = find_dataset(session, dataset)
        if row_ids is None:
            index = chunk_index(session, ds.id)
            ids = (np.concatenate([np.arange(f, f + n, dtype=np.int64)
                                   for f, n in zip(index.firsts, index.counts)])
                   if len(index) else np.empty(0, dtype=np.int64))
        else:
            ids = np.asarray(list(row_ids) if not hasattr(row_ids, "dtype") else row_ids, dtype=np.int64)
        X, y = gather_rows(session, ds, ids, verify=verify)
        return ids, X, y
