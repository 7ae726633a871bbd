"""review25: defects found reviewing the commits after c405f9f, fixed in 93a6442 (each test was
an xfail strict one first, failing on the code before the fix). On SQLite and PostgreSQL: the
world of test_attack_review24 (a vendor source, a policy, an evaluation snapshot) copied on each."""

import pytest
from conftest import BACKENDS
from test_attack_review24 import BUDGET, _approved, _world, kit  # noqa: F401 (fixtures)
from typer.testing import CliRunner

from cli.main import app
from lineage.errors import IntegrityError, RefusedError
from lineage.models.external import evaluate_model, import_model, review_model
from lineage.models.registry import load_model
from lineage.review.attestations import read_trust
from lineage.review.policy import policy_in_force, set_policy
from lineage.review.source_reviews import review_source
from lineage.store.chain import canonical
from lineage.store.engine import open_store
from storeutil import drop_guards, raw_execute


@pytest.fixture(params=BACKENDS)
def world(request, tmp_path, stores):
    """(engineer, reviewer) stores on a copy of test_attack_review24's world, per backend."""
    url, _ = stores.copy(request.param, tmp_path, build=_world)
    eng, rev = open_store(url, actor="engineer"), open_store(url, actor="reviewer")
    yield eng, rev
    eng.close()
    rev.close()
    stores.drop(url)


_REVOKE_ID = ("(SELECT max(id) FROM source_reviews WHERE decision = 'revoke' AND source_id = "
              "(SELECT id FROM sources WHERE name = 'vendor-models'))")


# ------------------------------------------------------------------ source revocation fails open

def test_deleting_a_source_revocations_signature_does_not_unrevoke_it(world, kit):
    eng, rev = world
    _approved(eng, rev, kit["files"]["clean"])
    review_source(rev, "vendor-models", decision="revoke", reason="vendor breached")
    with pytest.raises(RefusedError, match="affected"):
        load_model(eng, "vendor-clf:1")
    # The attacker (raw SQL, no key) deletes only the revocation's signed statement.
    drop_guards(eng.url, "attestations")
    raw_execute(eng.url, "DELETE FROM attestations WHERE record_table = 'source_reviews' AND "
                f"record_id = {_REVOKE_ID}")
    with pytest.raises((RefusedError, IntegrityError)):
        load_model(eng, "vendor-clf:1")


def test_deleting_a_source_revocation_does_not_unrevoke_it(world, kit):
    eng, rev = world
    _approved(eng, rev, kit["files"]["clean"])
    review_source(rev, "vendor-models", decision="revoke", reason="vendor breached")
    with pytest.raises(RefusedError, match="affected"):
        load_model(eng, "vendor-clf:1")
    drop_guards(eng.url, "source_reviews")
    raw_execute(eng.url, f"DELETE FROM source_reviews WHERE id = {_REVOKE_ID}")
    with pytest.raises((RefusedError, IntegrityError)):
        load_model(eng, "vendor-clf:1")


# ------------------------------------------------------------------ policy rollback

def test_corrupting_the_newest_policys_signature_does_not_roll_back_to_a_laxer_one(world):
    eng, rev = world
    set_policy(rev, min_clean_accuracy=0.0, max_asr=1.0, reason="exploration")     # lax, signed
    set_policy(rev, min_clean_accuracy=0.9, max_asr=0.3, reason="production")      # strict, signed
    trust = read_trust(rev.trust)
    with rev.read() as s:
        strict = policy_in_force(s, trust)
    assert strict.max_asr == 0.3
    drop_guards(eng.url, "attestations")
    raw_execute(eng.url, "UPDATE attestations SET envelope = '{}' WHERE record_table = "
                f"'policies' AND record_id = {strict.version}")
    with rev.read() as s:
        try:
            in_force = policy_in_force(s, trust)
        except (IntegrityError, RefusedError):
            return  # failing closed is fine
    assert in_force.max_asr == 0.3, f"gates now hold to version {in_force.version}: {in_force}"


# ------------------------------------------------------------------ evaluation under a forged policy

