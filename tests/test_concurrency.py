"""Several processes writing to one store at once never fork or break the event chain: the write
lock (SQLite BEGIN IMMEDIATE; a PostgreSQL advisory lock) serializes every append."""

import multiprocessing

import pytest

from lineage.ingest import list_ingests
from lineage.log import list_events
from lineage.verify import verify_store
from storeutil import concurrent_writer

N_PROCESSES = 4
SOURCES_EACH, INGESTS_EACH, ROWS_EACH = 3, 2, 40  # keep in step with storeutil.concurrent_writer


def _run_writers(url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(N_PROCESSES)
    procs = [ctx.Process(target=concurrent_writer, args=(url, i, barrier)) for i in range(N_PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    codes = [p.exitcode for p in procs]
    for p in procs:
        if p.is_alive():
            p.kill()
    assert codes == [0] * N_PROCESSES, f"writers exited with {codes}"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_writers_keep_one_unbroken_chain(backend, request):
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    _run_writers(url)

    from lineage.store import open_store

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
