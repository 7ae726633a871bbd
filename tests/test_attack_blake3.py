"""Attacks on BLAKE3 chunk digests (migration 0010: ``chunks.blob_hash`` names the function a
chunk's blobs are hashed with, NULL = sha256 for chunks written before), as an attacker with
write access to the database but no signing key would try them. Each passes when the attack is
stopped; those marked "found in review" failed on the first version of the change (d53a012)."""

import hashlib
import json

import numpy as np
import pytest
from test_digests import _forge, _reanchor, _row

import lineage.store.chunks as chunks_mod
from lineage.data.ingest import ingest_arrays
from lineage.data.integrity import verify_all
from lineage.data.sources import add_source
from lineage.data.transforms import append_ingest, split_version
from lineage.errors import IntegrityError, LineageError
from lineage.review.snapshots import create_snapshot, find_snapshot, read_snapshot_rows
from lineage.store.chain import blob_digest, blob_hash_of, record_digest
from lineage.store.chunks import CHUNK_ROWS, CopyParser, chunk_digest
from lineage.store.engine import open_store
from lineage.store.tables import Chunk
from storeutil import drop_guards, is_sqlite, raw_execute

N = 3 * CHUNK_ROWS  # chunks 1..3: BLAKE3; chunks 4, 5: sha256 (written as before 0010)
M = CHUNK_ROWS + 5


def _build(url: str) -> None:
    """v1: ingest of three BLAKE3 chunks; v2: ingest of two chunks hashed as lineage did before
    0010 (blob_hash NULL, sha256); v3: v1 + ingest 2 (both kinds); snapshot "mixed" of v3;
    "few-test": ~40 rows of v3 (sparse in every chunk), snapshot "few" of it."""
    store = open_store(url, actor="tester")
    try:
        add_source(store, "lab", kind="internal")
        rng = np.random.default_rng(7)
        X = rng.integers(0, 4, size=(N, 4), dtype=np.uint8)
        ingest_arrays(store, X, np.arange(N) % 3, source="lab", value_range=(0, 3))
        saved = chunks_mod.CHUNK_BLOB_HASH
        chunks_mod.CHUNK_BLOB_HASH = "sha256"
        try:
            X2 = rng.integers(0, 4, size=(M, 4), dtype=np.uint8)
            ingest_arrays(store, X2, np.arange(M) % 3, source="lab", value_range=(0, 3))
        finally:
            chunks_mod.CHUNK_BLOB_HASH = saved
        append_ingest(store, version="v1", ingest=2, reason="batch 2")
        create_snapshot(store, "mixed", version="v3")
        split_version(store, version="v3", test_size=40 / (N + M), seed=0, name="few", reason="t")
        create_snapshot(store, "few", version="few-test")
    finally:
        store.close()


pytestmark = pytest.mark.store_setup.with_args(_build)


def _load(store, name="mixed"):
    with store.read() as session:
        return read_snapshot_rows(session, find_snapshot(session, name))


def _set(url: str, chunk_id: int, sql_value: str, params=()) -> None:
    drop_guards(url, "chunks")
    raw_execute(url, f"UPDATE chunks SET blob_hash = {sql_value} WHERE id = {chunk_id}", params)


def _one_line_integrity(fn, match=None):
    with pytest.raises(IntegrityError) as info:
        fn()
    assert "\n" not in str(info.value)
    if match:
        assert match in str(info.value)
    return info.value


# --- the setup itself --------------------------------------------------------------------------

def test_the_store_mixes_both_kinds_and_verifies(store):
    assert [_row(store.url, "chunks", c)["blob_hash"] for c in range(1, 6)] == [
        "blake3", "blake3", "blake3", None, None]
    assert verify_all(store).chunk_rows == N + M
    assert verify_all(store, fast=True).fast
    ids, X, _ = _load(store)
    assert len(ids) == N + M
    assert len(_load(store, "few")[0]) > 0


# --- blob_hash alone changed (the record digest column left as it was) ------------------------

HASH_NAMES = ["BLAKE3", "Blake3", "blake3 ", " blake3", "blake3\n", "blake3\x00", "", "sha256",
              "SHA256", "sha-256", "md5", "sha512", "blake2b", "len", "x" * 16]


@pytest.mark.parametrize("chunk_id", [2, 4], ids=["blake3-chunk", "legacy-chunk"])
def test_any_other_blob_hash_name_is_caught_by_load_create_and_verify(store, chunk_id):
    """Every spelling, case, padding or unknown name is either another record (the column is in
    the digest) or an unknown function: a one-line IntegrityError on every read path. (One
    store for all the names: each only changes the one column again.)"""
    stored = _row(store.url, "chunks", chunk_id)["blob_hash"]
    for name in HASH_NAMES:
        if name == stored or ("\x00" in name and not is_sqlite(store.url)):
            continue  # the stored value; PostgreSQL text holds no NUL
        _set(store.url, chunk_id, "?", (name,))
        _one_line_integrity(lambda: _load(store))
        _one_line_integrity(lambda: verify_all(store))
        # gather_rows(verify=True), the read create_snapshot (and train) goes through
        _one_line_integrity(lambda: create_snapshot(store, "again", version="v3"))