def test_an_unsigned_policy_append_fails_closed_until_the_policy_is_set_again(world, kit):
    """One unsigned policy row stops every gate with the same reason (evaluation and review
    alike, not an 'evaluate again' that never clears), until a trusted signer sets it again."""
    from lineage.review.policy import get_policy
    from lineage.store.tables import Policy

    eng, rev = world
    before = get_policy(eng)
    nobody = open_store(eng.url, actor="no-key-at-all")
    try:
        settings = {**before.settings(), "max_asr": 1.0}
        with nobody.write() as tx:
            record = tx.add(Policy(settings=canonical(settings), reason="tuning"))
            tx.event("policy.set", f"policy version {record.id}: lowered", policy=record.id,
                     changes={"max_asr": 1.0})
            forged = record.id
    finally:
        nobody.close()
    with pytest.raises(IntegrityError, match=f"policy version {forged} "):
        import_model(eng, kit["files"]["clean"], name="vendor-clf", source="vendor-models")
    shown = CliRunner().invoke(app, ["policy", "show", "--db", eng.url])
    assert shown.exit_code == 5 and f"policy version {forged} (the newest)" in shown.output, \
        shown.output
    listed = CliRunner().invoke(app, ["policy", "show", "--all", "--db", eng.url])
    assert listed.exit_code == 0, listed.output  # every stored version, to see what is there
    import_model(eng, kit["files"]["clean"], name="vendor-clf", source="vendor-models",
                 dataset="digits")
    with pytest.raises(IntegrityError, match=f"policy version {forged} .*set the policy again"):
        evaluate_model(eng, "vendor-clf:1", budget=BUDGET)
    review_source(rev, "vendor-models", decision="approve", reason="contract signed")
    with pytest.raises(IntegrityError, match=f"policy version {forged} "):
        review_model(rev, "vendor-clf:1", decision="approve")
    # The reviewer sets it again: the new version starts from the genuine one, not the forgery.
    again = set_policy(rev, min_coverage=before.min_coverage, reason="re-signed after audit")
    assert again.max_asr == before.max_asr
    assert evaluate_model(eng, "vendor-clf:1", budget=BUDGET).passed
    assert review_model(rev, "vendor-clf:1", decision="approve").status == "approved"


def test_deleting_the_newest_policy_does_not_roll_back_to_a_laxer_one(world):
    eng, rev = world
    set_policy(rev, min_clean_accuracy=0.0, max_asr=1.0, reason="exploration")
    strict = set_policy(rev, min_clean_accuracy=0.9, max_asr=0.3, reason="production")
    drop_guards(eng.url, "policies")
    drop_guards(eng.url, "attestations")
    raw_execute(eng.url, f"DELETE FROM attestations WHERE record_table = 'policies' AND "
                f"record_id = {strict.version}")
    raw_execute(eng.url, f"DELETE FROM policies WHERE id = {strict.version}")
    with rev.read() as s, pytest.raises(IntegrityError, match="is gone"):
        policy_in_force(s, read_trust(rev.trust))


def test_a_forged_newest_source_review_fails_closed(world, kit):
    """A review row inserted through the database (no event, no signature) stops the gates
    instead of being skipped for the older genuine one; a signed review clears it."""
    eng, rev = world
    _approved(eng, rev, kit["files"]["clean"])
    # (PostgreSQL's ids have no default: the store numbers its records; so does the attacker.)
    raw_execute(eng.url, "INSERT INTO source_reviews (id, source_id, decision, reason, actor, "
                "created_at, record_digest) SELECT (SELECT max(id) + 1 FROM source_reviews), id, "
                "'approve', 'x', 'mallory', CURRENT_TIMESTAMP, '' FROM sources "
                "WHERE name = 'vendor-models'")
    with pytest.raises(IntegrityError, match="reviewed again"):
        load_model(eng, "vendor-clf:1")
    review_source(rev, "vendor-models", decision="approve", reason="re-checked")
    assert load_model(eng, "vendor-clf:1") is not None


# ------------------------------------------------------------------ check_listed_present's prefilter

def test_deleting_the_revocation_of_a_model_whose_name_holds_a_backslash(world, kit):
    eng, rev = world
    name = "vendor\\clf"
    _approved(eng, rev, kit["files"]["clean"], name=name)
    review_model(rev, f"{name}:1", decision="revoke", reason="backdoor reported")
    with pytest.raises(RefusedError, match="revoked"):
        load_model(eng, f"{name}:1")
    drop_guards(eng.url, "external_reviews")
    raw_execute(eng.url, "DELETE FROM external_reviews WHERE decision = 'revoke'")
    with pytest.raises(IntegrityError, match="is gone"):
        load_model(eng, f"{name}:1")


def test_control_deleting_the_revocation_of_a_plainly_named_model_is_noticed(world, kit):
    eng, rev = world
    _approved(eng, rev, kit["files"]["clean"], name="vendor-clf")
    review_model(rev, "vendor-clf:1", decision="revoke", reason="backdoor reported")
    drop_guards(eng.url, "external_reviews")
    raw_execute(eng.url, "DELETE FROM external_reviews WHERE decision = 'revoke'")
    with pytest.raises(IntegrityError, match="is gone"):
        load_model(eng, "vendor-clf:1")

