"""Trust that does not rest on database permissions (issue 9): each attack of an attacker who can
read and write the database (but holds no reviewer's key and no published checkpoint) is written
here as a test: it works at the level the attacker controls, and the load paths refuse it.

Attackers forge with raw SQL and the public algorithms (``lineage.store.chain``): they know the
schema and the digests, not the keys.
"""

import base64
import json
import os
import pickle
from datetime import datetime

import pytest
from conftest import Cli

from lineage.data.ingest import ingest_digits
from lineage.data.transforms import split_version
from lineage.errors import (
    BadInputError,
    IntegrityError,
    NotFoundError,
    RefusedError,
    SnapshotNotApprovedError,
)
from lineage.models.registry import load_model
from lineage.models.training import train
from lineage.review.approval import load_snapshot, prove_approval
from lineage.review.attestations import PAYLOAD_TYPE, pae
from lineage.review.checkpoints import verify_proof, write_checkpoint
from lineage.review.gates import approve_snapshot, revoke_snapshot
from lineage.review.keys import load_signing_key, read_trust
from lineage.review.policy import set_policy
from lineage.review.snapshots import create_snapshot, get_snapshot
from lineage.review.source_reviews import review_source
from lineage.store.chain import GENESIS, canonical, event_digest, record_digest
from lineage.store.engine import open_store
from lineage.store.verify import verify_store
from storeutil import counts, drop_guards, raw_connect, raw_execute, state

AT = datetime(2026, 12, 1, 12, 0, 0)


def _reviewed(url: str) -> dict:
    """Digits ingested by the engineer, approved as a source, split; "eval" frozen by the
    reviewer; "train" approved by the reviewer; "pending" made by the engineer, not reviewed."""
    eng = open_store(url, actor="engineer")
    rev = open_store(url, actor="reviewer")
    try:
        ingest_digits(eng)
        review_source(rev, "sklearn-digits", decision="approve", reason="license checked")
        split_version(eng, version="v1", test_size=1 / 3, seed=0, name="digits", reason="holdout")
        create_snapshot(rev, "eval", version="digits-test")
        set_policy(rev, evaluation_snapshot="eval", reason="held-out split")
        create_snapshot(eng, "train", version="digits-train")
        approve_snapshot(rev, "train")
        create_snapshot(eng, "pending", version="digits-train")
    finally:
        eng.close()
        rev.close()
    return {}


@pytest.fixture
def reviewed(backend, tmp_path, stores):
    url, _ = stores.copy(backend, tmp_path, build=_reviewed)
    store = open_store(url, actor="engineer")
    yield store
    store.close()
    stores.drop(url)


@pytest.fixture
def cli(reviewed):
    """`lineage ...` against the reviewed store (not conftest's empty one)."""
    return Cli(reviewed.url)


def _sql(url: str, sql: str) -> str:
    return sql if url.startswith("sqlite") else sql.replace("?", "%s")


def _rows(url: str, sql: str, params=()):
    conn = raw_connect(url)
    try:
        return list(conn.execute(_sql(url, sql), params).fetchall())
    finally:
        conn.close()


def _append_event(url: str, kind: str, records: dict) -> None:
    """A well-formed event at the chain's head, listing ``records`` ({table: [[id, digest]]}):
    the chain has no secret, so the attacker can always do this."""
    last = _rows(url, "SELECT id, digest FROM events ORDER BY id DESC LIMIT 1")
    event_id, prev = (last[0][0] + 1, last[0][1]) if last else (1, GENESIS)
    payload = canonical({"summary": "forged", "records": records})
    digest = event_digest(id=event_id, prev_digest=prev, kind=kind, actor="reviewer",
                          created_at=AT, payload=payload)
    raw_execute(url, "INSERT INTO events (id, prev_digest, digest, kind, actor, created_at, "
                "payload) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (event_id, prev, digest, kind, "reviewer", AT.isoformat(sep=" "), payload))


def _forge_approval(store, snapshot: str) -> int:
    """A passed approval row for ``snapshot`` whose record digest is right and which a new,
    well-formed event at the head anchors: everything but a reviewer's signature."""
    snap = get_snapshot(store, snapshot)
    real = get_snapshot(store, "train").reviews[0].report
    report = canonical({**real, "snapshot": snapshot, "content_digest": snap.content_digest,
                        "manifest_digest": snap.manifest_digest})
    review_id = _rows(store.url, "SELECT MAX(id) FROM snapshot_reviews")[0][0] + 1
    values = {"id": review_id, "snapshot_id": snap.id, "decision": "approve", "passed": True,
              "reason": "lgtm", "policy_id": 1, "content_digest": snap.content_digest,
              "report": report, "actor": "reviewer", "created_at": AT}
    digest = record_digest("snapshot_reviews", values)
    raw_execute(store.url, "INSERT INTO snapshot_reviews (id, snapshot_id, decision, passed, "
                "reason, policy_id, content_digest, report, actor, created_at, record_digest) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (review_id, snap.id, "approve", True, "lgtm", 1, snap.content_digest, report,
                 "reviewer", AT.isoformat(sep=" "), digest))
    _append_event(store.url, "snapshot.approve", {"snapshot_reviews": [[review_id, digest]]})
    return review_id


