"""Transformations: each records one transformation, new versions as deltas, the exact row-level
effect and one event; bad input is one line with its exit code and leaves the store unchanged."""

import json
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from lineage.data.datasets import find_version
from lineage.data.external_edit import import_external_edit
from lineage.data.ingest import ingest_arrays, ingest_digits, list_ingests
from lineage.data.sources import add_source
from lineage.data.transforms import (
    append_ingest,
    dedupe_rows,
    filter_rows,
    inject_trigger,
    relabel_rows,
    split_version,
)
from lineage.data.versions import version_members
from lineage.errors import BadInputError, IntegrityError, NotFoundError
from lineage.poison.triggers import Trigger, make_trigger, stamp
from lineage.review.source_reviews import review_source
from lineage.store.engine import open_store
from lineage.store.log import list_events
from lineage.store.tables import RowEffect, Source, Transformation
from lineage.store.verify import verify_store
from storeutil import drop_guards, raw_execute, state


def _ingest_digits(url: str) -> None:
    with open_store(url, actor="tester") as store:
        ingest_digits(store)


# Each test's store (and cli) is a copy of one with digits ingested (made once per backend), but
# for the tests marked store_setup(None), which start from the migrated empty store.
pytestmark = pytest.mark.store_setup.with_args(_ingest_digits)  # (a lone function would be marked)


@pytest.fixture
def digits(store):
    """The digits ingest the store was copied with."""
    (info,) = list_ingests(store)
    return info


def _effects(store, transformation_id):
    with store.read() as s:
        return [(e.effect, e.row_id, e.parent_row_id, e.old_label, e.new_label)
                for e in s.scalars(select(RowEffect).where(
                    RowEffect.transformation_id == transformation_id).order_by(RowEffect.id))]


def test_split_filter_relabel_record_exact_effects(store, digits):
    root = version_members(store, digits.version_id)
    s = split_version(store, version=digits.version_id, test_size=0.3, seed=0, name="d",
                      reason="holdout")
    assert (s.train_name, s.test_name) == ("d-train", "d-test")
    assert s.n_test == int(np.ceil(0.3 * 1797)) and s.n_train + s.n_test == 1797
    train, test = version_members(store, "d-train"), version_members(store, "d-test")
    assert not np.intersect1d(train.row_ids, test.row_ids).size
    np.testing.assert_array_equal(np.union1d(train.row_ids, test.row_ids), root.row_ids)
    # Same seed, same split.
    again = split_version(store, version=digits.version_id, test_size=0.3, seed=0, reason="again")
    np.testing.assert_array_equal(version_members(store, again.test_version_id).row_ids, test.row_ids)

    f = filter_rows(store, version="d-train", label=3, reason="drop class 3")
    kept = version_members(store, f.version_id)
    assert 3 not in kept.y and len(kept.row_ids) == len(train.row_ids) - (train.y == 3).sum()
    eff = _effects(store, f.transformation_id)
    assert {e[0] for e in eff} == {"removed"} and all(e[3] == 3 for e in eff)
    assert sorted(e[1] for e in eff) == train.row_ids[train.y == 3].tolist()

    rows = train.row_ids[:2]
    old = train.y[:2]
    target = int((old[0] + 1) % 10)
    r = relabel_rows(store, version="d-train", rows=[int(rows[0])], to=target, reason="ticket 42")
    assert _effects(store, r.transformation_id) == [("relabelled", int(rows[0]), None, int(old[0]), target)]
    after = version_members(store, r.version_id)
    assert after.y[0] == target and (after.y[1:] == train.y[1:]).all()
    np.testing.assert_array_equal(after.X, train.X)
    with store.read() as session:
        t = session.get(Transformation, r.transformation_id)
        assert re.fullmatch(r"lineage \S+ relabel_rows [0-9a-f]{12}", t.code_identity)
        assert t.reason == "ticket 42" and t.actor == "tester"
        assert json.loads(t.params)["to"] == target
    verify_store(store)


