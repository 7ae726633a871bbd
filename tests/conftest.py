"""Fixtures: stores on SQLite and on PostgreSQL, and a CLI runner.

A test that wants a store gets a copy of a template migrated once per session (SQLite: the
template file copied into the test's tmp_path; PostgreSQL: a schema of its own, made by the
statements the template's upgrade ran), so the Alembic migrations run once per backend, not once
per test. A fixture that builds the same state for many tests builds it once too: see
``Stores.copy(..., build=...)``. Tests of migrating an empty database take ``empty_db_url`` (or
``sqlite_url``, ``pg_url``, ``pg_url_or_skip()``): empty SQLite files, empty PostgreSQL schemas.

PostgreSQL cases run against LINEAGE_TEST_PG (default: postgres@127.0.0.1:5432/test). Without a
server they skip with the reason, except in CI (CI=true), where a missing server is a failure:
the suite must prove both databases there.
"""

import os
import shutil
import sqlite3
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import typer.testing
from sqlalchemy import Engine, create_engine, event, text
from typer.testing import CliRunner

from lineage.cli.main import app
from lineage.store.engine import open_store

pytest_plugins = ["keyring"]  # a signing key per test actor, and the trust file (keyring.py)

PG_URL = os.environ.get("LINEAGE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgresql"]


def _pg_available() -> str | None:
    try:
        engine = create_engine(PG_URL)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any failure means: no usable server here
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"


_PG_PROBLEM = _pg_available()


def require_pg() -> None:
    """Skip the calling test without a PostgreSQL server (fail in CI)."""
    if _PG_PROBLEM:
        message = f"PostgreSQL not reachable at {PG_URL} ({_PG_PROBLEM})"
        if os.environ.get("CI"):
            pytest.fail(message + ": CI must run the PostgreSQL cases")
        pytest.skip(message)


_admin = None


def _pg_admin(sql: str) -> None:
    """Run one statement on LINEAGE_TEST_PG's database, in a transaction of its own."""
    global _admin
    if _admin is None:
        # A connection a test left in a transaction must not stall a DROP: fail instead.
        _admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT",
                               connect_args={"options": "-c lock_timeout=20s"})
    with _admin.connect() as conn:
        conn.execute(text(sql))


_raw = None


def _pg_raw_engine() -> Engine:
    """Pooled connections to LINEAGE_TEST_PG's database for the copies' statements."""
    global _raw
    if _raw is None:
        _raw = create_engine(PG_URL)
    return _raw


def _pg_schema_url(schema: str) -> str:
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


def _pg_schema(url: str) -> str:
    return url.rsplit("%3D", 1)[1]


def pg_url_or_skip() -> str:
    """A fresh, empty PostgreSQL schema's URL; skips (fails in CI) without a server."""
    require_pg()
    schema = f"lineage_t_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE SCHEMA "{schema}"')
    return _pg_schema_url(schema)


def _drop_pg_schema(url: str) -> None:
    _pg_admin(f'DROP SCHEMA IF EXISTS "{_pg_schema(url)}" CASCADE')


def _pg_layout(schema: str) -> list:
    """Everything the migrations made in a schema, as comparable rows: columns and their types,
    constraints, indexes, triggers, functions, and the schema version."""
    queries = [
        ("SELECT table_name, ordinal_position, column_name, data_type, character_maximum_length, "
         "is_nullable, column_default FROM information_schema.columns WHERE table_schema = :s"),
        ("SELECT cl.relname, co.conname, co.contype, replace(pg_get_constraintdef(co.oid), :s, '') "
         "FROM pg_constraint co JOIN pg_class cl ON cl.oid = co.conrelid "
         "WHERE co.connamespace = CAST(:s AS regnamespace)"),
        ("SELECT tablename, indexname, replace(indexdef, :s, '') FROM pg_indexes "
         "WHERE schemaname = :s"),
        ("SELECT c.relname, t.tgname, t.tgtype, t.tgenabled, p.proname FROM pg_trigger t "
         "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc p ON p.oid = t.tgfoid "
         "WHERE c.relnamespace = CAST(:s AS regnamespace) AND NOT t.tgisinternal"),
        "SELECT proname, prosrc FROM pg_proc WHERE pronamespace = CAST(:s AS regnamespace)",
        'SELECT version_num FROM "{s}".alembic_version',
    ]
    engine = create_engine(PG_URL)
    try:
        with engine.connect() as conn:
            return [sorted(map(tuple, conn.execute(text(q.replace("{s}", schema)), {"s": schema})))
                    for q in queries]
    finally:
        engine.dispose()