def test_a_forged_approval_with_a_well_formed_event_is_refused(reviewed, cli):
    review_id = _forge_approval(reviewed, "pending")
    # The attack works against the chain alone: verify without a trust file says OK...
    assert verify_store(reviewed).events > 0
    assert get_snapshot(reviewed, "pending").status == "approved"
    # ...but no load path believes an approval nobody trusted signed.
    message = (f"review {review_id} (the approval of snapshot 'pending') is not signed (recorded "
               "before signed reviews, or inserted behind the store's back): review it again")
    with pytest.raises(RefusedError, match=rf"^{message.replace('(', '[(]').replace(')', '[)]')}$"):
        load_snapshot("pending", store=reviewed)
    before = state(reviewed)
    r = cli("train", "--snapshot", "pending", "--model", "clf", actor="engineer")
    assert (r.exit_code, r.output) == (4, f"Error: {message}\n")
    assert state(reviewed) == before
    # `lineage verify` with the trust file names the forged record.
    r = cli("verify")
    assert (r.exit_code, r.output) == (
        5, f"Error: snapshot_reviews record {review_id} is not signed, though the store signs "
           "every review: inserted behind the store's back\n")


def test_a_signature_by_an_untrusted_key_or_for_another_record_is_refused(reviewed):
    review_id = _forge_approval(reviewed, "pending")
    snap = get_snapshot(reviewed, "pending")
    attacker = load_signing_key("attacker")  # a key of their own, not in the trust file

    def forge_attestation(key, record_id):
        body = {"_type": "https://in-toto.io/Statement/v1",
                "subject": [{"name": "snapshot:pending", "digest": {"sha256": snap.content_digest}}],
                "predicateType": "https://lineage.dev/attestation/review/v1",
                "predicate": {"decision": "approve", "passed": True, "snapshot": "pending",
                              "manifest_digest": snap.manifest_digest, "report": {},
                              "record": {"table": "snapshot_reviews", "id": record_id}}}
        payload = canonical(body).encode()
        return canonical({"payloadType": PAYLOAD_TYPE,
                          "payload": base64.b64encode(payload).decode(),
                          "signatures": [{"keyid": key.keyid, "sig": base64.b64encode(
                              key.sign(pae(PAYLOAD_TYPE, payload))).decode()}]})

    raw_execute(reviewed.url, "INSERT INTO attestations (id, record_table, record_id, subject, "
                "digest, keyid, signer, envelope, actor, created_at, record_digest) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (999, "snapshot_reviews", review_id, "snapshot:pending", snap.content_digest,
                 attacker.keyid, "reviewer", forge_attestation(attacker, review_id), "reviewer",
                 AT.isoformat(sep=" "), "0" * 64))
    with pytest.raises(RefusedError, match=r"is signed by no key in the trust file .*only "
                                           r"trusted reviewers' signatures count$"):
        load_snapshot("pending", store=reviewed)
    # A real signature, replayed from the genuine approval of "train" onto the forged review.
    genuine = _rows(reviewed.url, "SELECT envelope FROM attestations WHERE record_table = "
                    "'snapshot_reviews' AND record_id = 1")[0][0]
    drop_guards(reviewed.url, "attestations")
    raw_execute(reviewed.url, "UPDATE attestations SET envelope = ? WHERE id = 999", (genuine,))
    with pytest.raises(IntegrityError, match=r"its signed statement is about another record"):
        load_snapshot("pending", store=reviewed)


