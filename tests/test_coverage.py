"""Provenance coverage: which rows have a whole known history, and why the others do not."""

import json

from lineage.data.coverage import get_coverage, version_coverage
from lineage.data.datasets import find_version
from lineage.data.ingest import ingest_arrays, ingest_digits
from lineage.data.sources import add_source
from lineage.data.transforms import (
    append_ingest,
    dedupe_rows,
    filter_rows,
    inject_trigger,
    split_version,
)
from lineage.data.versions import version_members
from lineage.review.source_reviews import review_source


def test_coverage_follows_source_review_and_transformations(store):
    info = ingest_digits(store)
    c = get_coverage(store, info.version_id)
    assert (c.n_rows, c.n_covered, c.coverage) == (1797, 0, 0.0)
    assert c.breakdown == {"source not approved": 1797}
    review_source(store, "sklearn-digits", decision="approve", reason="checked")
    assert get_coverage(store, info.version_id).coverage == 1.0
    p = inject_trigger(store, version=info.version_id, source_class=1, target_class=7, rate=0.1,
                       seed=0, reason="red team")
    c = get_coverage(store, p.version_id)  # poisoned rows have a known history: covered
    assert c.coverage == 1.0 and c.n_rows == 1797
    # A dedupe without a reason touched only the rows it removed (none remain): all covered.
    d = dedupe_rows(store, version=p.version_id)
    c = get_coverage(store, d.version_id)
    assert (c.coverage, c.breakdown) == (1.0, {})
    # The same store's session-level API, as the snapshot gate calls it.
    with store.read() as session:
        assert version_coverage(session, find_version(session, d.version_id)) == c


def test_reasonless_transformations_uncover_only_the_rows_they_touched(store):
    info = ingest_digits(store)
    review_source(store, "sklearn-digits", decision="approve")
    m = version_members(store, info.version_id)
    add_source(store, "batch-3", kind="internal", uri="s3://b3", license="MIT")
    review_source(store, "batch-3", decision="approve")
    extra = ingest_arrays(store, m.X[:10] + 0, (m.y[:10] + 1) % 10, source="batch-3")
    # Issue 3's `transform append --version v1 --ingest 2`, no --reason: the appended rows only.
    a = append_ingest(store, version=info.version_id, ingest=extra.id)
    c = get_coverage(store, a.version_id)
    assert (c.n_rows, c.n_covered) == (1807, 1797)
    assert c.breakdown == {"transformation without reason": 10}
    assert c.examples["transformation without reason"] == list(extra.row_ids)[:5]
    # Rows derived from an appended row inherit its uncovered path.
    f = filter_rows(store, version=a.version_id, rows=list(extra.row_ids)[5:], reason="keep 5")
    c = get_coverage(store, f.version_id)
    assert c.breakdown == {"transformation without reason": 5} and c.n_covered == 1797
    # A split places every row: without a reason, both sides are wholly uncovered.
    s = split_version(store, version=info.version_id, test_size=0.3, seed=0)
    for vid, n in ((s.train_version_id, s.n_train), (s.test_version_id, s.n_test)):
        c = get_coverage(store, vid)
        assert c.breakdown == {"transformation without reason": n} and c.n_covered == 0
    # Downstream of a reasoned split, a reasonless dedupe keeps everything covered.
    s2 = split_version(store, version=info.version_id, test_size=0.3, seed=0, reason="holdout")
    assert get_coverage(store, dedupe_rows(store, version=s2.train_version_id).version_id).coverage == 1.0


def test_cli_notes_a_missing_reason_on_stderr(cli):
    assert cli("ingest", "digits").exit_code == 0
    r = cli("transform", "dedupe", "--version", "v1", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["n_removed"] == 0  # stdout stays pure JSON
    assert r.stderr.splitlines() == ["note: no --reason: the rows it touched will count as uncovered"]
    r = cli("transform", "split", "--version", "v1", "--test-size", "0.3")
    assert r.exit_code == 0 and r.stderr.splitlines() == [
        "note: no --reason: a split places every row, so every row of both versions will count "
        "as uncovered; split again with --reason to keep them covered"]
    r = cli("transform", "dedupe", "--version", "v1", "--reason", "exact duplicates")
    assert r.exit_code == 0 and r.stderr == ""


def test_coverage_reasons_per_source(store):
    info = ingest_digits(store)
    review_source(store, "sklearn-digits", decision="approve")
    m = version_members(store, info.version_id)
    add_source(store, "scraped", kind="scraped", uri="https://example.org")  # no license, quarantined
    extra = ingest_arrays(store, m.X[:10], m.y[:10], source="scraped")
    both = append_ingest(store, version=info.version_id, ingest=extra.id, reason="more data")
    c = get_coverage(store, both.version_id)
    assert c.n_rows == 1807 and c.n_covered == 1797
    assert c.breakdown == {"no license": 10, "source not approved": 10}
    assert c.examples["no license"] == list(extra.row_ids)[:5]
    f = filter_rows(store, version=both.version_id, rows=list(extra.row_ids), reason="drop scraped")
    assert get_coverage(store, f.version_id).coverage == 1.0


def test_external_edit_rows_are_not_covered(store, tmp_path, cli):
    info = ingest_digits(store)
    review_source(store, "sklearn-digits", decision="approve")
    add_source(store, "crowd-batch-7", kind="crowdsourced", uri="s3://b7", license="CC-BY-4.0")
    review_source(store, "crowd-batch-7", decision="approve")
    m = version_members(store, info.version_id)
    rows = []
    for r, x, l in zip(m.row_ids, m.X, m.y):
        x = x.astype(int).tolist()
        l = int(l)
        if r == 1:
            l = (l + 1) % 10
        if r == 2:
            x[5] = 9 if x[5] != 9 else 8
        rows.append(",".join(map(str, [int(r), *x, l])))
    rows.append(",".join(["", *["0"] * 64, "3"]))
    path = tmp_path / "edited.csv"
    path.write_text("row_id," + ",".join(f"p{i}" for i in range(64)) + ",label\n" + "\n".join(rows) + "\n")
    out = cli("ingest", "csv", path, "--as-version-of", f"v{info.version_id}", "--source",
              "crowd-batch-7", "--json")
    assert out.exit_code == 0, out.output
    res = json.loads(out.output)
    assert (res["n_relabelled"], res["n_modified"], res["n_added"]) == (1, 1, 1)
    c = get_coverage(store, res["version_id"])
    assert c.breakdown == {"external edit": 3} and c.n_covered == 1798 - 3
    cov = json.loads(cli("coverage", f"v{res['version_id']}", "--json").output)
    assert cov["breakdown"] == {"external edit": 3} and cov["n_rows"] == 1798
    text = cli("coverage", f"v{res['version_id']}")
    assert text.exit_code == 0 and "external edit" in text.output
    # Importing the same edit again from the edited version: nothing changed, refused.
    again = cli("ingest", "csv", path, "--as-version-of", f"v{info.version_id}", "--source", "ghost")
    assert again.exit_code == 3 and "no source named 'ghost'" in again.output
