"""Opening a store: the engine, the schema check, and the one way to write.

A write is ``with store.write() as tx: ...; tx.event(...)``: one database transaction that holds
the store's write lock (SQLite ``BEGIN IMMEDIATE``; a PostgreSQL transaction-level advisory lock),
inserts records with ids and digests assigned here, and appends exactly one chain event. Anything
raised inside leaves nothing behind.
"""

import functools
import getpass
import os
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Iterator, Optional

from sqlalchemy import Engine, create_engine, event, func, insert, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session

from lineage.errors import (
    AppendOnlyError,
    BadInputError,
    IntegrityError,
    LineageError,
    NotFoundError,
    SchemaOutdatedError,
)
from lineage.store.chain import (
    GENESIS,
    blob_digest,
    blob_hash_of,
    canonical,
    event_digest,
    record_digest,
)
from lineage.store.names import check_name
from lineage.store.tables import Base, Event

DEFAULT_DB = "sqlite:///lineage.db"
PG_LOCK_KEY = 0x6C696E65  # "line": the advisory lock that serializes writers on PostgreSQL


def resolve_db(db: Optional[str] = None) -> str:
    """``--db`` > ``LINEAGE_DB`` > ``sqlite:///lineage.db`` in the working directory. An empty
    ``--db`` (a script's unset variable) is refused, never read as "the default"."""
    if db is not None and not db.strip():
        raise BadInputError("--db is empty: give a database URL, e.g. sqlite:///lineage.db")
    return db or os.environ.get("LINEAGE_DB") or DEFAULT_DB


def resolve_actor(actor: Optional[str] = None) -> str:
    """``--as`` > ``LINEAGE_ACTOR`` > the OS login name, checked as a name (``names.check_name``:
    no control or invisible characters, at most 200 characters)."""
    if actor is not None:  # an empty --as is refused by check_name, not replaced by the login
        return check_name(actor, "actor (--as)")
    if os.environ.get("LINEAGE_ACTOR"):
        return check_name(os.environ["LINEAGE_ACTOR"], "actor (LINEAGE_ACTOR)")
    try:
        return check_name(getpass.getuser(), "actor (the OS login name)")
    except Exception:  # no login name (some containers): still record something honest
        return "unknown"


def utcnow() -> datetime:
    # Naive UTC with microseconds: round-trips identically on SQLite and PostgreSQL.
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _no_store(where: str) -> NotFoundError:
    return NotFoundError(f"no store at {where}: check --db or LINEAGE_DB (or create one with "
                         "`lineage db upgrade` or a first ingest)")


def _sqlite_tables(uri: str) -> set[str]:
    conn = sqlite3.connect(uri, uri=True, timeout=60)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()


def _probe_sqlite(url: str, path: str, *, create: bool) -> None:
    """Look at an SQLite file through a read-only connection before the engine's first one,
    which sets the database's journal mode and page size: a file that is not a lineage
    store is refused untouched, and a missing or empty one is refused unless ``create``."""
    if not os.path.exists(path):
        if create:
            return
        raise _no_store(path)
    try:
        try:
            tables = _sqlite_tables(f"{Path(path).resolve().as_uri()}?mode=ro")
        except sqlite3.OperationalError:
            # A write cut short (a crash, a kill) left a hot journal, which only a connection
            # that may write can roll back. Look at the file as it lies (immutable: the journal
            # ignored, nothing written); a lineage store is then rolled back by the engine's
            # first connection, as any SQLite client would, and another's file is left alone.
            if not os.path.exists(f"{path}-journal"):
                raise
            tables = _sqlite_tables(f"{Path(path).resolve().as_uri()}?mode=ro&immutable=1")
    except sqlite3.Error as exc:  # not a database, no permission, a folder
        raise LineageError(f"cannot open database {url}: {exc}") from None
    if not tables:
        if create:
            return
        raise _no_store(path)
    if not {"alembic_version", "events"} <= tables:
        raise LineageError(f"{url} has tables but is not a lineage store (use an empty database)")