@pytest.mark.parametrize("alias", ["engineer ", "Engineer", "ＥＮＧＩＮＥＥＲ"])
def test_a_name_alias_does_not_pass_four_eyes(reviewed, cli, alias):
    # The alias has the engineer's key (a person may hold several): only the name differs.
    r = cli("snapshot", "approve", "pending", actor=alias)
    assert r.exit_code == 4
    assert f"four_eyes: reviewer '{alias.strip()}' created the snapshot" in r.output
    assert get_snapshot(reviewed, "pending").status == "pending"


@pytest.mark.parametrize("alias", ["engi\u200bneer", "engineer\u202e", "engi\tneer"])
def test_invisible_characters_in_a_name_are_refused(reviewed, cli, alias):
    before = state(reviewed)
    r = cli("snapshot", "approve", "pending", actor=alias)
    assert r.exit_code == 2
    assert r.output.startswith("Error: actor (--as) ") and "invisible or control character" in r.output
    assert state(reviewed) == before


def test_the_ingester_of_any_row_is_under_review(backend, tmp_path, stores):
    url, _ = stores.copy(backend, tmp_path)
    ing = open_store(url, actor="ingester")
    eng = open_store(url, actor="engineer")
    rev = open_store(url, actor="reviewer")
    try:
        ingest_digits(ing)
        review_source(rev, "sklearn-digits", decision="approve", reason="ok")
        split_version(eng, version="v1", test_size=1 / 3, seed=0, name="digits", reason="holdout")
        create_snapshot(rev, "eval", version="digits-test")
        set_policy(rev, evaluation_snapshot="eval", reason="held-out split")
        create_snapshot(eng, "train", version="digits-train")
        with pytest.raises(RefusedError, match=r"four_eyes: reviewer 'ingester' ingested rows "
                                               r"\(ingest 1\)"):
            approve_snapshot(ing, "train")
        assert get_snapshot(eng, "train").status == "pending"
    finally:
        for s in (ing, eng, rev):
            s.close()
    stores.drop(url)


def test_a_reviewer_key_also_trusted_as_someone_under_review_fails_four_eyes(reviewed, tmp_path):
    # A hand-edited trust file lists the reviewer's key under the engineer's name as well.
    trust = json.loads(open(os.environ["LINEAGE_TRUST"]).read())
    reviewer = next(k for k in trust["keys"] if k["name"] == "reviewer")
    trust["keys"].append({**reviewer, "name": "engineer"})
    path = tmp_path / "edited-trust.json"
    path.write_text(json.dumps(trust))
    rev = open_store(reviewed.url, actor="reviewer", trust=str(path))
    try:
        with pytest.raises(RefusedError, match=r"the reviewer's key [0-9a-f]{16} is also trusted "
                                               r"as 'engineer', under review"):
            approve_snapshot(rev, "pending")
    finally:
        rev.close()


def test_without_a_trust_file_the_error_says_what_to_run(reviewed, tmp_path, monkeypatch, cli):
    monkeypatch.setenv("LINEAGE_TRUST", str(tmp_path / "none.json"))
    before = state(reviewed)
    r = cli("snapshot", "approve", "pending", actor="reviewer")
    assert r.exit_code == 3
    assert r.output.startswith(f"Error: no trust file {tmp_path / 'none.json'}: it lists whose "
                               "public keys may sign reviews; run `lineage key create --as NAME`, "
                               "then `lineage key trust NAME`")
    with pytest.raises(NotFoundError, match="no trust file"):
        load_snapshot("train", store=reviewed)
    assert state(reviewed) == before


