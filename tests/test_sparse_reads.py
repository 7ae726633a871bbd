"""A snapshot that takes few rows of a chunk reads just those rows (lineage.store.sparse), not
the chunk whole, and checks every byte it returns: against the digest of those rows its
manifest froze, and the chunk's record digest against the manifest's. Attacks: a changed byte
in a returned row or label, a forged rows digest; a changed byte in a row it does not return is
not its business (it returns none of it) but verify's."""

import json

import numpy as np
import pytest

from lineage.data.ingest import ingest_arrays
from lineage.data.integrity import verify_all
from lineage.data.sources import add_source
from lineage.data.transforms import relabel_rows, split_version
from lineage.errors import IntegrityError
from lineage.review.snapshots import create_snapshot, find_snapshot, read_snapshot_rows
from lineage.store.chunks import CHUNK_ROWS
from lineage.store.engine import open_store
from storeutil import drop_guards, raw_connect, raw_execute

N = 3 * CHUNK_ROWS
D = 4


def _data():
    rng = np.random.default_rng(0)
    return rng.integers(0, 16, size=(N, D), dtype=np.uint8), rng.integers(0, 10, size=N)


def _small_snapshot(url: str) -> None:
    """v1: three chunks; "few-test": ~60 rows spread over them, one relabelled; snapshot
    "few" of it (sparse in every chunk) and "all" of v1 (whole chunks)."""
    store = open_store(url, actor="tester")
    try:
        add_source(store, "lab", kind="internal")
        X, y = _data()
        ingest_arrays(store, X, y, source="lab", value_range=(0, 15))
        split_version(store, version="v1", test_size=60 / N, seed=0, name="few", reason="t")
        with store.read() as session:
            from lineage.data.datasets import find_version
            from lineage.data.deltas import member_labels

            ids = member_labels(session, find_version(session, "few-test"))[0]
        relabel_rows(store, version="few-test", rows=[int(ids[5])], to=int(y[ids[5] - 1] + 1) % 10,
                     reason="fix", name="few-fixed")
        create_snapshot(store, "few", version="few-fixed")
        create_snapshot(store, "all", version="v1")
    finally:
        store.close()


pytestmark = pytest.mark.store_setup.with_args(_small_snapshot)


def _read(store, name="few"):
    with store.read() as session:
        return read_snapshot_rows(session, find_snapshot(session, name))


def _entries(store, name="few"):
    with store.read() as session:
        return json.loads(find_snapshot(session, name).chunk_digests)


def _sql(url: str, sql: str) -> str:
    return sql if url.startswith("sqlite") else sql.replace("?", "%s")


def _blob(url: str, chunk_id: int, column: str) -> bytes:
    conn = raw_connect(url)
    try:
        return bytes(conn.execute(_sql(url, f"SELECT {column} FROM chunks WHERE id = ?"),
                                  (chunk_id,)).fetchone()[0])
    finally:
        conn.close()


def _overwrite(url: str, chunk_id: int, column: str, data: bytes) -> None:
    """Swap a chunk's blob in place, its record digest left as it was."""
    drop_guards(url, "chunks")
    raw_execute(url, f"UPDATE chunks SET {column} = ? WHERE id = ?", (data, chunk_id))


def test_a_few_rows_of_a_chunk_are_read_alone_and_right(store, monkeypatch):
    entries = _entries(store)
    assert len(entries) == 3 and all(len(e) == 3 for e in entries)  # a rows digest each
    assert all(len(e) == 2 for e in _entries(store, "all"))  # whole chunks: none
    ids, X, y = _read(store)
    # The whole-chunk read of the same manifest gives the same rows and labels.
    monkeypatch.setattr("lineage.review.snapshots.can_read_sparse", lambda session: False)
    ids2, X2, y2 = _read(store)
    assert np.array_equal(ids, ids2) and np.array_equal(X, X2) and np.array_equal(y, y2)
    Xall, yall = _data()
    assert np.array_equal(X, Xall[ids - 1])
    assert (y != yall[ids - 1]).sum() == 1  # the relabelled row, its override applied
    monkeypatch.undo()
    monkeypatch.setattr("lineage.review.snapshots.read_chunk_rows",
                        lambda *a: pytest.fail("a sparse snapshot fetched whole chunks"))
    assert np.array_equal(_read(store)[1], X)


