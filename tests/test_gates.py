"""The approval gates and the whole reviewed path through the CLI, on SQLite and PostgreSQL:
snapshot -> approve (gates) -> train -> release -> trace -> revoke, with every refusal."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import Cli

from lineage.data.ingest import ingest_arrays
from lineage.data.sources import add_source
from lineage.data.transforms import append_ingest
from lineage.errors import SnapshotNotApprovedError
from lineage.review.approval import load_snapshot
from lineage.review.gates import approve_snapshot
from lineage.review.snapshots import create_snapshot, get_snapshot
from lineage.store.chain import canonical, record_digest
from lineage.store.engine import open_store
from lineage.store.tables import Transformation
from storeutil import counts, state


def _out(result) -> str:
    return result.output.strip()


def _review_setup(url: str) -> None:
    """Digits ingested and approved as a source, split, train/eval snapshots, policy set."""
    cli = Cli(url)
    assert cli("ingest", "digits", actor="engineer").exit_code == 0
    assert cli("source", "review", "sklearn-digits", "--approve", "--reason", "ok", actor="reviewer").exit_code == 0
    r = cli("transform", "split", "--version", "v1", "--test-size", "0.3333", "--seed", "0",
            "--name", "digits", "--reason", "holdout", actor="engineer")
    assert r.exit_code == 0, r.output
    # The held-out evaluation snapshot is frozen by the reviewer: the people under review may not
    # make it (four eyes).
    for name, version, who in (("train", "digits-train", "engineer"), ("eval", "digits-test", "reviewer")):
        r = cli("snapshot", "create", name, "--version", version, actor=who)
        assert r.exit_code == 0, r.output
    r = cli("policy", "set", "--evaluation-snapshot", "eval", "--reason", "held-out split", actor="reviewer")
    assert r.exit_code == 0, r.output


@pytest.fixture
def reviewed(backend, tmp_path, stores):
    """The CLI on a store of its own, copied from the one `_review_setup` made once per backend."""
    url, _ = stores.copy(backend, tmp_path, build=_review_setup)
    yield Cli(url)
    stores.drop(url)


def test_reviewed_path_end_to_end(reviewed, tmp_path):
    cli = reviewed
    store = open_store(cli.url)
    # Training on a pending snapshot is refused and writes nothing.
    before = state(store)
    r = cli("train", "--snapshot", "train", "--model", "clf", actor="engineer")
    assert r.exit_code == 4
    assert _out(r) == ("Error: snapshot 'train' is pending: training reads only approved snapshots "
                       "(approve it first with `lineage snapshot approve`)")
    assert state(store) == before

    # Self-approval: every gate runs, the failed review is recorded, the snapshot stays pending.
    r = cli("snapshot", "approve", "train", actor="engineer")
    assert r.exit_code == 4
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "Error: snapshot 'train' not approved (1 of 4 gates failed; review 1 recorded, policy version 1): "
        "four_eyes: reviewer 'engineer' created the snapshot; reviewer 'engineer' made transformations "
        "in its history (split)")
    assert counts(store)["snapshot_reviews"] == 1
    show = json.loads(cli("snapshot", "show", "train", "--json").output)
    assert show["status"] == "pending"
    report = show["reviews"][0]["report"]
    assert [g["gate"] for g in report["gates"]] == ["coverage", "sources", "four_eyes", "shadow_evaluation"]
    assert report["passed"] is False and report["policy_version"] == 1

    # The reviewer approves: all gates pass, with numbers in the report.
    r = cli("snapshot", "approve", "train", actor="reviewer")
    assert r.exit_code == 0, r.output
    show = json.loads(cli("snapshot", "show", "train", "--json").output)
    assert show["status"] == "approved" and show["coverage"] == 1.0
    shadow = show["reviews"][1]["report"]["gates"][3]
    assert shadow["clean_accuracy"] >= 0.9 and shadow["worst_asr"] <= 0.3
    assert shadow["n_candidates"] == 149 and shadow["overlap_rows"] == 0
    r = cli("snapshot", "approve", "train", actor="reviewer")
    assert (r.exit_code, _out(r)) == (4, "Error: snapshot 'train' is approved: only a pending snapshot can be approved")

    bunch = load_snapshot("train", db=cli.url)
    assert bunch.data.shape == (1198, 64) and bunch.digest == show["content_digest"]
    assert len(bunch.row_ids) == len(bunch.target) == 1198
    assert bunch["data"] is bunch.data and "target" in dir(bunch) and isinstance(bunch, dict)
    # A load imports no scikit-learn (1.1 s for a training script that does not use it).
    code = ("import sys; from lineage.review.approval import load_snapshot; "
            f"b = load_snapshot('train', db={cli.url!r}); "
            "print(b.data.shape[0], any(m.split('.')[0] == 'sklearn' for m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split() == ["1198", "False"], done.stderr

    # Train, show, export, release.
    r = cli("train", "--snapshot", "train", "--model", "clf", "--seed", "0", "--json", actor="engineer")
    assert r.exit_code == 0, r.output
    m = json.loads(r.output)
    assert m["ref"] == "clf:1" and m["status"] == "trained" and m["clean_accuracy"] >= 0.9
    assert m["snapshot_digest"] == show["content_digest"] and len(m["metrics"]["triggers"]) == 10
    path = tmp_path / "clf.skops"
    r = cli("model", "export", "clf:1", "--out", str(path))
    assert r.exit_code == 0, r.output
    import hashlib

    from lineage.models.registry import load_artifact
    assert hashlib.sha256(path.read_bytes()).hexdigest() == m["artifact_sha256"]
    model = load_artifact(path.read_bytes(), what="the exported model")
    assert model.predict(bunch.data[:5].astype(float)).shape == (5,)
    r = cli("model", "release", "clf:1", actor="engineer")
    assert r.exit_code == 4 and "four_eyes: releaser 'engineer' trained the model" in r.output
    r = cli("model", "release", "clf:1", actor="reviewer")
    assert r.exit_code == 0, r.output

    # Trace: model -> snapshot -> versions -> transformations -> ingests -> sources.
    r = cli("trace", "model", "clf:1", "--json")
    assert r.exit_code == 0, r.output
    t = json.loads(r.output)
    assert t["snapshot"]["name"] == "train" and t["snapshot"]["coverage"] == 1.0
    assert [v["id"] for v in t["versions"]] == [1, 2]
    assert [x["kind"] for x in t["transformations"]] == ["split"]
    assert t["sources"][0]["name"] == "sklearn-digits" and t["sources"][0]["rows"] == 1198
    assert t["ingests"][0]["rows_in_snapshot"] == 1198 and t["verified"]["ok"] is True
    assert cli("trace", "model", "clf:1").exit_code == 0

    # Revoke: models become affected, loading and release are refused.
    r = cli("train", "--snapshot", "train", "--model", "clf", actor="engineer")
    assert r.exit_code == 0, r.output
    r = cli("snapshot", "revoke", "train", "--reason", "poisoned rows found", actor="reviewer")
    assert r.exit_code == 0 and "affected model versions: clf:1, clf:2" in r.output
    r = cli("model", "show", "clf:2")
    assert "AFFECTED: snapshot 'train' revoked by reviewer" in r.output
    r = cli("model", "release", "clf:2", actor="reviewer")
    assert r.exit_code == 4 and "snapshot: model is affected" in r.output
    with pytest.raises(SnapshotNotApprovedError, match="is revoked"):
        load_snapshot("train", db=cli.url)
    r = cli("snapshot", "approve", "train", actor="reviewer")
    assert (r.exit_code, _out(r)) == (4, "Error: snapshot 'train' is revoked: only a pending snapshot "
                                         "can be approved (create a new snapshot)")
    before = state(store)
    for args, code, text in [
        (("snapshot", "show", "nope"), 3, "Error: no snapshot named 'nope' (see `lineage snapshot list`)"),
        (("model", "show", "clf:9"), 3, "Error: no model version 'clf:9' (see `lineage model list`)"),
        (("trace", "model", "nope:1"), 3, "Error: no model version 'nope:1' (see `lineage model list`)"),
        (("snapshot", "create", "eval", "--version", "v1"), 2,
         "Error: a snapshot named 'eval' already exists: snapshots are immutable, choose a new name"),
        (("train", "--snapshot", "eval", "--model", "x"), 4,
         "Error: snapshot 'eval' is pending: training reads only approved snapshots "
         "(approve it first with `lineage snapshot approve`)"),
    ]:
        r = cli(*args, actor="engineer" if args[0] == "train" or args[1] == "create" else None)
        assert (r.exit_code, _out(r)) == (code, text)
    assert state(store) == before
    store.close()


def test_poisoned_snapshot_fails_the_shadow_evaluation(reviewed):
    cli = reviewed
    r = cli("transform", "inject-trigger", "--version", "digits-train", "--source-class", "1",
            "--target-class", "7", "--rate", "0.1", "--seed", "0", "--reason", "red team",
            "--name", "poisoned", actor="attacker")
    assert r.exit_code == 0, r.output
    assert cli("snapshot", "create", "poisoned", "--version", "poisoned", actor="engineer").exit_code == 0
    r = cli("snapshot", "approve", "poisoned", actor="reviewer")
    assert r.exit_code == 4
    assert "shadow_evaluation: trigger 2x2 at (6,6)=16 -> 7 ASR" in r.output
    show = json.loads(cli("snapshot", "show", "poisoned", "--json").output)
    assert show["status"] == "pending"
    worst = show["reviews"][0]["report"]["gates"][3]["top_triggers"][0]
    assert (worst["size"], worst["row"], worst["col"], worst["target"]) == (2, 6, 6, 7)
    assert worst["asr"] > 0.3


def test_evaluation_snapshot_with_another_schema_is_refused(reviewed):
    cli = reviewed
    store = open_store(cli.url, actor="engineer")
    add_source(store, "toy-src", kind="internal", uri="x", license="MIT")
    info = ingest_arrays(store, np.arange(60).reshape(20, 3) % 5, np.arange(20) % 2, source="toy-src",
                         dataset="toy", value_range=(0, 4))
    assert cli("snapshot", "create", "toy-eval", "--version", f"v{info.version_id}", actor="engineer").exit_code == 0
    assert cli("policy", "set", "--evaluation-snapshot", "toy-eval", "--reason", "toy", actor="reviewer").exit_code == 0
    before = state(store)
    r = cli("snapshot", "approve", "train", actor="reviewer")
    assert r.exit_code == 2
    assert _out(r).startswith("Error: evaluation snapshot 'toy-eval' (dataset 'toy') has a different "
                              "schema from snapshot 'train' (dataset 'digits'): n_features 3 vs 64;")
    assert state(store) == before
    store.close()


def test_rows_from_a_quarantined_source_fail_coverage_and_sources(reviewed):
    from lineage.errors import GateFailedError

    cli = reviewed
    eng = open_store(cli.url, actor="engineer")
    add_source(eng, "crowd", kind="crowdsourced", uri="s3://vendor/b7", license="CC-BY-4.0")
    from sklearn.datasets import load_digits

    Xd, yd = load_digits(return_X_y=True)
    info = ingest_arrays(eng, Xd[:30], yd[:30], source="crowd", dataset="digits")
    append_ingest(eng, version="digits-train", ingest=info.id, reason="batch 7", name="with-crowd")
    create_snapshot(eng, "mixed", version="with-crowd")
    rev = open_store(cli.url, actor="reviewer")
    with pytest.raises(GateFailedError, match=r"^snapshot 'mixed' not approved \(2 of 4 gates failed; "
                       r"review \d+ recorded, policy version 1\): coverage: coverage 0\.9756 < 1 \(30 of "
                       r"1228 rows uncovered: source not approved 30\); sources: 30 rows from blocked "
                       r"sources: crowd \(quarantined, 30 rows\)$"):
        approve_snapshot(rev, "mixed")
    snap = get_snapshot(rev, "mixed")
    assert snap.status == "pending" and snap.coverage == pytest.approx(0.9756, abs=1e-4)
    gates = snap.reviews[-1].report["gates"]
    assert gates[1]["sources"] == [{"source": "sklearn-digits", "status": "approved", "rows": 1198},
                                   {"source": "crowd", "status": "quarantined", "rows": 30}]
    eng.close()
    rev.close()


def _forge_approval(url: str, review_id: int, snapshot: str, *, junk_digest: bool) -> None:
    """What an attacker with INSERT on the database does (the append-only triggers allow it):
    add a passed approval row for a snapshot, with a plausible report and, unless
    ``junk_digest``, a record digest computed exactly as the store would."""
    from datetime import datetime

    from storeutil import raw_execute

    with open_store(url) as s:
        snap = get_snapshot(s, snapshot)
    report = canonical({"snapshot": snapshot, "reviewer": "reviewer", "passed": True,
                        "content_digest": snap.content_digest,
                        "manifest_digest": snap.manifest_digest,
                        "gates": [{"gate": g, "passed": True} for g in
                                  ("coverage", "sources", "four_eyes", "shadow_evaluation")]})
    at = datetime(2026, 1, 1)
    values = {"id": review_id, "snapshot_id": snap.id, "decision": "approve", "passed": True,
              "reason": "lgtm", "policy_id": 1, "content_digest": snap.content_digest,
              "report": report, "actor": "reviewer", "created_at": at}
    digest = "0" * 64 if junk_digest else record_digest("snapshot_reviews", values)
    raw_execute(url, "INSERT INTO snapshot_reviews (id, snapshot_id, decision, passed, reason, "
                "policy_id, content_digest, report, actor, created_at, record_digest) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (review_id, snap.id, "approve", True, "lgtm", 1, snap.content_digest, report,
                 "reviewer", "2026-01-01 00:00:00.000000", digest))


def test_a_forged_approval_is_refused_at_load_and_train(reviewed):
    from lineage.errors import IntegrityError

    cli = reviewed
    store = open_store(cli.url)
    _forge_approval(cli.url, 1, "train", junk_digest=False)  # digest column made to match
    _forge_approval(cli.url, 2, "eval", junk_digest=True)
    assert get_snapshot(store, "train").status == "approved"  # the status alone believes it
    with pytest.raises(IntegrityError, match=r"^review 1 \(the approval of snapshot 'train'\) is not "
                       r"recorded in the event chain as stored \(inserted or changed behind the "
                       r"store's back\): run `lineage verify`$"):
        load_snapshot("train", db=cli.url)
    with pytest.raises(IntegrityError, match=r"^review 2 \(the approval of snapshot 'eval'\) is not "
                       r"recorded in the event chain"):
        load_snapshot("eval", store=store, return_X_y=True)
    before = counts(store)
    r = cli("train", "--snapshot", "train", "--model", "clf", actor="engineer")
    assert (r.exit_code, _out(r)) == (
        5, "Error: review 1 (the approval of snapshot 'train') is not recorded in the event chain "
           "as stored (inserted or changed behind the store's back): run `lineage verify`")
    assert counts(store) == before
    store.close()


def test_a_retyped_dataset_is_refused_by_the_load_even_with_the_chain_rewritten(reviewed):
    """The dataset's dtype and feature count say how every blob reads, and no chunk or manifest
    digest covers them. The approval signs the dataset record's digest, so a load refuses a
    retyped dataset even when the chain is rewritten from the dataset's listing on (which
    verify can tell only with a head noted before, ``--expect``)."""
    from test_digests import _forge, _reanchor, _row

    from lineage.errors import IntegrityError

    cli = reviewed
    r = cli("snapshot", "approve", "train", actor="reviewer")
    assert r.exit_code == 0, r.output
    show = json.loads(cli("snapshot", "show", "train", "--json").output)
    ds = _row(cli.url, "datasets", 1)
    approval = show["reviews"][-1]["report"]
    assert approval["dataset_digest"] == ds["record_digest"]
    X = load_snapshot("train", db=cli.url).data
    assert X.dtype == np.uint8 and X.shape[1] == 64
    # uint8 x 64 read as float64 x 8: the same 64 bytes a row, every blob length still right.
    _reanchor(cli.url, "datasets", 1, _forge(cli.url, "datasets", {**ds, "dtype": "float64",
                                                                   "n_features": 8}))
    with pytest.raises(IntegrityError, match=r"^snapshot 'train': its dataset's record is not the "
                                             r"one its approval signed: run `lineage verify`$"):
        load_snapshot("train", db=cli.url)
    r = cli("train", "--snapshot", "train", "--model", "clf", actor="engineer")
    assert r.exit_code == 5 and "its dataset's record is not the one its approval signed" in r.output


def test_the_people_under_review_do_not_control_the_gate(reviewed):
    cli = reviewed
    store = open_store(cli.url)
    # The engineer loosens the gate (with a reason: it is required) and makes an evaluation
    # snapshot of their own; the reviewer then points the policy at it and touches nothing else.
    r = cli("policy", "set", "--max-asr", "1", "--min-coverage", "0", "--reason", "flaky gate",
            actor="engineer")
    assert r.exit_code == 0, r.output
    assert cli("snapshot", "create", "eval2", "--version", "digits-test", actor="engineer").exit_code == 0
    r = cli("policy", "set", "--evaluation-snapshot", "eval2", "--reason", "new held-out set",
            actor="reviewer")
    assert r.exit_code == 0, r.output
    r = cli("snapshot", "approve", "train", actor="reviewer")
    assert (r.exit_code, _out(r)) == (
        4, "Error: snapshot 'train' not approved (1 of 4 gates failed; review 1 recorded, policy "
           "version 3): four_eyes: 'engineer', under review, chose settings of policy version 3 in "
           "force (max_asr, min_coverage); 'engineer', under review, created the evaluation "
           "snapshot 'eval2'")
    show = json.loads(cli("snapshot", "show", "train", "--json").output)
    assert show["status"] == "pending"
    eyes = show["reviews"][0]["report"]["gates"][2]
    assert eyes["policy_authors"] == {"evaluation_snapshot": "reviewer", "max_asr": "engineer",
                                      "min_coverage": "engineer"}
    assert eyes["evaluation_creator"] == "engineer"
    store.close()


def test_source_revocation_trace_and_export_of_an_affected_model(reviewed, tmp_path):
    from storeutil import drop_guards, raw_execute

    cli = reviewed
    store = open_store(cli.url)
    assert cli("snapshot", "approve", "train", actor="reviewer").exit_code == 0
    r = cli("train", "--snapshot", "train", "--model", "clf", actor="engineer")
    assert r.exit_code == 0, r.output
    t = json.loads(cli("trace", "model", "clf:1", "--json").output)
    assert t["verified"]["ok"] is True and t["verified"]["records_anchored_in_chain"] is True
    # model version, snapshot, its approval, 2 versions, 1 transformation, 1 ingest, 1 source
    assert t["verified"]["records"] == 8 and t["verified"]["approval_anchored"] is True

    # A source revoked after approval: the snapshot no longer loads, training is refused.
    r = cli("source", "review", "sklearn-digits", "--revoke", "--reason", "license withdrawn",
            actor="reviewer")
    assert r.exit_code == 0, r.output
    message = ("snapshot 'train' holds 1198 rows from source 'sklearn-digits', now revoked (by "
               "reviewer: license withdrawn): training reads only approved snapshots whose sources "
               "are still approved (revoke the snapshot and create one without them)")
    with pytest.raises(SnapshotNotApprovedError) as caught:
        load_snapshot("train", db=cli.url)
    assert str(caught.value) == message
    before = state(store)
    r = cli("train", "--snapshot", "train", "--model", "clf", actor="engineer")
    assert (r.exit_code, _out(r)) == (4, f"Error: {message}")
    assert state(store) == before
    r = cli("model", "show", "clf:1")
    assert "AFFECTED: source 'sklearn-digits' of snapshot 'train' revoked by reviewer at " in r.output
    assert ": license withdrawn" in r.output
    r = cli("model", "release", "clf:1", actor="reviewer")
    assert r.exit_code == 4 and "snapshot: model is affected: source 'sklearn-digits'" in r.output

    # Revoked: the model is affected; export still writes it, with a warning, and says so.
    assert cli("snapshot", "revoke", "train", "--reason", "source revoked", actor="reviewer").exit_code == 0
    r = cli("model", "export", "clf:1", "--out", str(tmp_path / "m.pkl"), "--json")
    assert r.exit_code == 0, r.output
    assert r.stderr.strip().startswith("Warning: clf:1 is affected (snapshot 'train' revoked by reviewer at ")
    assert r.stderr.strip().endswith(": source revoked); do not deploy it")
    exported = json.loads(r.stdout)
    assert exported["affected"] is True and exported["status"] == "affected"
    r = cli("model", "export", "clf:1", "--out", str(tmp_path / "m2.pkl"))
    assert r.exit_code == 0 and "Warning: clf:1 is affected" in r.stderr

    # A record changed behind the store's back, its digest column recomputed to match: the trace
    # checks the chain's digests, not the row's own, and names it.
    with store.read() as session:
        tr = session.get(Transformation, 1)
        values = {c.name: getattr(tr, c.key) for c in Transformation.__table__.columns}
    values["reason"] = "nothing to see here"
    drop_guards(cli.url, "transformations")
    raw_execute(cli.url, "UPDATE transformations SET reason = ?, record_digest = ? WHERE id = 1",
                ("nothing to see here", record_digest("transformations", values)))
    r = cli("trace", "model", "clf:1")
    assert (r.exit_code, _out(r)) == (
        5, "Error: transformation 1 (split) is not recorded in the event chain as stored (inserted "
           "or changed behind the store's back): run `lineage verify`")
    store.close()
