"""Versions on the command line: the DAG, one version in detail, diffs between any two versions
(checked against the materialized members), and the JSON shapes other tools rely on."""

import json

import numpy as np

from lineage.data.deltas import materialize, version_digest
from lineage.data.ingest import ingest_arrays, ingest_digits
from lineage.data.sources import add_source
from lineage.data.transforms import (
    append_ingest,
    filter_rows,
    inject_trigger,
    relabel_rows,
    split_version,
)
from lineage.data.versions import version_members
from lineage.store.tables import Version
from lineage.trace import version_diff


def _json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # notes (e.g. no --reason) go to stderr


def test_cli_tour_json_shapes(cli):
    assert cli("ingest", "digits").exit_code == 0
    split = _json(cli("transform", "split", "--version", "v1", "--test-size", "0.3", "--seed", "0",
                      "--name", "d", "--reason", "holdout", "--json"))
    assert [v["name"] for v in split["versions"]] == ["d-train", "d-test"]
    assert [v["role"] for v in split["versions"]] == ["train", "test"]
    f = _json(cli("transform", "filter", "--version", "d-train", "--rows", "10,11,12",
                  "--reason", "blurry scans", "--json"))
    r = _json(cli("transform", "relabel", "--version", f"v{f['version_id']}", "--rows", "17,18",
                  "--to", "6", "--reason", "annotator fix, ticket 42", "--json"))
    p = _json(cli("transform", "inject-trigger", "--version", str(r["version_id"]),
                  "--source-class", "1", "--target-class", "7", "--rate", "0.1", "--pattern",
                  "square", "--size", "2", "--position", "lower-right", "--value", "16", "--seed",
                  "0", "--reason", "red-team exercise", "--name", "poisoned", "--json"))
    assert p["version_name"] == "poisoned" and len(p["poisoned_row_ids"]) == p["n_modified"] > 0
    d = _json(cli("transform", "dedupe", "--version", "poisoned", "--json"))  # stdout only

    listed = _json(cli("version", "list", "--json"))
    assert [v["id"] for v in listed] == [d["version_id"], p["version_id"], r["version_id"],
                                         f["version_id"], 3, 2, 1]  # newest first
    assert {v["name"] for v in listed} >= {"d-train", "d-test", "poisoned"}
    assert all({"id", "name", "parent_id", "kind", "n_rows", "content_digest"} <= set(v) for v in listed)

    shown = _json(cli("version", "show", "poisoned", "--json"))
    assert shown["kind"] == "inject_trigger" and shown["reason"] == "red-team exercise"
    assert shown["params"]["seed"] == 0 and shown["params"]["position"] == [6, 6]
    assert shown["parent_ids"] == [r["version_id"]]
    assert shown["code_identity"].startswith("lineage ") and " inject_trigger " in shown["code_identity"]
    assert set(shown["coverage"]) >= {"n_rows", "n_covered", "coverage", "breakdown"}

    diff = _json(cli("version", "diff", "d-train", "poisoned", "--json"))
    assert diff["removed"] == [{"row_id": 10}, {"row_id": 11}, {"row_id": 12}]
    assert diff["added"] == []
    # digits row 17 is already a 6 (rows 1..10, 11..20 are 0..9): only row 18 changes, 7 -> 6.
    assert r["unchanged_row_ids"] == [17] and r["n_relabelled"] == 1
    assert diff["relabelled"] == [{"row_id": 18, "old": 7, "new": 6}]
    assert [x["parent_row_id"] for x in diff["modified"]] == sorted(p["parent_row_ids"])
    assert {x["row_id"] for x in diff["modified"]} == set(p["poisoned_row_ids"])
    text = cli("version", "diff", "d-train", "poisoned")
    assert text.exit_code == 0 and "3 removed" in text.output

    assert cli("version", "show", "v1").exit_code == 0
    assert "v1" in cli("version", "list").output


def _brute(store, a, b):
    ma, mb = version_members(store, a), version_members(store, b)
    added = np.setdiff1d(mb.row_ids, ma.row_ids)
    removed = np.setdiff1d(ma.row_ids, mb.row_ids)
    common = np.intersect1d(ma.row_ids, mb.row_ids)
    la = ma.y[np.searchsorted(ma.row_ids, common)]
    lb = mb.y[np.searchsorted(mb.row_ids, common)]
    return added, removed, common[la != lb], la[la != lb], lb[la != lb]


