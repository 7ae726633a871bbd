"""Composed content digests (lineage.data.digests): a version's digest is a Merkle root over its
chunks' leaves, a commit re-leafs only the chunks it touches, older flat digests keep verifying,
and the attacks an attacker with database access can try on the new scheme (swap a chunk, swap
label overrides, reorder chunks, re-anchor forged records) are caught by load and by verify."""

import hashlib
import json
from datetime import datetime

import numpy as np
import pytest

from lineage.data import digests
from lineage.data.deltas import materialize, merkle_digest
from lineage.data.digests import SCHEME_MERKLE, flat_digest, leaves_from_blob
from lineage.data.ingest import ingest_arrays
from lineage.data.integrity import verify_all
from lineage.data.sources import add_source
from lineage.data.transforms import append_ingest, relabel_rows
from lineage.errors import IntegrityError
from lineage.review.snapshots import (
    create_snapshot,
    find_snapshot,
    manifest_digest,
    read_snapshot_rows,
)
from lineage.store.chain import canonical, event_digest, record_digest
from lineage.store.chunks import CHUNK_ROWS
from lineage.store.engine import open_store
from lineage.store.merkle import leaf_hash, node_hash
from lineage.store.tables import Dataset, Version
from storeutil import drop_guards, raw_connect, raw_execute

N = 3 * CHUNK_ROWS  # three full chunks: rows 1..8192, 8193..16384, 16385..24576


def _three_chunks(url: str) -> None:
    """v1 the ingest (row r has label (r - 1) % 3); v2 relabels row 8200 (0 -> 2); v3 relabels
    row 8201 (1 -> 0); snapshot "s" of v3."""
    store = open_store(url, actor="tester")
    try:
        add_source(store, "lab", kind="internal")
        X = np.random.default_rng(0).integers(0, 4, size=(N, 4), dtype=np.uint8)
        ingest_arrays(store, X, np.arange(N) % 3, source="lab", value_range=(0, 3))
        relabel_rows(store, version="v1", rows=[8200], to=2, reason="fix")
        relabel_rows(store, version="v2", rows=[8201], to=0, reason="fix")
        create_snapshot(store, "s", version="v3")
    finally:
        store.close()


pytestmark = pytest.mark.store_setup.with_args(_three_chunks)


def _sql(url: str, sql: str) -> str:
    return sql if url.startswith("sqlite") else sql.replace("?", "%s")


def _row(url: str, table: str, record_id: int) -> dict:
    conn = raw_connect(url)
    try:
        cur = conn.execute(_sql(url, f"SELECT * FROM {table} WHERE id = ?"), (record_id,))
        names = [d[0] for d in cur.description]
        row = {k: (bytes(v) if isinstance(v, memoryview) else v)
               for k, v in zip(names, cur.fetchone())}
    finally:
        conn.close()
    if isinstance(row.get("created_at"), str):  # SQLite hands back text
        row["created_at"] = datetime.fromisoformat(row["created_at"])
    return row


def _forge(url: str, table: str, values: dict) -> str:
    """Write ``values`` over the record with their id, with a record digest recomputed as
    lineage computes it (the attacker knows the algorithm); returns that digest."""
    values = dict(values)
    values["record_digest"] = record_digest(table, values)
    drop_guards(url, table)
    sets = ", ".join(f"{k} = ?" for k in values if k != "id")
    raw_execute(url, f"UPDATE {table} SET {sets} WHERE id = ?",
                [v for k, v in values.items() if k != "id"] + [values["id"]])
    return values["record_digest"]


def _relist_at_head(url: str, table: str, record_id: int, digest: str) -> int:
    """A well-formed event appended at the chain's head that lists the forged record again
    (its digest recomputes, it follows the head); returns its id."""
    conn = raw_connect(url)
    try:
        event_id, prev = conn.execute("SELECT id, digest FROM events ORDER BY id DESC LIMIT 1").fetchone()
    finally:
        conn.close()
    at = datetime(2026, 12, 2, 4, 0, 0)
    payload = canonical({"summary": "forged", "records": {table: [[record_id, digest]]}})
    d = event_digest(id=event_id + 1, prev_digest=prev, kind="forged", actor="mallory",
                     created_at=at, payload=payload)
    raw_execute(url, "INSERT INTO events (id, prev_digest, digest, kind, actor, created_at, payload) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", (event_id + 1, prev, d, "forged", "mallory", at, payload))
    return event_id + 1


