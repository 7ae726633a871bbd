"""Review of f4e4c90 (``chunks.check_chunk_layout``, ``_read_chunks``' ``layout``,
``digest_or_error``, the reworked ``OnThreads``; ``integrity.check_chunk_origins``' root-version
requirement and ``_check_blob_lengths``).

The attacker can write the database (append-only triggers dropped first) and knows every
algorithm; holds no key. Each test passes when the attack is stopped. The review found those
marked "Was xfail" succeeding: a dataset's dtype or feature count rewritten (reads reinterpreted
the blobs; verify kept a record's last listing), NULLs, unknown dtypes, NULL blobs and
Infinity in integer columns as tracebacks, a forged ingest rooted by a version with a parent,
and OnThreads.result() after stop(); all are stopped now."""

import threading
import time

import numpy as np
import pytest
from test_attack_chain import _listed_chunk
from test_attack_journal import _build, _data, _materialize, _one_line_integrity, _snap
from test_attack_origins import _forged_ingest_2, _insert, _started_slow_job, _threads_after
from test_digests import _forge, _relist_at_head, _row

import lineage.store.chunks as chunks_mod
from lineage.data.datasets import read_rows
from lineage.data.ingest import ingest_arrays
from lineage.data.integrity import verify_all
from lineage.data.sources import add_source
from lineage.errors import IntegrityError, NotFoundError
from lineage.store.chunks import CHUNK_ROWS
from storeutil import drop_guards, is_sqlite, raw_execute

pytestmark = pytest.mark.store_setup.with_args(_build)

def _xy(m):
    return m.X, m.y


READS = {
    "read_rows": lambda store: read_rows(store)[1:],
    "snapshot": lambda store: _snap(store)[1:],
    "materialize": lambda store: _xy(_materialize(store)),
}


def _forge_dataset(url: str, relist: bool, **change) -> None:
    """Dataset 1's record with ``change``, its record digest recomputed; with ``relist`` also
    listed by a well-formed event at the head (the chain has no secret)."""
    d = _forge(url, "datasets", {**_row(url, "datasets", 1), **change})
    if relist:
        _relist_at_head(url, "datasets", 1, d)


# --- (a) a dataset's dtype / n_features re-read: the same bytes as other rows -----------------

# Was xfail (stopped since): reads never check the dataset record (n_features, dtype) against
# the chain, and no chunk, version or snapshot digest covers them:  uint8 x 8 re-read as uint16
# x 4 passes every length and digest check
@pytest.mark.parametrize("read", list(READS))
def test_a_retyped_dataset_never_changes_verified_rows(store, read):
    X, y = (a.copy() for a in READS[read](store))
    _forge_dataset(store.url, relist=False, dtype="uint16", n_features=4)
    try:
        X2, y2 = READS[read](store)
    except IntegrityError as err:
        assert "\n" not in str(err)
        return
    assert X2.shape == X.shape and X2.dtype == X.dtype and (X2 == X).all() and (y2 == y).all()


# Was xfail (stopped since): verify takes a record's last listing and no content digest covers
# the dataset's n_features/dtype: a retyped dataset relisted at the head passes verify, fast or
# not
def test_a_retyped_dataset_relisted_at_the_head_is_caught_by_verify(store):
    _forge_dataset(store.url, relist=True, dtype="uint16", n_features=4)
    for fast in (False, True):
        _one_line_integrity(lambda fast=fast: verify_all(store, fast=fast))


def test_a_retyped_dataset_not_relisted_is_caught_by_verify(store):
    _forge_dataset(store.url, relist=False, dtype="uint16", n_features=4)
    for fast in (False, True):
        _one_line_integrity(lambda fast=fast: verify_all(store, fast=fast))


# --- (b) tracebacks ----------------------------------------------------------------------------

