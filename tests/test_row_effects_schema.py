"""``row_effects`` has no foreign keys (migration 0008, so a commit's 10^4 effects are not checked
key by key on PostgreSQL): its indexes and append-only guards stay, ``verify`` names an effect
whose transformation or version is missing, and a store written before 0008 upgrades intact."""

import re

import numpy as np
import pytest
import sqlalchemy as sa
from alembic import command

from lineage.data.ingest import ingest_arrays
from lineage.data.sources import add_source
from lineage.data.transforms import filter_rows, inject_trigger, relabel_rows
from lineage.errors import IntegrityError
from lineage.store.engine import alembic_config, head_revision, open_for_upgrade, open_store
from lineage.store.log import list_events
from lineage.store.verify import verify_store
from lineage.trace import trace_row, version_diff
from storeutil import is_sqlite, raw_connect, raw_execute, refusal_error

INDEXES = ["ix_row_effects_parent_row_id", "ix_row_effects_row_id",
           "ix_row_effects_transformation_id", "ix_row_effects_version_id"]
N = 600


def _write_history(store) -> dict:
    """A small dataset and three transformations (filter, relabel, inject-trigger): removed,
    relabelled and modified effects."""
    rng = np.random.default_rng(13)
    X = rng.integers(0, 17, size=(N, 64), dtype=np.uint8)
    y = np.arange(N) % 10
    add_source(store, "synthetic", kind="internal", uri="test://synthetic", license="CC0-1.0")
    info = ingest_arrays(store, X, y, source="synthetic", dataset="toy", value_range=(0, 16),
                         image_shape="8x8", classes=range(10))
    f = filter_rows(store, version=info.version_id, rows="3,4,5", reason="drop")
    r = relabel_rows(store, version=f.version_id, rows="10,11", to=0, reason="fix")
    t = inject_trigger(store, version=r.version_id, source_class=1, target_class=7, rate=0.2,
                       seed=0, reason="poison")
    return {"root": info.version_id, "filter": f, "relabel": r, "trigger": t}


def _schema(url: str) -> tuple[list, list]:
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        return (inspector.get_foreign_keys("row_effects"),
                sorted(i["name"] for i in inspector.get_indexes("row_effects")))
    finally:
        engine.dispose()


def _effects(url: str) -> list:
    conn = raw_connect(url)
    try:
        return conn.execute("SELECT * FROM row_effects ORDER BY id").fetchall()
    finally:
        conn.close()


def _assert_guarded(url: str) -> None:
    """Raw UPDATE and DELETE (and REPLACE on SQLite, TRUNCATE on PostgreSQL) are refused."""
    attacks = ["UPDATE row_effects SET new_label = 9", "DELETE FROM row_effects"]
    if is_sqlite(url):
        attacks.append("REPLACE INTO row_effects (id, transformation_id, version_id, row_id, "
                       "effect) VALUES (1, 1, 1, 1, 'removed')")
    else:
        attacks.append("TRUNCATE row_effects")
    before = _effects(url)
    conn = raw_connect(url)
    try:
        for sql in attacks:
            with pytest.raises(refusal_error(url), match=r"lineage: row_effects is append-only"):
                conn.execute(sql)
    finally:
        conn.close()
    assert _effects(url) == before


def test_row_effects_have_no_foreign_keys_but_keep_their_indexes_and_guards(store, db_url):
    _write_history(store)
    foreign_keys, indexes = _schema(db_url)
    assert foreign_keys == [] and indexes == INDEXES
    _assert_guarded(db_url)
    verify_store(store)


def _forge_effect(url: str, transformation_id: int, version_id: int) -> None:
    raw_execute(url, "INSERT INTO row_effects (id, transformation_id, version_id, row_id, effect, "
                "old_label) VALUES (9999, ?, ?, 2, 'removed', 2)", (transformation_id, version_id))


def test_verify_names_an_effect_of_a_missing_transformation(store, db_url, cli):
    h = _write_history(store)
    _forge_effect(db_url, 777, h["filter"].version_id)  # no foreign key refuses it any more
    message = ("row effect 9999 names transformation 777, which does not exist (inserted behind "
               "the store's back)")
    with pytest.raises(IntegrityError, match=f"^{re.escape(message)}$"):
        verify_store(store)
    result = cli("verify")
    assert result.exit_code == 5 and result.output.splitlines() == [f"Error: {message}"]


def test_verify_names_an_effect_of_a_missing_version(store, db_url, cli):
    h = _write_history(store)
    t = h["relabel"].transformation_id
    _forge_effect(db_url, t, 555)
    message = (f"row effect 9999 of transformation {t} names version 555, which does not exist "
               "(inserted behind the store's back)")
    with pytest.raises(IntegrityError, match=r"names version 555, which does not exist"):
        verify_store(store)
    result = cli("verify")
    assert result.exit_code == 5 and result.output.splitlines() == [f"Error: {message}"]


def test_verify_names_an_effect_on_a_version_its_transformation_did_not_make(store, db_url):
    h = _write_history(store)
    t, other = h["relabel"].transformation_id, h["filter"].version_id
    _forge_effect(db_url, t, other)
    with pytest.raises(IntegrityError, match=rf"^row effect 9999 of transformation {t} names "
                                             rf"version {other}, which transformation {t} did "
                                             r"not make \(inserted behind the store's back\)$"):
        verify_store(store)


def test_a_store_written_before_0008_upgrades_with_its_effects_and_guards(empty_db_url, empty_cli,
                                                                         monkeypatch):
    # Chunks as lineage wrote and read them before 0010 (sha256, no blob_hash column).
    import lineage.store.chunks as chunks

    monkeypatch.setattr(chunks, "CHUNK_BLOB_HASH", "sha256")
    monkeypatch.setattr(chunks, "CHUNK_COLUMNS", [c for c in chunks.CHUNK_COLUMNS if c != "blob_hash"])
    engine = sa.create_engine(empty_db_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0007_composed_digests")
    finally:
        engine.dispose()
    foreign_keys, _ = _schema(empty_db_url)
    assert sorted(fk["name"] for fk in foreign_keys) == [
        "fk_row_effects_transformation_id_transformations", "fk_row_effects_version_id_versions"]
    old = open_for_upgrade(empty_db_url, actor="old-lineage")
    try:
        h = _write_history(old)
        head = list_events(old)[0].digest  # (verify_store reads every chunk column of today)
        poisoned = h["trigger"].poisoned_row_ids[0]
        trace_before = trace_row(old, poisoned)
        diff_before = version_diff(old, h["root"], h["trigger"].version_id)
    finally:
        old.close()
    effects = _effects(empty_db_url)
    assert len(effects) > 3 + 2

    monkeypatch.undo()
    result = empty_cli("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert f"-> {head_revision()}" in result.output
    foreign_keys, indexes = _schema(empty_db_url)
    assert foreign_keys == [] and indexes == INDEXES
    assert _effects(empty_db_url) == effects
    _assert_guarded(empty_db_url)
    store = open_store(empty_db_url, actor="new-lineage")
    try:
        assert verify_store(store).head_digest == head
        assert trace_row(store, poisoned) == trace_before
        diff = version_diff(store, h["root"], h["trigger"].version_id)
        assert [getattr(diff, k).tolist() for k in ("added", "removed", "relabelled_ids")] == [
            getattr(diff_before, k).tolist() for k in ("added", "removed", "relabelled_ids")]
        relabel_rows(store, version=h["trigger"].version_id, rows="20", to=3, reason="after")
        verify_store(store)
    finally:
        store.close()
    _forge_effect(empty_db_url, 777, 1)
    assert empty_cli("verify").exit_code == 5