def _reanchor(url: str, table: str, record_id: int, digest: str) -> None:
    """The chain rewritten from the forged record's listing on: the event that listed it lists
    ``digest`` instead, and every later event is linked again, its digest recomputed. The chain
    has no secret, so the record checks pass and only the content digests (and ``verify
    --expect`` with a head noted before) can tell. A listing appended at the head instead is
    refused by verify, which keeps a record's first listing (test_a_record_listed_again_...)."""
    conn = raw_connect(url)
    try:
        ids = [r[0] for r in conn.execute("SELECT id FROM events ORDER BY id").fetchall()]
    finally:
        conn.close()
    drop_guards(url, "events")
    prev, found = None, False
    for event_id in ids:
        ev = _row(url, "events", event_id)
        if not found:
            p = json.loads(ev["payload"])
            entries = p.get("records", {}).get(table, []) if isinstance(p, dict) else []
            if any(i == record_id for i, _ in entries):
                p["records"][table] = [[i, digest if i == record_id else d] for i, d in entries]
                ev["payload"], found = canonical(p), True
        if not found:
            continue
        if prev is not None:
            ev["prev_digest"] = prev
        prev = event_digest(id=ev["id"], prev_digest=ev["prev_digest"], kind=ev["kind"],
                            actor=ev["actor"], created_at=ev["created_at"], payload=ev["payload"])
        raw_execute(url, "UPDATE events SET payload = ?, prev_digest = ?, digest = ? WHERE id = ?",
                    (ev["payload"], ev["prev_digest"], prev, ev["id"]))
    assert found, f"no event lists {table} record {record_id}"


def _load(store, name: str = "s"):
    with store.read() as session:
        return read_snapshot_rows(session, find_snapshot(session, name))


def test_the_digest_is_the_documented_merkle_root(store):
    """Recomputed here from the definition in the digests module's docstring, by hand."""
    conn = raw_connect(store.url)
    try:
        chunks = conn.execute("SELECT id, first_row_id, n_rows, labels, record_digest FROM chunks "
                              "ORDER BY first_row_id").fetchall()
    finally:
        conn.close()
    leaves = []
    for _, first, n, labels, digest in chunks:
        stored = np.frombuffer(bytes(labels), dtype="<i8")
        override = {8200: 2, 8201: 0}
        offs = [r - first for r in sorted(override) if first <= r < first + n
                and stored[r - first] != override[r]]
        body = (digest.encode() + n.to_bytes(4, "little")
                + np.packbits(np.ones(n, dtype=bool), bitorder="little").tobytes()
                + len(offs).to_bytes(4, "little") + np.array(offs, dtype="<u4").tobytes()
                + np.array([override[o + first] for o in offs], dtype="<i8").tobytes())
        leaves.append(leaf_hash(b"lineage-leaf-v2\0" + body))
    root = node_hash(node_hash(leaves[0], leaves[1]), leaves[2])  # RFC 9162 split of 3 leaves
    expected = hashlib.sha256(b"lineage-version-v2\0" + json.dumps(
        {"chunks": 3, "n_rows": N, "root": root.hex()}, separators=(",", ":")).encode()).hexdigest()
    with store.read() as session:
        v3 = session.get(Version, 3)
        assert (v3.digest_scheme, v3.content_digest) == (SCHEME_MERKLE, expected)
        assert find_snapshot(session, "s").content_digest == expected


def test_a_relabel_re_leafs_only_the_chunk_it_touches(store, monkeypatch):
    made = []
    real = digests.chunk_leaf
    monkeypatch.setattr("lineage.data.transforms.chunk_leaf",
                        lambda *a: made.append(a[0]) or real(*a))
    r = relabel_rows(store, version="v3", rows=[20000, 20001], to=1, reason="fix")
    assert len(made) == 1  # chunk 3 only
    with store.read() as session:
        v = session.get(Version, r.version_id)
        m = materialize(session, v, keep_stored=True)
        # The same digest as one worked out from the whole version.
        assert merkle_digest(session, session.get(Dataset, v.dataset_id), m)[0] == v.content_digest
    assert verify_all(store).versions == 4


def test_the_digest_follows_the_content_not_the_history(store):
    back = relabel_rows(store, version="v3", rows=[8200, 8201], to=1, reason="undo")
    # Row 8201's stored label is 1: its override is gone, row 8200 is now 1 instead of 2.
    again = relabel_rows(store, version=back.version_id, rows=[8200], to=0, reason="undo")
    with store.read() as session:
        assert again.content_digest == session.get(Version, 1).content_digest


