"""Attacks and bad input from issue 9 (items 7-9), each tried on SQLite and PostgreSQL:

- REPLACE / INSERT OR REPLACE / upserts on every history table are refused by the database
  itself (raw driver, no lineage code in the way), table by table and key by key;
- read commands never create a store, and a foreign SQLite file is refused before a byte of it
  changes;
- names over the one length limit, and ids or limits out of range, are one line and exit 2.
"""

import os
import sqlite3
from datetime import datetime

import pytest
from conftest import Cli
from sqlalchemy import Boolean, DateTime, Float, Integer, LargeBinary, UniqueConstraint, text

from lineage.store.tables import HISTORY_TABLES
from storeutil import is_sqlite, raw_connect, refusal_error, sqlite_path

# ---------------------------------------------------------------------------------------------
# Item 7: the database refuses REPLACE and upserts on every history table

K = 900_000  # the id (and every foreign key) of the one forged row per table


def _keys(table) -> list[tuple[str, ...]]:
    """The table's primary key and each of its unique keys, as column-name tuples."""
    keys = [tuple(c.name for c in table.primary_key.columns)]
    keys += [tuple(c.name for c in con.columns) for con in table.constraints
             if isinstance(con, UniqueConstraint)]
    keys += [tuple(c.name for c in ix.columns) for ix in table.indexes if ix.unique]
    return list(dict.fromkeys(keys))


def _value(table, column, tag: str):
    """A value of the column's type; strings carry ``tag`` so unique columns stay unique."""
    kind = type(column.type)
    if issubclass(kind, Boolean):
        return True
    if issubclass(kind, Integer):
        return K
    if issubclass(kind, Float):
        return 0.5
    if issubclass(kind, DateTime):
        return datetime(2026, 1, 1)
    if issubclass(kind, LargeBinary):
        return tag.encode()
    length = getattr(column.type, "length", None) or 64
    return f"{tag}-{table.name}-{column.name}"[:length]


def _row(table, tag: str) -> dict:
    return {c.name: _value(table, c, tag) for c in table.columns}


def _insert_sql(url: str, table, row: dict, verb: str = "INSERT", tail: str = "") -> tuple[str, tuple]:
    mark = "?" if is_sqlite(url) else "%s"
    cols = list(row)
    return (f"{verb} INTO {table.name} ({', '.join(cols)}) "
            f"VALUES ({', '.join([mark] * len(cols))}){tail}", tuple(row.values()))


def _dump(conn) -> dict:
    return {t.name: conn.execute(f"SELECT * FROM {t.name} ORDER BY id").fetchall()
            for t in HISTORY_TABLES}


@pytest.fixture
def forged(db_url):
    """A migrated store with one row in every history table (inserted raw, parents first so
    foreign keys hold on PostgreSQL): what REPLACE would overwrite. A plain INSERT of a new key is
    not refused: the guard only stops rewriting an existing key."""
    conn = raw_connect(db_url)
    try:
        for table in HISTORY_TABLES:
            conn.execute(*_insert_sql(db_url, table, _row(table, "orig")))
    finally:
        conn.close()
    return db_url


def _attacks(url: str, table, key: tuple[str, ...]) -> list[tuple[str, tuple]]:
    """Statements that would overwrite the existing row through ``key``: the same key values,
    every other column changed (other unique keys get fresh values, so only ``key`` clashes)."""
    row = _row(table, "forged")
    pk = tuple(c.name for c in table.primary_key.columns)
    if key != pk:
        row["id"] = K + 1
    for name in key:
        row[name] = _value(table, table.c[name], "orig")
    others = [c for c in row if c not in key]
    set_clause = ", ".join(f"{c} = excluded.{c}" for c in others)
    upsert = f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {set_clause}"
    if is_sqlite(url):
        return [_insert_sql(url, table, row, "REPLACE"),
                _insert_sql(url, table, row, "INSERT OR REPLACE"),
                _insert_sql(url, table, row, tail=upsert)]
    cols = list(row)
    merge = (f"MERGE INTO {table.name} t USING (VALUES ({', '.join(['%s'] * len(cols))})) "
             f"AS s ({', '.join(cols)}) ON {' AND '.join(f't.{k} = s.{k}' for k in key)} "
             f"WHEN MATCHED THEN UPDATE SET {', '.join(f'{c} = s.{c}' for c in others)} "
             "WHEN NOT MATCHED THEN INSERT VALUES "
             f"({', '.join(f's.{c}' for c in cols)})")
    merge_delete = merge.replace(f"UPDATE SET {', '.join(f'{c} = s.{c}' for c in others)}", "DELETE")
    return [_insert_sql(url, table, row, tail=upsert),
            (merge, tuple(row.values())), (merge_delete, tuple(row.values()))]