def test_inject_trigger_makes_child_rows_and_records_parents(store, digits):
    before = version_members(store, digits.version_id)
    res = inject_trigger(store, version=digits.version_id, source_class=1, target_class=7,
                         rate=0.1, size=2, position="lower-right", value=16, seed=0,
                         reason="red-team exercise")
    n_src = int((before.y == 1).sum())
    assert res.n_modified == len(res.poisoned_row_ids) == round(0.1 * n_src)
    after = version_members(store, res.version_id)
    children = np.array(res.poisoned_row_ids)
    parents = np.array(res.parent_row_ids)
    assert not np.isin(parents, after.row_ids).any()  # clean parents left the version
    pos = np.searchsorted(after.row_ids, children)
    assert (after.y[pos] == 7).all()
    images = after.X[pos].reshape(-1, 8, 8)
    assert (images[:, 6:, 6:] == 16).all()
    # Everything but the 2x2 patch is the parent's content.
    parent_X = before.X[np.searchsorted(before.row_ids, parents)].reshape(-1, 8, 8)
    mask = np.ones((8, 8), dtype=bool)
    mask[6:, 6:] = False
    np.testing.assert_array_equal(images[:, mask], parent_X[:, mask])
    assert (before.y[np.searchsorted(before.row_ids, parents)] == 1).all()
    eff = _effects(store, res.transformation_id)
    assert [(e[0], e[1], e[2], e[3], e[4]) for e in eff] == [
        ("modified", int(c), int(p), 1, 7) for c, p in zip(children, parents)]
    verify_store(store)


def test_same_inputs_and_seed_give_the_same_digest(store, digits, tmp_path):

    other = open_store(f"sqlite:///{tmp_path / 'other.db'}", actor="someone-else")
    try:
        info = ingest_digits(other)
        digests = []
        for s, v in ((store, digits.version_id), (other, info.version_id)):
            a = inject_trigger(s, version=v, source_class=1, target_class=7, rate=0.2, seed=3,
                               reason="rt")
            b = filter_rows(s, version=a.version_id, rows="5-9", reason="blurry")
            digests.append((a.content_digest, b.content_digest))
        assert digests[0] == digests[1]
        c = inject_trigger(other, version=info.version_id, source_class=1, target_class=7,
                           rate=0.2, seed=4, reason="rt")
        assert c.parent_row_ids != inject_trigger(other, version=info.version_id, source_class=1,
                                                  target_class=7, rate=0.2, seed=3,
                                                  reason="rt").parent_row_ids
    finally:
        other.close()


def test_dedupe_and_append(store, digits):
    add_source(store, "crowd", kind="crowdsourced", uri="s3://x", license="CC-BY-4.0")
    X, y = version_members(store, digits.version_id).X[:5], version_members(store, digits.version_id).y[:5]
    extra = ingest_arrays(store, X, y, source="crowd")  # exact copies of rows 1..5
    both = append_ingest(store, version=digits.version_id, ingest=extra.id, reason="batch reviewed")
    assert both.n_added == 5 and both.n_rows == 1797 + 5
    assert {e[0] for e in _effects(store, both.transformation_id)} == {"added"}
    d = dedupe_rows(store, version=both.version_id, reason="exact duplicates")
    assert d.n_removed == 5 and d.content_digest == version_digest(store, digits.version_id)
    removed = sorted(e[1] for e in _effects(store, d.transformation_id))
    assert removed == list(extra.row_ids)  # the lowest id of each pair is kept
    with pytest.raises(BadInputError, match="all in v"):
        append_ingest(store, version=both.version_id, ingest=extra.id)
    verify_store(store)


def version_digest(store, ref):

    with store.read() as s:
        return find_version(s, ref).content_digest