def test_swapping_one_chunk_is_caught_by_load_and_verify(store):
    third = _row(store.url, "chunks", 3)
    second = _row(store.url, "chunks", 2)
    _forge(store.url, "chunks", {**second, "features": third["features"], "labels": third["labels"]})
    with pytest.raises(IntegrityError, match=r"chunk 2 \(rows 8193\.\.16384\) does not match the "
                                             "digest the snapshot was frozen with"):
        _load(store)
    with pytest.raises(IntegrityError, match=r"^chunks record 2 \(rows 8193\.\.16384\) was changed"):
        verify_all(store)


def test_reordering_chunks_is_caught_by_load_and_verify(store):
    one, two = _row(store.url, "chunks", 1), _row(store.url, "chunks", 2)
    _forge(store.url, "chunks", {**one, "features": two["features"], "labels": two["labels"]})
    _forge(store.url, "chunks", {**two, "features": one["features"], "labels": one["labels"]})
    with pytest.raises(IntegrityError, match=r"chunk [12] .* does not match the digest the snapshot"):
        _load(store)
    with pytest.raises(IntegrityError, match=r"^chunks record 1 .* was changed"):
        verify_all(store)


def test_reordered_leaves_re_anchored_are_caught_by_verify(store):
    v3 = _row(store.url, "versions", 3)
    ids, leaves = leaves_from_blob(v3["chunk_leaves"])
    swapped = b"".join(int(c).to_bytes(8, "little") + leaf
                       for c, leaf in zip(ids[[1, 0, 2]], [leaves[1], leaves[0], leaves[2]]))
    _reanchor(store.url, "versions", 3, _forge(store.url, "versions", {**v3, "chunk_leaves": swapped}))
    for fast in (False, True):
        with pytest.raises(IntegrityError, match=r"^version v3: its content digest is not the "
                                                 "Merkle root of its recorded leaves"):
            verify_all(store, fast=fast)


def test_swapped_label_overrides_are_caught_by_load_and_verify(store):
    snap = _row(store.url, "snapshots", 1)
    labels = np.frombuffer(snap["override_labels"], dtype="<i8")[::-1].tobytes()  # [2, 0] -> [0, 2]
    forged = {**snap, "override_labels": labels}
    forged["manifest_digest"] = manifest_digest(
        dataset_id=snap["dataset_id"], n_rows=snap["n_rows"], content=snap["content_digest"],
        runs=snap["row_runs"], override_ids=snap["override_ids"], override_labels=labels,
        chunks=snap["chunk_digests"])
    _reanchor(store.url, "snapshots", 1, _forge(store.url, "snapshots", forged))
    with pytest.raises(IntegrityError, match=r"rows, chunks and overrides do not compose to its "
                                             "content digest"):
        _load(store)
    # In the version: its relabel set to another label, record and chain forged to match.
    v3 = _row(store.url, "versions", 3)
    _reanchor(store.url, "versions", 3, _forge(store.url, "versions", {
        **v3, "relabel_labels": np.array([2], dtype="<i8").tobytes()}))
    with pytest.raises(IntegrityError, match=r"^version v3: its rows, labels or chunks no longer "
                                             "compose to its content digest"):
        verify_all(store)


def test_older_flat_versions_keep_verifying(store):
    """A version as lineage wrote it before migration 0007: flat digest, no scheme, no leaves."""
    with store.read() as session:
        m = materialize(session, session.get(Version, 1))
    with store.write() as tx:
        v = tx.add(Version(dataset_id=1, parent_id=None, ingest_id=1, n_rows=N,
                           content_digest=flat_digest(m.row_ids, m.X, m.y),
                           removed_ids=b"", added_ids=m.row_ids.astype("<i8").tobytes(),
                           added_labels=None, relabel_ids=b"", relabel_labels=b""))
        tx.event("test.old_version", "a version written the old way")
    values = _row(store.url, "versions", v.id)
    assert values["digest_scheme"] is None and values["chunk_leaves"] is None
    # NULL late columns are left out: the digest an older lineage computed, without them.
    assert record_digest("versions", {k: values[k] for k in values
                                      if k not in ("digest_scheme", "chunk_leaves")}) \
        == values["record_digest"]
    assert verify_all(store).versions == 4
    create_snapshot(store, "old", version=f"v{v.id}")
    assert len(_load(store, "old")[0]) == N
    r = relabel_rows(store, version=f"v{v.id}", rows=[5], to=2, reason="fix")  # scheme 2 child
    assert verify_all(store).versions == 5 and r.content_digest != values["content_digest"]
    _reanchor(store.url, "versions", v.id, _forge(store.url, "versions", {
        **values, "content_digest": "0" * 64}))
    with pytest.raises(IntegrityError, match=rf"^version v{v.id}: its rows no longer match its "
                                             r"content digest \(flat, scheme 1\)"):
        verify_all(store)