class _Recorder:
    """The statements SQLAlchemy sends while it is installed (what an Alembic upgrade runs)."""

    def __init__(self):
        self.statements: list[tuple[str, Any]] = []

    def __enter__(self):
        event.listen(Engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc):
        event.remove(Engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, parameters, context, executemany):
        self.statements.append((statement, parameters))


class Stores:
    """Template stores, each made once per session and backend, and copies of them per test.

    A template is the migrated empty store, or that store after ``build(url)`` ran on it
    (``build`` opens and closes its own stores; what it returns comes back with every copy, so
    it must be a value no test changes). A copy is a store of its own:

    - SQLite: the template file copied with shutil;
    - PostgreSQL: a schema of its own in LINEAGE_TEST_PG's database, made by the statements the
      Alembic upgrade of the first template sent (recorded then; the first copy is checked to
      have the template's columns, constraints, indexes, triggers, functions and version), then
      filled with the template's rows. ``CREATE DATABASE ... TEMPLATE`` measured slower: each
      copy writes the whole database to the WAL and each DROP DATABASE forces a checkpoint.

    The next PostgreSQL copy is made, and the last one dropped, while a test runs (one thread
    waiting on the server).
    """

    def __init__(self, root: Path):
        self.root = root
        self._templates: dict[tuple[str, str], tuple[str, Any]] = {}  # -> (file or schema, result)
        self._upgrade: list[tuple[str, Any]] = []  # what the migrations ran, for PostgreSQL copies
        self._tables: list[str] = []  # in the order the migrations created them
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-copies")
        self._next: dict[str, Future] = {}  # template -> its next copy's schema
        self._drops: list[Future] = []

    def _template(self, backend: str, build: Callable[[str], Any] | None) -> tuple[str, Any]:
        key = (backend, "migrated" if build is None else f"{build.__module__}.{build.__qualname__}")
        if key in self._templates:
            return self._templates[key]
        base = None if build is None else self._template(backend, None)[0]
        name = f"lineage_tmpl_{uuid.uuid4().hex[:12]}"
        if backend == "sqlite":
            name = str(self.root / f"{name}.db")
            url = f"sqlite:///{name}"
            if base:
                shutil.copyfile(base, name)
        elif base:
            name = self._pg_copy(base, data=False)
            url = _pg_schema_url(name)
        else:
            url = pg_url_or_skip()
            name = _pg_schema(url)
        try:
            if build is None and backend == "postgresql":
                with _Recorder() as recorder:
                    open_store(url).close()  # an empty database is migrated on first open
                self._keep_upgrade(recorder.statements)
                result = None
            elif build is None:
                open_store(url).close()
                result = None
            else:
                result = build(url)
            if backend == "sqlite":
                # Fold the write-ahead log into the file, so the file alone is the whole store.
                conn = sqlite3.connect(name)
                try:
                    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                finally:
                    conn.close()
                assert busy == 0, f"template {name} is still in use: {build} must close its stores"
            elif build is None:
                check = self._pg_copy(name, data=False)
                try:
                    assert _pg_layout(check) == _pg_layout(name), (
                        "replaying the recorded upgrade made another schema than the upgrade")
                finally:
                    _drop_pg_schema(_pg_schema_url(check))
        except BaseException:
            if backend == "postgresql":
                _drop_pg_schema(_pg_schema_url(name))
            raise
        self._templates[key] = (name, result)
        return name, result

    def _keep_upgrade(self, statements: list[tuple[str, Any]]) -> None:
        """The statements that wrote (DDL and the version row), without the reads around them."""
        for statement, parameters in statements:
            verb = statement.split(None, 1)[0].upper()
            if verb in ("SELECT", "SHOW", "BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"):
                continue
            self._upgrade.append((statement, parameters))
            words = statement.split()
            if words[:2] == ["CREATE", "TABLE"]:
                self._tables.append(words[2].strip('"'))
        assert self._tables, "the upgrade created no tables: nothing to copy"

    def _pg_copy(self, template: str, *, data: bool = True) -> str:
        """A new schema with the migrated tables (and the template's rows, with ``data``)."""
        schema = f"lineage_t_{uuid.uuid4().hex[:12]}"
        steps: list[tuple[str, Any]] = [(f'CREATE SCHEMA "{schema}"', None),
                                        (f'SET LOCAL search_path TO "{schema}"', None)]
        steps += self._upgrade
        if data:
            copy = 'INSERT INTO "{0}"."{2}" SELECT * FROM "{1}"."{2}" ORDER BY 1'
            steps += [(copy.format(schema, template, table), None)
                      for table in self._tables if table != "alembic_version"]  # upgrade wrote it
        # One round trip for the statements without parameters (as the driver ran them: `%%` was
        # `%`), one each for any others; all in one transaction.
        conn = _pg_raw_engine().raw_connection()
        try:
            cursor = conn.cursor()
            script = []
            for statement, parameters in steps + [(None, None)]:
                if statement is not None and not parameters:
                    script.append(statement if parameters is None else statement.replace("%%", "%"))
                    continue
                if script:
                    cursor.execute(";\n".join(script))
                    script = []
                if statement is not None:
                    cursor.execute(statement, parameters)
            conn.commit()
        finally:
            conn.close()
        return schema

    def copy(self, backend: str, directory: Path,
             build: Callable[[str], Any] | None = None) -> tuple[str, Any]:
        """(URL of a new store of its own, what ``build`` returned): the migrated template, or
        the one ``build`` made, copied. SQLite files go to ``directory``."""
        if backend == "sqlite":
            template, result = self._template(backend, build)
            path = directory / "lineage.db"
            shutil.copyfile(template, path)
            return f"sqlite:///{path}", result
        require_pg()
        template, result = self._template(backend, build)
        ahead = self._next.pop(template, None)
        schema = ahead.result() if ahead else self._pg_copy(template)
        self._next[template] = self._pool.submit(self._pg_copy, template)
        return _pg_schema_url(schema), result

    def empty(self, backend: str, directory: Path) -> str:
        """An empty database: a new SQLite file's URL, or a new PostgreSQL schema's."""
        if backend == "sqlite":
            return f"sqlite:///{directory / 'lineage.db'}"
        return pg_url_or_skip()

    def drop(self, url: str) -> None:
        """Remove a PostgreSQL schema (in the background); SQLite files go with their tmp_path."""
        if not url.startswith("sqlite"):
            self._drops.append(self._pool.submit(_drop_pg_schema, url))

    def close(self) -> None:
        for ahead in self._next.values():
            self._drops.append(self._pool.submit(
                lambda a=ahead: _drop_pg_schema(_pg_schema_url(a.result()))))
        for (backend, _), (name, _) in self._templates.items():
            if backend == "postgresql":
                self._drops.append(self._pool.submit(_drop_pg_schema, _pg_schema_url(name)))
        self._pool.shutdown(wait=True)
        for done in self._drops:
            done.result()  # a copy that could not be dropped is an error, not a leftover