def test_external_edit_by_row_id_and_by_order(store, digits, tmp_path):
    add_source(store, "crowd-batch-7", kind="crowdsourced", uri="s3://b7", license="CC-BY-4.0")
    m = version_members(store, digits.version_id)
    header = "row_id," + ",".join(f"p{i}" for i in range(64)) + ",label"
    lines = [header]
    for i in range(len(m.row_ids)):
        feats = m.X[i].astype(int).tolist()
        label = int(m.y[i])
        rid = int(m.row_ids[i])
        if rid == 3:
            continue  # deleted in the spreadsheet
        if rid == 5:
            label = (label + 1) % 10  # relabelled
        if rid == 8:
            feats[0] = 16  # edited pixel
        lines.append(",".join(map(str, [rid, *feats, label])))
    lines.append("," + ",".join(["0"] * 64) + ",4")  # a new row
    path = tmp_path / "edited.csv"
    path.write_text("\n".join(lines) + "\n")
    res = import_external_edit(store, path, as_version_of=f"v{digits.version_id}",
                               source="crowd-batch-7")
    assert (res.n_removed, res.n_added, res.n_relabelled, res.n_modified) == (1, 1, 1, 1)
    eff = _effects(store, res.transformation_id)
    kinds = {e[0]: e for e in eff}
    assert kinds["removed"][1] == 3 and kinds["relabelled"][1] == 5
    assert kinds["modified"][2] == 8 and kinds["added"][4] == 4
    with store.read() as s:
        t = s.get(Transformation, res.transformation_id)
        assert (t.kind, t.reason, t.actor) == ("external_edit", "external edit, unattributed", "tester")
        assert json.loads(t.params)["matched_by"] == "row_id"
    # By order: no row_id column, the last row's label changed.
    lines = [header.split(",", 1)[1]] + [l.split(",", 1)[1] for l in (
        ",".join(map(str, [int(r), *x.astype(int).tolist(), int(l)]))
        for r, x, l in zip(m.row_ids, m.X, m.y))]
    lines[-1] = lines[-1].rsplit(",", 1)[0] + f",{(int(m.y[-1]) + 1) % 10}"
    path.write_text("\n".join(lines) + "\n")
    res2 = import_external_edit(store, path, as_version_of=digits.version_id, source="crowd-batch-7")
    assert (res2.n_relabelled, res2.n_removed, res2.n_added, res2.n_modified) == (1, 0, 0, 0)
    verify_store(store)


def test_verify_finds_tampered_effects(store, digits, db_url):
    res = relabel_rows(store, version=digits.version_id, rows="1,2", to=9, reason="t")
    verify_store(store)
    drop_guards(db_url, "row_effects")
    raw_execute(db_url, "UPDATE row_effects SET new_label = 3 WHERE transformation_id = ?",
                (res.transformation_id,))
    with pytest.raises(IntegrityError, match=f"row effects of transformation {res.transformation_id}"):
        verify_store(store)


def test_verify_finds_effects_inserted_behind_the_back(store, digits, db_url):
    res = filter_rows(store, version=digits.version_id, rows="1", reason="t")
    raw_execute(db_url, "INSERT INTO row_effects (id, transformation_id, version_id, row_id, effect) "
                "VALUES (99, ?, ?, 2, 'removed')", (res.transformation_id, res.version_id))
    with pytest.raises(IntegrityError, match="were changed"):
        verify_store(store)


def test_effects_table_is_append_only(store, digits):
    from lineage.errors import AppendOnlyError

    relabel_rows(store, version=digits.version_id, rows="1", to=9, reason="t")
    before = state(store)
    with pytest.raises(AppendOnlyError, match=r"^the store is append-only: UPDATE and DELETE are "
                                              r"refused$"):
        with store.write() as tx:
            tx.session.execute(RowEffect.__table__.update().values(new_label=1))
    assert state(store) == before


# ----------------------------------------------------------------------------- property test

OPS = st.lists(st.one_of(
    st.tuples(st.just("filter"), st.lists(st.integers(0, 39), min_size=1, max_size=5)),
    st.tuples(st.just("relabel"), st.lists(st.integers(0, 39), min_size=1, max_size=5),
              st.integers(0, 3)),
    st.tuples(st.just("label"), st.integers(0, 3)),
), min_size=1, max_size=5)