KEYED = [(t.name, key) for t in HISTORY_TABLES for key in _keys(t)]


def test_every_history_table_is_tried():
    names = {name for name, _ in KEYED}
    assert names == {t.name for t in HISTORY_TABLES}
    assert {"snapshot_reviews", "attestations", "row_effects", "events"} <= names
    # the unique keys besides the primary keys, so none is forgotten by the guard
    assert {(n, k) for n, k in KEYED if k != ("id",)} == {
        ("events", ("digest",)), ("datasets", ("name",)), ("sources", ("name",)),
        ("chunks", ("first_row_id",)), ("versions", ("name",)), ("snapshots", ("name",)),
        ("model_versions", ("model", "number")), ("attestations", ("record_table", "record_id")),
        ("external_models", ("model", "number"))}


@pytest.mark.parametrize("table_name,key", KEYED, ids=[f"{n}-{'+'.join(k)}" for n, k in KEYED])
def test_replace_and_upsert_are_refused(forged, table_name, key):
    url = forged
    table = next(t for t in HISTORY_TABLES if t.name == table_name)
    # SQLite: the insert guard; PostgreSQL: the upsert's (or MERGE's) update or delete hits the
    # BEFORE UPDATE OR DELETE trigger.
    verbs = ["REPLACE"] * 3 if is_sqlite(url) else ["UPDATE", "UPDATE", "DELETE"]
    conn = raw_connect(url)
    try:
        before = _dump(conn)
        for (sql, params), verb in zip(_attacks(url, table, key), verbs):
            with pytest.raises(refusal_error(url),
                               match=rf"lineage: {table_name} is append-only \({verb} refused\)"):
                conn.execute(sql, params)
        assert _dump(conn) == before
    finally:
        conn.close()


def test_replace_cannot_turn_a_revocation_into_a_pass(forged):
    """The issue's attack: with every UPDATE and DELETE trigger intact, SQLite's REPLACE deletes
    the revocation without firing its DELETE trigger and writes an approval in its place."""
    url = forged
    table = next(t for t in HISTORY_TABLES if t.name == "snapshot_reviews")
    conn = raw_connect(url)
    try:
        revocation = {**_row(table, "orig"), "id": K + 1, "decision": "revoke", "passed": True}
        conn.execute(*_insert_sql(url, table, revocation))
        approval = {**revocation, "decision": "approve", "reason": "looks fine"}
        verb = "REPLACE" if is_sqlite(url) else "INSERT"
        tail = "" if is_sqlite(url) else (" ON CONFLICT (id) DO UPDATE SET decision = "
                                          "excluded.decision, reason = excluded.reason")
        with pytest.raises(refusal_error(url), match=r"lineage: snapshot_reviews is append-only"):
            conn.execute(*_insert_sql(url, table, approval, verb, tail))
        mark = "?" if is_sqlite(url) else "%s"
        assert conn.execute(f"SELECT decision FROM snapshot_reviews WHERE id = {mark}",
                            (K + 1,)).fetchone() == ("revoke",)
    finally:
        conn.close()