@pytest.fixture(scope="session")
def stores(tmp_path_factory):
    s = Stores(tmp_path_factory.mktemp("templates"))
    yield s
    s.close()


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Each backend in turn: "sqlite", "postgresql"."""
    return request.param


@pytest.fixture
def db_url(backend, tmp_path, stores):
    """A migrated store's URL on each backend, a copy of its own."""
    url, _ = stores.copy(backend, tmp_path)
    yield url
    stores.drop(url)


@pytest.fixture
def empty_db_url(backend, tmp_path, stores):
    """An empty database URL on each backend (migrated on first open)."""
    url = stores.empty(backend, tmp_path)
    yield url
    stores.drop(url)


@pytest.fixture
def sqlite_url(tmp_path):
    """An empty SQLite database URL."""
    return f"sqlite:///{tmp_path / 'lineage.db'}"


@pytest.fixture
def pg_url():
    """An empty PostgreSQL schema's URL."""
    url = pg_url_or_skip()
    yield url
    _drop_pg_schema(url)


@pytest.fixture
def store(db_url):
    """A migrated store on SQLite and on PostgreSQL, acting as "tester"."""
    s = open_store(db_url, actor="tester")
    yield s
    s.close()


# typer's CliRunner turns the Typer app into a click command on every invoke (~25 ms for
# lineage's ~50 commands, more than many commands take to run). `lineage` itself builds it once
# per process, so the tests do too: one click command for `app`, shared by every CliRunner.
_build_command = typer.testing._get_command
_app_command = []


def _get_command(typer_app):
    if typer_app is not app:  # a test's own Typer app is built fresh, as before
        return _build_command(typer_app)
    if not _app_command:
        _app_command.append(_build_command(app))
    return _app_command[0]


typer.testing._get_command = _get_command


class Cli:
    """Runs `lineage ...` through typer's CliRunner against one database."""

    def __init__(self, url: str):
        self.url = url
        self.runner = CliRunner()

    def __call__(self, *args: str, actor: str | None = None, input: str | None = None):
        argv = [str(a) for a in args] + ["--db", self.url]
        if actor:
            argv += ["--as", actor]
        return self.runner.invoke(app, argv, input=input, catch_exceptions=False)


@pytest.fixture
def cli(db_url):
    return Cli(db_url)


@pytest.fixture
def empty_cli(empty_db_url):
    """The CLI on an empty database."""
    return Cli(empty_db_url)