@pytest.mark.store_setup(None)
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=OPS, seed=st.integers(0, 2**16))
def test_materialize_equals_numpy_reference(store, ops, seed):
    """Any sequence of filters and relabels reads back exactly what the same operations do to
    numpy arrays, and every version diff matches the set difference of the two versions."""
    from lineage.trace import version_diff

    rng = np.random.default_rng(seed)
    X = rng.integers(0, 17, size=(40, 64))
    y = rng.integers(0, 4, size=40)
    with store.read() as s:
        has_source = s.scalars(select(Source).where(Source.name == "prop")).first() is not None
    if not has_source:
        add_source(store, "prop", kind="internal", uri="mem://", license="MIT")
    info = ingest_arrays(store, X, y, source="prop", dataset="prop", value_range=(0, 16),
                         classes=range(4))
    ids = np.arange(info.first_row_id, info.first_row_id + 40)
    ref = {int(i): int(l) for i, l in zip(ids, y)}
    version = info.version_id
    for op in ops:
        prev = version
        try:
            if op[0] == "filter":
                res = filter_rows(store, version=version, rows=[int(ids[i]) for i in op[1]], reason="p")
                expected = {k: v for k, v in ref.items() if k not in {int(ids[i]) for i in op[1]}}
            elif op[0] == "label":
                res = filter_rows(store, version=version, label=op[1], reason="p")
                expected = {k: v for k, v in ref.items() if v != op[1]}
            else:
                res = relabel_rows(store, version=version, rows=[int(ids[i]) for i in op[1]],
                                   to=op[2], reason="p")
                expected = {k: (op[2] if k in {int(ids[i]) for i in op[1]} else v)
                            for k, v in ref.items()}
        except (BadInputError, NotFoundError):
            continue  # nothing to filter / row already gone / already that label / empty
        ref, version = expected, res.version_id
        m = version_members(store, version)
        assert m.row_ids.tolist() == sorted(ref)
        assert m.y.tolist() == [ref[k] for k in sorted(ref)]
        np.testing.assert_array_equal(m.X, X[m.row_ids - info.first_row_id])
        before = version_members(store, prev)
        d = version_diff(store, prev, version)
        assert d.removed.tolist() == np.setdiff1d(before.row_ids, m.row_ids).tolist()
        assert d.added.tolist() == []
        common = np.intersect1d(before.row_ids, m.row_ids)
        old = before.y[np.searchsorted(before.row_ids, common)]
        new = m.y[np.searchsorted(m.row_ids, common)]
        assert d.relabelled_ids.tolist() == common[old != new].tolist()
        assert d.relabelled_new.tolist() == new[old != new].tolist()
    # And from the root straight to the last version.
    d = version_diff(store, info.version_id, version)
    assert sorted(set(ids.tolist()) - set(ref)) == d.removed.tolist()
    changed = sorted(k for k, v in ref.items() if y[k - info.first_row_id] != v)
    assert d.relabelled_ids.tolist() == changed


# ----------------------------------------------------------------------------- bad input (CLI)

HUGE = "99999999999999999999"
OUT_OF_RANGE = "is out of range: ids are whole numbers from 0 to 9223372036854775807"