def _make_engine(url: str, *, create: bool = True) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise BadInputError(f"not a database URL: {url!r} (expected sqlite:///FILE or "
                            "postgresql+psycopg://USER@HOST:PORT/DB)") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise BadInputError(f"unsupported database {backend!r} in {url!r}: use sqlite or postgresql")
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise BadInputError("an in-memory SQLite store would vanish on exit: give a file, "
                                "e.g. sqlite:///lineage.db")
        if Path(parsed.database).is_dir():
            raise BadInputError(f"{parsed.database}: is a folder; give the store's file, e.g. "
                                f"sqlite:///{Path(parsed.database) / 'lineage.db'}")
        if not parsed.query.get("uri"):  # a file: URI names its file its own way
            _probe_sqlite(url, parsed.database, create=create)
        engine = create_engine(parsed, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn, record_transformation):
            # Let SQLAlchemy's begin event issue BEGIN itself (pysqlite's own handling defers it).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            # 64 KiB pages suit chunk blobs of ~0.5 MB (bench/README.md: ingest ~1.8x faster
            # than 4 KiB). It only takes effect on a new file (before its first table).
            cur.execute("PRAGMA page_size=65536")
            _rollback_journal(cur)
            # FULL: the journal is synced before the file is written, so a power cut at any
            # point leaves the last committed state (measured at no cost: the journal holds only
            # the few pages a write changes, not the chunks it appends).
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            # Reads map the file instead of copying pages through SQLite's cache (whole reads
            # ~10-20% faster, bench/README.md); writes still go through SQLite's pager.
            cur.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            # Writers take the lock at BEGIN, so two writers never read the same chain head.
            immediate = conn.get_execution_options().get("lineage_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
    else:
        try:
            engine = create_engine(parsed, pool_pre_ping=True)
        except NoSuchModuleError:
            raise BadInputError(f"no driver for {url!r}: pip install 'lineage-store[postgres]' "
                                "and use postgresql+psycopg://") from None
        except ModuleNotFoundError as exc:
            raise BadInputError(f"the PostgreSQL driver is missing ({exc.name}): "
                                "pip install 'lineage-store[postgres]'") from None
    return engine


def _rollback_journal(cur) -> None:
    """Use SQLite's rollback journal, not WAL: a write's new pages (the row chunks, nearly all
    of its bytes) go into the file once; WAL mode writes them into the WAL, syncs it, and copies
    them into the file at the checkpoint. Measured (bench/README.md, "Rollback journal"): a 1M-row
    ingest 0.23 -> 0.13 s. The price is concurrency on one machine: a write waits for reads in
    flight to end before it commits, and reads wait for a commit (the 60 s busy timeout); a
    team that needs both at once uses PostgreSQL. A store made in WAL mode by an earlier
    lineage is switched when this is the only connection to it; while another process has it
    open (the switch needs the file alone), it stays in WAL for now, which works the same."""
    if cur.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        cur.execute("PRAGMA journal_mode=DELETE")
        return
    cur.execute("PRAGMA busy_timeout=0")  # never wait for the other connections to go
    try:
        cur.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.OperationalError:  # "database is locked": others have it open
        pass
    finally:
        cur.execute("PRAGMA busy_timeout=60000")


def alembic_config(connection=None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("lineage.migrations")))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@functools.lru_cache(maxsize=1)
def head_revision() -> str:
    """The newest migration's revision. Kept per process: the migrations a process ships do not
    change while it runs, and reading them executes every migration module (compiled anew each
    time where no bytecode is written: 1 ms each, on every open_store)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _known_revision(revision: str) -> bool:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except CommandError:
        return False


def _current_revision(conn) -> Optional[str]:
    """The store's schema revision (Alembic's ``alembic_version``), None when it has none. Two
    plain queries, inside the caller's transaction: Alembic's MigrationContext costs 5 ms an
    open on PostgreSQL (it inspects the catalog for the table)."""
    if conn.dialect.name == "sqlite":
        has = conn.execute(text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                "name = 'alembic_version'")).first()
    else:  # the first schema of the search path, as the store's tables
        has = conn.execute(text("SELECT to_regclass('alembic_version')")).scalar()
    if not has:  # a new or a foreign database
        return None
    rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    if len(rows) > 1:
        raise IntegrityError("the store's schema version table names several versions: it was "
                             "changed behind lineage's back")
    return rows[0][0] if rows else None


class StoreSession(Session):
    """The sessions lineage opens: the only ones its append-only guard listens on. Registering
    on SQLAlchemy's own ``Session`` would refuse UPDATE and DELETE in a host application's
    unrelated code after ``import lineage``."""


@event.listens_for(StoreSession, "before_flush")
def _refuse_changes(session, _flush_context, _instances):
    for obj in list(session.deleted) + [o for o in session.dirty if session.is_modified(o)]:
        if isinstance(obj, Base):
            raise AppendOnlyError(f"{obj.__tablename__} is append-only: "
                                  "records are never updated or deleted")


@event.listens_for(StoreSession, "do_orm_execute")
def _refuse_bulk_changes(state):
    if state.is_update or state.is_delete:
        raise AppendOnlyError("the store is append-only: UPDATE and DELETE are refused")


@dataclass
class Store:
    """An open lineage store: a database engine, the actor that writes, and the trust file
    that says whose signatures count (a path; None: ``LINEAGE_TRUST`` or ./lineage-trust.json)."""

    url: str
    engine: Engine
    actor: str
    trust: Optional[str] = None
    keys: Optional[str] = None  # a folder of private keys (None: LINEAGE_KEY or the config dir)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session: one consistent transaction. On PostgreSQL in REPEATABLE READ,
        since under the default READ COMMITTED each statement sees what committed before it, so
        a verify reading the events and then the records could meet records of writes made
        since (the concurrency test's readers did). SQLite's read transactions are consistent."""
        if self.engine.dialect.name == "postgresql":
            conn = self.engine.connect().execution_options(isolation_level="REPEATABLE READ")
        else:
            conn = self.engine.connect()
        try:
            with StoreSession(bind=conn) as session, session.begin():
                yield session
        finally:
            conn.close()

    @contextmanager
    def write(self) -> Iterator["Tx"]:
        """One write: a locked transaction that must append exactly one event."""
        conn = self.engine.connect().execution_options(lineage_write=True)
        try:
            with conn.begin():
                if self.engine.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_LOCK_KEY})
                with StoreSession(bind=conn) as session:
                    tx = Tx(session=session, actor=self.actor, now=utcnow())
                    yield tx
                    tx._finish()
        finally:
            conn.close()

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class Tx:
    """The records and the event of one write."""

    session: Session
    actor: str
    now: datetime
    _records: dict = field(default_factory=dict)
    _next_ids: dict = field(default_factory=dict)
    _event: Optional[tuple] = None

    def next_id(self, table) -> int:
        name = table.name
        if name not in self._next_ids:
            current = self.session.scalar(select(func.max(table.c.id)))
            self._next_ids[name] = (current or 0) + 1
        value = self._next_ids[name]
        self._next_ids[name] = value + 1
        return value

    def add(self, obj: Base) -> Base:
        """Insert one ORM record: id, actor, time and record digest are filled in here."""
        table = obj.__table__
        obj.id = self.next_id(table)
        if "actor" in table.c and getattr(obj, "actor", None) is None:
            obj.actor = self.actor
        if "created_at" in table.c and getattr(obj, "created_at", None) is None:
            obj.created_at = self.now
        values = {c.name: getattr(obj, c.key) for c in table.columns}
        obj.record_digest = record_digest(table.name, values)
        self.session.add(obj)
        self.session.flush()
        self._records.setdefault(table.name, []).append([obj.id, obj.record_digest])
        return obj

    def add_rows(self, model: type[Base], rows: list[dict]) -> list[int]:
        """Bulk-insert records given as column dicts (all columns but id and record_digest)."""
        table = model.__table__
        ids = []
        for row in rows:
            row["id"] = self.next_id(table)
            hashed = row.pop("_blob_digests", None) or {}
            values = {c.name: row.get(c.name) for c in table.columns}
            hash_name = blob_hash_of(values)
            for name, value in values.items():
                if name in hashed:  # a view's digest computed ahead (storage.blob_digests)
                    if hash_name not in hashed[name]:  # hashed with another function
                        raise LineageError(f"{table.name}.{name} was hashed ahead with "
                                           f"{sorted(hashed[name])}, not {hash_name}")
                    values[name] = hashed[name]
                elif isinstance(value, memoryview):  # a blob given as a view: no bytes copy
                    values[name] = blob_digest(value, hash_name)
            row["record_digest"] = record_digest(table.name, values)
            self._records.setdefault(table.name, []).append([row["id"], row["record_digest"]])
            ids.append(row["id"])
        if rows:
            self.session.execute(insert(table), rows)
        return ids

    def event(self, kind: str, summary: str, **details: Any) -> None:
        """Set this write's event; it is appended when the write commits."""
        if self._event is not None:
            raise LineageError(f"one write, one event: {self._event[0]} is already set")
        self._event = (kind, summary, details)

    def _finish(self) -> None:
        if self._event is None:
            raise LineageError("a write must record an event")
        kind, summary, details = self._event
        self.session.flush()
        last = self.session.execute(
            select(Event.id, Event.digest).order_by(Event.id.desc()).limit(1)
        ).first()
        event_id, prev = (last.id + 1, last.digest) if last else (1, GENESIS)
        payload = canonical({"summary": summary, "records": self._records, **details})
        digest = event_digest(id=event_id, prev_digest=prev, kind=kind, actor=self.actor,
                              created_at=self.now, payload=payload)
        self.session.add(Event(id=event_id, prev_digest=prev, digest=digest, kind=kind,
                               actor=self.actor, created_at=self.now, payload=payload))
        self.session.flush()  # the caller's ``conn.begin()`` commits