def _replace_guards(url: str) -> list[str]:
    conn = raw_connect(url)
    try:
        return sorted(r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE '%no_replace'"))
    finally:
        conn.close()


def test_every_history_table_has_one_replace_guard(sqlite_url):
    from lineage.store.engine import open_store

    open_store(sqlite_url).close()
    assert _replace_guards(sqlite_url) == sorted(f"{t.name}_no_replace" for t in HISTORY_TABLES)


def test_upgrading_an_older_store_adds_the_guards(empty_db_url, empty_cli):
    """A store made before 0005 (by a lineage whose migrations made no REPLACE guard) gets one per
    table from `db upgrade`; the rows it holds are kept."""
    from alembic import command
    from sqlalchemy import create_engine

    from lineage.store.engine import alembic_config

    engine = create_engine(empty_db_url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0004")
    engine.dispose()
    if is_sqlite(empty_db_url):
        conn = raw_connect(empty_db_url)
        for name in _replace_guards(empty_db_url):
            conn.execute(f"DROP TRIGGER {name}")
        conn.close()
        assert _replace_guards(empty_db_url) == []
    table = next(t for t in HISTORY_TABLES if t.name == "sources")
    conn = raw_connect(empty_db_url)
    conn.execute(*_insert_sql(empty_db_url, table, _row(table, "orig")))
    conn.close()
    assert empty_cli("db", "upgrade").exit_code == 0
    if is_sqlite(empty_db_url):
        assert len(_replace_guards(empty_db_url)) == len(HISTORY_TABLES)
    verb = "REPLACE" if is_sqlite(empty_db_url) else "UPDATE"
    conn = raw_connect(empty_db_url)
    try:
        for sql, params in _attacks(empty_db_url, table, ("name",))[:1]:
            with pytest.raises(refusal_error(empty_db_url),
                               match=rf"lineage: sources is append-only \({verb} refused\)"):
                conn.execute(sql, params)
        assert conn.execute("SELECT name FROM sources").fetchall() == [("orig-sources-name",)]
    finally:
        conn.close()


def test_a_table_protected_by_a_future_migration_refuses_replace(empty_db_url):
    """``protect()``, which every migration calls for the history tables it creates, makes the
    REPLACE guard too, from the table's keys as they are."""
    from alembic.migration import MigrationContext
    from alembic.operations import Operations
    from sqlalchemy import create_engine

    from lineage.migrations.append_only import protect

    engine = create_engine(empty_db_url)
    try:
        with engine.begin() as conn, Operations.context(MigrationContext.configure(conn)):
            conn.execute(text("CREATE TABLE widgets (id INTEGER PRIMARY KEY, name VARCHAR(20), "
                              "serial INTEGER, kind VARCHAR(20), CONSTRAINT uq_widgets_name "
                              "UNIQUE (name))"))
            conn.execute(text("CREATE UNIQUE INDEX ix_widgets_serial ON widgets (serial, kind)"))
            protect("widgets")
    finally:
        engine.dispose()
    mark = "?" if is_sqlite(empty_db_url) else "%s"
    conn = raw_connect(empty_db_url)
    try:
        conn.execute("INSERT INTO widgets VALUES (1, 'a', 7, 'k')")
        conn.execute("INSERT INTO widgets VALUES (2, 'b', 7, 'other')")  # new keys: allowed
        clashes = [(1, "z", 9, "z"), (3, "a", 9, "z"), (3, "z", 7, "k")]
        if is_sqlite(empty_db_url):
            attempts = [(f"{verb} INTO widgets VALUES ({mark}, {mark}, {mark}, {mark})", row, "REPLACE")
                        for verb in ("REPLACE", "INSERT OR REPLACE") for row in clashes]
        else:
            attempts = [(f"INSERT INTO widgets VALUES ({mark}, {mark}, {mark}, {mark}) "
                         f"ON CONFLICT ({key}) DO UPDATE SET kind = 'forged'", row, "UPDATE")
                        for key, row in zip(("id", "name", "serial, kind"), clashes)]
        for sql, row, verb in attempts:
            with pytest.raises(refusal_error(empty_db_url),
                               match=rf"lineage: widgets is append-only \({verb} refused\)"):
                conn.execute(sql, row)
        assert conn.execute("SELECT * FROM widgets ORDER BY id").fetchall() == [
            (1, "a", 7, "k"), (2, "b", 7, "other")]
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# Item 8: reading never creates a store; a foreign SQLite file is refused untouched

READ_COMMANDS = [
    ["verify"], ["log"], ["source", "list"], ["ingest", "list"], ["version", "list"],
    ["version", "show", "v1"], ["version", "diff", "v1", "v2"],
    ["version", "export", "v1", "--out", "{tmp}/v1.csv"], ["trace", "row", "1"],
    ["trace", "model", "clf:1"], ["coverage", "v1"], ["scan", "v1"],
    ["audit", "poisoned", "--model", "clf:1"], ["audit", "sources", "--version", "v1"],
    ["snapshot", "list"], ["snapshot", "show", "s"],
    ["snapshot", "attestation", "s", "--out", "{tmp}/s.intoto.json"],
    ["model", "list"], ["model", "show", "clf:1"],
    ["model", "export", "clf:1", "--out", "{tmp}/clf.skops"], ["policy", "show"],
    # writes that need records first: no store is made only to say "not found"
    ["transform", "filter", "--version", "v1", "--rows", "1", "--reason", "r"],
    ["snapshot", "create", "s", "--version", "v1"], ["snapshot", "approve", "s"],
    ["source", "review", "crowd", "--approve"],
]


def _where(url: str) -> str:
    return sqlite_path(url) if is_sqlite(url) else url


def _tables(url: str) -> list[str]:
    conn = raw_connect(url)
    try:
        if is_sqlite(url):
            return [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
        return [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")]
    finally:
        conn.close()


def test_read_commands_never_create_a_store(empty_db_url, tmp_path):
    """A mistyped --db (a missing SQLite file, an empty PostgreSQL database) is exit 3 and one
    line; nothing is created: no file, no tables."""
    cli = Cli(empty_db_url)
    message = (f"Error: no store at {_where(empty_db_url)}: check --db or LINEAGE_DB (or create "
               "one with `lineage db upgrade` or a first ingest)")
    failures = []
    for argv in READ_COMMANDS:
        r = cli(*[a.format(tmp=tmp_path) for a in argv])
        if (r.exit_code, r.output.splitlines()) != (3, [message]):
            failures.append((argv, r.exit_code, r.output))
    assert not failures, failures
    if is_sqlite(empty_db_url):
        assert sorted(os.listdir(tmp_path)) == []
    else:
        assert _tables(empty_db_url) == []
    assert cli("ingest", "digits").exit_code == 0  # a write may start a store
    assert cli("version", "list").exit_code == 0


def test_a_failed_first_write_leaves_no_store_behind(tmp_path):
    """A write that may start a store but fails on its input (an unknown source, a bad
    option) leaves the folder as it was: no empty store to trip over later."""
    db = tmp_path / "lineage.db"
    cli = Cli(f"sqlite:///{db}")
    (tmp_path / "rows.csv").write_text("f0,label\n1,1\n")
    r = cli("ingest", "csv", str(tmp_path / "rows.csv"), "--source", "nobody", "--label-column",
            "label")
    assert (r.exit_code, r.output.splitlines()) == (
        3, ["Error: no source named 'nobody' (see `lineage source list`)"])
    r = cli("source", "add", "crowd", "--kind", "bogus")
    assert r.exit_code == 2
    assert sorted(os.listdir(tmp_path)) == ["rows.csv"]
    assert cli("source", "add", "crowd").exit_code == 0 and db.exists()
    r = cli("ingest", "csv", str(tmp_path / "rows.csv"), "--source", "nobody", "--label-column",
            "label")
    assert r.exit_code == 3 and db.exists()  # a store that was there stays


def test_an_empty_sqlite_file_is_not_a_store_to_read(tmp_path):
    path = tmp_path / "empty.db"
    path.touch()
    cli = Cli(f"sqlite:///{path}")
    r = cli("log")
    assert (r.exit_code, r.output.splitlines()) == (3, [
        f"Error: no store at {path}: check --db or LINEAGE_DB (or create one with `lineage db "
        "upgrade` or a first ingest)"])
    assert path.read_bytes() == b"" and sorted(os.listdir(tmp_path)) == ["empty.db"]
    assert cli("source", "add", "crowd").exit_code == 0


def _foreign_files(tmp_path):
    foreign = tmp_path / "customers.db"
    conn = sqlite3.connect(foreign)
    conn.execute("PRAGMA page_size = 4096")
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO customers VALUES (1, 'ada')")
    conn.commit()
    conn.close()
    alembic = tmp_path / "other-app.db"  # another application's alembic-managed database
    conn = sqlite3.connect(alembic)
    conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
    conn.execute("INSERT INTO alembic_version VALUES ('ae1027a6acf')")
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    text_file = tmp_path / "notes.db"
    text_file.write_text("not a database, just notes\n" * 100)
    foreign_line = "Error: sqlite:///{} has tables but is not a lineage store (use an empty database)"
    return [(foreign, foreign_line.format(foreign)), (alembic, foreign_line.format(alembic)),
            (text_file, f"Error: cannot open database sqlite:///{text_file}: file is not a database")]


@pytest.mark.parametrize("argv", [["verify"], ["log"], ["version", "list"], ["ingest", "digits"],
                                  ["source", "add", "crowd"], ["db", "upgrade"]],
                         ids=lambda a: "-".join(a))
def test_a_foreign_sqlite_file_is_refused_untouched(tmp_path, argv):
    """Exit 1 (LineageError: not bad input, a database that is not ours) and one line, with the
    file's bytes, its journal mode (rollback, not WAL) and its folder exactly as they were."""
    for path, message in _foreign_files(tmp_path):
        before, listing = path.read_bytes(), sorted(os.listdir(tmp_path))
        r = Cli(f"sqlite:///{path}")(*argv)
        assert (r.exit_code, r.output.splitlines()) == (1, [message]), path
        assert path.read_bytes() == before, path
        assert sorted(os.listdir(tmp_path)) == listing, path
        if path.suffix == ".db" and path.name != "notes.db":
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
            conn.close()


# ---------------------------------------------------------------------------------------------
# Item 9: one length limit for names on both databases; ids and limits out of range are exit 2

HUGE = "99999999999999999999"  # beyond int64: can name nothing
LONG = "n" * 201
TOO_LONG = f"{LONG[:40]!r}... is 201 characters long: at most 200"
OUT_OF_RANGE = "is out of range: ids are whole numbers from 0 to 9223372036854775807"


def _named(store) -> None:
    from lineage.data.ingest import ingest_digits
    from lineage.data.sources import add_source

    ingest_digits(store)
    add_source(store, "crowd", kind="crowdsourced")


def _bad_names(tmp_path) -> list[tuple[list, str]]:
    edited = tmp_path / "edited.csv"
    edited.write_text("row_id," + ",".join(f"f{i}" for i in range(64)) + ",label\n"
                      + ",".join(["1"] + ["0"] * 64 + ["3"]) + "\n")
    return [
        (["source", "add", LONG], f"source name {TOO_LONG}"),
        (["source", "add", "ok", "--license", LONG], f"license {TOO_LONG}"),
        (["source", "add", "ok", "--owner", LONG], f"owner {TOO_LONG}"),
        (["source", "add", "crowd\u200b"], f"source name {'crowd' + chr(0x200B)!r} holds the "
                                             "invisible or control character U+200B: type the "
                                             "name in plain characters"),
        (["ingest", "digits", "--dataset", LONG], f"dataset name {TOO_LONG}"),
        (["ingest", "csv", edited, "--source", "crowd", "--dataset", LONG],
         f"dataset name {TOO_LONG}"),
        (["transform", "filter", "--version", "v1", "--rows", "1", "--reason", "r", "--name", LONG],
         f"version name {TOO_LONG}"),
        (["transform", "split", "--version", "v1", "--test-size", "0.3", "--reason", "r",
          "--name", "n" * 195], f"version name {('n' * 195 + '-train')[:40]!r}... is 201 "
                                "characters long: at most 200"),
        (["ingest", "csv", edited, "--as-version-of", "v1", "--source", "crowd", "--name", LONG],
         f"version name {TOO_LONG}"),
        (["snapshot", "create", LONG, "--version", "v1"], f"snapshot name {TOO_LONG}"),
        (["train", "--snapshot", "s", "--model", LONG], f"model name {TOO_LONG}"),
        (["source", "add", "x"] + ["--as", LONG], f"actor (--as) {TOO_LONG}"),
    ]


def _bad_numbers() -> list[tuple[list, str]]:
    return [
        (["model", "show", f"clf:{HUGE}"], f"model version number {HUGE} {OUT_OF_RANGE}"),
        (["trace", "model", f"clf:{HUGE}"], f"model version number {HUGE} {OUT_OF_RANGE}"),
        (["audit", "poisoned", "--model", f"clf:{HUGE}"],
         f"model version number {HUGE} {OUT_OF_RANGE}"),
        (["model", "export", f"clf:{HUGE}", "--out", "m.skops"],
         f"model version number {HUGE} {OUT_OF_RANGE}"),
        (["log", "--limit", "-1"], "--limit -1 is negative: give the number of newest events to "
                                   "show (0 for all)"),
        (["log", "--limit", HUGE], f"--limit {HUGE} is out of range: give at most "
                                   "9223372036854775807 (0 for all)"),
        (["version", "diff", "v1", "v1", "--limit", "-1"],
         "--limit -1 is negative: give the number of rows to show per kind of change"),
        (["trace", "row", HUGE], f"row id {HUGE} {OUT_OF_RANGE}"),
        (["version", "show", f"v{HUGE}"], f"version id {HUGE} {OUT_OF_RANGE}"),
        (["scan", "v1", "--seed", "-1"], "--seed -1 is negative: give a whole number, 0 or more"),
        (["scan", "v1", "--seed", HUGE], f"--seed {HUGE} is out of range: give a whole number "
                                         "from 0 to 4294967295"),
        (["audit", "sources", "--version", "v1", "--seed", "-1"],
         "--seed -1 is negative: give a whole number, 0 or more"),
        (["policy", "set", "--seed", "-1", "--reason", "r"],
         "--seed -1 is negative: give a whole number, 0 or more"),
        (["policy", "set", "--seed", HUGE, "--reason", "r"],
         f"--seed {HUGE} is out of range: give a whole number from 0 to 4294967295"),
    ]


def test_bad_names_ids_and_limits_are_one_line_exit_2_store_unchanged(stores, backend, tmp_path,
                                                                        monkeypatch):
    """The same answer on SQLite and PostgreSQL (where a name over varchar(200) used to be a
    traceback): one line, exit 2, and the store exactly as it was."""
    from lineage.store.engine import open_store
    from storeutil import state

    url, _ = stores.copy(backend, tmp_path, build=_build_named)
    monkeypatch.chdir(tmp_path)
    store = open_store(url, actor="tester")
    try:
        cli = Cli(url)
        before = state(store)
        failures = []
        for argv, message in _bad_names(tmp_path) + _bad_numbers():
            r = cli(*argv)
            if (r.exit_code, r.output.splitlines()) != (2, [f"Error: {message}"]):
                failures.append((argv, r.exit_code, r.output))
        assert not failures, failures
        assert state(store) == before
        assert not (tmp_path / "m.skops").exists()
    finally:
        store.close()
        stores.drop(url)


def _build_named(url: str) -> None:
    from lineage.store.engine import open_store

    store = open_store(url, actor="tester")
    try:
        _named(store)
    finally:
        store.close()


def test_a_name_of_exactly_the_limit_works_on_both_databases(cli):
    name = "s" * 200
    r = cli("source", "add", name, "--license", "l" * 200, "--owner", "o" * 200)
    assert r.exit_code == 0, r.output
    r = cli("ingest", "digits", "--dataset", "d" * 200)
    assert r.exit_code == 0, r.output
    r = cli("transform", "filter", "--version", "v1", "--rows", "1", "--reason", "r",
            "--name", "v" * 200)
    assert r.exit_code == 0, r.output
    r = cli("snapshot", "create", "p" * 200, "--version", "v" * 200)
    assert r.exit_code == 0, r.output