def _bad_inputs(v, n_rows):
    return [
        ("unknown version", ["transform", "filter", "--version", "v99", "--label", "3", "--reason", "r"],
         3, "no version 'v99' (see `lineage version list`)"),
        ("unknown row", ["transform", "filter", "--version", v, "--rows", "5,99999", "--reason", "r"],
         3, f"row 99999 is not in version {v}"),
        ("bad row list", ["transform", "filter", "--version", v, "--rows", "5,x", "--reason", "r"],
         2, "row ids '5,x': 'x' is not a row id or a range A-B; write e.g. 10,11,12 or 10-12"),
        ("relabel outside classes", ["transform", "relabel", "--version", v, "--rows", "17,18",
                                     "--to", "11", "--reason", "r"],
         2, "label 11 is not one of the classes of dataset 'digits': [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"),
        ("relabel unknown row", ["transform", "relabel", "--version", v, "--rows", "99999",
                                 "--to", "7", "--reason", "r"],
         3, f"row 99999 is not in version {v}"),
        ("rate zero", ["transform", "inject-trigger", "--version", v, "--source-class", "1",
                       "--target-class", "7", "--rate", "0", "--reason", "r"],
         2, "--rate 0 is outside (0, 1]: give the fraction of the source class's rows to poison, e.g. 0.1"),
        ("rate above one", ["transform", "inject-trigger", "--version", v, "--source-class", "1",
                            "--target-class", "7", "--rate", "1.5", "--reason", "r"],
         2, "--rate 1.5 is outside (0, 1]: give the fraction of the source class's rows to poison, e.g. 0.1"),
        ("source class without rows", ["transform", "inject-trigger", "--version", "nothree",
                                       "--source-class", "3", "--target-class", "7", "--rate", "0.1",
                                       "--reason", "r"],
         2, "version v2 has no rows of source class 3"),
        ("trigger too big", ["transform", "inject-trigger", "--version", v, "--source-class", "1",
                             "--target-class", "7", "--rate", "0.1", "--size", "9", "--reason", "r"],
         2, "a 9x9 trigger does not fit a 8x8 image"),
        ("trigger off the image", ["transform", "inject-trigger", "--version", v, "--source-class",
                                   "1", "--target-class", "7", "--rate", "0.1", "--size", "3",
                                   "--position", "6,6", "--reason", "r"],
         2, "a 3x3 trigger at (6,6) does not fit a 8x8 image"),
        ("test size one", ["transform", "split", "--version", v, "--test-size", "1"],
         2, "--test-size 1 is outside (0, 1): give the test share, e.g. 0.3"),
        ("test size zero", ["transform", "split", "--version", v, "--test-size", "0"],
         2, "--test-size 0 is outside (0, 1): give the test share, e.g. 0.3"),
        ("filter without reason", ["transform", "filter", "--version", v, "--label", "3"],
         2, "--reason is required for filter: say why the data changes (it is recorded with the "
            "transformation)"),
        ("relabel without reason", ["transform", "relabel", "--version", v, "--rows", "17", "--to", "7"],
         2, "--reason is required for relabel: say why the data changes (it is recorded with the "
            "transformation)"),
        ("inject without reason", ["transform", "inject-trigger", "--version", v, "--source-class",
                                   "1", "--target-class", "7", "--rate", "0.1"],
         2, "--reason is required for inject-trigger: say why the data changes (it is recorded "
            "with the transformation)"),
        ("filter to empty", ["transform", "filter", "--version", v, "--rows", f"1-{n_rows}",
                             "--reason", "r"],
         2, f"this filter would leave an empty version ({v} has no other rows): nothing was recorded"),
        ("duplicate name", ["transform", "filter", "--version", v, "--label", "2", "--reason", "r",
                            "--name", "nothree"],
         2, "a version named 'nothree' already exists"),
        ("unknown ingest", ["transform", "append", "--version", v, "--ingest", "42"],
         3, "no ingest 42 (see `lineage ingest list`)"),
        ("unknown row to trace", ["trace", "row", "99999"], 3, "no row with id 99999"),
        # Ids beyond int64 can name nothing: one line, exit 2, never an overflow traceback.
        ("huge row to trace", ["trace", "row", HUGE], 2, f"row id {HUGE} {OUT_OF_RANGE}"),
        ("huge version to show", ["version", "show", f"v{HUGE}"], 2, f"version id {HUGE} {OUT_OF_RANGE}"),
        ("huge version to diff", ["version", "diff", v, HUGE], 2, f"version id {HUGE} {OUT_OF_RANGE}"),
        ("huge version's coverage", ["coverage", f"v{HUGE}"], 2, f"version id {HUGE} {OUT_OF_RANGE}"),
        ("huge version to export", ["version", "export", f"v{HUGE}", "--out", "x.csv"], 2,
         f"version id {HUGE} {OUT_OF_RANGE}"),
        ("huge version to transform", ["transform", "dedupe", "--version", HUGE], 2,
         f"version id {HUGE} {OUT_OF_RANGE}"),
        ("huge row to filter", ["transform", "filter", "--version", v, "--rows", HUGE, "--reason", "r"],
         2, f"row id {HUGE} {OUT_OF_RANGE}"),
        ("huge row range", ["transform", "filter", "--version", v, "--rows", f"5-{HUGE}", "--reason",
                            "r"], 2, f"row id {HUGE} {OUT_OF_RANGE}"),
        ("range too long", ["transform", "filter", "--version", v, "--rows", "1-20000000", "--reason",
                            "r"], 2, "row ids '1-20000000' name more than 10,000,000 rows: filter by "
                                     "--label, or in several steps"),
        ("huge row to relabel", ["transform", "relabel", "--version", v, "--rows", f"17,{HUGE}",
                                 "--to", "7", "--reason", "r"], 2, f"row id {HUGE} {OUT_OF_RANGE}"),
        ("huge ingest to append", ["transform", "append", "--version", v, "--ingest", HUGE], 2,
         f"--ingest: ingest id {HUGE} {OUT_OF_RANGE}; give an ingest id (see `lineage ingest list`)"),
        ("ingest not a number", ["transform", "append", "--version", v, "--ingest", "x"], 2,
         "--ingest: ingest id 'x' is not a whole number; give an ingest id (see `lineage ingest list`)"),
        ("negative seed", ["transform", "split", "--version", v, "--test-size", "0.3", "--seed", "-1"],
         2, "--seed -1 is negative: give a whole number, 0 or more"),
        ("negative trigger seed", ["transform", "inject-trigger", "--version", v, "--source-class", "1",
                                   "--target-class", "7", "--rate", "0.1", "--seed", "-3", "--reason", "r"],
         2, "--seed -3 is negative: give a whole number, 0 or more"),
        ("trigger value outside range", ["transform", "inject-trigger", "--version", v, "--source-class",
                                         "1", "--target-class", "7", "--rate", "0.1", "--value", "20",
                                         "--reason", "r"],
         2, "trigger value 20 is outside the value range of dataset 'digits': 0.0..16.0"),
        # digits rows 1 and 11 are both zeros: relabelling them to 0 changes nothing.
        ("relabel changes nothing", ["transform", "relabel", "--version", v, "--rows", "1,11", "--to",
                                     "0", "--reason", "r"],
         2, f"rows 1, 11 already have label 0 in {v}: nothing to relabel, nothing was recorded"),
        ("label without rows, alone", ["transform", "filter", "--version", "nothree", "--label", "3",
                                       "--reason", "r"],
         2, "version v2 has no rows with label 3: nothing to filter"),
        ("row id not a number", ["trace", "row", "abc"], 2, "row id 'abc' is not a whole number"),
        ("diff unknown version", ["version", "diff", v, "v77"], 3,
         "no version 'v77' (see `lineage version list`)"),
        ("coverage unknown version", ["coverage", "nope"], 3,
         "no version 'nope' (see `lineage version list`)"),
    ]


