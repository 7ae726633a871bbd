"""Snapshots: frozen manifests, status from reviews, verified reads, bad input."""

import numpy as np
import pytest

from lineage.data.datasets import find_version
from lineage.data.deltas import materialize
from lineage.data.ingest import ingest_digits
from lineage.data.transforms import split_version
from lineage.errors import (
    AlreadyExistsError,
    BadInputError,
    IntegrityError,
    NotFoundError,
    RefusedError,
    SnapshotNotApprovedError,
)
from lineage.review.approval import load_snapshot
from lineage.review.gates import reject_snapshot, revoke_snapshot
from lineage.review.snapshots import (
    create_snapshot,
    find_snapshot,
    get_snapshot,
    list_snapshots,
    read_snapshot_rows,
)
from lineage.review.source_reviews import review_source
from lineage.store.engine import open_store
from storeutil import drop_guards, raw_execute, state


def _split_setup(url: str) -> None:
    """Digits ingested by the engineer, approved by the reviewer, split 2:1 as "digits"."""
    eng = open_store(url, actor="engineer")
    rev = open_store(url, actor="reviewer")
    try:
        ingest_digits(eng)
        review_source(rev, "sklearn-digits", decision="approve", reason="ok")
        split_version(eng, version="v1", test_size=1 / 3, seed=0, name="digits", reason="holdout")
    finally:
        eng.close()
        rev.close()


@pytest.fixture
def split_store(backend, tmp_path, stores):
    """The engineer's store, a copy of its own of the one `_split_setup` made once per backend."""
    url, _ = stores.copy(backend, tmp_path, build=_split_setup)
    eng = open_store(url, actor="engineer")
    yield eng
    eng.close()
    stores.drop(url)


def test_snapshot_freezes_the_version_with_its_digest(split_store):
    info = create_snapshot(split_store, "train", version="digits-train")
    assert info.status == "pending" and info.actor == "engineer"
    with split_store.read() as session:
        v = find_version(session, "digits-train")
        members = materialize(session, v)
        ids, X, y = read_snapshot_rows(session, find_snapshot(session, "train"))
        assert info.content_digest == v.content_digest and info.n_rows == v.n_rows
    np.testing.assert_array_equal(ids, members.row_ids)
    np.testing.assert_array_equal(X, members.X)
    np.testing.assert_array_equal(y, members.y)
    assert [s.name for s in list_snapshots(split_store)] == ["train"]


def test_bad_input_leaves_the_store_unchanged(split_store):
    create_snapshot(split_store, "train", version="digits-train")
    before = state(split_store)
    with pytest.raises(AlreadyExistsError, match=r"^a snapshot named 'train' already exists"):
        create_snapshot(split_store, "train", version="digits-test")
    with pytest.raises(NotFoundError, match=r"^no version 'v99'"):
        create_snapshot(split_store, "other", version="v99")
    with pytest.raises(NotFoundError, match=r"^no snapshot named 'nope' \(see `lineage snapshot list`\)$"):
        get_snapshot(split_store, "nope")
    with pytest.raises(BadInputError, match=r"^--reason is required to reject a snapshot$"):
        reject_snapshot(split_store, "train", reason=" ")
    with pytest.raises(RefusedError, match=r"^snapshot 'train' is pending: only an approved snapshot can be revoked$"):
        revoke_snapshot(split_store, "train", reason="x")
    assert state(split_store) == before


def test_pending_and_rejected_snapshots_do_not_load(split_store):
    create_snapshot(split_store, "train", version="digits-train")
    with pytest.raises(SnapshotNotApprovedError, match=r"^snapshot 'train' is pending: training reads "
                                                      r"only approved snapshots"):
        load_snapshot("train", store=split_store)
    info = reject_snapshot(open_store(split_store.url, actor="reviewer"), "train", reason="unchecked")
    assert info.status == "rejected" and info.reviews[-1].decision == "reject"
    with pytest.raises(SnapshotNotApprovedError, match=r"is rejected"):
        load_snapshot("train", store=split_store, return_X_y=True)
    with pytest.raises(RefusedError, match=r"^snapshot 'train' is rejected: only a pending snapshot can be rejected$"):
        reject_snapshot(split_store, "train", reason="again")


def test_a_changed_chunk_is_found_when_rows_are_read(split_store):
    create_snapshot(split_store, "train", version="digits-train")
    drop_guards(split_store.url, "chunks")
    raw_execute(split_store.url, "UPDATE chunks SET n_rows = n_rows WHERE id = 1")  # no-op: guards gone
    blob = bytes([16]) * 64
    if split_store.url.startswith("sqlite"):
        raw_execute(split_store.url, "UPDATE chunks SET features = CAST(? || substr(features, 65) AS BLOB) WHERE id = 1", (blob,))
    else:
        raw_execute(split_store.url, "UPDATE chunks SET features = overlay(features placing ? from 1) WHERE id = 1", (blob,))
    with split_store.read() as session, pytest.raises(IntegrityError, match=r"^snapshot 'train': chunk 1 \(rows 1\.\.1797\) does not match"):
        read_snapshot_rows(session, find_snapshot(session, "train"))


def test_snapshot_cli_reject_and_list(cli):
    assert cli("ingest", "digits", actor="engineer").exit_code == 0
    r = cli("snapshot", "create", "all", "--version", "v1", actor="engineer")
    assert r.exit_code == 0 and "status pending; 1797 rows" in r.output
    r = cli("snapshot", "reject", "all", actor="reviewer")
    assert (r.exit_code, r.output.strip()) == (2, "Error: --reason is required to reject a snapshot")
    r = cli("snapshot", "reject", "all", "--reason", "no review of labels", actor="reviewer")
    assert r.exit_code == 0 and "review 1: reject recorded by reviewer" in r.output
    r = cli("snapshot", "approve", "all", actor="reviewer")
    assert (r.exit_code, r.output.strip()) == (
        4, "Error: snapshot 'all' is rejected: only a pending snapshot can be approved (create a new snapshot)")
    r = cli("snapshot", "list", "--json")
    assert r.exit_code == 0
    import json
    [listed] = json.loads(r.output)
    assert (listed["name"], listed["status"], listed["n_rows"]) == ("all", "rejected", 1797)
    r = cli("snapshot", "create", "x", "--version", "v9", actor="engineer")
    assert r.exit_code == 3 and r.output.startswith("Error: no version 'v9'")
