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

# Under pytest-xdist every worker is a process of its own: one BLAS/OpenMP thread each, or two
# workers' thread pools fight over the two cores (set before numpy is first imported).
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

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
from sqlalchemy.exc import DBAPIError
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


_drops = 0
_vacuum_catalogs = None  # decided on first use: only when the server's autovacuum is off


def _drop_pg_schema(url: str) -> None:
    global _drops
    _pg_admin(f'DROP SCHEMA IF EXISTS "{_pg_schema(url)}" CASCADE')
    _drops += 1
    if _drops % 20 == 0:
        _vacuum_system_catalogs()


# What a copied schema's CREATE and DROP leave behind: ~80 pg_class rows, hundreds of
# pg_attribute rows.
CATALOGS = ("pg_class", "pg_attribute", "pg_attrdef", "pg_type", "pg_depend", "pg_constraint",
            "pg_index", "pg_trigger", "pg_namespace")


def _vacuum_system_catalogs() -> None:
    """VACUUM the catalogs the copies churn, when the server's autovacuum is off (as on the CI
    machines): otherwise their dead rows pile up over a run (140,000 in pg_class after a few
    runs, 720 alive) and every catalog scan, a connection's first queries and the layout check
    among them, slows down with them (a scan of pg_class by namespace took 19 ms, 3 after a
    VACUUM)."""
    global _vacuum_catalogs
    if _vacuum_catalogs is None:
        with _pg_raw_engine().connect() as conn:
            off = conn.execute(text("SHOW autovacuum")).scalar() == "off"
            superuser = conn.execute(text("SELECT rolsuper FROM pg_roles "
                                          "WHERE rolname = current_user")).scalar()
            version = int(conn.execute(text("SHOW server_version_num")).scalar())
        # SKIP_LOCKED (PostgreSQL 12): a catalog another worker is vacuuming is skipped, not
        # waited for.
        _vacuum_catalogs = bool(off and superuser and version >= 120000)
    if _vacuum_catalogs:
        try:
            _pg_admin("VACUUM (SKIP_LOCKED) " + ", ".join(f"pg_catalog.{c}" for c in CATALOGS))
        except DBAPIError:  # only a speed-up: a failure must not fail the test that dropped
            pass


