"""`lineage verify` recomputes the chain and every content digest, and names what an attacker
with direct write access to the database changed (after dropping the append-only triggers)."""

import pytest

from lineage.data.ingest import ingest_digits
from lineage.data.sources import add_source
from lineage.errors import IntegrityError
from lineage.review.source_reviews import review_source
from lineage.store.chain import record_digest
from lineage.store.engine import open_store
from lineage.store.verify import verify_store
from storeutil import drop_guards, raw_connect, raw_execute


def _fill(url: str) -> None:
    """Events: 1 source.add (sklearn-digits), 2 ingest, 3 source.add (crowd), 4 source.review."""
    store = open_store(url, actor="tester")
    try:
        ingest_digits(store)
        add_source(store, "crowd", kind="crowdsourced", uri="s3://vendor/batch7.csv",
                   license="CC-BY-4.0")
        review_source(store, "crowd", decision="approve", reason="license checked")
    finally:
        store.close()


# Each test's store (and cli) is a copy of the one `_fill` made, but for the fresh-store test.
pytestmark = pytest.mark.store_setup.with_args(_fill)  # (a lone function arg would be marked)


@pytest.fixture
def filled(store):
    """The store `_fill` wrote (a copy of its own)."""
    return store


def _fetch(url: str, sql: str):
    conn = raw_connect(url)
    try:
        return conn.execute(sql).fetchone()
    finally:
        conn.close()


def _assert_cli_names(cli, message: str) -> None:
    result = cli("verify")
    assert result.exit_code == 5
    assert result.output.splitlines() == [f"Error: {message}"]


@pytest.mark.store_setup(None)
def test_fresh_and_filled_stores_verify(store, cli):
    report = verify_store(store)
    assert (report.events, report.records) == (0, 0)
    ingest_digits(store)
    report = verify_store(store)
    # source + dataset + ingest + one chunk (1797 rows) + root version
    assert (report.events, report.records) == (2, 5)
    result = cli("verify")
    assert result.exit_code == 0
    assert result.output.startswith(f"OK: 2 events and 5 records verified; chain head "
                                    f"{report.head_digest[:16]}")


def test_flipped_byte_in_a_chunk_is_named(filled, cli):
    url = filled.url
    features = bytearray(_fetch(url, "SELECT features FROM chunks WHERE id = 1")[0])
    features[1000] ^= 0x01
    drop_guards(url, "chunks")
    raw_execute(url, "UPDATE chunks SET features = ? WHERE id = 1", (bytes(features),))
    message = "chunks record 1 (rows 1..1797) was changed after event 2 recorded it"
    with pytest.raises(IntegrityError, match=rf"^{message}$".replace("(", r"\(").replace(")", r"\)")):
        verify_store(filled)
    _assert_cli_names(cli, message)


def test_chunk_edit_with_recomputed_record_digest_is_still_named(filled):
    url = filled.url
    conn = raw_connect(url)
    cols = ["id", "dataset_id", "first_row_id", "n_rows", "features", "labels", "ingest_id",
            "transformation_id", "record_digest"]
    row = dict(zip(cols, conn.execute(f"SELECT {', '.join(cols)} FROM chunks WHERE id = 1").fetchone()))
    conn.close()
    labels = bytearray(row["labels"])
    labels[0] = 7  # relabel row 1 as a 7
    row["labels"] = bytes(labels)
    forged = record_digest("chunks", row)
    drop_guards(url, "chunks")
    raw_execute(url, "UPDATE chunks SET labels = ?, record_digest = ? WHERE id = 1",
                (bytes(labels), forged))
    with pytest.raises(IntegrityError, match=r"^chunks record 1 \(rows 1\.\.1797\) was changed "
                                             r"after event 2 recorded it$"):
        verify_store(filled)


def test_edited_event_payload_is_named(filled, cli):
    url = filled.url
    payload = _fetch(url, "SELECT payload FROM events WHERE id = 2")[0]
    assert '"n_rows":1797' in payload
    drop_guards(url, "events")
    raw_execute(url, "UPDATE events SET payload = ? WHERE id = 2",
                (payload.replace('"n_rows":1797', '"n_rows":1796'),))
    message = "event chain broken at event 2 (ingest): its content does not match its digest"
    with pytest.raises(IntegrityError, match=rf"^{message}$".replace("(", r"\(").replace(")", r"\)")):
        verify_store(filled)
    _assert_cli_names(cli, message)


def test_deleted_record_is_named_missing(filled, cli):
    drop_guards(filled.url, "source_reviews")
    raw_execute(filled.url, "DELETE FROM source_reviews WHERE id = 1")
    message = ("source_reviews record 1, recorded by event 4, is missing (deleted behind the "
               "store's back)")
    with pytest.raises(IntegrityError, match=r"^source_reviews record 1, recorded by event 4, is missing"):
        verify_store(filled)
    _assert_cli_names(cli, message)


def test_deleted_event_is_named(filled):
    drop_guards(filled.url, "events")
    raw_execute(filled.url, "DELETE FROM events WHERE id = 3")
    with pytest.raises(IntegrityError, match=r"^event chain broken: event 3 is missing \(next is 4\)$"):
        verify_store(filled)


def test_changed_source_license_is_named(filled, cli):
    drop_guards(filled.url, "sources")
    raw_execute(filled.url, "UPDATE sources SET license = 'MIT' WHERE name = 'crowd'")
    message = "sources record 2 was changed after event 3 recorded it"
    with pytest.raises(IntegrityError, match=rf"^{message}$"):
        verify_store(filled)
    _assert_cli_names(cli, message)


def test_record_inserted_behind_the_stores_back_is_named(filled):
    row = ("mallory-data", "internal", "x", "2026-01-01 00:00:00", "0" * 64)
    raw_execute(filled.url, "INSERT INTO sources (id, name, kind, actor, created_at, record_digest) "
                            "VALUES (3, ?, ?, ?, ?, ?)", row)
    with pytest.raises(IntegrityError, match=r"^sources record 3 is not recorded in the event chain "
                                             r"\(inserted behind the store's back\)$"):
        verify_store(filled)


def test_cut_off_newest_history_needs_a_noted_head(filled, cli):
    head = verify_store(filled).head_digest
    # The attacker removes the newest write whole: event 4, the review it recorded and the
    # review's signed attestation.
    for table in ("events", "source_reviews", "attestations"):
        drop_guards(filled.url, table)
    raw_execute(filled.url, "DELETE FROM attestations WHERE record_table = 'source_reviews'")
    raw_execute(filled.url, "DELETE FROM source_reviews WHERE id = 1")
    raw_execute(filled.url, "DELETE FROM events WHERE id = 4")
    assert verify_store(filled).events == 3  # a shorter chain is still a valid chain...
    message = f"no event has the expected digest {head[:16]}: the chain was truncated or rewritten (it has 3 events)"
    with pytest.raises(IntegrityError, match=rf"^{message.replace('(', '[(]').replace(')', '[)]')}$"):
        verify_store(filled, expect=head[:16])  # ...but not the one noted before
    result = cli("verify", "--expect", head[:16])
    assert (result.exit_code, result.output) == (5, f"Error: {message}\n")


def test_expect_must_look_like_a_digest(filled, cli):
    result = cli("verify", "--expect", "abc")
    assert (result.exit_code, result.output) == (
        2, "Error: --expect 'abc': give a chain head digest (at least 12 hex digits, as `lineage "
           "verify` prints it)\n")
    head = verify_store(filled).head_digest
    assert cli("verify", "--expect", head.upper()).exit_code == 0
