"""Review of 3a1e607 (``integrity.check_chunk_origins``), 852d654/a13ef5f (chunk digests on plain
threads: ``chunks.OnThreads`` / ``map_on_threads`` / ``HASH_BATCH``, used by ``_read_chunks`` and
``snapshots.read_snapshot_rows``) and 892f121 (``approval.Bunch``).

The attacker can write the database (append-only triggers dropped first) and knows every
algorithm; holds no key. Each test passes when the attack is stopped. The review found 17 that
succeeded (the comments marked "Was xfail"): a forged ingest without its root version, chunks
claiming 2**40 rows or text as their first row id, errors reported out of read order, and a
SQLite covering index out of step with its table moving verified rows; all are stopped now."""

import copy
import pickle
import threading
import time

import numpy as np
import pytest
from test_attack_chain import (
    _add_transformation,
    _append,
    _listed_chunk,
)
from test_attack_journal import _build, _materialize, _one_line_integrity, _snap
from test_digests import _row

import lineage.review.snapshots as snapshots_mod
import lineage.store.chunks as chunks_mod
from lineage.data.datasets import read_rows
from lineage.data.integrity import verify_all
from lineage.errors import IntegrityError
from lineage.review.approval import Bunch
from lineage.store.chain import canonical, record_digest
from lineage.store.chunks import CHUNK_ROWS, OnThreads, map_on_threads
from storeutil import drop_guards, is_sqlite, raw_execute

pytestmark = pytest.mark.store_setup.with_args(_build)


# --- helpers ---------------------------------------------------------------------------------

def _insert(url: str, table: str, values: dict) -> str:
    """A record inserted with its record digest computed as lineage computes it and listed by
    a well-formed event at the chain's head; returns the digest."""
    values = dict(values)
    values["record_digest"] = record_digest(table, values)
    cols = ", ".join(values)
    raw_execute(url, f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' * len(values))})",
                list(values.values()))
    _append(url, canonical({"summary": "f", "records": {table: [[values["id"],
                                                                  values["record_digest"]]]}}))
    return values["record_digest"]


def _forged_ingest_2(url: str) -> None:
    """Ingest 2 (rows after the last, one chunk's worth) and chunk 3 tiling it exactly, both
    listed at the head; no version holds the rows (lineage writes every ingest with its root)."""
    ing, c = _row(url, "ingests", 1), _row(url, "chunks", 2)
    end = c["first_row_id"] + c["n_rows"]
    _insert(url, "ingests", {**{k: v for k, v in ing.items() if k != "record_digest"},
                             "id": 2, "first_row_id": end, "n_rows": c["n_rows"]})
    _listed_chunk(url, ingest_id=2)


def _threads_after(before: set, timeout: float = 2.0) -> list:
    deadline = time.monotonic() + timeout
    while True:
        left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.01)


# --- 3a1e607: check_chunk_origins --------------------------------------------------------------

# Was xfail (stopped since): check_chunk_origins: an ingest record forged with its chunk (both
# listed at the head) passes verify though no version holds its rows; read_rows of every row
# returns it (the attack 3a1e607 meant to stop, with one more forged record)
def test_a_forged_ingest_without_its_root_version_is_caught_by_verify(store):
    _forged_ingest_2(store.url)
    ids, _, _ = read_rows(store)
    assert len(ids) == 3 * CHUNK_ROWS  # the forged rows are read as stored rows
    for fast in (False, True):
        err = _one_line_integrity(lambda fast=fast: verify_all(store, fast=fast))
        assert "ingest 2" in str(err), err


def test_rows_of_a_forged_ingest_without_version_never_reach_a_snapshot_or_version(store):
    """What the forged ingest does not reach: v1's materialize and the snapshot."""
    _forged_ingest_2(store.url)
    assert len(_materialize(store).row_ids) == 2 * CHUNK_ROWS
    assert len(_snap(store)[0]) == 2 * CHUNK_ROWS


def _huge_transformation_chunk(url: str, n_rows: int) -> None:
    """Chunk 3 of transformation 1 (a transformation that writes no version) claiming
    ``n_rows`` rows, its small blobs left as they were: verify_store re-hashes blobs of any
    size, and nothing before check_chunk_origins compares n_rows with them."""
    if not is_sqlite(url):  # n_rows is int4 on PostgreSQL; the attacker widens it first
        raw_execute(url, "ALTER TABLE chunks ALTER COLUMN n_rows TYPE bigint")
    _add_transformation(url)
    _listed_chunk(url, ingest_id=None, transformation_id=1, n_rows=n_rows)