def open_store(db: Optional[str] = None, *, actor: Optional[str] = None,
               migrate: bool = True, trust: Optional[str] = None,
               keys: Optional[str] = None, create: bool = True) -> Store:
    """Open the store at ``db`` (see ``resolve_db``), migrating an empty database.

    With ``create=False`` (what reading commands pass) a missing SQLite file or an empty
    database is NotFoundError ("no store at ..."), and nothing is created. A database that is
    not a lineage store is refused (LineageError) before anything is written to it.
    Raises SchemaOutdatedError for a store made by an older lineage ("run `lineage db upgrade`").
    """
    url = resolve_db(db)
    engine = _make_engine(url, create=create)
    store = Store(url=url, engine=engine, actor=resolve_actor(actor), trust=trust, keys=keys)
    try:
        with engine.connect() as conn:
            current = _current_revision(conn)
            # Only a database without a schema version needs its tables listed (16 ms on a
            # PostgreSQL server holding many schemas, on every open).
            empty = current is None and not inspect(conn).get_table_names()
    except DBAPIError as exc:  # unreachable server, bad file, not a database, no permission
        engine.dispose()
        reason = str(exc.orig or exc).strip().splitlines()[0]
        raise LineageError(f"cannot open database {url}: {reason}") from None
    head = head_revision()
    if current == head:
        return store
    if current is None and empty and migrate and create:
        upgrade_store(store)
        return store
    engine.dispose()
    if current is None and empty:
        raise _no_store(url)
    if current is None:
        raise LineageError(f"{url} has tables but is not a lineage store (use an empty database)")
    if not _known_revision(current):
        raise SchemaOutdatedError(f"the store at {url} has schema {current}, newer than this "
                                  f"lineage knows ({head}): upgrade lineage")
    raise SchemaOutdatedError(f"the store at {url} has schema {current}, this lineage needs "
                              f"{head}: run `lineage db upgrade`")