def test_a_record_listed_again_at_the_head_is_refused_by_verify(store, cli):
    """A record rewritten and listed again, with its new digest, by a well-formed event
    appended at the head (the chain has no secret): verify keeps the first listing, as the
    reads do (log.chain_listings), and names both events."""
    root = _row(store.url, "versions", 1)
    forged = _forge(store.url, "versions", {**root, "n_rows": root["n_rows"] - 1})
    event_id = _relist_at_head(store.url, "versions", 1, forged)
    for fast in (False, True):
        with pytest.raises(IntegrityError, match=rf"^versions record 1 is listed by event \d+ and "
                                                 rf"again, with another digest, by event "
                                                 rf"{event_id} \(forged\): records are "
                                                 r"append-only$"):
            verify_all(store, fast=fast)
    r = cli("verify")
    assert r.exit_code == 5 and r.output.startswith("Error: versions record 1 is listed"), r.output


def test_a_root_holds_its_ingests_rows_once(store):
    """An ingest's root version adds exactly the ingest's rows: the ingest record holds the
    range, the root an empty id blob (an older root's full list keeps verifying). Forging the
    ingest's range, re-anchored, is caught by verify (a snapshot reads its own manifest): its
    chunks no longer tile it."""
    root, ingest = _row(store.url, "versions", 1), _row(store.url, "ingests", 1)
    assert root["added_ids"] == b"" and (ingest["first_row_id"], ingest["n_rows"]) == (1, N)
    with store.read() as session:
        assert materialize(session, session.get(Version, 1)).row_ids.tolist() == list(range(1, N + 1))
    assert verify_all(store).versions == 3
    # A root as lineage wrote it before: the same range listed in its blob.
    _reanchor(store.url, "versions", 1, _forge(store.url, "versions", {
        **root, "added_ids": np.arange(1, N + 1, dtype="<i8").tobytes()}))
    assert verify_all(store).versions == 3
    _reanchor(store.url, "versions", 1, _forge(store.url, "versions", {
        **root, "added_ids": np.arange(2, N + 2, dtype="<i8").tobytes()}))
    with pytest.raises(IntegrityError, match=r"^version v1: its rows are not those of ingest 1$"):
        verify_all(store)
    _reanchor(store.url, "versions", 1, _forge(store.url, "versions", root))
    assert verify_all(store).versions == 3
    for forged in ({"n_rows": N - 1}, {"first_row_id": 2}):
        _reanchor(store.url, "ingests", 1, _forge(store.url, "ingests", {**ingest, **forged}))
        assert len(_load(store)[0]) == N  # a snapshot's rows are bound by its own manifest
        for fast in (False, True):
            with pytest.raises(IntegrityError, match=r"^chunk \d \(rows \d+\.\.\d+\) lies "
                                                     r"outside the rows of ingest 1$"):
                verify_all(store, fast=fast)
    _reanchor(store.url, "ingests", 1, _forge(store.url, "ingests", {**ingest, "n_rows": N + 1}))
    for fast in (False, True):
        with pytest.raises(IntegrityError, match=rf"^ingest 1: its chunks hold {N} of its {N + 1} "
                                                 "rows$"):
            verify_all(store, fast=fast)


def _two_ingests(url: str) -> None:
    """v1 and v2 the roots of two ingests of M rows each (rows 1..M, M+1..2M); v3 relabels
    row M+1 of v2."""
    store = open_store(url, actor="tester")
    try:
        add_source(store, "lab", kind="internal")
        rng = np.random.default_rng(0)
        for _ in range(2):
            ingest_arrays(store, rng.integers(0, 4, size=(M, 4), dtype=np.uint8),
                          np.arange(M) % 3, source="lab", dataset="d", value_range=(0, 3))
        relabel_rows(store, version="v2", rows=[M + 1], to=2, reason="fix")
    finally:
        store.close()


M = 5000