def _pg_layout(schema: str) -> list:
    """Everything but rows in a schema, as comparable rows: its relations, columns and their
    types, constraints, indexes, triggers (and whether they fire), functions, and the schema
    version."""
    queries = [
        ("SELECT relname, relkind, relpersistence, relrowsecurity FROM pg_class "
         "WHERE relnamespace = CAST(:s AS regnamespace)"),
        # pg_attribute, not information_schema.columns: the view takes 17 ms, this 2.
        ("SELECT c.relname, a.attnum, a.attname, replace(format_type(a.atttypid, a.atttypmod), "
         ":s, ''), "
         "a.attnotnull, replace(pg_get_expr(d.adbin, d.adrelid), :s, '') FROM pg_attribute a "
         "JOIN pg_class c ON c.oid = a.attrelid LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid "
         "AND d.adnum = a.attnum WHERE c.relnamespace = CAST(:s AS regnamespace) "
         "AND a.attnum > 0 AND NOT a.attisdropped"),
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
    with _pg_raw_engine().connect() as conn:
        return [sorted(map(tuple, conn.execute(text(q.replace("{s}", schema)), {"s": schema})))
                for q in queries]


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
    (``build`` opens and closes its own stores and only writes rows; what it returns comes back
    with every copy, so it must be a value no test changes). A copy is a store of its own:

    - SQLite: the template file copied with shutil;
    - PostgreSQL: a schema of its own in LINEAGE_TEST_PG's database, made by the statements the
      Alembic upgrade of the first template sent (recorded then; the first copy is checked to
      have the template's relations, columns, constraints, indexes, triggers, functions and
      version), then filled with the template's rows. A used copy is emptied, refilled and
      handed out again if its layout is still the template's (a test that dropped a trigger or
      added a table gets its copy dropped). ``CREATE DATABASE ... TEMPLATE`` measured slower:
      each copy writes the whole database to the WAL and each DROP DATABASE forces a checkpoint.

    PostgreSQL copies are made ready, and used ones recycled or dropped, while a test runs (one
    thread waiting on the server).
    """

    def __init__(self, root: Path):
        self.root = root
        self._templates: dict[tuple[str, str], tuple[str, Any]] = {}  # -> (file or schema, result)
        self._failed: dict[tuple[str, str], Exception] = {}  # builds that raised
        self._upgrade: list[tuple[str, Any]] = []  # what the migrations ran, for PostgreSQL copies
        self._tables: list[str] = []  # in the order the migrations created them
        self._layout: list | None = None  # the migrated template's
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-copies")
        # Only the pool's one thread touches these two (no locks needed):
        self._used: dict[str, list[str]] = {}  # template -> recycled copies, ready again
        self._recycle = True  # off when the server refuses session_replication_role
        self._next: dict[str, Future] = {}  # template -> its next copy's schema
        self._template_of: dict[str, str] = {}  # copy -> its template
        self._background: list[Future] = []

    def _template(self, backend: str, build: Callable[[str], Any] | None) -> tuple[str, Any]:
        key = (backend, "migrated" if build is None else f"{build.__module__}.{build.__qualname__}")
        if key in self._templates:
            return self._templates[key]
        if key in self._failed:  # as pytest does for a session fixture: fail fast, once built
            first = self._failed[key]
            raise RuntimeError(f"the {key[1]} template on {backend} failed to build in an earlier "
                               f"test: {type(first).__name__}: {first}") from first
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
                self._layout = _pg_layout(name)
                check = self._pg_copy(name, data=False)
                try:
                    assert _pg_layout(check) == self._layout, (
                        "replaying the recorded upgrade made another schema than the upgrade")
                finally:
                    _drop_pg_schema(_pg_schema_url(check))
            else:
                assert _pg_layout(name) == self._layout, (
                    f"{build} changed more than rows: its copies could not be made from the upgrade")
        except BaseException as exc:
            if isinstance(exc, Exception):  # not a skip or an interrupt
                self._failed[key] = exc
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

    def _fill(self, schema: str, template: str) -> list[tuple[str, Any]]:
        """The statements that copy the template's rows into a schema laid out as the template."""
        copy = 'INSERT INTO "{0}"."{2}" SELECT * FROM "{1}"."{2}" ORDER BY 1'
        return [(copy.format(schema, template, table), None)
                for table in self._tables if table != "alembic_version"]  # the upgrade wrote it

    @staticmethod
    def _run(steps: list[tuple[str, Any]]) -> None:
        """Statements in one transaction: one round trip for those without parameters (as the
        driver ran them: `%%` was `%`), one each for any others."""
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
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()

    def _pg_copy(self, template: str, *, data: bool = True) -> str:
        """A new schema with the migrated tables (and the template's rows, with ``data``)."""
        schema = f"lineage_t_{uuid.uuid4().hex[:12]}"
        steps: list[tuple[str, Any]] = [(f'CREATE SCHEMA "{schema}"', None),
                                        (f'SET LOCAL search_path TO "{schema}"', None)]
        self._run(steps + self._upgrade + (self._fill(schema, template) if data else []))
        return schema

    def _pg_ready(self, template: str) -> str:
        """(In the pool's thread) a copy for the next test: a recycled one, or a new one."""
        used = self._used.get(template)
        return used.pop() if used else self._pg_copy(template)

    def _pg_reuse(self, schema: str, template: str) -> None:
        """(In the pool's thread) a used copy emptied and refilled for another test, or dropped
        if the test changed more than rows (or left it locked)."""
        import psycopg

        if self._recycle:
            # Replica mode: the append-only triggers (and foreign keys) stay out of the way.
            steps = [("SET LOCAL session_replication_role = replica", None),
                     ("SET LOCAL lock_timeout = '2s'", None)]
            steps += [(f'DELETE FROM "{schema}"."{table}"', None)
                      for table in self._tables if table != "alembic_version"]
            steps += self._fill(schema, template)
            try:
                self._run(steps)
                if _pg_layout(schema) == self._layout:
                    self._used.setdefault(template, []).append(schema)
                    return
            except psycopg.Error as exc:  # locked, not allowed, or a table the test dropped
                if exc.sqlstate == "42501":  # not allowed to set the role: never again
                    self._recycle = False
            except DBAPIError:  # the layout query found a table missing
                pass
        _drop_pg_schema(_pg_schema_url(schema))

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
        # The pool's thread made this copy while the last test ran (or makes it now), and starts
        # on the next one once the copies queued for recycling are done.
        ahead = self._next.pop(template, None) or self._pool.submit(self._pg_ready, template)
        schema = ahead.result()
        self._next[template] = self._pool.submit(self._pg_ready, template)
        self._template_of[schema] = template
        return _pg_schema_url(schema), result

    def empty(self, backend: str, directory: Path) -> str:
        """An empty database: a new SQLite file's URL, or a new PostgreSQL schema's."""
        if backend == "sqlite":
            return f"sqlite:///{directory / 'lineage.db'}"
        return pg_url_or_skip()

    def drop(self, url: str) -> None:
        """Done with a store: a PostgreSQL copy is recycled (or dropped) in the background, an
        empty schema dropped; SQLite files go with their tmp_path."""
        if url.startswith("sqlite"):
            return
        schema = _pg_schema(url)
        template = self._template_of.pop(schema, None)
        if template is None:
            self._background.append(self._pool.submit(_drop_pg_schema, url))
        else:
            self._background.append(self._pool.submit(self._pg_reuse, schema, template))

    def close(self) -> None:
        def drop_all():
            left = [a.result() for a in self._next.values()]
            left += list(self._template_of)  # handed out, never given back (a failed test)
            left += [s for used in self._used.values() for s in used]
            left += [name for (backend, _), (name, _) in self._templates.items()
                     if backend == "postgresql"]
            for i in range(0, len(left), 4):  # a few a statement (each drop locks ~100 objects)
                _pg_admin("DROP SCHEMA IF EXISTS " + ", ".join(f'"{s}"' for s in left[i:i + 4])
                          + " CASCADE")

        self._background.append(self._pool.submit(drop_all))
        self._pool.shutdown(wait=True)
        for done in self._background:
            done.result()  # a copy that could not be recycled or dropped is an error


def pytest_configure(config):
    config.addinivalue_line("markers", "store_setup(build): the db_url (store, cli) of a test is "
                            "a copy of the store build(url) wrote, built once per backend")


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
def db_url(request, backend, tmp_path, stores):
    """A migrated store's URL on each backend, a copy of its own; with
    ``pytest.mark.store_setup.with_args(build)`` on the test or its module, a copy of what
    ``build(url)`` wrote into a migrated store, built once per session and backend (the closest
    mark wins: ``store_setup(None)`` is the migrated store)."""
    mark = request.node.get_closest_marker("store_setup")
    url, _ = stores.copy(backend, tmp_path, build=mark.args[0] if mark else None)
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