def upgrade_store(store: Store) -> tuple[Optional[str], str]:
    """Run the Alembic migrations up to head under the write lock; returns (before, after)."""
    from alembic import command

    try:
        conn = store.engine.connect().execution_options(lineage_write=True)
    except DBAPIError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0]
        raise LineageError(f"cannot open database {store.url}: {reason}") from None
    try:
        with conn.begin():
            if store.engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_LOCK_KEY})
            before = _current_revision(conn)
            if before is None and inspect(conn).get_table_names():
                raise LineageError(f"{store.url} has tables but is not a lineage store "
                                   "(use an empty database)")
            if before is not None and not _known_revision(before):
                raise SchemaOutdatedError(f"the store at {store.url} has schema {before}, newer "
                                          "than this lineage knows: upgrade lineage")
            command.upgrade(alembic_config(conn), "head")
            after = _current_revision(conn)
    finally:
        conn.close()
    return before, after


def open_for_upgrade(db: Optional[str] = None, *, actor: Optional[str] = None) -> Store:
    """A store handle that skips the schema check (for ``lineage db upgrade``)."""
    url = resolve_db(db)
    return Store(url=url, engine=_make_engine(url), actor=resolve_actor(actor))


SQLITE_MMAP_BYTES = 1 << 30  # the window of the file each SQLite connection maps for reads


def release_mapped_pages(session) -> None:
    """After a bulk read on SQLite: unmap the file's pages the read touched (resident until the
    connection closes, so a 10M-row read left ~720 MB of file pages counted in the process's
    RSS beside the arrays it returned) and map it afresh; its pages stay in the OS cache. Only
    the connection's mapping changes, nothing a transaction sees."""
    conn = session.connection()
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA mmap_size=0")
        conn.exec_driver_sql(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