def test_legacy_chunk_claiming_null_is_not_blake3_and_back(store):
    """NULL on a BLAKE3 chunk (as if written before 0010) and 'blake3' on a legacy one."""
    _set(store.url, 1, "NULL")
    _set(store.url, 5, "'blake3'")
    _one_line_integrity(lambda: _load(store), "chunk 1 ")
    err = _one_line_integrity(lambda: verify_all(store))
    assert str(err).startswith("chunks record 1 ")


def test_non_text_blob_hash_values_on_sqlite(store):
    """SQLite is dynamically typed: a blob spelling 'blake3', an empty blob, integers, reals."""
    if not is_sqlite(store.url):
        pytest.skip("PostgreSQL types the column")
    for sql_value in ["X'626c616b6533'", "X''", "0", "0.0", "1", "-1"]:
        _set(store.url, 2, sql_value)
        _one_line_integrity(lambda: _load(store))
        _one_line_integrity(lambda: verify_all(store))


# --- bytes changed, the digest recomputed under a chosen function, the chain re-anchored ------

@pytest.mark.parametrize("chunk_id", [2, 4], ids=["blake3-chunk", "legacy-chunk"])
@pytest.mark.parametrize("claim", [None, "sha256", "blake3"])  # "" cannot even be hashed now
def test_tampered_bytes_with_forged_digest_under_any_function_fail(store, chunk_id, claim):
    """The attacker flips a feature byte, picks the function (blob_hash), recomputes the record
    digest as lineage does and appends a well-formed event anchoring it: the chain and record
    checks pass, but the chunk's digest is a leaf of signed content digests, so the version
    check of verify (full and --fast, through the ingest roots) and the load refuse it."""
    row = _row(store.url, "chunks", chunk_id)
    feats = bytearray(row["features"])
    feats[3] ^= 1
    row["features"] = bytes(feats)
    row["blob_hash"] = claim
    digest = _forge(store.url, "chunks", row)
    _reanchor(store.url, "chunks", chunk_id, digest)
    _one_line_integrity(lambda: _load(store), f"chunk {chunk_id} ")
    for fast in (False, True):
        err = _one_line_integrity(lambda: verify_all(store, fast=fast))
        assert str(err).startswith("version v")


def test_a_forged_chunk_cannot_be_re_leafed_without_the_signed_digest(store):
    """Going further: re-leaf the ingest root over the forged chunk too (the version's
    chunk_leaves and content digest) and re-anchor it: the snapshot's frozen manifest (what an
    approval signs) still names the old chunk digest, so the load refuses."""
    row = _row(store.url, "chunks", 4)
    labs = bytearray(row["labels"])
    labs[0] ^= 1
    row["labels"] = bytes(labs)
    row["blob_hash"] = "blake3"
    _reanchor(store.url, "chunks", 4, _forge(store.url, "chunks", row))
    _one_line_integrity(lambda: _load(store), "chunk 4 ")


# --- --fast, sparse reads ----------------------------------------------------------------------

def test_fast_verify_leaves_blob_hash_unread_like_the_payload(store):
    """Documented limitation, not an attack that returns bad bytes: --fast reads neither the
    payload nor blob_hash, so a changed blob_hash alone is found by a full verify and by every
    load, as a changed payload is."""
    _set(store.url, 2, "'md5'")
    assert verify_all(store, fast=True).fast
    _one_line_integrity(lambda: verify_all(store), "unknown blob hash 'md5'")
    _one_line_integrity(lambda: _load(store), "unknown blob hash 'md5'")


def test_sparse_reads_ignore_blob_hash_but_check_every_byte_they_return(store):
    """A sparse snapshot checks the rows it returns against the rows digest its manifest froze;
    blob_hash changed alone returns the right bytes; a returned byte changed fails whatever
    blob_hash says; verify finds both."""
    with store.read() as session:
        entries = json.loads(find_snapshot(session, "few").chunk_digests)
    assert all(len(e) == 3 for e in entries)  # sparse in every chunk
    ids, X, y = _load(store, "few")
    for chunk_id in (2, 4):
        _set(store.url, chunk_id, "'sha256'" if chunk_id == 2 else "'blake3'")
    ids2, X2, y2 = _load(store, "few")
    assert np.array_equal(X, X2) and np.array_equal(y, y2)
    _one_line_integrity(lambda: verify_all(store))
    # now a returned byte of chunk 4
    with store.read() as session:
        first = session.get(Chunk, 4).first_row_id
    at = int(ids[(ids >= first) & (ids < first + CHUNK_ROWS)][0] - first)
    feats = bytearray(_row(store.url, "chunks", 4)["features"])
    feats[at * 4] ^= 1
    raw_execute(store.url, "UPDATE chunks SET features = ? WHERE id = 4", (bytes(feats),))
    _one_line_integrity(lambda: _load(store, "few"), "chunk 4 ")