# Was xfail (stopped since): check_chunk_origins builds np.arange(first, first + n) of a
# transformation's chunk before any bound on n: a chunk claiming 2**40 rows makes verify (fast or
# not) die with numpy's MemoryError traceback
def test_a_transformation_chunk_claiming_huge_n_rows_is_one_line_for_verify(store):
    _huge_transformation_chunk(store.url, 2 ** 40)
    for fast in (False, True):
        _one_line_integrity(lambda fast=fast: verify_all(store, fast=fast))


# Was xfail (stopped since): read_rows of every row builds np.arange over each chunk's n_rows from
# the chunk index before any check: a chunk claiming 2**40 rows is a MemoryError traceback, not an
# IntegrityError (pre-existing, datasets.read_rows)
def test_read_rows_of_a_chunk_claiming_huge_n_rows_is_one_line(store):
    _huge_transformation_chunk(store.url, 2 ** 40)
    _one_line_integrity(lambda: read_rows(store))


def _text_first_row_id(url: str) -> None:
    """Chunk 3: chunk 2's record with text where first_row_id belongs (SQLite's dynamic types;
    PostgreSQL refuses it), its record digest as lineage computes it, listed at the head."""
    raw_execute(url, "INSERT INTO chunks (id, dataset_id, first_row_id, n_rows, features, labels, "
                "ingest_id, record_digest, blob_hash) SELECT 3, dataset_id, 'x', n_rows, features, "
                "labels, ingest_id, record_digest, blob_hash FROM chunks WHERE id = 2")
    d = record_digest("chunks", _row(url, "chunks", 3))
    drop_guards(url, "chunks")
    raw_execute(url, "UPDATE chunks SET record_digest = ? WHERE id = 3", (d,))
    _append(url, canonical({"summary": "f", "records": {"chunks": [[3, d]]}}))


# Was xfail (stopped since): text in a chunk's first_row_id (SQLite): verify_store builds its
# message with first_row_id + n_rows before any check (TypeError traceback, pre-existing);
# check_chunk_origins' first < end would be the next
def test_a_chunk_whose_first_row_id_is_text_is_one_line_for_verify(store):
    if not is_sqlite(store.url):
        pytest.skip("PostgreSQL types the column")
    _text_first_row_id(store.url)
    for fast in (False, True):
        _one_line_integrity(lambda fast=fast: verify_all(store, fast=fast))


# Was xfail (stopped since): text in a chunk's first_row_id (SQLite): chunk_index's np.array(...,
# dtype=int64) raises ValueError (traceback) in read_rows before any check; the chunk need not
# even be listed (pre-existing, chunks.chunk_index)
def test_a_chunk_whose_first_row_id_is_text_is_one_line_for_read_rows(store):
    if not is_sqlite(store.url):
        pytest.skip("PostgreSQL types the column")
    _text_first_row_id(store.url)
    _one_line_integrity(lambda: read_rows(store))


# --- 852d654: OnThreads / map_on_threads / HASH_BATCH -------------------------------------------

