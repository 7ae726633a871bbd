"""Recorded scans, `audit poisoned` and `audit sources`, on SQLite and PostgreSQL."""

import json

import numpy as np
import pytest
from conftest import _drop_pg_schema, pg_url_or_skip
from typer.testing import CliRunner

from lineage.cli.main import app
from lineage.data.ingest import ingest_arrays, ingest_digits
from lineage.data.sources import add_source
from lineage.data.transforms import append_ingest, inject_trigger, relabel_rows, split_version
from lineage.data.versions import version_members
from lineage.errors import BadInputError, NotFoundError
from lineage.lab.audit import audit_poisoned, audit_sources, list_scans, scan_version
from lineage.lab.experiment import LabSettings, poison
from lineage.models.training import train
from lineage.review.gates import approve_snapshot
from lineage.review.policy import set_policy
from lineage.review.snapshots import create_snapshot
from lineage.review.source_reviews import review_source
from lineage.store.engine import open_store
from lineage.store.log import list_events

TRIGGER = LabSettings().trigger


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request, tmp_path_factory):
    """Digits split; scenario 1 (a recorded trigger injection and an intern's relabel) trained on
    under a lab policy; scenario 2 (a crowd batch carrying poisoned rows, appended)."""
    url = (f"sqlite:///{tmp_path_factory.mktemp('audit') / 'lineage.db'}"
           if request.param == "sqlite" else pg_url_or_skip())
    eng, red, rev, intern = (open_store(url, actor=a) for a in ("engineer", "red-team", "reviewer", "intern"))
    info = ingest_digits(eng)
    review_source(rev, info.source, decision="approve", reason="checked")
    split = split_version(eng, version=info.version_id, test_size=0.3, seed=0, name="d",
                          reason="holdout")
    create_snapshot(rev, "eval", version=split.test_version_id)  # four eyes: not by those under review
    set_policy(rev, evaluation_snapshot="eval", max_asr=1.0, reason="lab: measure, do not gate")
    injected = inject_trigger(red, version=split.train_version_id, source_class=1, target_class=7,
                              rate=0.2, seed=0, reason="compromised step", name="s1")
    members = version_members(eng, "s1")
    clean = members.row_ids[~np.isin(members.row_ids, injected.poisoned_row_ids)
                            & (members.y == 1)][:2]
    relabelled = relabel_rows(intern, version="s1", rows=clean.tolist(), to=3,
                              reason="looked like a 3", name="s1-relabel")
    create_snapshot(eng, "snap-s1", version=relabelled.version_id)
    approve_snapshot(rev, "snap-s1")
    model = train(eng, snapshot="snap-s1", model="clf", seed=0)

    pool = split_version(eng, version=split.train_version_id, test_size=0.5, seed=0, name="pool",
                         reason="half goes to the crowd")
    batch = version_members(eng, pool.test_version_id)
    Xb, yb, poisoned = poison(batch.X, batch.y, rate=0.3, trigger=TRIGGER, source_class=1,
                              target_class=7, seed=0)
    add_source(eng, "crowd", kind="crowdsourced", uri="https://crowd.example/7", license="CC-BY-4.0")
    review_source(rev, "crowd", decision="approve", reason="contract checked")
    crowd = ingest_arrays(eng, Xb.astype(np.uint8), yb, source="crowd", dataset="digits")
    s2 = append_ingest(eng, version=pool.train_version_id, ingest=crowd.id, name="s2",
                       reason="crowd batch delivered")
    crowd_poisoned = crowd.first_row_id + np.flatnonzero(poisoned)
    yield {"url": url, "eng": eng, "injected": sorted(injected.poisoned_row_ids),
           "relabelled": sorted(clean.tolist()), "model": model.ref, "s2": s2.version_id,
           "crowd_poisoned": sorted(crowd_poisoned.tolist())}
    for s in (eng, red, rev, intern):
        s.close()
    if request.param == "postgresql":
        _drop_pg_schema(url)


def test_scan_is_recorded_with_parameters_and_flags(world):
    store = world["eng"]
    before = len(list_scans(store, version=world["s2"]))
    record = scan_version(store, f"v{world['s2']}", seed=0)
    assert sorted(r.row_id for r in record.flagged) == world["crowd_poisoned"]
    assert all("shared_patch" in r.detectors and r.evidence for r in record.flagged)
    event = list_events(store, limit=1, kind="scan")[0]
    assert event.id == record.event_id
    assert event.details["params"]["seed"] == 0
    assert event.details["params"]["detectors"] == list(record.detectors)
    assert event.details["version"] == world["s2"]
    recorded = sorted(f["row_id"] for f in event.details["flagged"] if f["combined"])
    assert recorded == world["crowd_poisoned"]
    assert len(list_scans(store, version=world["s2"])) == before + 1


def test_scan_cli_json_shape(world):
    result = run("scan", "snap-s1", "--json", "--db", world["url"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert {"row_id", "detectors", "score"} <= set(data["flagged"][0])
    assert sorted(f["row_id"] for f in data["flagged"]) == world["injected"]


def test_audit_poisoned_from_records_and_detectors(world):
    audit = audit_poisoned(world["eng"], world["model"])
    implicated = set(audit.from_records)
    assert implicated == set(world["injected"]) | set(world["relabelled"])
    assert set(audit.from_detectors) == set(world["injected"])
    by_row = {r.row_id: r for r in audit.rows}
    assert "trigger injected by transformation" in by_row[world["injected"][0]].records[0]
    assert "label 1->3 by intern" in by_row[world["relabelled"][0]].records[0]
    assert audit.scan_event is not None


def test_audit_poisoned_cli(world):
    result = run("audit", "poisoned", "--model", world["model"], "--no-scan", "--json",
                 "--db", world["url"])
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.output)["from_records"]) >= set(world["injected"])
    missing = run("audit", "poisoned", "--model", "clf:99", "--db", world["url"])
    assert missing.exit_code == 3 and missing.output.startswith("Error: ")


def test_audit_sources_names_the_crowd(world):
    result = run("audit", "sources", "--version", f"v{world['s2']}", "--json", "--db", world["url"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    by_source = {s["source"]: s for s in data["sources"]}
    assert by_source["crowd"]["suspect"] is True
    assert by_source["sklearn-digits"]["suspect"] is False
    assert by_source["crowd"]["trigger_asr_without"] < data["worst_asr"]
    assert data["worst_trigger"].startswith("2x2 at (6,6)=16 -> 7")


def test_bad_references(world):
    with pytest.raises(NotFoundError, match="no snapshot or version 'nope'"):
        scan_version(world["eng"], "nope")
    with pytest.raises(BadInputError, match="unknown detector 'x'"):
        scan_version(world["eng"], "s1", detectors=["x"])
    with pytest.raises(BadInputError, match="unknown estimator 'svm'"):
        audit_sources(world["eng"], "s2", estimator="svm")