def _bad_edits(tmp_path):
    """External edits that must be refused: a row id not in the version, no change at all."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    header = "row_id," + ",".join(f"p{i}" for i in range(64)) + ",label"
    same = [",".join(map(str, [i + 1, *X[i].astype(int).tolist(), int(y[i])])) for i in range(len(X))]
    unchanged = tmp_path / "unchanged.csv"
    unchanged.write_text("\n".join([header, *same]) + "\n")
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("\n".join([header, *same[:3], "5000" + same[3][same[3].index(","):]]) + "\n")
    huge = tmp_path / "huge.csv"
    huge.write_text("\n".join([header, HUGE + same[0][same[0].index(","):]]) + "\n")
    exported = tmp_path / "exported.csv"
    exported.write_text("keep me\n")
    return [
        ("--dataset with --as-version-of", ["ingest", "csv", unchanged, "--as-version-of", "v1",
                                            "--source", "crowd", "--dataset", "other"],
         2, "--dataset cannot be used with --as-version-of: an edited copy belongs to that "
            "version's dataset and schema"),
        ("--value-range with --as-version-of", ["ingest", "csv", unchanged, "--as-version-of", "v1",
                                                "--source", "crowd", "--value-range", "0:16"],
         2, "--value-range cannot be used with --as-version-of: an edited copy belongs to that "
            "version's dataset and schema"),
        ("--image-shape with --as-version-of", ["ingest", "csv", unchanged, "--as-version-of", "v1",
                                                "--source", "crowd", "--image-shape", "8x8"],
         2, "--image-shape cannot be used with --as-version-of: an edited copy belongs to that "
            "version's dataset and schema"),
        ("--name without --as-version-of", ["ingest", "csv", unchanged, "--source", "crowd",
                                            "--name", "x"],
         2, "--name is for an edited copy: use it with --as-version-of (an ingest makes a root "
            "version of raw rows)"),
        ("edit with a huge row id", ["ingest", "csv", huge, "--as-version-of", "v1", "--source",
                                     "crowd"],
         2, f"{huge} line 2, column 'row_id': row id {HUGE} {OUT_OF_RANGE} (leave it blank for a "
            "new row)"),
        ("export over a file", ["version", "export", "v1", "--out", exported],
         2, f"{exported} exists: pass --force to overwrite it"),
        ("export into a missing folder", ["version", "export", "v1", "--out",
                                          tmp_path / "nope" / "v1.csv"],
         2, f"{tmp_path / 'nope' / 'v1.csv'}: no folder {tmp_path / 'nope'}; create it first"),
        ("export onto a folder", ["version", "export", "v1", "--out", tmp_path],
         2, f"{tmp_path}: is a folder; give a file name, e.g. {tmp_path / 'version.csv'}"),
        ("edit matches the version", ["ingest", "csv", unchanged, "--as-version-of", "v1",
                                      "--source", "crowd"],
         2, f"{unchanged} matches v1 exactly: no external edit to record"),
        ("edit names an unknown row", ["ingest", "csv", unknown, "--as-version-of", "v1",
                                       "--source", "crowd"],
         2, f"{unknown} line 5: row 5000 is not in version v1; leave row_id blank for a new row"),
        ("edit of an unknown version", ["ingest", "csv", unchanged, "--as-version-of", "v99",
                                        "--source", "crowd"],
         3, "no version 'v99' (see `lineage version list`)"),
    ]


@pytest.mark.store_setup(None)
def test_bad_input_one_line_exit_code_store_unchanged(store, cli, tmp_path):
    assert cli("ingest", "digits").exit_code == 0
    r = cli("transform", "filter", "--version", "v1", "--label", "3", "--reason", "setup",
            "--name", "nothree")
    assert r.exit_code == 0, r.output
    assert cli("source", "add", "crowd", "--kind", "crowdsourced").exit_code == 0
    before = state(store)
    n_events = len(list_events(store))
    failures = []
    for name, argv, code, message in _bad_inputs("v1", 1797) + _bad_edits(tmp_path):
        result = cli(*argv)
        lines = result.output.splitlines()
        if (result.exit_code, lines) != (code, [f"Error: {message}"]):
            failures.append((name, result.exit_code, result.output))
    assert not failures, failures
    assert state(store) == before and len(list_events(store)) == n_events
    assert (tmp_path / "exported.csv").read_text() == "keep me\n"  # not overwritten
    assert not (tmp_path / "nope").exists()


def test_trigger_positions_fit_check():

    corners = {"lower-right": (6, 6), "lower-left": (6, 0), "upper-right": (0, 6),
               "upper-left": (0, 0), "3,4": (3, 4)}
    for position, (row, col) in corners.items():
        t = make_trigger(size=2, position=position, value=16, image_shape="8x8")
        assert t == Trigger(size=2, row=row, col=col, value=16.0), position
        X = np.arange(3 * 64).reshape(3, 64) % 13  # no pixel is 16 before stamping
        stamped = stamp(X, t, "8x8").reshape(3, 8, 8)
        expected = X.reshape(3, 8, 8).copy()
        expected[:, row:row + 2, col:col + 2] = 16
        np.testing.assert_array_equal(stamped, expected)  # the whole patch, nothing else
        assert (stamped == 16).sum() == 3 * 4
        np.testing.assert_array_equal(X, np.arange(3 * 64).reshape(3, 64) % 13)  # input untouched


def test_filter_by_label_and_rows_refuses_only_when_nothing_goes(store, digits):
    nothree = filter_rows(store, version=digits.version_id, label=3, reason="drop 3")
    # Label 3 has no rows left, but --rows removes some: the filter as a whole removes rows.
    both = filter_rows(store, version=nothree.version_id, label=3, rows="5,6", reason="blurry")
    assert both.n_removed == 2 and both.n_rows == nothree.n_rows - 2
    assert sorted(e[1] for e in _effects(store, both.transformation_id)) == [5, 6]
    before = state(store)
    with pytest.raises(BadInputError, match=f"version v{nothree.version_id} has no rows with label 3"):
        filter_rows(store, version=nothree.version_id, label=3, reason="again")
    assert state(store) == before


def test_relabel_reports_rows_that_already_had_the_label(store, digits, cli):
    # digits rows 1..10 are the digits 0..9: row 1 is a 0, row 2 a 1.
    res = relabel_rows(store, version=digits.version_id, rows="1,2", to=0, reason="fix")
    assert res.unchanged_row_ids == (1,) and res.n_relabelled == 1
    assert _effects(store, res.transformation_id) == [("relabelled", 2, None, 1, 0)]
    out = cli("transform", "relabel", "--version", f"v{res.version_id}", "--rows", "1,2,3",
              "--to", "0", "--reason", "fix more")
    assert out.exit_code == 0, out.output
    assert "already 0: rows 1, 2 (left as they were)" in out.output
    data = json.loads(cli("transform", "relabel", "--version", f"v{res.version_id}", "--rows",
                          "1,4", "--to", "0", "--reason", "r", "--json").stdout)
    assert data["unchanged_row_ids"] == [1] and data["n_relabelled"] == 1


def test_huge_ids_are_refused_by_the_library_too(store, digits):
    from lineage.trace import trace_row

    for call in (lambda: trace_row(store, -5), lambda: trace_row(store, 2 ** 63),
                 lambda: filter_rows(store, version=digits.version_id, rows=[2 ** 64], reason="r"),
                 lambda: version_members(store, f"v{2 ** 70}")):
        with pytest.raises(BadInputError, match="out of range"):
            call()


def test_export_edit_import_round_trip(store, digits, cli, tmp_path):
    """Issue 3's "edited copy" end to end on the CLI: export, edit two labels and one pixel,
    import with --as-version-of: the diff shows exactly those changes, and coverage marks exactly
    those rows uncovered as "external edit"."""

    review_source(store, "sklearn-digits", decision="approve", reason="ok")
    add_source(store, "crowd-batch-7", kind="crowdsourced", uri="s3://b7", license="CC-BY-4.0")
    review_source(store, "crowd-batch-7", decision="approve", reason="ok")
    path = tmp_path / "v1.csv"
    out = cli("version", "export", "v1", "--out", path, "--json")
    assert out.exit_code == 0, out.output
    info = json.loads(out.stdout)
    assert info["n_rows"] == 1797 and info["columns"][0] == "row_id"
    lines = path.read_text().splitlines()
    assert lines[0] == "row_id," + ",".join(f"f{i}" for i in range(64)) + ",label"
    m = version_members(store, "v1")
    assert lines[1] == ",".join(map(str, [1, *m.X[0].tolist(), int(m.y[0])]))
    assert len(lines) == 1 + 1797
    again = cli("version", "export", "v1", "--out", path)
    assert again.exit_code == 2 and "pass --force" in again.output
    assert cli("version", "export", "v1", "--out", path, "--force").exit_code == 0
    # Edit: rows 5 and 9 get new labels, row 12's pixel f10 changes.
    cells = [line.split(",") for line in lines]
    for row in (5, 9):
        cells[row][-1] = str((int(cells[row][-1]) + 1) % 10)
    cells[12][11] = "16" if cells[12][11] != "16" else "15"
    path.write_text("\n".join(",".join(c) for c in cells) + "\n")
    res = cli("ingest", "csv", path, "--as-version-of", "v1", "--source", "crowd-batch-7",
              "--name", "edited", "--json")
    assert res.exit_code == 0, res.output
    edit = json.loads(res.stdout)
    assert edit["version_name"] == "edited"
    assert (edit["n_relabelled"], edit["n_modified"], edit["n_added"], edit["n_removed"]) == (1 + 1, 1, 0, 0)
    diff = json.loads(cli("version", "diff", "v1", "edited", "--json").stdout)
    child = 1797 + 1  # the first row id after the ingest
    assert diff["relabelled"] == [{"row_id": 5, "old": int(m.y[4]), "new": (int(m.y[4]) + 1) % 10},
                                  {"row_id": 9, "old": int(m.y[8]), "new": (int(m.y[8]) + 1) % 10}]
    assert diff["modified"] == [{"parent_row_id": 12, "row_id": child}]
    assert diff["added"] == [] and diff["removed"] == []
    edited = version_members(store, "edited")
    changed = edited.X[np.searchsorted(edited.row_ids, child)] != m.X[11]
    assert np.flatnonzero(changed).tolist() == [10]
    cov = json.loads(cli("coverage", "edited", "--json").stdout)
    assert cov["breakdown"] == {"external edit": 3} and cov["n_covered"] == 1797 - 3
    assert sorted(cov["examples"]["external edit"]) == [5, 9, child]