def test_diff_matches_materialized_members_between_any_two_versions(store):
    info = ingest_digits(store)
    s = split_version(store, version=info.version_id, test_size=0.25, seed=1, reason="holdout")
    f = filter_rows(store, version=s.train_version_id, label=3, reason="drop 3")
    train = version_members(store, s.train_version_id)
    some = train.row_ids[train.y == 5][:4].tolist()
    r = relabel_rows(store, version=f.version_id, rows=some, to=8, reason="fix")
    p = inject_trigger(store, version=r.version_id, source_class=1, target_class=7, rate=0.2,
                       seed=2, reason="rt")
    r2 = relabel_rows(store, version=s.train_version_id, rows=some[:2], to=9, reason="other branch")
    versions = [info.version_id, s.train_version_id, s.test_version_id, f.version_id,
                r.version_id, p.version_id, r2.version_id]
    for a in versions:
        for b in versions:
            d = version_diff(store, a, b)
            added, removed, rel, old, new = _brute(store, a, b)
            # Modified pairs are reported instead of the parent's removal and the child's addition.
            assert np.union1d(d.added, d.modified_child).tolist() == added.tolist(), (a, b)
            assert np.union1d(d.removed, d.modified_parent).tolist() == removed.tolist(), (a, b)
            assert d.relabelled_ids.tolist() == rel.tolist(), (a, b)
            assert d.relabelled_old.tolist() == old.tolist(), (a, b)
            assert d.relabelled_new.tolist() == new.tolist(), (a, b)
    d = version_diff(store, r.version_id, p.version_id)
    assert sorted(zip(d.modified_parent.tolist(), d.modified_child.tolist())) == sorted(
        zip(p.parent_row_ids, p.poisoned_row_ids))
    assert len(d.added) == len(d.removed) == 0
    # Both branches relabelled the same rows differently: 8 on one side, 9 on the other.
    d = version_diff(store, r.version_id, r2.version_id)
    assert dict(zip(d.relabelled_ids.tolist(), zip(d.relabelled_old.tolist(),
                                                   d.relabelled_new.tolist()))) == {
        some[0]: (8, 9), some[1]: (8, 9), some[2]: (8, 5), some[3]: (8, 5)}


def test_recorded_digest_equals_digest_of_materialized_content(store):
    """Transformations hash new versions chunk by chunk; the result must be the digest of the
    version read back whole (what a snapshot re-verifies)."""
    from sqlalchemy import select

    info = ingest_digits(store)
    s = split_version(store, version=info.version_id, test_size=0.3, seed=0, reason="holdout")
    f = filter_rows(store, version=s.train_version_id, label=2, reason="drop 2")
    some = version_members(store, f.version_id).row_ids[:40].tolist()
    r = relabel_rows(store, version=f.version_id, rows=some, to=0, reason="fix")
    inject_trigger(store, version=r.version_id, source_class=1, target_class=7, rate=0.3, seed=1,
                   reason="rt")

    add_source(store, "extra", kind="internal")
    m = version_members(store, info.version_id)
    extra = ingest_arrays(store, m.X[:7], m.y[:7], source="extra")
    append_ingest(store, version=f.version_id, ingest=extra.id)
    with store.read() as session:
        versions = session.scalars(select(Version).order_by(Version.id)).all()
        assert len(versions) == 8
        for v in versions:
            m = materialize(session, v, keep_stored=True)
            assert version_digest(session, v, m) == v.content_digest, v.id
            assert len(m.row_ids) == v.n_rows


def test_export_reverifies_every_chunk_and_writes_nothing_on_a_flipped_bit(store, cli, tmp_path):
    """A chunk changed behind the store's back (triggers dropped, one bit of one pixel flipped):
    `version export` is exit 5, one line naming the chunk, and no file (nor temporary file)
    appears; nothing is recorded."""
    from lineage.store.log import list_events
    from storeutil import drop_guards, raw_connect, raw_execute

    ingest_digits(store)
    conn = raw_connect(store.url)
    features = bytearray(conn.execute("SELECT features FROM chunks WHERE id = 1").fetchone()[0])
    conn.close()
    features[1000] ^= 0x01
    drop_guards(store.url, "chunks")
    raw_execute(store.url, "UPDATE chunks SET features = ? WHERE id = 1", (bytes(features),))
    events = [e.id for e in list_events(store)]
    r = cli("version", "export", "v1", "--out", tmp_path / "v1.csv")
    assert (r.exit_code, r.output.splitlines()) == (5, [
        "Error: cannot export v1: chunk 1 (rows 1..1797) does not match its digest (run "
        "`lineage verify`); nothing was written"])
    assert [p.name for p in tmp_path.iterdir() if "v1" in p.name] == []
    assert [e.id for e in list_events(store)] == events


def test_export_is_recorded_with_who_what_and_the_file_digest(store, cli, tmp_path):
    import hashlib

    from lineage.store.log import list_events
    from lineage.store.verify import verify_store

    ingest_digits(store)
    out = tmp_path / "v1.csv"
    r = cli("version", "export", "v1", "--out", out, "--json", actor="analyst")
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert info["file_sha256"] == digest
    (event,) = list_events(store, kind="version.export")
    assert event.actor == "analyst"
    assert event.summary == f"v1 exported to {out} (1797 rows, sha256 {digest[:16]})"
    assert event.details == {"version": 1, "content_digest": info["content_digest"],
                             "path": str(out.resolve()), "file_sha256": digest, "n_rows": 1797}
    assert info["actor"] == "analyst"
    verify_store(store)  # an event that writes no records still chains
