"""Version content digests: composed from chunk digests (scheme 2), or flat (scheme 1).

DESIGN.md's "Digests": a version's content digest is a Merkle root over its chunk digests and
label overrides, so a commit hashes only what it changes; approval binds that one digest;
loading re-verifies every byte it returns. Each byte is hashed once, at ingest, into its
chunk's record digest (``chain.record_digest`` of the chunk row: the sha256 of its metadata and
of its features and labels blobs' BLAKE3 digests, or their sha256 digests for chunks written
before migration 0010, as its ``blob_hash`` column says), and everything above a chunk is built
from those digests.

Scheme 2 (``versions.digest_scheme = 2``, every version written since migration 0007):

- the version's member rows fall into chunks (row ids are contiguous within a chunk). For each
  chunk c holding at least one member, in row-id order, one leaf::

      leaf(c) = sha256(0x00 || "lineage-leaf-v2" 0x00 || record_digest(c) (64 hex, ASCII)
                       || n(c) (u32 le) || members (packbits, little bit order, of n(c) flags)
                       || k (u32 le) || k offsets (u32 le) || k labels (i64 le))

  where the k entries are the label overrides in c: the members whose label in this version
  differs from the label stored in c, by offset from c's first row id, ascending;
- root = the RFC 9162 Merkle tree hash over the leaves (``merkle.tree_root``: node =
  sha256(0x01 || left || right)), as the event log's tree;
- content digest = sha256("lineage-version-v2" 0x00 || canonical JSON {"chunks": number of
  leaves, "n_rows": members, "root": hex}).

The version stores its leaves (``versions.chunk_leaves``: chunk id i64 le + 32-byte leaf, per
leaf, in order), anchored by its record digest, so a child re-hashes only the leaves of the
chunks it touches and folds the others in from the parent: a relabel of k rows costs
O(k + chunks), not O(rows). The digest is a function of the content alone (ids, features,
effective labels): relabelling a row back to its stored label removes its override.

Scheme 1 (``digest_scheme`` NULL: versions written before 0007, kept as they were so old
stores verify): sha256("lineage-version-v1" 0x00 || member ids (i64 le) || their labels (i64
le) || their features), in row-id order.

Who checks what: ``lineage verify`` recomputes every version's digest under its own scheme
(scheme 2 from the deltas, the stored labels and the chunk digests it has just re-hashed;
``--fast`` only folds the recorded leaves back into the digest, and rebuilds an ingest's root's
leaves from its chunks' recorded digests); ``create_snapshot`` re-hashes
the member chunks and recomputes the digest before freezing it; ``load_snapshot`` re-hashes every
chunk it returns and, for scheme 2, rebuilds the root from those digests and the manifest, which
must give the content digest the approval signed.
"""

import hashlib
from typing import Optional, Sequence

import numpy as np

from lineage.store.chain import canonical
from lineage.store.chunks import ID_DTYPE, LABEL_DTYPE, ChunkIndex
from lineage.store.merkle import tree_root

SCHEME_FLAT = 1
SCHEME_MERKLE = 2
LEAF_TAG = b"\x00lineage-leaf-v2\x00"
LEAF_BYTES = 8 + 32  # chunk id, leaf hash
_OFFSET = np.dtype("<u4")
_FULL: dict[int, bytes] = {}  # n -> the members field of a chunk whose n rows are all members


def scheme_of(version) -> int:
    """The digest scheme a version records (NULL: flat, written before migration 0007)."""
    return version.digest_scheme or SCHEME_FLAT


def flat_digest(row_ids: np.ndarray, X: np.ndarray, y: np.ndarray) -> str:
    """Scheme 1: sha256 over sorted member ids, their labels, their features."""
    h = flat_hasher(row_ids, y)
    h.update(np.ascontiguousarray(X))
    return h.hexdigest()


def flat_hasher(row_ids: np.ndarray, y: np.ndarray):
    """Scheme 1's sha256, fed ids and labels; the feature bytes follow in row-id order."""
    # hashlib reads the contiguous arrays' buffers in place: the same bytes as .tobytes().
    h = hashlib.sha256(b"lineage-version-v1\0")
    h.update(np.ascontiguousarray(row_ids, dtype=ID_DTYPE))
    h.update(np.ascontiguousarray(y, dtype=LABEL_DTYPE))
    return h


def _full_mask(n: int) -> bytes:
    if n not in _FULL:
        _FULL[n] = np.packbits(np.ones(n, dtype=bool), bitorder="little").tobytes()
    return _FULL[n]


