"""Crash safety: a writer SIGKILLed in the middle of a large ingest leaves no partial ingest and a
chain that verifies, and the same ingest then succeeds.

The kill test matters most on SQLite, where the killed process *is* the database engine writing
the file: its rollback journal holds what the spilled, uncommitted pages overwrote, and the next
opening must put it back and drop the pages appended. On PostgreSQL the
server aborts a dead client's transaction by itself; that case is cheap, so it runs too.
"""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from lineage.data.datasets import read_rows
from lineage.data.ingest import ingest_digits, ingest_npz, list_ingests
from lineage.store.engine import open_store
from lineage.store.log import list_events
from storeutil import is_sqlite, sqlite_path, state

N_ROWS = 200_000  # 25 chunks of 8192 rows, 12.8 MB of features

CHILD = textwrap.dedent("""
    import sys
    import time
    from lineage.data.ingest import ingest_npz
    from lineage.store.engine import open_store

    def progress(done, total):
        print(f"wrote {done} of {total}", flush=True)
        time.sleep(5)  # hold the open transaction so the kill surely lands mid-write

    store = open_store(sys.argv[1], actor="crasher")
    ingest_npz(store, sys.argv[2], source="sklearn-digits", dataset="digits", progress=progress)
    print("committed", flush=True)
""")


@pytest.fixture(scope="module")
def big_npz(tmp_path_factory):
    rng = np.random.default_rng(7)
    path = tmp_path_factory.mktemp("crash") / "big.npz"
    np.savez(path, X=rng.integers(0, 17, size=(N_ROWS, 64), dtype=np.uint8),
             y=rng.integers(0, 10, size=N_ROWS))
    return path


def test_sigkill_mid_ingest_leaves_nothing_partial(db_url, big_npz):
    store = open_store(db_url, actor="tester")
    try:
        ingest_digits(store)
        before = state(store)
        events_before = len(list_events(store))
    finally:
        store.close()
    size_before = os.path.getsize(sqlite_path(db_url)) if is_sqlite(db_url) else 0

    child = subprocess.Popen([sys.executable, "-c", CHILD, db_url, str(big_npz)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = child.stdout.readline()  # 16 chunks are inserted in the open transaction
        assert first.startswith("wrote "), first + child.stderr.read()
        if is_sqlite(db_url):
            path = sqlite_path(db_url)
            # Megabytes of uncommitted pages in the file itself, and the journal that undoes them.
            assert os.path.getsize(path) > size_before + 2_000_000
            assert os.path.exists(path + "-journal")
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()  # also when an assertion above failed: never leave the writer running
        child.wait(timeout=60)
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL  # killed, not finished

    # As a reading command opens it (create=False: its probe is read-only, and the hot journal
    # needs a connection that may write to be rolled back).
    store = open_store(db_url, actor="tester", create=False)
    try:
        if is_sqlite(db_url):
            assert not os.path.exists(sqlite_path(db_url) + "-journal")
            assert os.path.getsize(sqlite_path(db_url)) == size_before  # appended pages dropped
        assert state(store) == before  # no ingest, version or chunk rows; same verified head
        assert len(list_events(store)) == events_before
        assert [i.n_rows for i in list_ingests(store)] == [1797]

        info = ingest_npz(store, big_npz, source="sklearn-digits", dataset="digits")
        assert (info.first_row_id, info.n_rows) == (1798, N_ROWS)
        ids, X, y = read_rows(store, [1798, 1797 + N_ROWS])
        with np.load(big_npz) as npz:
            np.testing.assert_array_equal(X, npz["X"][[0, -1]])
            np.testing.assert_array_equal(y, npz["y"][[0, -1]])
        assert len(list_events(store)) == events_before + 1
    finally:
        store.close()