# Was xfail (stopped since): _check_blob_lengths computes ds.n_features * itemsize before any
# check: n_features NULL is a TypeError traceback in verify
def test_a_dataset_with_null_n_features_is_one_line_for_verify(store):
    _nullable(store.url, "n_features", "datasets", "INTEGER")
    _forge_dataset(store.url, relist=True, n_features=None)
    for fast in (False, True):
        _one_line_integrity(lambda fast=fast: verify_all(store, fast=fast))


# Was xfail (stopped since): feature_dtype(np.dtype(name)) of a name numpy does not know is a
# TypeError traceback (verify's _check_blob_lengths, the reads)
@pytest.mark.parametrize("who", ["verify", "read_rows"])
def test_a_dataset_with_an_unknown_dtype_is_one_line(store, who):
    _forge_dataset(store.url, relist=True, dtype="bogus")
    if who == "verify":
        for fast in (False, True):
            _one_line_integrity(lambda fast=fast: verify_all(store, fast=fast))
    else:
        _one_line_integrity(lambda: read_rows(store))


# Was xfail (stopped since): dtype 'object' (itemsize 8) x 1 feature passes the length checks;
# np.frombuffer(dtype=object) is a ValueError traceback
def test_a_dataset_with_object_dtype_is_one_line_for_reads(store):
    _forge_dataset(store.url, relist=True, dtype="object", n_features=1)
    _one_line_integrity(lambda: read_rows(store))


def _nullable(url: str, column: str, table: str = "chunks", kind: str = "BLOB") -> None:
    """The column's NOT NULL dropped (SQLite: the schema text edited in place)."""
    if not is_sqlite(url):
        raw_execute(url, f"ALTER TABLE {table} ALTER COLUMN {column} DROP NOT NULL")
        return
    import sqlite3

    from storeutil import sqlite_path
    conn = sqlite3.connect(sqlite_path(url), isolation_level=None)
    try:
        conn.execute("PRAGMA writable_schema = ON")
        conn.execute("UPDATE sqlite_master SET sql = replace(sql, ?, ?) WHERE name = ?",
                     (f"{column} {kind} NOT NULL", f"{column} {kind}", table))
    finally:
        conn.close()


def _null_blob(url: str, column: str) -> None:
    """Chunk 2's ``column`` NULL (its NOT NULL dropped first), its digest recomputed and
    listed at the head."""
    _nullable(url, column)
    d = _forge(url, "chunks", {**_row(url, "chunks", 2), column: None})
    _relist_at_head(url, "chunks", 2, d)


@pytest.mark.parametrize("column", ["features", "labels"])
def test_a_null_blob_listed_at_the_head_is_one_line_for_fast_verify(store, column):
    """length(NULL) is None: compared, never multiplied."""
    _null_blob(store.url, column)
    _one_line_integrity(lambda: verify_all(store, fast=True))


@pytest.mark.parametrize("read", list(READS))
@pytest.mark.parametrize("column", ["features"])
def test_a_null_blob_is_one_line_for_reads(store, request, column, read):
    # Was xfail on PostgreSQL (stopped since): binary COPY handed a NULL blob over as None and
    # the readers took len() of it, a TypeError traceback.
    _null_blob(store.url, column)
    _one_line_integrity(lambda: READS[read](store))


# Was xfail (stopped since): verify_store (not fast) counts len(row['features']) of a NULL blob
# after its digest matched: a TypeError traceback before check_chunk_origins' length check is
# reached
@pytest.mark.parametrize("column", ["features", "labels"])
def test_a_null_blob_listed_at_the_head_is_one_line_for_verify(store, column):
    _null_blob(store.url, column)
    _one_line_integrity(lambda: verify_all(store))


def test_a_chunk_of_a_missing_dataset_is_one_line_for_verify(store):
    if not is_sqlite(store.url):
        raw_execute(store.url, "ALTER TABLE chunks DROP CONSTRAINT fk_chunks_dataset_id_datasets")
    _listed_chunk(store.url, dataset_id=99)
    for fast in (False, True):
        _one_line_integrity(lambda fast=fast: verify_all(store, fast=fast))