# --- the PostgreSQL COPY path --------------------------------------------------------------------

def test_copy_parser_reads_blob_hash_as_text_and_null_as_none():
    columns = ["id", "record_digest", "blob_hash"]
    parser = CopyParser(columns)
    assert parser.kinds == ["int", "text", "text"]
    header = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"

    def row(*fields):
        out = len(fields).to_bytes(2, "big", signed=True)
        for f in fields:
            out += (-1).to_bytes(4, "big", signed=True) if f is None else len(f).to_bytes(4, "big") + f
        return out

    rows = parser.feed(header + row((5).to_bytes(8, "big"), b"ab", b"blake3")
                       + row((6).to_bytes(8, "big"), b"cd", None) + b"\xff\xff")
    assert rows == [(5, "ab", "blake3"), (6, "cd", None)]


def test_copy_parser_non_utf8_text_is_an_integrity_error():
    """Found in review (fixed): a text field that is not UTF-8 (blob_hash, now parsed as text) raises
    UnicodeDecodeError out of CopyParser.feed instead of its 'malformed COPY stream'
    IntegrityError (reachable when the attacker retypes the column, next test)."""
    parser = CopyParser(["id", "blob_hash"])
    header = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
    data = header + (2).to_bytes(2, "big") + (8).to_bytes(4, "big") + (1).to_bytes(8, "big") \
        + (1).to_bytes(4, "big") + b"\xff" + b"\xff\xff"
    with pytest.raises(IntegrityError):
        parser.feed(data)


def test_postgres_blob_hash_retyped_to_bytea_is_one_line_integrity_error(store):
    """Found in review (fixed): the attacker (a PostgreSQL login owning the schema) retypes blob_hash to
    bytea and stores b'\\xff'. The COPY read path selects the column without a cast, so the
    binary COPY hands over the raw byte and the load dies with a UnicodeDecodeError traceback
    instead of a one-line IntegrityError (verify's SQLAlchemy path does say IntegrityError)."""
    if is_sqlite(store.url):
        pytest.skip("PostgreSQL's COPY path")
    drop_guards(store.url, "chunks")
    raw_execute(store.url, "ALTER TABLE chunks ALTER COLUMN blob_hash TYPE bytea "
                "USING convert_to(blob_hash, 'UTF8')")
    raw_execute(store.url, "UPDATE chunks SET blob_hash = '\\xff'::bytea WHERE id = 2")
    _one_line_integrity(lambda: verify_all(store))
    _one_line_integrity(lambda: _load(store))


def test_postgres_blob_hash_retyped_to_integer_is_caught(store):
    if is_sqlite(store.url):
        pytest.skip("PostgreSQL's COPY path")
    drop_guards(store.url, "chunks")
    raw_execute(store.url, "ALTER TABLE chunks ALTER COLUMN blob_hash TYPE integer USING 7")
    _one_line_integrity(lambda: _load(store))
    _one_line_integrity(lambda: verify_all(store))


def test_postgres_varchar16_refuses_longer_names(store):
    if is_sqlite(store.url):
        pytest.skip("SQLite does not enforce lengths")
    import psycopg

    drop_guards(store.url, "chunks")
    with pytest.raises(psycopg.errors.StringDataRightTruncation):
        raw_execute(store.url, "UPDATE chunks SET blob_hash = ? WHERE id = 2", ("blake3" + "x" * 11,))
    # (trailing spaces past 16 are cut silently by PostgreSQL, giving another, caught, name)
    raw_execute(store.url, "UPDATE chunks SET blob_hash = ? WHERE id = 2", ("blake3" + " " * 11,))
    _one_line_integrity(lambda: _load(store))


# --- very long names ---------------------------------------------------------------------------

def test_a_very_long_blob_hash_is_one_line_exit_5(store, cli):
    """SQLite ignores String(16) (PostgreSQL: the attacker widens the column): 1 MB of name."""
    if not is_sqlite(store.url):
        raw_execute(store.url, "ALTER TABLE chunks ALTER COLUMN blob_hash TYPE text")
    _set(store.url, 2, "?", ("b" * 1_000_000,))
    _one_line_integrity(lambda: _load(store), "unknown blob hash")
    result = cli("verify")
    assert result.exit_code == 5
    assert len(result.output.splitlines()) == 1