class _WritesAFile:
    """What an attacker's pickle does when loaded: here, leave a file behind."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_swapped_model_artifact_is_never_unpickled(reviewed, tmp_path, cli):
    info = train(reviewed, snapshot="train", model="clf", seed=0)
    sentinel = tmp_path / "pwned"
    evil = pickle.dumps(_WritesAFile(str(sentinel)))
    import hashlib

    sha = hashlib.sha256(evil).hexdigest()
    url = reviewed.url
    for table in ("artifact_chunks", "model_versions"):
        drop_guards(url, table)
    raw_execute(url, "UPDATE artifact_chunks SET data = ? WHERE model_version_id = ?", (evil, info.id))
    # The model record follows, its digest recomputed, and a new event anchors it.
    row = dict(zip(["id", "model", "number", "snapshot_id", "snapshot_digest", "estimator",
                    "params", "code_identity", "artifact_sha256", "artifact_size", "metrics",
                    "policy_id", "actor", "created_at"],
                   _rows(url, "SELECT id, model, number, snapshot_id, snapshot_digest, estimator, "
                         "params, code_identity, artifact_sha256, artifact_size, metrics, "
                         "policy_id, actor, created_at FROM model_versions WHERE id = ?",
                         (info.id,))[0]))
    row.update(artifact_sha256=sha, artifact_size=len(evil))
    if isinstance(row["created_at"], str):
        row["created_at"] = datetime.fromisoformat(row["created_at"])
    digest = record_digest("model_versions", row)
    raw_execute(url, "UPDATE model_versions SET artifact_sha256 = ?, artifact_size = ?, "
                "record_digest = ? WHERE id = ?", (sha, len(evil), digest, info.id))
    _append_event(url, "model.train", {"model_versions": [[info.id, digest]]})
    with pytest.raises(IntegrityError, match=r"^model clf:1: its artifact digest is not the one "
                                             r"its trainer signed: run `lineage verify`$"):
        load_model(reviewed, "clf:1")
    out = tmp_path / "clf.skops"
    r = cli("model", "export", "clf:1", "--out", str(out))
    assert r.exit_code == 5 and not out.exists()
    assert not sentinel.exists()  # nothing was unpickled


def test_a_pickle_is_refused_unparsed():
    from lineage.models.registry import load_artifact

    with pytest.raises(IntegrityError, match="not a skops file .* never unpickled"):
        load_artifact(pickle.dumps(_WritesAFile("/tmp/never")), what="model x:1")
    assert not os.path.exists("/tmp/never")


def test_a_revocation_cut_from_history_is_caught_by_the_witness(reviewed, tmp_path, monkeypatch,
                                                                cli):
    witness = tmp_path / "witness.jsonl"
    monkeypatch.setenv("LINEAGE_WITNESS", str(witness))
    rev = open_store(reviewed.url, actor="reviewer")
    try:
        write_checkpoint(rev, witness, append=True)
        events_before = verify_store(reviewed).events
        revoke_snapshot(rev, "train", reason="poisoned rows found")  # appends a checkpoint too
    finally:
        rev.close()
    assert len(witness.read_text().splitlines()) == 2
    with pytest.raises(SnapshotNotApprovedError, match="is revoked"):
        load_snapshot("train", store=reviewed)
    # The attacker deletes the revocation, its signature and its event: the chain's tail.
    url = reviewed.url
    for table in ("events", "snapshot_reviews", "attestations"):
        drop_guards(url, table)
    raw_execute(url, "DELETE FROM attestations WHERE record_table = 'snapshot_reviews' AND "
                "record_id = 2")
    raw_execute(url, "DELETE FROM snapshot_reviews WHERE decision = 'revoke'")
    raw_execute(url, "DELETE FROM events WHERE id > ?", (events_before,))
    assert verify_store(reviewed).events == events_before  # a shorter chain is a valid chain
    message = (f"the event log has {events_before} events, the checkpoint of "
               r".* by reviewer \(" + str(witness).replace(".", r"\.") + rf"\) saw "
               rf"{events_before + 1}: history was cut back; event {events_before + 1} is missing")
    with pytest.raises(IntegrityError, match=message):
        load_snapshot("train", store=reviewed)
    r = cli("verify")
    assert r.exit_code == 5 and "history was cut back" in r.output
    monkeypatch.delenv("LINEAGE_WITNESS")  # without the witness, the rollback is not seen:
    assert load_snapshot("train", store=reviewed).data.shape[0] > 0  # the documented limit
    r = cli("verify", "--checkpoint", str(witness))
    assert r.exit_code == 5 and f"event {events_before + 1} is missing" in r.output


def test_a_rewritten_history_does_not_extend_the_checkpoint(reviewed, tmp_path, cli):
    rev = open_store(reviewed.url, actor="reviewer")
    try:
        write_checkpoint(rev, tmp_path / "cp.json")
    finally:
        rev.close()
    assert cli("verify", "--checkpoint", str(tmp_path / "cp.json")).exit_code == 0
    # Rewrite the first event's summary and recompute every digest after it: a valid chain.
    url = reviewed.url
    drop_guards(url, "events")
    events = _rows(url, "SELECT id, prev_digest, digest, kind, actor, created_at, payload FROM "
                   "events ORDER BY id")
    prev = GENESIS
    for i, (eid, _, _, kind, actor, at, payload) in enumerate(events):
        if i == 0:
            payload = payload.replace('"summary":"', '"summary":"rewritten ')
        at = at if isinstance(at, datetime) else datetime.fromisoformat(at)
        digest = event_digest(id=eid, prev_digest=prev, kind=kind, actor=actor, created_at=at,
                              payload=payload)
        raw_execute(url, "UPDATE events SET prev_digest = ?, digest = ?, payload = ? WHERE id = ?",
                    (prev, digest, payload, eid))
        prev = digest
    verify_store(reviewed)  # the chain alone cannot tell
    r = cli("verify", "--checkpoint", str(tmp_path / "cp.json"))
    assert r.exit_code == 5 and "history was rewritten" in r.output


def test_approval_attestation_and_inclusion_proof_verify_offline(reviewed, tmp_path, cli):
    r = cli("snapshot", "attestation", "train", "--out", str(tmp_path / "train.intoto.json"))
    assert r.exit_code == 0, r.output
    # Standard DSSE tooling (securesystemslib) verifies the envelope given the public key.
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey

    envelope = Envelope.from_dict(json.loads((tmp_path / "train.intoto.json").read_text()))
    key = next(k for k in read_trust().keys if k.name == "reviewer")
    public = ed25519.Ed25519PublicKey.from_public_bytes(key.public_key)
    verified = envelope.verify([SSlibKey.from_crypto(public, keyid=key.keyid)], 1)
    assert list(verified) == [key.keyid]
    statement = json.loads(envelope.payload)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"][0]["digest"]["sha256"] == get_snapshot(reviewed, "train").content_digest
    assert statement["predicate"]["decision"] == "approve"

    proof = prove_approval(reviewed, "train")
    assert verify_proof(proof)
    assert len(proof.path) <= proof.tree_size.bit_length()
    tampered = {**proof.__dict__, "event_digest": "0" * 64}
    assert not verify_proof(tampered)
    r = cli("prove", "--snapshot", "train", "--json")
    assert r.exit_code == 0 and verify_proof(json.loads(r.output))


def test_reviews_are_refused_without_a_key_and_leave_the_store_as_it_was(reviewed, cli):
    before = counts(reviewed)
    r = cli("snapshot", "approve", "pending", actor="nobody-with-a-key")
    assert r.exit_code == 3 and "no signing key for 'nobody-with-a-key'" in r.output
    r = cli("snapshot", "approve", "pending", actor="attacker")  # a key, but not trusted
    assert r.exit_code == 4 and "is not in the trust file" in r.output
    assert counts(reviewed) == before


def test_a_name_longer_than_the_limit_is_refused(reviewed, cli):
    with pytest.raises(BadInputError, match="at most 200"):
        open_store(reviewed.url, actor="x" * 201)


def test_signing_commands_take_the_trust_file_from_trust(cli, tmp_path):
    """--trust names the trust file a signing command checks its own key against: a team file
    that does not list the reviewer refuses the review (exit 4, nothing written); the default
    (LINEAGE_TRUST, set by the test keyring) lists it."""
    assert cli("source", "add", "crowd", "--kind", "crowdsourced", actor="engineer").exit_code == 0
    other = tmp_path / "team-trust.json"
    from lineage.review.keys import trust_key

    trust_key("engineer", trust=str(other))
    r = cli("source", "review", "crowd", "--approve", "--reason", "ok", "--trust", str(other),
            actor="reviewer")
    assert r.exit_code == 4 and len(r.output.splitlines()) == 1
    assert f"is not in the trust file {other}" in r.output
    crowd = [line for line in cli("source", "list").output.splitlines() if "crowd" in line]
    assert "quarantined" in crowd[0]  # the refused review wrote nothing
    r = cli("source", "review", "crowd", "--approve", "--reason", "ok", actor="reviewer")
    assert r.exit_code == 0, r.output
    # The trainer signs the model version it records: its key is checked first, in that file.
    r = cli("train", "--snapshot", "any", "--model", "m", "--trust", str(other), actor="reviewer")
    assert r.exit_code == 4 and f"is not in the trust file {other}" in r.output, r.output
