"""Fixtures: a migrated store on SQLite and on PostgreSQL, and a CLI runner.

PostgreSQL cases run against LINEAGE_TEST_PG (default: postgres@127.0.0.1:5432/test), each in a
schema of its own. Without a server they skip with the reason, except in CI (CI=true), where a
missing server is a failure: the suite must prove both databases there.
"""

import os
import uuid

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from lineage.cli.main import app
from lineage.store.engine import open_store

PG_URL = os.environ.get("LINEAGE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


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


def pg_url_or_skip() -> str:
    """A fresh PostgreSQL schema's URL; skips (fails in CI) without a server."""
    if _PG_PROBLEM:
        message = f"PostgreSQL not reachable at {PG_URL} ({_PG_PROBLEM})"
        if os.environ.get("CI"):
            pytest.fail(message + ": CI must run the PostgreSQL cases")
        pytest.skip(message)
    schema = f"lineage_t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


def _drop_pg_schema(url: str) -> None:
    schema = url.rsplit("%3D", 1)[1]
    engine = create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """An empty database URL on each backend (migrated on first open)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'lineage.db'}"
    else:
        url = pg_url_or_skip()
        yield url
        _drop_pg_schema(url)


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'lineage.db'}"


@pytest.fixture
def pg_url():
    url = pg_url_or_skip()
    yield url
    _drop_pg_schema(url)


@pytest.fixture
def store(db_url):
    """A migrated store on SQLite and on PostgreSQL, acting as "tester"."""
    s = open_store(db_url, actor="tester")
    yield s
    s.close()


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