def test_a_very_long_blob_hash_is_not_echoed_whole():
    """Found in review (fixed): the IntegrityError repeats the whole stored name (here 1 MB; the column
    is String(16), unenforced on SQLite): an attacker-chosen, unbounded error line in logs and
    terminals."""
    with pytest.raises(IntegrityError) as info:
        blob_hash_of({"blob_hash": "b" * 1_000_000})
    assert len(str(info.value)) < 500


# --- blob_hash_of / record_digest / add_rows -------------------------------------------------

@pytest.mark.parametrize("value", ["", b"", 0, 0.0, False], ids=repr)
def test_a_falsy_blob_hash_is_not_taken_for_sha256(value):
    """Found in review (fixed): ``values.get("blob_hash") or "sha256"`` takes any falsy value ('' and, on
    SQLite's dynamic types, b'', 0, 0.0) for sha256, though only NULL means sha256 and the
    docstring says an unknown name is an IntegrityError, not a guess. Not exploitable (the value
    is in the record digest, so it is another record), but a record lineage never writes then
    re-hashes cleanly instead of being named malformed."""
    with pytest.raises(IntegrityError):
        blob_hash_of({"blob_hash": value})


def test_record_digest_of_equal_bytes_differs_by_function_and_column():
    base = {"id": 1, "dataset_id": 1, "first_row_id": 1, "n_rows": 1, "features": b"\x01",
            "labels": b"\x00" * 8, "ingest_id": 1, "transformation_id": None,
            "record_digest": "0" * 64}
    seen = {record_digest("chunks", {**base, "blob_hash": h}) for h in (None, "sha256", "blake3")}
    assert len(seen) == 3
    # chunk_digest (the read paths') and record_digest (verify's) agree under each function
    for h in (None, "sha256", "blake3"):
        v = {**base, "blob_hash": h}
        feats, labs = v.pop("features"), v.pop("labels")
        assert chunk_digest(v, feats, labs) == record_digest("chunks", {**base, "blob_hash": h})


def test_other_tables_blobs_stay_sha256():
    """Only chunks name a function: another table's blob is hashed with sha256."""
    from lineage.store.chain import canonical

    v = {"id": 1, "data": b"abc"}
    by_hand = hashlib.sha256(canonical({"table": "artifact_chunks", "values": {
        "id": 1, "data": {"sha256": hashlib.sha256(b"abc").hexdigest(), "len": 3}}}).encode())
    assert record_digest("artifact_chunks", v) == by_hand.hexdigest()


def test_add_rows_refuses_blobs_hashed_ahead_with_another_function(store):
    """A caller hashing ahead with sha256 while the rows say blake3 (or the reverse) is refused,
    not recorded with a digest of the wrong function."""
    with store.read() as session:
        from lineage.store.tables import Dataset

        ds = session.get(Dataset, 1)
        session.expunge(ds)
    X = np.zeros((3, 4), dtype=np.uint8)
    y = np.zeros(3, dtype=np.int64)
    wrong = [{"features": blob_digest(memoryview(X).cast("B"), "sha256"),
              "labels": blob_digest(memoryview(y).cast("B"), "sha256")}]
    with pytest.raises(LineageError, match="hashed ahead"):
        with store.write() as tx:
            chunks_mod.write_chunks(tx, ds, X, y, ingest_id=None, transformation_id=None,
                                    progress=None, digests=wrong)


# --- migrations --------------------------------------------------------------------------------

def test_dropping_the_column_and_restamping_0009_does_not_launder_blake3_chunks(store):
    """The attacker drops blob_hash and stamps the store back to 0009 so an upgrade re-adds
    the column NULL (sha256) for every chunk: the BLAKE3 chunks then fail verify and the load,
    rather than being re-read under the other function."""
    from lineage.store.engine import open_for_upgrade, upgrade_store

    drop_guards(store.url, "chunks")
    raw_execute(store.url, "ALTER TABLE chunks DROP COLUMN blob_hash")
    raw_execute(store.url, "UPDATE alembic_version SET version_num = '0009_roots_hold_no_ids'")
    store.close()
    up = open_for_upgrade(store.url)
    try:
        upgrade_store(up)
    finally:
        up.close()
    again = open_store(store.url, actor="tester")
    try:
        assert _row(again.url, "chunks", 1)["blob_hash"] is None
        _one_line_integrity(lambda: verify_all(again), "chunks record 1 ")
        _one_line_integrity(lambda: _load(again), "chunk 1 ")
    finally:
        again.close()


def test_blob_hash_is_guarded_by_the_append_only_triggers(store):
    """The column added by ADD COLUMN is under the table's whole-row UPDATE triggers."""
    from storeutil import refusal_error

    with pytest.raises(refusal_error(store.url)):
        raw_execute(store.url, "UPDATE chunks SET blob_hash = NULL WHERE id = 1")
