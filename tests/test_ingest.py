"""Ingest on the command line: bad input gets one line naming the problem, its exit code, and
leaves the store exactly as it was; good input reads back exactly, with stable row ids."""

import hashlib
import json

import numpy as np
import pytest
from sklearn.datasets import load_digits

from lineage.data.datasets import read_rows
from lineage.data.ingest import ingest_arrays, list_ingests
from lineage.data.readers import digits_file
from lineage.store.log import list_events
from lineage.store.tables import Dataset
from storeutil import state

HEADER = ",".join([f"f{i}" for i in range(64)] + ["label"])


def _row(values=None, label=3):
    values = values if values is not None else [i % 17 for i in range(64)]
    return ",".join([str(v) for v in values] + [str(label)])


@pytest.fixture
def digits_store(store, cli):
    """digits ingested (64 features, 0..16, classes 0..9); crowd quarantined; bad rejected."""
    assert cli("ingest", "digits").exit_code == 0
    assert cli("source", "add", "crowd", "--kind", "crowdsourced").exit_code == 0
    assert cli("source", "add", "bad", "--kind", "scraped").exit_code == 0
    assert cli("source", "review", "bad", "--reject", "--reason", "poisoned").exit_code == 0
    return store


def _write(path, *lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def _bad_inputs(tmp_path):
    """(name, argv, exit code, the one error line) for every kind of bad input."""
    p = tmp_path
    cases = []
    missing = p / "missing.csv"
    cases.append(("missing file", ["ingest", "csv", missing, "--source", "crowd"], 2,
                  f"{missing}: no such file"))
    empty = p / "empty.csv"
    empty.write_text("")
    cases.append(("empty file", ["ingest", "csv", empty, "--source", "crowd"], 2,
                  f"{empty}: the file is empty"))
    empty_npz = p / "empty.npz"
    empty_npz.write_bytes(b"")
    cases.append(("empty npz", ["ingest", "npz", empty_npz, "--source", "crowd"], 2,
                  f"{empty_npz}: the file is empty"))
    header_only = _write(p / "header.csv", HEADER)
    cases.append(("header only", ["ingest", "csv", header_only, "--source", "crowd"], 2,
                  f"{header_only}: no data rows after the header"))
    ragged = _write(p / "ragged.csv", HEADER, _row(), "1,2,3", _row())
    cases.append(("ragged", ["ingest", "csv", ragged, "--source", "crowd"], 2,
                  f"{ragged} line 3: 3 columns, the header has 65"))
    values = [1] * 64
    values[7] = "seven"
    text = _write(p / "text.csv", HEADER, _row(), "", _row(values))
    cases.append(("non-numeric", ["ingest", "csv", text, "--source", "crowd"], 2,
                  f"{text} line 4, column 'f7': 'seven' is not a number"))
    for bad in ("nan", "inf", "-Infinity"):
        values = [1] * 64
        values[9] = bad
        f = _write(p / f"{bad}.csv", HEADER, _row(values))
        cases.append((bad, ["ingest", "csv", f, "--source", "crowd"], 2,
                      f"{f} line 2, column 'f9': '{bad}' is not a finite number"))
    nolabel = _write(p / "nolabel.csv", "a,b,c", "1,2,3")
    cases.append(("no label column", ["ingest", "csv", nolabel, "--source", "crowd"], 2,
                  f"{nolabel} line 1: no label column 'label' in the header (columns: a, b, c); "
                  "name it with --label-column"))
    narrow = _write(p / "narrow.csv", "a,b,label", "1,2,3")
    cases.append(("feature count", ["ingest", "csv", narrow, "--source", "crowd"], 2,
                  f"{narrow}: 2 features, dataset 'digits' has 64"))
    values = [1] * 64
    values[63] = 17
    high = _write(p / "high.csv", HEADER, _row(), _row(), _row(values))
    cases.append(("out of range", ["ingest", "csv", high, "--source", "crowd"], 2,
                  f"{high} line 4, column 'f63': 17 is above the dataset's range 0..16"))
    values[63] = -1
    low = _write(p / "low.csv", HEADER, _row(values))
    cases.append(("below range", ["ingest", "csv", low, "--source", "crowd"], 2,
                  f"{low} line 2, column 'f63': -1 is below the dataset's range 0..16"))
    frac = _write(p / "frac.csv", HEADER, _row([0.5] + [1] * 63))
    cases.append(("fraction in a whole-number dataset", ["ingest", "csv", frac, "--source", "crowd"], 2,
                  f"{frac} line 2, column 'f0': 0.5 does not fit dataset 'digits', which stores "
                  "whole numbers 0..255"))
    label = _write(p / "label.csv", HEADER, _row(label=12))
    cases.append(("unknown class", ["ingest", "csv", label, "--source", "crowd"], 2,
                  f"{label} line 2, column 'label': 12 is not one of the classes of dataset 'digits' (0..9)"))
    npz = p / "bad.npz"
    X = np.ones((5, 64))
    X[3, 2] = 99
    np.savez(npz, X=X, y=np.zeros(5, dtype=int))
    cases.append(("npz out of range", ["ingest", "npz", npz, "--source", "crowd"], 2,
                  f"{npz}: X[3, 2]: 99 is above the dataset's range 0..16"))
    good = _write(p / "good.csv", HEADER, _row())
    cases.append(("range disagrees", ["ingest", "csv", good, "--source", "crowd", "--value-range", "0:255"],
                  2, "value range 0..255 disagrees with dataset 'digits' (range 0..16, fixed by its "
                     "first ingest)"))
    cases.append(("unknown source", ["ingest", "csv", good, "--source", "ghost"], 3,
                  "no source named 'ghost' (see `lineage source list`)"))
    cases.append(("duplicate source", ["source", "add", "crowd", "--kind", "external"], 2,
                  "a source named 'crowd' already exists"))
    cases.append(("rejected source", ["ingest", "csv", good, "--source", "bad"], 4,
                  "source 'bad' is rejected: its rows may not be ingested"))
    return cases


def test_bad_input_one_line_exit_code_store_unchanged(digits_store, cli, tmp_path):
    before = state(digits_store)
    n_events = len(list_events(digits_store))
    failures = []
    for name, argv, code, message in _bad_inputs(tmp_path):
        result = cli(*argv)
        lines = result.output.splitlines()
        if (result.exit_code, lines) != (code, [f"Error: {message}"]):
            failures.append(f"{name}: exit {result.exit_code}, output {result.output!r}")
        if result.exception and not isinstance(result.exception, SystemExit):
            failures.append(f"{name}: raised {result.exception!r}")
    assert failures == []
    assert state(digits_store) == before  # same row counts in every table, same verified head
    assert len(list_events(digits_store)) == n_events


def test_csv_and_npz_ingests_read_back_exactly(store, cli, tmp_path):
    rng = np.random.default_rng(0)
    X1 = rng.integers(0, 17, size=(10, 16)).astype(float)
    y1 = rng.integers(0, 3, size=10)
    csv_path = tmp_path / "batch.csv"
    lines = [",".join(["label"] + [f"p{i}" for i in range(16)])]
    lines += [",".join([str(int(lab))] + [f"{v:g}" for v in row]) for row, lab in zip(X1, y1)]
    csv_path.write_text("\n".join(lines) + "\n")
    assert cli("source", "add", "crowd", "--kind", "crowdsourced").exit_code == 0
    result = cli("ingest", "csv", csv_path, "--source", "crowd", "--dataset", "toy",
                 "--value-range", "0:16", "--json", actor="alice")
    assert result.exit_code == 0, result.output
    first = json.loads(result.output)
    # Row ids are contiguous: the range names them all (no list of every id).
    assert set(first) == {"id", "dataset", "source", "file_name", "file_sha256", "n_rows",
                          "first_row_id", "last_row_id", "version_id", "actor", "created_at"}
    assert (first["id"], first["dataset"], first["source"], first["n_rows"], first["first_row_id"],
            first["last_row_id"], first["actor"]) == (1, "toy", "crowd", 10, 1, 10, "alice")
    assert first["file_sha256"] == hashlib.sha256(csv_path.read_bytes()).hexdigest()
    assert first["file_name"] == str(csv_path)

    X2 = rng.integers(0, 17, size=(7, 4, 4))  # images are flattened
    y2 = rng.integers(0, 3, size=7)
    npz_path = tmp_path / "arrays.npz"
    np.savez(npz_path, X=X2, y=y2)
    result = cli("ingest", "npz", npz_path, "--source", "crowd", "--json")
    assert result.exit_code == 0, result.output
    second = json.loads(result.output)
    assert (second["id"], second["dataset"], second["first_row_id"], second["last_row_id"]) == (2, "toy", 11, 17)
    assert second["file_sha256"] == hashlib.sha256(npz_path.read_bytes()).hexdigest()

    ids, X, y = read_rows(store)
    np.testing.assert_array_equal(ids, np.arange(1, 18))
    np.testing.assert_array_equal(X, np.vstack([X1, X2.reshape(7, 16)]))
    np.testing.assert_array_equal(y, np.concatenate([y1, y2]))
    ids, X, y = read_rows(store, [17, 1, 12])
    np.testing.assert_array_equal(X, np.vstack([X2.reshape(7, 16)[6], X1[0], X2.reshape(7, 16)[1]]))
    np.testing.assert_array_equal(y, [y2[6], y1[0], y2[1]])

    listed = json.loads(cli("ingest", "list", "--json").output)
    assert listed == [first, second]


def test_first_ingest_fixes_the_schema(store, cli, tmp_path):
    cli("source", "add", "crowd", "--kind", "crowdsourced")
    a = tmp_path / "a.csv"
    a.write_text("x,y,label\n0,1,0\n2,3,1\n")
    assert cli("ingest", "csv", a, "--source", "crowd", "--dataset", "pairs").exit_code == 0
    b = tmp_path / "b.csv"
    b.write_text("x,y,z,label\n0,1,2,0\n")
    result = cli("ingest", "csv", b, "--source", "crowd")
    assert (result.exit_code, result.output) == (2, f"Error: {b}: 3 features, dataset 'pairs' has 2\n")
    c = tmp_path / "c.csv"
    c.write_text("x,y,label\n0,1,5\n")
    result = cli("ingest", "csv", c, "--source", "crowd")
    assert result.exit_code == 2
    assert result.output == (f"Error: {c} line 2, column 'label': 5 is not one of the classes of "
                             "dataset 'pairs' (0..1)\n")
    with store.read() as session:

        (ds,) = session.query(Dataset).all()
        assert (ds.name, ds.n_features, ds.dtype, ds.value_min, ds.image_shape) == (
            "pairs", 2, "uint8", None, None)


def test_row_ids_contiguous_stable_and_continuing(store, cli):
    assert cli("ingest", "digits").exit_code == 0
    first = list_ingests(store)[0]
    assert first.row_ids == range(1, 1798)
    _, X_before, y_before = read_rows(store, [1, 900, 1797])
    X, y = load_digits(return_X_y=True)
    info = ingest_arrays(store, X[:5], y[:5], source="sklearn-digits")
    assert (info.first_row_id, info.n_rows, info.row_ids) == (1798, 5, range(1798, 1803))
    _, X_after, y_after = read_rows(store, [1, 900, 1797])
    np.testing.assert_array_equal(X_after, X_before)
    np.testing.assert_array_equal(y_after, y_before)
    ids, X_all, _ = read_rows(store)
    np.testing.assert_array_equal(ids, np.arange(1, 1803))
    np.testing.assert_array_equal(X_all[1797:], X[:5])
    assert [i.file_sha256 for i in list_ingests(store)][0] == hashlib.sha256(
        digits_file().read_bytes()).hexdigest()


def test_ingest_digits_json_and_table(cli):
    result = cli("ingest", "digits", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["dataset"], data["source"], data["n_rows"], data["first_row_id"], data["last_row_id"]) == (
        "digits", "sklearn-digits", 1797, 1, 1797)
    table = cli("ingest", "list")
    assert table.exit_code == 0
    assert table.output.startswith("ingests\n")  # a rich table (folded to the runner's width)


def test_csv_with_a_byte_order_mark_finds_its_label_column(store, cli, tmp_path):
    cli("source", "add", "crowd", "--kind", "crowdsourced")
    path = tmp_path / "excel.csv"
    path.write_bytes("label,a,b\n1,2,3\n0,4,5\n".encode("utf-8-sig"))
    result = cli("ingest", "csv", path, "--source", "crowd", "--dataset", "excel", "--json")
    assert result.exit_code == 0, result.output
    _, X, y = read_rows(store)
    np.testing.assert_array_equal(X, [[2, 3], [4, 5]])
    np.testing.assert_array_equal(y, [1, 0])


def test_first_ingest_names_the_dataset_after_the_source(store, cli, tmp_path):
    cli("source", "add", "crowd", "--kind", "crowdsourced")
    path = _write(tmp_path / "a.csv", "x,y,label", "0,1,0", "2,3,1")
    result = cli("ingest", "csv", path, "--source", "crowd", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["dataset"] == "crowd"
    again = cli("ingest", "csv", path, "--source", "crowd", "--json")  # the only dataset now
    assert json.loads(again.output)["dataset"] == "crowd"


def test_schema_and_source_are_checked_before_the_rows_are_parsed(digits_store, cli, tmp_path,
                                                                  monkeypatch):
    import lineage.data.ingest as ingest

    def never(*args, **kwargs):
        raise AssertionError("the rows were parsed before the cheap checks")

    monkeypatch.setattr(ingest, "read_csv_located", never)
    wide = _write(tmp_path / "wide.csv", HEADER + ",extra", _row() + ",1")
    result = cli("ingest", "csv", wide, "--source", "crowd")
    assert (result.exit_code, result.output) == (
        2, f"Error: {wide}: 65 features, dataset 'digits' has 64\n")
    good = _write(tmp_path / "good.csv", HEADER, _row())
    for argv, code, message in [
        (["--source", "ghost"], 3, "no source named 'ghost' (see `lineage source list`)"),
        (["--source", "bad"], 4, "source 'bad' is rejected: its rows may not be ingested"),
        (["--source", "crowd", "--image-shape", "4x16"], 2,
         "image shape 4x16 disagrees with dataset 'digits' (8x8)"),
    ]:
        result = cli("ingest", "csv", good, *argv)
        assert (result.exit_code, result.output) == (code, f"Error: {message}\n")


def test_a_huge_label_is_one_line_without_a_warning(digits_store, cli, tmp_path, recwarn):
    before = state(digits_store)
    path = _write(tmp_path / "huge.csv", HEADER, _row(), _row(label="1e20"))
    result = cli("ingest", "csv", path, "--source", "crowd")
    assert (result.exit_code, result.output) == (
        2, f"Error: {path} line 3, column 'label': 1e+20 is too large for a class label "
           "(at most 1e+18)\n")
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    npz = tmp_path / "huge.npz"
    np.savez(npz, X=np.ones((2, 64)), y=np.array([1, 2 ** 63 + 5], dtype=np.uint64))
    result = cli("ingest", "npz", npz, "--source", "crowd")
    assert (result.exit_code, result.output) == (
        2, f"Error: {npz}: y[1]: 9.22337e+18 is too large for a class label (at most 1e+18)\n")
    assert state(digits_store) == before


def test_loose_csv_reads_as_before(store, cli, tmp_path):
    # Padded cells, quoting, blank lines and a final line without a newline: what Python's
    # float() accepts is accepted, with line numbers that count every line.
    cli("source", "add", "crowd", "--kind", "crowdsourced")
    path = tmp_path / "loose.csv"
    path.write_text('a,b,label\n 1, 2 ,0\n\n"3",4e0,+1\n5,6,1')
    result = cli("ingest", "csv", path, "--source", "crowd", "--dataset", "loose")
    assert result.exit_code == 0, result.output
    _, X, y = read_rows(store)
    np.testing.assert_array_equal(X, [[1, 2], [3, 4], [5, 6]])
    np.testing.assert_array_equal(y, [0, 1, 1])
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,label\n1,2,0\n\n\n3,4,9\n")  # the class is not there: named by line
    result = cli("ingest", "csv", bad, "--source", "crowd")
    assert result.output == (f"Error: {bad} line 5, column 'label': 9 is not one of the classes "
                             "of dataset 'loose' (0..1)\n")


@pytest.mark.parametrize("dtype, bad, why", [
    ("int8", -1, "is below the dataset's range 0..255"),
    ("int64", -3, "is below the dataset's range 0..255"),
    ("uint16", 300, "is above the dataset's range 0..255"),
    ("int64", 256, "is above the dataset's range 0..255"),
    ("float32", 2.5, "does not fit dataset 'wide', which stores whole numbers 0..255"),
])
def test_every_input_dtype_is_range_checked(store, dtype, bad, why):
    """The range and dtype checks skip a pass over the values only where the input's dtype
    settles them (uint8 rows for a 0..255 uint8 dataset): any other dtype is checked."""
    from lineage.data.sources import add_source
    from lineage.errors import BadInputError

    add_source(store, "lab", kind="internal")
    X = np.arange(4 * 8).reshape(4, 8).astype(np.uint8)
    ingest_arrays(store, X, np.arange(4) % 2, source="lab", dataset="wide", value_range=(0, 255))
    bad_X = np.zeros((4, 8), dtype=dtype)
    bad_X[2, 5] = bad
    before = state(store)
    with pytest.raises(BadInputError, match=f"X\\[2, 5\\]: {bad:g} {why}"):
        ingest_arrays(store, bad_X, np.arange(4) % 2, source="lab", dataset="wide")
    assert state(store) == before
    ok = ingest_arrays(store, np.full((4, 8), 255, dtype=np.uint8), np.arange(4) % 2,
                       source="lab", dataset="wide")
    assert ok.n_rows == 4


@pytest.mark.parametrize("given", ["stored-form", "float64-into-uint8", "int32-labels",
                                   "strided", "bad-value"])
def test_rows_hashed_ahead_are_the_rows_written(store, given):
    """An ingest hashes rows already in their stored form while it checks them (HashAhead);
    rows the checks convert are hashed again as written. Either way the ingest's digest is the
    digest of what it stored, and verify passes; a refused ingest leaves the store as it was."""
    from lineage.data.ingest import arrays_digest
    from lineage.data.integrity import verify_all
    from lineage.data.sources import add_source
    from lineage.errors import BadInputError
    from lineage.store.chunks import CHUNK_ROWS, blob_digests

    add_source(store, "lab", kind="internal")
    rng = np.random.default_rng(8)
    n = 4 * CHUNK_ROWS + 5  # enough chunks to hash on threads, the last one short
    stored = rng.integers(0, 17, size=(n, 6), dtype=np.uint8)
    labels = rng.integers(0, 3, size=n)
    ingest_arrays(store, stored[:10], labels[:10], source="lab", value_range=(0, 16))
    X, y = stored, labels
    if given == "float64-into-uint8":
        X = stored.astype(np.float64)
    elif given == "int32-labels":
        y = labels.astype(np.int32)
    elif given == "strided":
        X = np.repeat(stored, 2, axis=1)[:, ::2]
    elif given == "bad-value":
        X = stored.copy()
        X[n - 1, 2] = 17
    if given == "bad-value":
        before = state(store)
        with pytest.raises(BadInputError, match=r"X\[\d+, 2\]: 17 is above"):
            ingest_arrays(store, X, y, source="lab")
        assert state(store) == before
        return
    info = ingest_arrays(store, X, y, source="lab")
    with store.read() as session:
        ds = session.query(Dataset).one()
        expected = arrays_digest(blob_digests(ds, stored, labels))
    assert info.file_sha256 == expected
    ids, X_back, y_back = read_rows(store, range(info.first_row_id, info.first_row_id + n))
    assert np.array_equal(X_back, stored) and np.array_equal(y_back, labels)
    verify_all(store)
