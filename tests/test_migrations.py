"""The schema comes only from the Alembic migrations, agrees with the ORM metadata, and an
outdated or foreign database is refused with the command that fixes it.

Every test here starts from an empty database (``empty_db_url``, ``empty_cli``), not from a copy
of the migrated template the other tests get."""

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from lineage.data.sources import add_source, list_sources
from lineage.errors import LineageError, SchemaOutdatedError
from lineage.store.engine import alembic_config, head_revision, open_for_upgrade, open_store
from lineage.store.log import list_events
from lineage.store.tables import Base
from lineage.store.verify import verify_store


def test_exactly_one_head():
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert heads == [head_revision()]


def test_migrated_schema_matches_the_orm_metadata(empty_db_url):
    open_store(empty_db_url).close()  # an empty database is migrated on first open
    engine = create_engine(empty_db_url)
    try:
        with engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == head_revision()
            diff = compare_metadata(MigrationContext.configure(
                conn, opts={"compare_type": True}), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def _migrate_to(url: str, revision: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), revision)
    finally:
        engine.dispose()


def test_outdated_schema_is_refused_until_db_upgrade(empty_db_url, empty_cli):
    _migrate_to(empty_db_url, "0001")
    with pytest.raises(SchemaOutdatedError,
                       match=rf"has schema 0001, this lineage needs {head_revision()}: "
                             r"run `lineage db upgrade`$"):
        open_store(empty_db_url)

    result = empty_cli("source", "list")
    assert result.exit_code == 6
    assert result.output.splitlines() == [
        f"Error: the store at {empty_db_url} has schema 0001, this lineage needs "
        f"{head_revision()}: run `lineage db upgrade`"]

    result = empty_cli("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert f"schema 0001 -> {head_revision()}" in result.output
    assert empty_cli("source", "list").exit_code == 0
    assert "up to date" in empty_cli("db", "upgrade").output


def test_newer_schema_is_refused(empty_db_url):
    open_store(empty_db_url).close()
    engine = create_engine(empty_db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(SchemaOutdatedError, match=r"has schema 9999, newer than this lineage "
                                                  r"knows \(\w+\): upgrade lineage$"):
        open_store(empty_db_url)


def test_database_with_foreign_tables_is_refused(empty_db_url, empty_cli):
    engine = create_engine(empty_db_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)"))
    engine.dispose()
    message = f"{empty_db_url} has tables but is not a lineage store (use an empty database)"
    with pytest.raises(LineageError, match=r"has tables but is not a lineage store"):
        open_store(empty_db_url)
    for args in (["verify"], ["db", "upgrade"]):
        result = empty_cli(*args)
        assert result.exit_code == 1
        assert result.output.splitlines() == [f"Error: {message}"]
    engine = create_engine(empty_db_url)
    with engine.connect() as conn:  # nothing was created next to the foreign table
        assert MigrationContext.configure(conn).get_current_revision() is None
    engine.dispose()


def test_upgrade_keeps_history_and_guards(empty_db_url, empty_cli):
    from storeutil import raw_connect, refusal_error

    _migrate_to(empty_db_url, "0001")
    # writes what a 0001 store could hold
    old = open_for_upgrade(empty_db_url, actor="old-lineage")
    try:
        add_source(old, "crowd", kind="crowdsourced", license="CC-BY-4.0")
        head = list_events(old)[0].digest
    finally:
        old.close()
    assert empty_cli("db", "upgrade").exit_code == 0
    store = open_store(empty_db_url)
    try:
        assert [(s.name, s.status, s.actor) for s in list_sources(store)] == [
            ("crowd", "quarantined", "old-lineage")]
        assert verify_store(store).head_digest == head
    finally:
        store.close()
    conn = raw_connect(empty_db_url)
    try:
        with pytest.raises(refusal_error(empty_db_url),
                           match=r"lineage: sources is append-only \(UPDATE refused\)"):
            conn.execute("UPDATE sources SET license = 'MIT'")
    finally:
        conn.close()


def _store_with_one_ingest(url: str) -> str:
    import numpy as np

    from lineage.data.ingest import ingest_arrays

    store = open_store(url, actor="a")
    try:
        add_source(store, "lab", kind="internal")
        ingest_arrays(store, np.zeros((3, 2), dtype=np.uint8), np.arange(3) % 2, source="lab")
        return verify_store(store).head_digest
    finally:
        store.close()


def _refused_downgrade(url: str, revision: str, message: str, monkeypatch) -> None:
    """``alembic downgrade revision`` as a user runs it (the ``alembic`` command's path through
    env.py, LINEAGE_DB naming the store) raises ``message`` and leaves the schema at head."""
    monkeypatch.setenv("LINEAGE_DB", url)
    with pytest.raises(RuntimeError, match=message):
        command.downgrade(alembic_config(), revision)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == head_revision()
    finally:
        engine.dispose()


def test_a_store_with_blake3_chunks_is_not_downgraded_below_0010(empty_db_url, monkeypatch):
    """From 0010 a chunk's blobs are hashed with BLAKE3; a lineage before 0010 would hash them
    with sha256 and call every chunk tampered with, so the downgrade is refused."""
    head = _store_with_one_ingest(empty_db_url)
    _refused_downgrade(empty_db_url, "0009_roots_hold_no_ids",
                       r"^1 chunks are hashed with BLAKE3 .* cannot be downgraded below 0010$",
                       monkeypatch)
    store = open_store(empty_db_url)
    try:
        assert verify_store(store).head_digest == head
    finally:
        store.close()


def test_a_store_whose_roots_hold_no_ids_is_not_downgraded_below_0009(empty_db_url, monkeypatch):
    """From 0009 an ingest's root holds no id list (its ingest's range is its rows); a lineage
    before 0009 would misread it, so the downgrade is refused and the store left as it was."""
    from storeutil import drop_guards, raw_execute

    head = _store_with_one_ingest(empty_db_url)
    # Past 0010's own refusal: the chunk as if hashed the old way (put back below). 0010's
    # downgrade then runs, and is undone with the rest when 0009's refuses.
    drop_guards(empty_db_url, "chunks")
    raw_execute(empty_db_url, "UPDATE chunks SET blob_hash = NULL")
    _refused_downgrade(empty_db_url, "0008_row_effects_unkeyed",
                       r"^1 ingest root versions hold no id list .* cannot be downgraded below "
                       r"0009$", monkeypatch)
    raw_execute(empty_db_url, "UPDATE chunks SET blob_hash = 'blake3'")  # the column is still there
    store = open_store(empty_db_url)
    try:
        assert verify_store(store).head_digest == head
    finally:
        store.close()
