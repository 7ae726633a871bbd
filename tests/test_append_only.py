"""Append-only, twice: the database itself refuses UPDATE and DELETE on every history table (raw
driver, no lineage code in the way), and so does the ORM layer."""

import pytest
from sqlalchemy import delete, select, text, update

from lineage.data.ingest import ingest_digits
from lineage.data.sources import add_source
from lineage.errors import AppendOnlyError
from lineage.review.source_reviews import review_source
from lineage.store.engine import open_store
from lineage.store.tables import HISTORY_TABLES, Event, Source
from storeutil import counts, is_sqlite, raw_connect, refusal_error, state

CORE_TABLES = {"events", "datasets", "sources", "source_reviews", "ingests", "chunks", "versions"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def filled(request, tmp_path_factory, stores):
    """One store per backend for the whole module: every test here only tries writes that are
    refused (and checks that nothing changed), so they can share it."""
    url, _ = stores.copy(request.param, tmp_path_factory.mktemp("ao"))
    store = open_store(url, actor="tester")
    try:
        ingest_digits(store)
        add_source(store, "crowd", kind="crowdsourced", uri="s3://vendor/batch7.csv")
        review_source(store, "crowd", decision="approve", reason="license checked")
        yield store
    finally:
        store.close()
        stores.drop(url)


def test_every_history_table_has_database_guards(filled):
    conn = raw_connect(filled.url)
    try:
        if is_sqlite(filled.url):
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")}
            expected = {f"{t.name}_no_{v}" for t in HISTORY_TABLES for v in ("update", "delete")}
        else:
            names = {r[0] for r in conn.execute(
                "SELECT tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND NOT t.tgisinternal")}
            expected = {f"{t.name}_{s}" for t in HISTORY_TABLES for s in ("append_only", "no_truncate")}
    finally:
        conn.close()
    assert expected <= names


def test_raw_update_and_delete_fail_on_every_history_table(filled):
    url = filled.url
    before = state(filled)
    nonempty = [t.name for t in HISTORY_TABLES if before[0][t.name] > 0]
    # Row triggers only fire on rows, so every table with rows is tried; the core tables have them.
    assert CORE_TABLES <= set(nonempty)
    refused = refusal_error(url)
    conn = raw_connect(url)
    try:
        for table in nonempty:
            for sql, verb in ((f"UPDATE {table} SET id = id", "UPDATE"),
                              (f"DELETE FROM {table}", "DELETE")):
                with pytest.raises(refused, match=rf"lineage: {table} is append-only \({verb} refused\)"):
                    conn.execute(sql)
        if not is_sqlite(url):
            for table in nonempty:
                with pytest.raises(refused, match=rf"lineage: {table} is append-only \(TRUNCATE refused\)"):
                    conn.execute(f"TRUNCATE {table} CASCADE")
    finally:
        conn.close()
    assert state(filled) == before


def test_orm_refuses_changing_a_loaded_record(filled):
    with filled.read() as session:
        source = session.scalars(select(Source).where(Source.name == "crowd")).one()
        source.license = "stolen"
        with pytest.raises(AppendOnlyError, match=r"^sources is append-only: records are never "
                                                  r"updated or deleted$"):
            session.flush()
        session.rollback()
    with filled.read() as session:
        event = session.get(Event, 1)
        session.delete(event)
        with pytest.raises(AppendOnlyError, match=r"^events is append-only"):
            session.flush()
        session.rollback()
    assert filled and counts(filled)["sources"] == 2


@pytest.mark.parametrize("statement", [
    update(Source).values(license="stolen"),
    update(Source).where(Source.name == "crowd").values(owner="mallory"),
    delete(Event),
    delete(Source).where(Source.id == 1),
], ids=["update-all", "update-where", "delete-all", "delete-where"])
def test_orm_refuses_bulk_update_and_delete(filled, statement):
    before = state(filled)
    with filled.read() as session:
        with pytest.raises(AppendOnlyError, match=r"^the store is append-only: UPDATE and DELETE "
                                                  r"are refused$"):
            session.execute(statement)
    assert state(filled) == before


def test_orm_refusal_inside_a_write_leaves_nothing(filled):
    before = state(filled)
    with pytest.raises(AppendOnlyError):
        with filled.write() as tx:
            tx.add(Source(name="sneaky", kind="internal"))
            tx.session.execute(update(Source).values(license="stolen"))
            tx.event("source.add", "never")
    assert state(filled) == before


def test_raw_sql_through_a_session_hits_the_database_guard(filled):
    from sqlalchemy.exc import DBAPIError

    with filled.read() as session:
        with pytest.raises(DBAPIError, match=r"lineage: sources is append-only \(UPDATE refused\)"):
            session.execute(text("UPDATE sources SET license = 'stolen'"))


def test_guard_leaves_the_hosts_own_sessions_alone(tmp_path, filled):
    """The ORM guard listens on lineage's own sessions only: after `import lineage` (and a store
    in use in the same process), a user's unrelated SQLAlchemy code can update its own tables."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

    class Base(DeclarativeBase):
        pass

    class Note(Base):
        __tablename__ = "notes"
        id: Mapped[int] = mapped_column(primary_key=True)
        text: Mapped[str]

    engine = create_engine(f"sqlite:///{tmp_path / 'host.db'}")
    Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        session.add(Note(id=1, text="draft"))
    with Session(engine) as session, session.begin():
        session.get(Note, 1).text = "final"  # an ORM update in the host's own session
    with Session(engine) as session, session.begin():
        session.execute(update(Note).where(Note.id == 1).values(text="bulk"))
        session.execute(delete(Note).where(Note.id == 2))
    with Session(engine) as session:
        assert session.get(Note, 1).text == "bulk"
    engine.dispose()
    # ...while lineage's own sessions still refuse.
    with pytest.raises(AppendOnlyError, match="append-only"):
        with filled.write() as tx:
            tx.session.execute(update(Source).values(uri="x"))
