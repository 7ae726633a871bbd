"""Several processes writing to one store at once never fork or break the event chain: the write
lock (SQLite BEGIN IMMEDIATE; a PostgreSQL advisory lock) serializes every append. Readers
verifying the store meanwhile see whole chains (on SQLite's rollback journal a commit waits for
the reads in flight, and reads wait for the commit)."""

import multiprocessing
import os
import sqlite3
import time

import pytest
from conftest import _PG_PROBLEM, _drop_pg_schema, pg_url_or_skip

from lineage.data.ingest import ingest_digits, list_ingests
from lineage.data.sources import add_source
from lineage.store.engine import open_store
from lineage.store.log import list_events
from lineage.store.verify import verify_store
from storeutil import concurrent_reader, concurrent_writer

N_PROCESSES = 4
N_READERS = 2
SOURCES_EACH, INGESTS_EACH, ROWS_EACH = 3, 2, 40  # keep in step with storeutil.concurrent_writer


def _run_writers(urls: list[str]) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(N_PROCESSES + N_READERS)
    procs = [ctx.Process(target=concurrent_writer, args=(urls, i, barrier)) for i in range(N_PROCESSES)]
    procs += [ctx.Process(target=concurrent_reader, args=(urls, i, barrier)) for i in range(N_READERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
    codes = [p.exitcode for p in procs]
    for p in procs:
        if p.is_alive():
            p.kill()
    assert codes == [0] * (N_PROCESSES + N_READERS), f"writers, then readers, exited with {codes}"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One SQLite file and one PostgreSQL schema, each written by the same N_PROCESSES spawned
    processes at once (one round per store: the processes start, and import, only once)."""
    urls = {"sqlite": f"sqlite:///{tmp_path_factory.mktemp('conc') / 'lineage.db'}"}
    if not _PG_PROBLEM:
        urls["postgresql"] = pg_url_or_skip()
    try:
        _run_writers(list(urls.values()))
        yield urls
    finally:
        if "postgresql" in urls:
            _drop_pg_schema(urls["postgresql"])


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_writers_keep_one_unbroken_chain(backend, written):
    if backend not in written:
        pg_url_or_skip()  # skips with the reason (fails in CI)
    url = written[backend]

    store = open_store(url)
    try:
        writes = N_PROCESSES * (SOURCES_EACH + INGESTS_EACH)
        events = list_events(store)
        assert sorted(e.id for e in events) == list(range(1, writes + 1))
        assert len({e.digest for e in events}) == writes
        # every worker's writes are all there, interleaved in one chain
        by_actor = {}
        for e in events:
            by_actor.setdefault(e.actor, []).append(e.kind)
        assert sorted(by_actor) == [f"worker-{i}" for i in range(N_PROCESSES)]
        assert all(sorted(kinds) == ["ingest"] * INGESTS_EACH + ["source.add"] * SOURCES_EACH
                   for kinds in by_actor.values())
        report = verify_store(store)  # recomputes each event's link to the one before
        assert report.events == writes
        # row ids: contiguous 1..N over all ingests, no overlap
        ranges = sorted((i.first_row_id, i.n_rows) for i in list_ingests(store))
        assert len(ranges) == N_PROCESSES * INGESTS_EACH
        expected_first = 1
        for first, n in ranges:
            assert (first, n) == (expected_first, ROWS_EACH)
            expected_first += n
    finally:
        store.close()


def _journal_mode(path) -> str:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()


def test_a_wal_store_of_an_earlier_lineage_goes_to_the_rollback_journal_when_alone(tmp_path):
    """New stores use SQLite's rollback journal (synchronous=FULL); one that an earlier lineage
    left in WAL mode is switched at the first opening that has it alone, and while another
    connection holds it, opening neither waits for that one nor fails: it reads and writes in
    WAL mode as before."""
    path = tmp_path / "lineage.db"
    store = open_store(f"sqlite:///{path}", actor="tester")
    try:
        ingest_digits(store)
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "delete"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    finally:
        store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
    conn.execute("SELECT count(*) FROM events").fetchone()  # an open connection, as a process's
    try:
        started = time.monotonic()
        store = open_store(f"sqlite:///{path}", actor="tester")
        try:
            add_source(store, "while-shared", kind="internal")
            assert verify_store(store).events == 3
        finally:
            store.close()
        assert time.monotonic() - started < 10  # not the 60 s busy timeout
        assert _journal_mode(path) == "wal"
    finally:
        conn.close()
    store = open_store(f"sqlite:///{path}", actor="tester")
    try:
        assert verify_store(store).events == 3
        assert [i.n_rows for i in list_ingests(store)] == [1797]
    finally:
        store.close()
    assert _journal_mode(path) == "delete"
    assert not os.path.exists(f"{path}-wal")
