"""Reading input files (CSV, npz, the bundled digits) into arrays, with positions for errors."""

import csv
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from itertools import islice
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from lineage.errors import BadInputError


def check_file(path: Path) -> None:
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
    X, y, _ = read_csv_located(path, label_column=label_column)
    return X.astype(np.float64, copy=False), y


@dataclass(frozen=True)
class CsvTable:
    """A CSV file read and checked (``read_csv_table``)."""

    path: Path
    header: list  # column names, stripped
    values: np.ndarray  # (n_rows, len(header)) float64; NaN in text columns
    text: dict  # text column name -> its cells, stripped, one per row
    lines: Sequence[int]  # the file line of each row (blank lines are skipped)


def read_csv_header(path: str | os.PathLike, *, label_column: str = "label") -> list[str]:
    """The header line's column names (stripped), which must name ``label_column``: read
    before the rest of the file, so a wrong file or column fails at once."""
    path = Path(path)
    check_file(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # tolerate a BOM (Excel)
            header = next(csv.reader(f), None)
    except UnicodeDecodeError:
        raise BadInputError(f"{path}: not a UTF-8 text file") from None
    except csv.Error as exc:
        raise BadInputError(f"{path} line 1: not valid CSV ({exc})") from None
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read ({exc.strerror})") from None
    if not header or not any(h.strip() for h in header):
        raise BadInputError(f"{path}: the file is empty (no header line)")
    header = [h.strip() for h in header]
    if label_column not in header:
        raise BadInputError(f"{path} line 1: no label column {label_column!r} in the header "
                            f"(columns: {', '.join(header[:8])}{' ...' if len(header) > 8 else ''}); "
                            "name it with --label-column")
    return header


def read_csv_table(path: str | os.PathLike, *, label_column: str = "label",
                   text_columns: Sequence[str] = ()) -> CsvTable:
    """Read a CSV with a header line that must name ``label_column``: every cell a finite
    number, except in ``text_columns`` (kept as text, e.g. row ids that may be blank).

    The one CSV reader: ``read_csv`` (ingest) and external edits (``lineage.transforms``) use
    it. numpy's C parser reads the file; when it refuses a file (or finds a non-finite cell),
    a strict pass with Python's csv module names the first bad cell, or reads what numpy's
    parser does not (a quoted line break, a blank line of spaces). Raises BadInputError naming
    the file, line and column of the first bad cell.
    """
    path = Path(path)
    header = read_csv_header(path, label_column=label_column)
    text_at = {header.index(c): c for c in text_columns if c in header}
    table = _read_fast(path, header, text_at)
    if table is None:
        table = _read_strict(path, header, text_at)
    return table


def _read_fast(path: Path, header: list, text_at: dict) -> Optional[CsvTable]:
    """The file through numpy's CSV parser (``np.loadtxt``, in C), or None when it refuses
    the file or a cell is not finite (``_read_strict`` then names the cell). Files with text
    columns (external edits) take the strict pass."""
    if text_at:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data": the strict pass says it
            values = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2,
                                comments=None, quotechar='"', encoding="utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    if len(values) == 0 or values.shape[1] != len(header) or not np.isfinite(values).all():
        return None
    return CsvTable(path=path, header=header, values=values, text={},
                    lines=FileLines(path, len(values)))


class FileLines(Sequence):
    """The file line of each data row, worked out only when asked (error messages ask): the
    row's index + 2 when the file has no blank lines or line breaks inside quoted cells, else
    from a pass with Python's csv module."""

    def __init__(self, path: Path, n_rows: int):
        self.path, self.n_rows, self._lines = path, n_rows, None

    def __len__(self) -> int:
        return self.n_rows

    def __getitem__(self, index):
        if self._lines is None:
            self._lines = self._count()
        return self._lines[index]

    def _count(self) -> list[int] | range:
        data = self.path.read_bytes()
        breaks = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
        if breaks == self.n_rows + 1:  # a header line and one line per row, none blank
            return range(2, self.n_rows + 2)
        lines = []
        with open(self.path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            next(reader, None)
            for record in reader:
                if record and not (len(record) == 1 and not record[0].strip()):
                    lines.append(reader.line_num)
        return lines


def _read_strict(path: Path, header: list, text_at: dict) -> CsvTable:
    """The file cell by cell with Python's csv module: the first bad cell is named by line and
    column; what passes is read as ``float()`` reads it."""
    lines: list[int] = []
    text: dict = {c: [] for c in text_at.values()}
    rows = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            next(reader, None)  # the header, checked by read_csv_header
            for record in reader:
                line_no = reader.line_num
                if not record or (len(record) == 1 and not record[0].strip()):
                    continue  # blank line
                if len(record) != len(header):
                    raise BadInputError(f"{path} line {line_no}: {len(record)} columns, the header "
                                        f"has {len(header)}")
                values = []
                for col, cell in enumerate(record):
                    if col in text_at:
                        text[text_at[col]].append(cell.strip())
                        values.append(math.nan)
                        continue
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
                lines.append(line_no)
    except UnicodeDecodeError:
        raise BadInputError(f"{path}: not a UTF-8 text file") from None
    except csv.Error as exc:
        raise BadInputError(f"{path} line {reader.line_num}: not valid CSV ({exc})") from None
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read ({exc.strerror})") from None
    if not rows:
        raise BadInputError(f"{path}: no data rows after the header")
    return CsvTable(path=path, header=header, values=np.array(rows, dtype=np.float64), text=text,
                    lines=lines)


CSV_BLOCK = 65536  # lines parsed at a time: only one block is ever held as float64


def _read_blocks(path: Path, header: list, label_at: int) -> Optional[tuple]:
    """(X, y float64, n rows) of the file in blocks of CSV_BLOCK lines through numpy's parser,
    X as uint8 while every feature is a whole number in 0..255 (else float64, the same values):
    a 10M-row file of pixels needs 1x its raw size, not the 7x of one float64 table. None when
    numpy refuses a block or a cell is not finite (``_read_strict`` then names it)."""
    Xs, ys, compact = [], [], True
    try:
        with open(path, encoding="utf-8") as f:
            next(f, None)  # the header, checked by read_csv_header
            while True:
                lines = list(islice(f, CSV_BLOCK))
                if not lines:
                    break
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "no data" in a block of blank lines
                    block = np.loadtxt(lines, delimiter=",", dtype=np.float64, ndmin=2,
                                       comments=None, quotechar='"')
                if not len(block):
                    continue
                if block.shape[1] != len(header) or not np.isfinite(block).all():
                    return None
                ys.append(block[:, label_at].copy())
                X = np.delete(block, label_at, axis=1)
                if compact and not (X.min() >= 0 and X.max() <= 255 and (X == np.round(X)).all()):
                    compact = False
                    Xs = [x.astype(np.float64) for x in Xs]
                Xs.append(X.astype(np.uint8) if compact else X)
    except (ValueError, UnicodeDecodeError):
        return None
    if not Xs:
        return None
    return np.concatenate(Xs), np.concatenate(ys), sum(len(y) for y in ys)


def read_csv_located(path: str | os.PathLike, *, label_column: str) -> tuple[np.ndarray, np.ndarray, "Locate"]:
    """Features, labels and a locator of cells for messages. X is uint8 when every feature is
    a whole number in 0..255, else float64; y float64."""
    header = read_csv_header(path, label_column=label_column)
    path = Path(path)
    label_at = header.index(label_column)
    if len(header) == 1:
        raise BadInputError(f"{path}: no feature columns besides {label_column!r}")
    fast = _read_blocks(path, header, label_at)
    if fast is not None:
        X, y, n = fast
        lines: Sequence[int] = FileLines(path, n)
    else:
        table = _read_strict(path, header, {})
        lines, data = table.lines, table.values
        y = data[:, label_at]
        X = np.delete(data, label_at, axis=1)
    features = header[:label_at] + header[label_at + 1:]

    def locate(row: int, feature: Optional[int]) -> str:
        column = label_column if feature is None else features[feature]
        return f"{path} line {lines[row]}, column {column!r}"

    return X, y, locate


def read_npz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read arrays ``X`` of shape (n_samples, n_features) and ``y`` of shape (n_samples,)."""
    path = Path(path)
    check_file(path)
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # an .npz is a zip of .npy files; np.load takes others
            raise BadInputError(f"{path}: not an .npz file (save one with np.savez(f, X=X, y=y))")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("X", "y") if k not in npz.files]
            if missing:
                raise BadInputError(f"{path}: no array {' or '.join(missing)} (found: "
                                    f"{', '.join(npz.files) or 'none'}); save with np.savez(f, X=X, y=y)")
            X, y = npz["X"], npz["y"]
    except BadInputError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc):  # object arrays: numpy's advice to enable pickles is unsafe here
            raise BadInputError(f"{path}: holds object arrays; lineage reads numeric arrays only "
                                "(np.savez(f, X=X, y=y) with numeric X and y)") from None
        raise BadInputError(f"{path}: not a readable .npz file ({exc})") from None
    except Exception as exc:  # zipfile/format errors all mean: not an npz we can read
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


# Where a bad value is, for messages: (row index, feature index or None for the label) -> text.
Locate = Callable[[int, Optional[int]], str]