@pytest.mark.store_setup.with_args(_two_ingests)
@pytest.mark.parametrize("table, record_id, change, why", [
    # onto ingest 1's rows: its chunks no longer lie in its range (check_chunk_origins)
    ("ingests", 2, {"first_row_id": 1}, r"^chunk 2 \(rows 5001\.\.10000\) lies outside the rows "
                                         r"of ingest 2$"),
    # root v2 names ingest 1 (same size), or no ingest: ingest 2 is left without its root
    ("versions", 2, {"ingest_id": 1}, r"^ingest 2 has no root version: lineage writes one with "
                                      r"every ingest$"),
    ("versions", 2, {"ingest_id": None}, r"^ingest 2 has no root version: lineage writes one "
                                         r"with every ingest$"),
])
def test_one_forged_root_record_is_caught_by_fast_verify_too(store, table, record_id, change,
                                                             why):
    """A root's rows are its ingest's range: one forged record (the range, or the root's link
    to its ingest), re-anchored, is caught by verify with and without --fast (the root's leaves
    are rebuilt from the chunk index, no payload read), and reads refuse an unanchored root."""
    from lineage.data.versions import version_members
    from lineage.trace import trace_row

    assert verify_all(store, fast=True).versions == 3
    _reanchor(store.url, table, record_id, _forge(store.url, table, {
        **_row(store.url, table, record_id), **change}))
    for fast in (True, False):
        with pytest.raises(IntegrityError, match=why):
            verify_all(store, fast=fast)
    if change == {"ingest_id": None}:
        with pytest.raises(IntegrityError, match=r"^version v2 has neither a parent version "
                                                 r"nor an ingest$"):
            version_members(store, "v3")
        with pytest.raises(IntegrityError, match=r"^version v2 has neither a parent version "
                                                 r"nor an ingest: run `lineage verify`$"):
            trace_row(store, M + 1)  # was a bare KeyError


def test_the_roots_of_two_ingests_diff_and_show_their_rows(store):
    """Rows of a second ingest into the dataset: a second root, told apart from the first by
    version_diff and version show without either root listing its ids."""
    from lineage.data.versions import show_version
    from lineage.trace import version_diff

    X = np.random.default_rng(1).integers(0, 4, size=(10, 4), dtype=np.uint8)
    info = ingest_arrays(store, X, np.arange(10) % 3, source="lab", dataset=_dataset_name(store))
    assert _row(store.url, "versions", info.version_id)["added_ids"] == b""
    d = version_diff(store, "v1", f"v{info.version_id}")
    assert d.added.tolist() == list(range(N + 1, N + 11))
    assert d.removed.tolist() == list(range(1, N + 1))
    assert show_version(store, f"v{info.version_id}").n_added == 10
    assert show_version(store, "v1").n_added == N


def _dataset_name(store) -> str:
    with store.read() as session:
        return session.get(Dataset, 1).name


def test_verify_fast_reads_no_payload_and_says_so(store, cli):
    second = _row(store.url, "chunks", 2)
    flipped = bytearray(second["features"])
    flipped[7] ^= 1
    drop_guards(store.url, "chunks")
    raw_execute(store.url, "UPDATE chunks SET features = ? WHERE id = 2", (bytes(flipped),))
    result = cli("verify", "--fast")
    assert result.exit_code == 0, result.output
    assert "fast: chunk payloads were not re-read" in result.output
    result = cli("verify")
    assert result.exit_code == 5
    assert result.output.splitlines() == [
        "Error: chunks record 2 (rows 8193..16384) was changed after event 2 recorded it"]


def test_verify_reports_its_rate(cli):
    result = cli("verify")
    assert result.exit_code == 0, result.output
    assert f"{N:,} rows (" in result.output and "MB/s)" in result.output
    report = json.loads(cli("verify", "--json").output)
    assert report["fast"] is False and report["chunk_rows"] == N and report["versions"] == 3


# Migration 0010: a chunk's blobs are hashed with BLAKE3, named by its blob_hash column.

def _by_hand(row: dict, hash_name: str) -> str:
    """A chunk's record digest from the definition (chain's module docstring), by hand."""
    import blake3

    hashes = {"sha256": hashlib.sha256, "blake3": blake3.blake3}
    values = {k: v for k, v in row.items() if k != "record_digest"
              and not (k == "blob_hash" and v is None)}
    for blob in ("features", "labels"):
        values[blob] = {hash_name: hashes[hash_name](row[blob]).hexdigest(), "len": len(row[blob])}
    return hashlib.sha256(json.dumps({"table": "chunks", "values": values}, sort_keys=True,
                                     separators=(",", ":")).encode()).hexdigest()