def _odd_value(url: str, column: str, value: str) -> None:
    drop_guards(url, "chunks")
    raw_execute(url, f"UPDATE chunks SET {column} = {value} WHERE id = 2")


@pytest.mark.parametrize("column, value", [
    (c, v) for c in ("n_rows", "first_row_id", "ingest_id", "transformation_id", "dataset_id")
    for v in ("1.5", "'x'", "9e999") if v != "'x'" or c in ("n_rows", "ingest_id")
    if not (v.endswith("9e999") and c in ("ingest_id", "transformation_id", "dataset_id"))])
def test_sqlite_odd_values_in_chunk_integers_are_one_line(store, column, value):
    if not is_sqlite(store.url):
        pytest.skip("PostgreSQL types the column")
    _odd_value(store.url, column, value)
    for fast in (False, True):
        _one_line_integrity(lambda fast=fast: verify_all(store, fast=fast))
    for read in READS.values():
        try:
            read(store)
        except IntegrityError as err:
            assert "\n" not in str(err)
        except NotFoundError as err:  # the chunk left its dataset: one line, not a crash
            assert "\n" not in str(err)


# Was xfail (stopped since): read_chunk_rows checks a chunk's id, first row id and row count
# only; read_snapshot_rows never builds a chunk_index of whole reads, so an Infinity ingest_id
# (SQLite REAL) reaches record_digest's canonical JSON and digest_or_error (IntegrityError
# only) lets the ValueError through OnThreads: a traceback
@pytest.mark.parametrize("column", ["ingest_id", "transformation_id"])
@pytest.mark.parametrize("value", ["9e999"])
def test_an_infinite_origin_is_one_line_for_a_snapshot_read(store, column, value):
    if not is_sqlite(store.url):
        pytest.skip("PostgreSQL types the column")
    _odd_value(store.url, column, value)
    _one_line_integrity(lambda: _snap(store))


# Was xfail (stopped since): check_chunk_layout checks no dataset_id: an Infinity there (SQLite
# REAL) reaches record_digest's canonical JSON in verify (not fast) and in a snapshot read: a
# ValueError traceback
@pytest.mark.parametrize("who", ["verify", "snapshot"])
def test_an_infinite_dataset_id_is_one_line(store, who):
    if not is_sqlite(store.url):
        pytest.skip("PostgreSQL types the column")
    _odd_value(store.url, "dataset_id", "9e999")
    if who == "verify":
        _one_line_integrity(lambda: verify_all(store))
    else:
        _one_line_integrity(lambda: _snap(store))



# --- (a) the root-version requirement met by a version that is no root -----------------------

# Was xfail (stopped since): check_chunk_origins counts every version naming the ingest as its
# root, also one with a parent (which lineage never writes and is_ingest_root does not take for
# a root): a forged ingest passes verify
def test_a_forged_ingest_rooted_by_a_version_with_a_parent_is_caught(store):
    _forged_ingest_2(store.url)
    v = _row(store.url, "versions", 1)
    _insert(store.url, "versions", {**{k: x for k, x in v.items() if k != "record_digest"},
                                    "id": 99, "parent_id": 1, "ingest_id": 2})
    assert len(read_rows(store)[0]) == 3 * CHUNK_ROWS  # the forged rows are read
    for fast in (False, True):
        _one_line_integrity(lambda fast=fast: verify_all(store, fast=fast))


# --- (c) false alarms: stores lineage writes --------------------------------------------------