def chunk_leaf(chunk_digest: str, n: int, offsets: Optional[np.ndarray],
               over_offsets: np.ndarray, over_labels: np.ndarray) -> bytes:
    """One leaf: chunk ``chunk_digest`` (hex) of ``n`` rows, its members at sorted ``offsets``
    (None: all n rows), overrides at sorted ``over_offsets`` with ``over_labels``."""
    if offsets is None or len(offsets) == n:
        mask = _full_mask(n)
    else:
        flags = np.zeros(n, dtype=bool)
        flags[offsets] = True
        mask = np.packbits(flags, bitorder="little").tobytes()
    h = hashlib.sha256(LEAF_TAG)
    h.update(chunk_digest.encode("ascii", "replace"))
    h.update(int(n).to_bytes(4, "little"))
    h.update(mask)
    h.update(len(over_offsets).to_bytes(4, "little"))
    h.update(np.ascontiguousarray(over_offsets, dtype=_OFFSET))
    h.update(np.ascontiguousarray(over_labels, dtype=LABEL_DTYPE))
    return h.digest()


def leaves_over(chunk_ids: np.ndarray, firsts: np.ndarray, counts: np.ndarray,
                digests: Sequence[str], ids: np.ndarray, over_ids: np.ndarray,
                over_labels: np.ndarray) -> tuple[np.ndarray, list[bytes]]:
    """Leaves of the members ``ids`` (sorted) over chunks given in row order (ids, first row
    ids, row counts, record digests), with the label overrides ``over_ids`` (sorted, members
    only, each differing from its stored label) and ``over_labels``. Returns (chunk ids, leaves)
    of the chunks that hold members. ValueError when some id is in no chunk."""
    ends = firsts + counts
    lo = np.searchsorted(ids, firsts, side="left")
    hi = np.searchsorted(ids, ends, side="left")
    if int((hi - lo).sum()) != len(ids):
        raise ValueError("some member rows are in no chunk")
    o_lo = np.searchsorted(over_ids, firsts, side="left")
    o_hi = np.searchsorted(over_ids, ends, side="left")
    held = np.flatnonzero(hi > lo)
    leaves = []
    for p in held.tolist():
        first, n = int(firsts[p]), int(counts[p])
        a, b = int(lo[p]), int(hi[p])
        offsets = None if b - a == n else ids[a:b] - first
        oa, ob = int(o_lo[p]), int(o_hi[p])
        leaves.append(chunk_leaf(digests[p], n, offsets, over_ids[oa:ob] - first,
                                 over_labels[oa:ob]))
    return np.asarray(chunk_ids)[held].astype(ID_DTYPE), leaves


def version_leaves(index: ChunkIndex, ids: np.ndarray, over_ids: np.ndarray,
                   over_labels: np.ndarray) -> tuple[np.ndarray, list[bytes]]:
    """``leaves_over`` the chunks of ``index`` (digests as their record digest columns hold)."""
    return leaves_over(index.ids, index.firsts, index.counts, index.digests, ids, over_ids,
                       over_labels)


def composed_digest(n_rows: int, leaves: Sequence[bytes]) -> str:
    """Scheme 2's content digest of ``n_rows`` members with these leaves (in row order)."""
    root = tree_root(list(leaves)).hex()
    body = canonical({"chunks": len(leaves), "n_rows": int(n_rows), "root": root})
    return hashlib.sha256(b"lineage-version-v2\0" + body.encode()).hexdigest()


def leaves_blob(chunk_ids: np.ndarray, leaves: Sequence[bytes]) -> bytes:
    """``versions.chunk_leaves``: per leaf, the chunk id (i64 le) and the 32-byte leaf."""
    rows = np.empty((len(leaves), LEAF_BYTES), dtype=np.uint8)
    rows[:, :8] = np.asarray(chunk_ids, dtype=ID_DTYPE).reshape(-1, 1).view(np.uint8)
    if len(leaves):
        rows[:, 8:] = np.frombuffer(b"".join(leaves), dtype=np.uint8).reshape(-1, 32)
    return rows.tobytes()


def leaves_from_blob(blob: Optional[bytes]) -> tuple[np.ndarray, list[bytes]]:
    """(chunk ids, leaves) of a ``chunk_leaves`` blob; ValueError when it is malformed."""
    data = bytes(blob or b"")
    if len(data) % LEAF_BYTES:
        raise ValueError(f"chunk leaves of {len(data)} bytes are not whole entries")
    n = len(data) // LEAF_BYTES
    rows = np.frombuffer(data, dtype=np.uint8).reshape(n, LEAF_BYTES)
    chunk_ids = np.ascontiguousarray(rows[:, :8]).view(ID_DTYPE).reshape(-1)
    return chunk_ids, [data[i * LEAF_BYTES + 8:(i + 1) * LEAF_BYTES] for i in range(n)]


def overrides_of(ids: np.ndarray, y: np.ndarray, stored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The label overrides of members ``ids`` (sorted) with labels ``y`` over stored labels
    ``stored``: (ids, labels) where they differ."""
    diff = np.flatnonzero(np.asarray(y) != np.asarray(stored))
    return ids[diff], np.asarray(y, dtype=LABEL_DTYPE)[diff]