def test_new_chunks_are_hashed_with_blake3_as_documented(store):
    for chunk_id in (1, 2, 3):
        row = _row(store.url, "chunks", chunk_id)
        assert row["blob_hash"] == "blake3"
        assert _by_hand(row, "blake3") == row["record_digest"]
        assert _by_hand(row, "sha256") != row["record_digest"]


@pytest.mark.parametrize("named", [None, "sha256"])
def test_naming_another_hash_for_a_chunk_is_caught(store, named):
    """The column is in the record: flipping it (to the sha256 of older chunks) changes the
    digest, so no other bytes can be made to match by choosing the function."""
    drop_guards(store.url, "chunks")
    raw_execute(store.url, "UPDATE chunks SET blob_hash = ? WHERE id = 2", (named,))
    with pytest.raises(IntegrityError, match=r"chunk 2 \(rows 8193\.\.16384\) does not match the "
                                             "digest the snapshot was frozen with"):
        _load(store)
    with pytest.raises(IntegrityError, match=r"^chunks record 2 \(rows 8193\.\.16384\) was changed"):
        verify_all(store)


def test_a_chunk_naming_an_unknown_hash_is_one_line_exit_5(store, cli):
    drop_guards(store.url, "chunks")
    raw_execute(store.url, "UPDATE chunks SET blob_hash = 'md5' WHERE id = 2")
    with pytest.raises(IntegrityError, match=r"unknown blob hash 'md5'"):
        _load(store)
    result = cli("verify")
    assert result.exit_code == 5
    assert result.output.splitlines() == [
        "Error: a record names an unknown blob hash 'md5': run `lineage verify`"]


@pytest.mark.parametrize("value, kind", [("CAST(labels AS TEXT)", "text"), ("12345", "integer")])
def test_a_chunk_blob_turned_into_another_type_is_an_integrity_error(store, cli, value, kind):
    """SQLite's dynamic types let a forged record hold text or a number in a blob column: the
    load names the chunk (it used to end in numpy's TypeError), verify exits 5."""
    if not store.url.startswith("sqlite"):
        pytest.skip("PostgreSQL types the column (bytea)")
    drop_guards(store.url, "chunks")
    raw_execute(store.url, f"UPDATE chunks SET labels = {value} WHERE id = 2")
    with pytest.raises(IntegrityError, match=rf"^chunk 2 holds {kind} as its labels, not bytes"):
        _load(store)
    assert cli("verify").exit_code == 5


def test_chunks_hashed_before_0010_keep_verifying_beside_new_ones(store, monkeypatch):
    """Chunks written as lineage wrote them before migration 0010 (sha256, the column NULL and
    left out of the digest) and new BLAKE3 chunks in one store, one version, one snapshot."""
    import lineage.store.chunks as chunks

    monkeypatch.setattr(chunks, "CHUNK_BLOB_HASH", "sha256")
    X = np.random.default_rng(1).integers(0, 4, size=(CHUNK_ROWS + 5, 4), dtype=np.uint8)
    ingest_arrays(store, X, np.arange(len(X)) % 3, source="lab", value_range=(0, 3))
    old = _row(store.url, "chunks", 4)
    assert old["blob_hash"] is None and _by_hand(old, "sha256") == old["record_digest"]
    monkeypatch.undo()
    # One version over both kinds: v3 (BLAKE3 chunks 1-3) with the old-style ingest appended,
    # and a relabel of one row of each.
    both = append_ingest(store, version="v3", ingest=2, reason="batch 2")
    v = relabel_rows(store, version=both.version_id, rows=[5, N + 1], to=2, reason="fix")
    for fast in (False, True):
        assert verify_all(store, fast=fast).versions == 6
    create_snapshot(store, "mixed", version=f"v{v.version_id}")
    ids, Xr, yr = _load(store, "mixed")
    assert len(ids) == N + len(X) and np.array_equal(Xr[N:], X)
    assert yr[4] == 2 and yr[N] == 2
    flipped = bytearray(old["features"])
    flipped[3] ^= 1
    drop_guards(store.url, "chunks")
    raw_execute(store.url, "UPDATE chunks SET features = ? WHERE id = 4", (bytes(flipped),))
    with pytest.raises(IntegrityError, match=r"chunk 4 .* does not match the digest the snapshot"):
        _load(store, "mixed")
    with pytest.raises(IntegrityError, match=r"^chunks record 4 .* was changed"):
        verify_all(store)