def test_stores_lineage_writes_pass_verify(store, tmp_path):
    from lineage.data.external_edit import import_external_edit
    from lineage.data.transforms import (
        append_ingest,
        dedupe_rows,
        filter_rows,
        inject_trigger,
        relabel_rows,
    )
    from lineage.store.engine import open_store

    s = open_store(store.url, actor="tester")
    try:
        add_source(s, "lab2", kind="internal")
        X, y = _data()
        # dataset 1 again: a partial chunk, then an ingest appended to v1
        ing = ingest_arrays(s, X[:100], y[:100], source="lab2", value_range=(0, 3))
        append_ingest(s, version="v1", ingest=ing.id, reason="r")
        # a second dataset of images, float64, several ingests
        rng = np.random.default_rng(1)
        Xi = rng.integers(0, 17, size=(CHUNK_ROWS + 7, 64)).astype(np.float64)
        yi = np.arange(len(Xi)) % 3
        a = ingest_arrays(s, Xi, yi, source="lab", dataset="img", value_range=(0, 16),
                          image_shape="8x8")
        ingest_arrays(s, Xi[:50], yi[:50], source="lab2", dataset="img", value_range=(0, 16))
        t = inject_trigger(s, version=a.version_id, source_class=1, target_class=2, rate=0.1,
                           reason="red team")
        d = dedupe_rows(s, version=t.version_id, reason="dups")
        f = filter_rows(s, version=d.version_id, label=0, reason="f")
        r = relabel_rows(s, version="v1", rows=[1, 2], to=2, reason="r")
        csv = tmp_path / "edit.csv"
        with s.read() as session:
            from lineage.store.tables import Dataset
            name = session.get(Dataset, 1).name
        _, Xe, ye = read_rows(s, [1, 2, 3], dataset=name)
        lines = ["row_id," + ",".join(f"f{i}" for i in range(Xe.shape[1])) + ",label"]
        lines.append("1," + ",".join(str(int(x)) for x in Xe[0]) + ",1")
        lines.append("2," + ",".join(str(int(x) ^ 1) for x in Xe[1]) + f",{ye[1]}")
        lines.append("," + ",".join("1" for _ in Xe[2]) + ",0")
        csv.write_text("\n".join(lines) + "\n")
        import_external_edit(s, csv, as_version_of="v1", source="lab2")
        del f, r
    finally:
        s.close()
    for fast in (False, True):
        verify_all(store, fast=fast)
    ids, _, _ = read_rows(store, dataset=name)
    assert len(ids) == 2 * CHUNK_ROWS + 100 + 2  # the edit's changed and new rows


# --- (d) OnThreads ------------------------------------------------------------------------------

def test_stop_during_result_neither_hangs_nor_leaves_threads(monkeypatch):
    monkeypatch.setattr(chunks_mod, "HASH_THREADS", 3)
    before = set(threading.enumerate())
    job = _started_slow_job(400, 0.002)
    out: list = []
    waiter = threading.Thread(target=lambda: out.append(_result_or_error(job)), daemon=True)
    waiter.start()
    job.stop()
    waiter.join(5)
    assert not waiter.is_alive()
    assert not _threads_after(before)


def _result_or_error(job):
    try:
        return job.result()
    except BaseException as exc:  # noqa: BLE001
        return exc


# Was xfail (stopped since): OnThreads.result() after (or during) stop() returns the results
# list with None for every item never run, as if complete: a caller would take None for a
# digest (HashAhead never does so today)
def test_result_after_stop_never_returns_unfinished_items(monkeypatch):
    monkeypatch.setattr(chunks_mod, "HASH_THREADS", 2)
    job = _started_slow_job(200, 0.002)
    job.stop()
    got = _result_or_error(job)
    assert isinstance(got, BaseException) or None not in got


@pytest.mark.parametrize("threads", [2, 4])
def test_an_error_while_others_run_is_the_first_by_position_and_joins_all(monkeypatch, threads):
    monkeypatch.setattr(chunks_mod, "HASH_THREADS", threads)
    before = set(threading.enumerate())

    def fn(i):
        if i in (3, 4, 9):
            time.sleep(0.02 if i == 3 else 0)
            raise IntegrityError(f"item {i}")
        time.sleep(0.003)
        return i

    for _ in range(5):
        with pytest.raises(IntegrityError, match="item 3$"):
            chunks_mod.map_on_threads(fn, [(i,) for i in range(60)])
    assert not _threads_after(before, timeout=0)