@pytest.mark.parametrize("threads", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("n", [0, 1, 2, 5, 33])
def test_map_on_threads_returns_every_result_in_order_and_leaves_no_thread(monkeypatch, threads, n):
    monkeypatch.setattr(chunks_mod, "HASH_THREADS", threads)
    before = set(threading.enumerate())
    rng = np.random.default_rng(n)
    delays = rng.uniform(0, 0.002, size=n)

    def fn(i, x):
        time.sleep(delays[i])
        return (i, x * 2)

    assert map_on_threads(fn, [(i, i + 10) for i in range(n)]) == [(i, 2 * (i + 10)) for i in range(n)]
    assert not _threads_after(before)


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_map_on_threads_reraises_a_workers_error_and_joins_every_thread(monkeypatch, threads):
    monkeypatch.setattr(chunks_mod, "HASH_THREADS", threads)
    before = set(threading.enumerate())
    done = []

    def fn(i):
        if i == 5:
            raise IntegrityError("chunk 5")
        time.sleep(0.001)
        done.append(i)
        return i

    with pytest.raises(IntegrityError, match="chunk 5"):
        map_on_threads(fn, [(i,) for i in range(40)])
    assert not _threads_after(before, timeout=0)  # joined before the raise, not later
    assert len(done) < 40  # the others stopped at their next item


def test_map_on_threads_reraises_a_base_exception_of_the_callers_share(monkeypatch):
    monkeypatch.setattr(chunks_mod, "HASH_THREADS", 2)
    before = set(threading.enumerate())

    def fn(i):  # the workers are slow, so the caller takes items too, and its first raises
        if threading.current_thread() is threading.main_thread():
            raise KeyboardInterrupt
        time.sleep(0.01)
        return i

    with pytest.raises(KeyboardInterrupt):
        map_on_threads(fn, [(i,) for i in range(8)])
    assert not _threads_after(before, timeout=0)


# Was xfail (stopped since): OnThreads.result raises the error met first in time, not the one of
# the first item: the caller's share (item 0) is slower here, so item 1's error (another thread)
# is raised; ThreadPoolExecutor's futures were read in order
def test_map_on_threads_raises_the_error_of_the_first_failing_item(monkeypatch):
    monkeypatch.setattr(chunks_mod, "HASH_THREADS", 2)

    def fn(i):
        if i == 0:
            time.sleep(0.05)
        raise ValueError(f"item {i}")

    with pytest.raises(ValueError, match="item 0"):
        map_on_threads(fn, [(0,), (1,)])


def _started_slow_job(n: int, delay: float) -> OnThreads:
    """An OnThreads job of ``n`` items that each sleep ``delay`` s, once its first item runs."""
    started = threading.Event()

    def slow(i):
        started.set()
        time.sleep(delay)
        return i

    job = OnThreads(slow, [(i,) for i in range(n)])
    started.wait(1)
    return job


def test_hash_ahead_stop_joins_its_threads_and_a_stopped_job_is_never_handed_over(monkeypatch):
    monkeypatch.setattr(chunks_mod, "HASH_THREADS", 2)
    before = set(threading.enumerate())
    job = _started_slow_job(200, 0.005)
    job.stop()
    assert not _threads_after(before, timeout=0)
    assert None in job.out  # unfinished: HashAhead never calls result() after stop()


def _forge_whole_chunk_1(url: str) -> None:
    """Chunk 1's features zeroed, its digest column recomputed (the chain still lists the
    real one)."""
    from test_digests import _forge
    c = _row(url, "chunks", 1)
    _forge(url, "chunks", {**c, "features": bytes(len(c["features"]))})


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_verified_reads_on_any_thread_count_refuse_a_forged_chunk(store, monkeypatch, threads):
    monkeypatch.setattr(chunks_mod, "HASH_THREADS", threads)
    good = read_rows(store)[1].copy(), _snap(store)[1].copy(), _materialize(store).X.copy()
    before = set(threading.enumerate())
    _forge_whole_chunk_1(store.url)
    for read in (lambda: read_rows(store), lambda: _snap(store), lambda: _materialize(store)):
        err = _one_line_integrity(read)
        assert "chunk 1" in str(err), err
    assert not _threads_after(before)
    assert all(g.any() for g in good)


@pytest.mark.parametrize("batch", [1, 2, 16])
def test_gap_reads_hash_at_most_hash_batch_blobs_at_once(store, monkeypatch, batch):
    """Chunks read with gaps (every other row) are hashed HASH_BATCH at a time from their
    blobs: no call of map_on_threads during the fetch holds more than HASH_BATCH of them."""
    _, all_X, all_y = read_rows(store)
    monkeypatch.setattr(chunks_mod, "HASH_BATCH", batch)
    monkeypatch.setattr(snapshots_mod, "HASH_BATCH", batch)
    sizes = []
    real = chunks_mod.map_on_threads

    def watched(fn, args):
        sizes.append(len(args))
        return real(fn, args)

    monkeypatch.setattr(chunks_mod, "map_on_threads", watched)
    ids = np.arange(1, 2 * CHUNK_ROWS + 1, 2)
    _, X, y = read_rows(store, ids)
    assert (X == all_X[ids - 1]).all() and (y == all_y[ids - 1]).all()
    assert sizes and max(sizes) <= batch, sizes


# Was xfail (stopped since): _read_chunks.settle / read_snapshot_rows hash every chunk
# (map_on_threads) before comparing any: a later chunk's hashing error (an unknown blob_hash) is
# raised instead of the first chunk that does not match, which the docstrings promise (the futures
# were read in order before 852d654)
@pytest.mark.parametrize("read", ["read_rows", "snapshot", "materialize"])
def test_the_first_chunk_read_that_does_not_match_is_the_one_reported(store, read):
    _forge_whole_chunk_1(store.url)
    drop_guards(store.url, "chunks")
    raw_execute(store.url, "UPDATE chunks SET blob_hash = 'md5' WHERE id = 2")
    fn = {"read_rows": lambda: read_rows(store), "snapshot": lambda: _snap(store),
          "materialize": lambda: _materialize(store)}[read]
    err = _one_line_integrity(fn)
    assert "chunk 1" in str(err), err


# --- 892f121: Bunch ----------------------------------------------------------------------------

def _bunch() -> Bunch:
    return Bunch(data=np.arange(6).reshape(3, 2), target=np.arange(3), name="s", digest="d")


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_bunch_pickles_with_every_protocol(protocol):
    b = _bunch()
    b.extra = 1
    c = pickle.loads(pickle.dumps(b, protocol=protocol))
    assert type(c) is Bunch and c.keys() == b.keys() and c.extra == 1 and c.name == "s"
    assert (c.data == b.data).all() and vars(c) == {}


def test_a_bunch_copies_and_deep_copies():
    b = _bunch()
    for c in (copy.copy(b), copy.deepcopy(b)):
        assert type(c) is Bunch and c.keys() == b.keys() and c.digest == "d"
    assert copy.copy(b).data is b.data and copy.deepcopy(b).data is not b.data


def test_a_bunch_missing_key_is_an_attribute_error():
    b = _bunch()
    with pytest.raises(AttributeError, match="nope"):
        _ = b.nope
    assert not hasattr(b, "nope") and getattr(b, "nope", 7) == 7
    with pytest.raises(KeyError):
        b["nope"]
    # What copy, pickle and numpy probe for on the instance: never a key error.
    for probe in ("__deepcopy__", "__setstate__", "__array_interface__", "__getnewargs_ex__"):
        assert getattr(b, probe, None) is None or callable(getattr(b, probe))
    b.keys_ = 1
    assert b["keys_"] == 1 and callable(b.keys)  # a dict method is not shadowed by a key
    assert "data" in dir(b) and b["data"] is b.data


def test_a_loaded_bunch_is_the_same_after_a_pickle_round_trip(store):
    """load_snapshot's Bunch (store given) survives pickling for a multiprocessing training."""
    from lineage.errors import LineageError
    from lineage.review.approval import load_snapshot
    try:
        b = load_snapshot("all", store=store)
    except LineageError:  # not approved in this store: the Bunch class is what matters
        b = Bunch(data=_snap(store)[1], name="all")
    c = pickle.loads(pickle.dumps(b))
    assert type(c) is Bunch and (c.data == b.data).all()


# --- beyond the commits: a SQLite covering index out of step with its table -------------------

def _desync_covering_index(url: str) -> None:
    """SQLite file access: chunks 1 and 2 swap their first_row_id in ix_chunks_covering only.
    The rows are swapped (the index follows), the index taken out of the schema
    (writable_schema), the rows swapped back (the index no longer follows), the index put back:
    the table holds what was written, every record digest and listing is intact."""
    import sqlite3

    from storeutil import sqlite_path
    drop_guards(url, "chunks")
    path = sqlite_path(url)

    def run(*sql, schema=False):
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            if schema:
                conn.execute("PRAGMA writable_schema = ON")
            out = [conn.execute(s, p).fetchall() for s, p in sql]
        finally:
            conn.close()
        return out

    swap = [("UPDATE chunks SET first_row_id = -1 WHERE id = 1", ()),
            ("UPDATE chunks SET first_row_id = 1 WHERE id = 2", ()),
            (f"UPDATE chunks SET first_row_id = {CHUNK_ROWS + 1} WHERE id = 1", ())]
    back = [("UPDATE chunks SET first_row_id = -1 WHERE id = 2", ()),
            ("UPDATE chunks SET first_row_id = 1 WHERE id = 1", ()),
            (f"UPDATE chunks SET first_row_id = {CHUNK_ROWS + 1} WHERE id = 2", ())]
    run(*swap)
    entry_sql = ("SELECT type, name, tbl_name, rootpage, sql FROM sqlite_master "
                 "WHERE name = 'ix_chunks_covering'")
    (entry,), = run((entry_sql, ()))
    run(("DELETE FROM sqlite_master WHERE name = 'ix_chunks_covering'", ()), schema=True)
    run(*back)
    run(("INSERT INTO sqlite_master (type, name, tbl_name, rootpage, sql) VALUES (?, ?, ?, ?, ?)",
         entry), schema=True)


@pytest.mark.parametrize("read", [
    pytest.param("read_rows"),
    pytest.param("materialize"),
    pytest.param("snapshot"),
])
def test_a_covering_index_out_of_step_never_moves_verified_rows(store, read):
    def _xy(m):
        return m.X, m.y

    if not is_sqlite(store.url):
        pytest.skip("SQLite file access")
    fn = {"read_rows": lambda: read_rows(store)[1:], "snapshot": lambda: _snap(store)[1:],
          "materialize": lambda: _xy(_materialize(store))}[read]
    X, y = (a.copy() for a in fn())
    _desync_covering_index(store.url)
    try:
        X2, y2 = fn()
    except IntegrityError as err:
        assert "\n" not in str(err)
        return
    assert (X2 == X).all() and (y2 == y).all()


def test_a_covering_index_out_of_step_is_caught_by_verify(store):
    if not is_sqlite(store.url):
        pytest.skip("SQLite file access")
    _desync_covering_index(store.url)
    for fast in (False, True):
        _one_line_integrity(lambda fast=fast: verify_all(store, fast=fast))
