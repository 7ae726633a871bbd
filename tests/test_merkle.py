"""The event log's Merkle tree against RFC 9162's definitions: roots, inclusion and consistency
proofs verify for every size and position, and fail for any other leaf, root or size."""

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from lineage.store.merkle import (
    EMPTY_ROOT,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    tree_root,
    verify_consistency,
    verify_inclusion,
)


def _mth(leaves):
    """RFC 9162's recursive definition, written as plainly as it reads."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(_mth(leaves[:k]), _mth(leaves[k:]))


def _leaves(n):
    return [leaf_hash(hashlib.sha256(str(i).encode()).digest()) for i in range(n)]


def test_root_matches_the_rfc_definition():
    assert tree_root([]) == EMPTY_ROOT
    for n in range(1, 70):
        assert tree_root(_leaves(n)) == _mth(_leaves(n)), n


def test_known_small_tree():
    a, b, c = _leaves(3)
    assert tree_root([a, b, c]) == node_hash(node_hash(a, b), c)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 130), st.data())
def test_inclusion_proofs_verify_and_only_for_their_leaf(n, data):
    leaves = _leaves(n)
    root = tree_root(leaves)
    i = data.draw(st.integers(0, n - 1))
    path = inclusion_proof(leaves, i)
    assert len(path) <= max(1, n.bit_length())
    assert verify_inclusion(leaves[i], i, n, path, root)
    other = leaf_hash(b"forged")
    assert not verify_inclusion(other, i, n, path, root)
    assert not verify_inclusion(leaves[i], i, n, path, leaf_hash(b"other root"))
    if n > 1:
        j = data.draw(st.integers(0, n - 1).filter(lambda j: j != i))
        assert not verify_inclusion(leaves[i], j, n, path, root)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 130), st.data())
def test_consistency_proofs_verify_and_a_rewritten_prefix_fails(n, data):
    leaves = _leaves(n)
    m = data.draw(st.integers(1, n))
    path = consistency_proof(leaves, m)
    old_root, new_root = tree_root(leaves[:m]), tree_root(leaves)
    assert verify_consistency(m, old_root, n, new_root, path)
    # A history rewritten anywhere in the old prefix has another old root: the proof fails.
    k = data.draw(st.integers(0, m - 1))
    forked = list(leaves)
    forked[k] = leaf_hash(b"rewritten")
    assert not verify_consistency(m, tree_root(forked[:m]), n, new_root, path)
    assert not verify_consistency(m, old_root, n, tree_root(forked), path)
    if m < n:  # a truncated log cannot prove it extends the checkpoint
        assert not verify_consistency(n, new_root, m, old_root, path)
