"""trace row: a row's whole history from records, for raw, poisoned, split and edited rows."""

import json

from lineage.data.external_edit import import_external_edit
from lineage.data.ingest import ingest_digits
from lineage.data.sources import add_source
from lineage.data.transforms import filter_rows, inject_trigger, relabel_rows, split_version
from lineage.data.versions import version_members
from lineage.trace import trace_row


def test_trace_poisoned_row_back_to_its_source(store):
    info = ingest_digits(store)
    s = split_version(store, version=info.version_id, test_size=0.3, seed=0, name="d",
                      reason="holdout")
    train = version_members(store, "d-train")
    p = inject_trigger(store, version="d-train", source_class=1, target_class=7, rate=0.1,
                       seed=0, reason="red-team exercise", name="poisoned")
    child, parent = p.poisoned_row_ids[0], p.parent_row_ids[0]
    t = trace_row(store, child)
    assert t.ancestors == (parent,) and t.created_by == p.transformation_id
    assert t.stored_label == 7
    assert (t.origin.raw_row_id, t.origin.ingest_id, t.origin.source) == (parent, info.id, "sklearn-digits")
    assert t.origin.file_sha256 == info.file_sha256
    kinds = [(x.kind, x.effect, x.side) for x in t.steps]
    assert kinds == [("split", "split", "train"), ("inject_trigger", "modified", None)]
    step = t.steps[-1]
    assert (step.parent_row_id, step.row_id, step.old_label, step.new_label) == (parent, child, 1, 7)
    assert step.reason == "red-team exercise" and step.actor == "tester"
    assert [v.name for v in t.versions] == ["poisoned"]

    # The clean parent: its descendant, and the versions that still hold it.
    tp = trace_row(store, parent)
    assert tp.descendants == (child,) and tp.ancestors == ()
    assert [v.id for v in tp.versions] == [info.version_id, s.train_version_id]
    assert parent in train.row_ids


def test_trace_relabel_filter_and_test_side(store):
    info = ingest_digits(store)
    s = split_version(store, version=info.version_id, test_size=0.3, seed=0, reason="holdout")
    test_row = int(version_members(store, s.test_version_id).row_ids[0])
    t = trace_row(store, test_row)
    assert [(x.effect, x.side, x.version_id) for x in t.steps] == [("split", "test", s.test_version_id)]
    train_row = int(version_members(store, s.train_version_id).row_ids[0])
    r = relabel_rows(store, version=s.train_version_id, rows=[train_row], to=9, reason="ticket 7")
    f = filter_rows(store, version=r.version_id, rows=[train_row], reason="blurry")
    t = trace_row(store, train_row)
    assert [(x.kind, x.effect) for x in t.steps] == [("split", "split"), ("relabel", "relabelled"),
                                                     ("filter", "removed")]
    assert t.steps[1].new_label == 9 and t.steps[2].old_label == 9
    assert f.version_id not in [v.id for v in t.versions]
    assert r.version_id in [v.id for v in t.versions]


def test_trace_external_edit_row_has_no_origin(store, tmp_path):
    info = ingest_digits(store)
    add_source(store, "crowd-batch-7", kind="crowdsourced")
    m = version_members(store, info.version_id)
    header = "row_id," + ",".join(f"p{i}" for i in range(64)) + ",label"
    path = tmp_path / "edited.csv"
    path.write_text(header + "\n" + ",".join(["", *["1"] * 64, "2"]) + "\n"
                    + "\n".join(",".join(map(str, [int(r), *x.astype(int).tolist(), int(l)]))
                                for r, x, l in zip(m.row_ids, m.X, m.y)) + "\n")
    res = import_external_edit(store, path, as_version_of=info.version_id, source="crowd-batch-7")
    new_row = info.first_row_id + info.n_rows  # the first id after the ingest
    t = trace_row(store, new_row)
    assert t.origin is None and t.created_by == res.transformation_id
    assert [(x.kind, x.effect, x.reason) for x in t.steps] == [
        ("external_edit", "added", "external edit, unattributed")]


def test_cli_trace_row(cli):
    assert cli("ingest", "digits").exit_code == 0
    assert cli("transform", "inject-trigger", "--version", "v1", "--source-class", "1",
               "--target-class", "7", "--rate", "0.05", "--reason", "rt").exit_code == 0
    out = cli("trace", "row", "1798", "--json")
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["row_id"] == 1798 and data["origin"]["source"] == "sklearn-digits"
    assert data["steps"][0]["effect"] == "modified"
    text = cli("trace", "row", "1798")
    assert text.exit_code == 0 and "modified" in text.output and "sklearn-digits" in text.output
    assert " inject_trigger " in text.output  # the code identity line
