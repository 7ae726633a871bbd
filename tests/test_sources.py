"""Sources: kinds, the status that comes from the newest review, and which statuses may ingest."""

import numpy as np
import pytest

from lineage.data.ingest import ingest_arrays
from lineage.data.sources import add_source, get_source, list_sources
from lineage.errors import (
    AlreadyExistsError,
    BadInputError,
    NotFoundError,
    QuarantineError,
    RefusedError,
)
from lineage.review.source_reviews import review_source
from lineage.store.log import list_events
from storeutil import counts, state

X = np.arange(12, dtype=np.float64).reshape(3, 4) % 5
Y = np.array([0, 1, 0])


@pytest.mark.parametrize("kind,status", [
    ("internal", "unreviewed"), ("external", "quarantined"), ("crowdsourced", "quarantined"),
    ("scraped", "quarantined"), ("third-party", "quarantined"),
])
def test_kinds_and_their_first_status(store, kind, status):
    info = add_source(store, f"src-{kind}", kind=kind, uri="s3://x", license="MIT", owner="ml")
    assert (info.kind, info.status, info.uri, info.license, info.owner, info.actor) == (
        kind, status, "s3://x", "MIT", "ml", "tester")
    assert info.reviewed_by is None


def test_bad_source_names_and_kinds(store):
    with pytest.raises(BadInputError, match=r"^unknown source kind; use one of: internal, external, "
                                            r"crowdsourced, scraped, third-party$"):
        add_source(store, "x", kind="vendor")
    with pytest.raises(BadInputError, match=r"^a source needs a name$"):
        add_source(store, "  ", kind="internal")
    add_source(store, "x", kind="internal")
    before = state(store)
    with pytest.raises(AlreadyExistsError, match=r"^a source named 'x' already exists$"):
        add_source(store, "x", kind="external")
    assert state(store) == before


def test_approve_reject_revoke_flow(store):
    add_source(store, "crowd", kind="crowdsourced")
    approved = review_source(store, "crowd", decision="approve", reason="license checked")
    assert (approved.status, approved.reviewed_by, approved.review_reason) == (
        "approved", "tester", "license checked")
    revoked = review_source(store, "crowd", decision="revoke", reason="vendor breach")
    assert revoked.status == "revoked"
    assert review_source(store, "crowd", decision="approve", reason="re-audited").status == "approved"
    rejected = review_source(store, "crowd", decision="reject", reason="license is fake")
    assert (rejected.status, rejected.review_reason) == ("rejected", "license is fake")
    assert get_source(store, "crowd").status == "rejected"
    assert [s.status for s in list_sources(store)] == ["rejected"]


def test_a_review_is_a_new_record_not_a_status_flip(store):
    add_source(store, "crowd", kind="crowdsourced")
    before = counts(store)
    review_source(store, "crowd", decision="approve", reason="ok")
    review_source(store, "crowd", decision="reject", reason="not ok")
    after = counts(store)
    assert after["sources"] == before["sources"] == 1
    assert after["source_reviews"] == before["source_reviews"] + 2
    assert [e.kind for e in list_events(store)] == ["source.review", "source.review", "source.add"]
    assert list_events(store)[0].details == {"source": "crowd", "decision": "reject"}


def test_reason_required_to_reject_or_revoke(store):
    add_source(store, "crowd", kind="crowdsourced")
    before = state(store)
    for decision in ("reject", "revoke"):
        for reason in (None, "", "   "):
            with pytest.raises(BadInputError, match=rf"^--reason is required to {decision} a source$"):
                review_source(store, "crowd", decision=decision, reason=reason)
    assert state(store) == before
    assert review_source(store, "crowd", decision="approve").status == "approved"  # no reason needed


def test_only_an_approved_source_can_be_revoked(store):
    add_source(store, "crowd", kind="crowdsourced")
    before = state(store)
    with pytest.raises(RefusedError, match=r"^source 'crowd' is quarantined: only an approved "
                                            r"source can be revoked$"):
        review_source(store, "crowd", decision="revoke", reason="why")
    assert state(store) == before


def test_unknown_source_and_decision(store):
    with pytest.raises(NotFoundError, match=r"^no source named 'ghost' \(see `lineage source list`\)$"):
        review_source(store, "ghost", decision="approve")
    with pytest.raises(NotFoundError, match=r"^no source named 'ghost'"):
        get_source(store, "ghost")
    add_source(store, "crowd", kind="crowdsourced")
    with pytest.raises(BadInputError, match=r"^a review decision is one of: approve, reject, revoke$"):
        review_source(store, "crowd", decision="maybe")


def test_quarantined_and_unreviewed_sources_can_ingest_rejected_and_revoked_cannot(store):
    add_source(store, "crowd", kind="crowdsourced")
    add_source(store, "team", kind="internal")
    assert ingest_arrays(store, X, Y, source="crowd", dataset="toy").n_rows == 3
    assert ingest_arrays(store, X, Y, source="team", dataset="toy").n_rows == 3

    review_source(store, "crowd", decision="reject", reason="poisoned")
    review_source(store, "team", decision="approve")
    review_source(store, "team", decision="revoke", reason="leaked test data")
    before = state(store)
    for name, status in (("crowd", "rejected"), ("team", "revoked")):
        with pytest.raises(QuarantineError, match=rf"^source '{name}' is {status}: its rows may not "
                                                  r"be ingested$"):
            ingest_arrays(store, X, Y, source=name, dataset="toy")
    assert state(store) == before
