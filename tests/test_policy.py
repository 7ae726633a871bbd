"""Policy as versioned records: defaults, new versions, validation."""

import pytest

from lineage.errors import BadInputError, NotFoundError
from lineage.review.policy import DEFAULTS, get_policy, list_policies, set_policy
from storeutil import state


def test_defaults_then_versions(store):
    p = get_policy(store)
    assert p == DEFAULTS and p.version == 0 and p.min_coverage == 1.0 and p.evaluation_snapshot is None
    one = set_policy(store, max_asr=0.2, reason="tighter")
    two = set_policy(store, min_clean_accuracy=0.95, scan_sizes=[3, 1, 1], reason="stricter")
    assert (one.version, two.version) == (1, 2)
    assert two.max_asr == 0.2 and two.min_clean_accuracy == 0.95 and two.scan_sizes == (1, 3)
    assert get_policy(store) == two and get_policy(store, 1) == one and get_policy(store, 0) == DEFAULTS
    assert [p.version for p in list_policies(store)] == [1, 2]


def test_bad_policy_input_changes_nothing(store):
    before = state(store)
    with pytest.raises(BadInputError, match=r"^--max-asr 1.5: give a fraction between 0 and 1$"):
        set_policy(store, max_asr=1.5, reason="x")
    with pytest.raises(BadInputError, match=r"^nothing to set"):
        set_policy(store)
    with pytest.raises(BadInputError, match=r"^--reference-estimator 'svm': use one of logistic, mlp$"):
        set_policy(store, reference_estimator="svm", reason="x")
    with pytest.raises(NotFoundError, match=r"^no snapshot named 'nope' to evaluate on"):
        set_policy(store, evaluation_snapshot="nope", reason="x")
    with pytest.raises(BadInputError, match=r"^--reason is required to set the policy: say why the "
                                            r"thresholds change$"):
        set_policy(store, max_asr=1.0, min_coverage=0.0, reason=" ")
    with pytest.raises(NotFoundError, match=r"^no policy version 7"):
        get_policy(store, 7)
    assert state(store) == before


def test_policy_cli(cli):
    r = cli("policy", "set", "--max-asr", "0.3", "--scan-sizes", "2,3", "--reason", "calibrated", "--json", actor="lead")
    assert r.exit_code == 0, r.output
    assert '"version": 1' in r.output and '"scan_sizes": [\n    2,\n    3\n  ]' in r.output
    r = cli("policy", "set", "--min-coverage", "2")
    assert (r.exit_code, r.output.strip()) == (2, "Error: --min-coverage 2: give a fraction between 0 and 1")
    r = cli("policy", "set", "--max-asr", "1", "--min-coverage", "0", actor="engineer")
    assert (r.exit_code, r.output.strip()) == (
        2, "Error: --reason is required to set the policy: say why the thresholds change")
    r = cli("policy", "set", "--scan-sizes", "a,b")
    assert (r.exit_code, r.output.strip()) == (2, "Error: --scan-sizes 'a,b': give sizes like 1,2,3")
    r = cli("policy", "show", "--all")
    assert r.exit_code == 0 and "lead" in r.output


def test_scan_sizes_must_fit_the_evaluation_images(store):
    """A patch larger than the image stamps nothing: a policy whose scan sizes do not fit the
    evaluation snapshot's 8x8 images would switch the ASR gate off, so it is refused (here the
    sizes come second; the next test sets the snapshot second)."""
    from lineage.data.ingest import ingest_digits
    from lineage.review.snapshots import create_snapshot

    ingest_digits(store)
    create_snapshot(store, "eval", version="v1")
    with_eval = set_policy(store, evaluation_snapshot="eval", reason="held out")
    before = state(store)
    with pytest.raises(BadInputError, match=r"^--scan-sizes 9,1000: larger than the 8x8 images "
                                            r"of evaluation snapshot 'eval' \(at most 8\)$"):
        set_policy(store, scan_sizes=[1, 9, 1000], reason="bigger patches")
    assert state(store) == before
    assert set_policy(store, scan_sizes=[8], reason="the whole image").scan_sizes == (8,)
    assert get_policy(store).evaluation_snapshot == with_eval.evaluation_snapshot


def test_an_evaluation_snapshot_too_small_for_the_scan_sizes_is_refused(store):
    from lineage.data.ingest import ingest_digits
    from lineage.review.snapshots import create_snapshot

    set_policy(store, scan_sizes=[2, 12], reason="for 28x28 images")  # nothing to check yet
    ingest_digits(store)
    create_snapshot(store, "eval", version="v1")
    before = state(store)
    with pytest.raises(BadInputError, match=r"^--scan-sizes 12: larger than the 8x8 images"):
        set_policy(store, evaluation_snapshot="eval", reason="held out")
    assert state(store) == before
