"""Test helpers for the store: raw driver connections (no lineage, no SQLAlchemy), row counts,
and a snapshot of the whole store to prove that a refused write changed nothing."""

import sqlite3

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from lineage.data.ingest import ingest_arrays
from lineage.data.sources import add_source
from lineage.store.engine import open_store
from lineage.store.tables import HISTORY_TABLES
from lineage.store.verify import verify_store


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_path(url: str) -> str:
    return make_url(url).database


def raw_connect(url: str):
    """A DB-API connection straight through the driver, in autocommit mode: sqlite3 on the file,
    or psycopg on the URL's database (with the URL's options: a test schema on the search
    path)."""
    if is_sqlite(url):
        return sqlite3.connect(sqlite_path(url), isolation_level=None)
    import psycopg

    u = make_url(url)
    return psycopg.connect(host=u.host, port=u.port or 5432, user=u.username, password=u.password,
                           dbname=u.database, options=u.query.get("options"),
                           autocommit=True)


def raw_execute(url: str, sql: str, params=()) -> None:
    conn = raw_connect(url)
    try:
        if is_sqlite(url):
            conn.execute(sql, params)
        else:
            conn.execute(sql.replace("?", "%s"), params)
    finally:
        conn.close()


def refusal_error(url: str) -> type[Exception]:
    """The driver's exception class for an append-only trigger's refusal of a raw statement."""
    if is_sqlite(url):
        return sqlite3.IntegrityError
    import psycopg

    return psycopg.errors.InsufficientPrivilege


def drop_guards(url: str, table: str) -> None:
    """What an attacker with write access to the database does first: drop the table's
    append-only triggers."""
    if is_sqlite(url):
        for verb in ("update", "delete", "replace"):
            raw_execute(url, f"DROP TRIGGER IF EXISTS {table}_no_{verb}")
    else:
        raw_execute(url, f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")


def counts(store) -> dict[str, int]:
    """Row count of every history table."""
    with store.engine.connect() as conn:
        return {t.name: conn.scalar(select(func.count()).select_from(t)) for t in HISTORY_TABLES}


def state(store) -> tuple[dict[str, int], str]:
    """Every table's row count and the verified chain head: equal states, equal stores
    (the store is append-only, so any write changes a count and the head)."""
    return counts(store), verify_store(store).head_digest


def concurrent_reader(urls: list[str], worker: int, barrier) -> None:
    """test_concurrency's reader, beside the writers: verifies the store and lists its events
    again and again while they write; every read must see a whole chain 1..k (an exception or a
    failed assertion exits the process non-zero)."""
    from lineage.store.log import list_events

    for url in urls:
        barrier.wait(timeout=60)
        store = open_store(url, actor=f"reader-{worker}")
        try:
            for _ in range(READS_EACH):
                report = verify_store(store)
                ids = sorted(e.id for e in list_events(store))
                assert ids == list(range(1, len(ids) + 1)) and len(ids) >= report.events, ids
        finally:
            store.close()


READS_EACH = 8


def concurrent_writer(urls: list[str], worker: int, barrier) -> None:
    """test_concurrency's writer, run in a spawned process (kept here so the child does not import
    pytest). For each store in turn, all workers start together: each opens the possibly still
    empty store itself (so the first open's migration races too), adds 3 sources and ingests 40
    rows from two of them."""
    import numpy as np

    rng = np.random.default_rng(worker)
    for url in urls:
        barrier.wait(timeout=60)
        store = open_store(url, actor=f"worker-{worker}")
        try:
            for k in range(3):
                add_source(store, f"w{worker}-s{k}", kind="crowdsourced")
            for k in range(2):
                X = rng.integers(0, 17, size=(40, 8))
                y = np.arange(40) % 3  # every ingest has classes 0..2, whoever creates the dataset
                ingest_arrays(store, X, y, source=f"w{worker}-s{k}", dataset="toy")
        finally:
            store.close()