@pytest.mark.parametrize("column", ["features", "labels"])
def test_a_changed_byte_in_a_returned_row_is_caught(store, column):
    ids, _, _ = _read(store)
    chunk_id, first = 2, CHUNK_ROWS + 1
    taken = int(ids[np.searchsorted(ids, first)]) - first  # a row of chunk 2 the snapshot holds
    width = D if column == "features" else 8
    data = bytearray(_blob(store.url, chunk_id, column))
    data[taken * width] ^= 1
    _overwrite(store.url, chunk_id, column, bytes(data))
    with pytest.raises(IntegrityError, match=rf"^snapshot 'few': rows of chunk 2 \(rows "
                                             rf"{first}\.\.{first + CHUNK_ROWS - 1}\) do not match "
                                             "the digest the snapshot was frozen with"):
        _read(store)
    with pytest.raises(IntegrityError, match=r"chunks record 2 .* was changed"):
        verify_all(store)


def test_a_changed_byte_in_a_row_not_returned_is_left_to_verify(store):
    ids, X, y = _read(store)
    first = CHUNK_ROWS + 1
    held = set((ids[(ids >= first) & (ids < first + CHUNK_ROWS)] - first).tolist())
    other = next(o for o in range(CHUNK_ROWS) if o not in held)
    data = bytearray(_blob(store.url, 2, "features"))
    data[other * D] ^= 1
    _overwrite(store.url, 2, "features", bytes(data))
    again = _read(store)  # none of its bytes are returned: the rows read are still the frozen ones
    assert np.array_equal(again[1], X) and np.array_equal(again[2], y)
    with pytest.raises(IntegrityError, match=r"chunks record 2 .* was changed"):
        verify_all(store)
    with pytest.raises(IntegrityError, match=r"chunk 2 .* does not match the digest the snapshot"):
        _read(store, "all")  # a whole-chunk read re-hashes it


def test_a_forged_rows_digest_is_caught(store):
    from lineage.review.snapshots import snapshot_manifest_digest

    with store.read() as session:
        snap = find_snapshot(session, "few")
        entries = json.loads(snap.chunk_digests)
        entries[0][2] = "0" * 64
        snap.chunk_digests = json.dumps(entries, separators=(",", ":"))
        forged_manifest = snapshot_manifest_digest(snap)
        session.rollback()
    drop_guards(store.url, "snapshots")
    raw_execute(store.url, "UPDATE snapshots SET chunk_digests = ?, manifest_digest = ? WHERE name = ?",
                (json.dumps(entries, separators=(",", ":")), forged_manifest, "few"))
    with pytest.raises(IntegrityError, match=r"rows of chunk 1 .* do not match the digest"):
        _read(store)


def test_releasing_the_mapped_pages_keeps_reads_and_the_mapping(store, monkeypatch):
    """During and after a bulk read on SQLite, release_mapped_pages unmaps what the read touched
    (bench_scale: ~720 MB of RSS at 10M rows); the connection keeps mapping the file for the next
    read, and the rows read are the same."""
    from lineage.store.engine import SQLITE_MMAP_BYTES, release_mapped_pages

    released = []
    monkeypatch.setattr("lineage.review.snapshots.RELEASE_EVERY_CHUNKS", 1)  # after each chunk
    monkeypatch.setattr("lineage.review.snapshots.release_mapped_pages",
                        lambda session: released.append(1) or release_mapped_pages(session))
    with store.read() as session:
        first = read_snapshot_rows(session, find_snapshot(session, "all"))
        release_mapped_pages(session)
        again = read_snapshot_rows(session, find_snapshot(session, "all"))
        if store.url.startswith("sqlite"):
            mapped = session.connection().exec_driver_sql("PRAGMA mmap_size").scalar()
            assert mapped == SQLITE_MMAP_BYTES
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    with store.read() as session:
        chunks = len(json.loads(find_snapshot(session, "all").chunk_digests))
    assert len(released) == 2 * (chunks + 1)  # after each chunk of each read, and at its end
