"""`lineage report` and `lineage graph`: the lineage graph (marks, coverage, Mermaid, DOT) and the
self-contained HTML report, drawn by a real headless browser (Debian's chromium)."""

import json
import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from lineage.data.external_edit import import_external_edit
from lineage.data.ingest import ingest_arrays, ingest_digits
from lineage.data.sources import add_source
from lineage.data.transforms import append_ingest, inject_trigger, relabel_rows, split_version
from lineage.data.versions import export_version, version_members
from lineage.errors import BadInputError, NotFoundError
from lineage.lab.audit import scan_version
from lineage.lab.experiment import LabSettings, poison
from lineage.lab.report import build_report, lineage_graph, render_graph, report_html, to_dot
from lineage.models.registry import release_model
from lineage.models.training import train
from lineage.review.gates import approve_snapshot
from lineage.review.policy import set_policy
from lineage.review.snapshots import create_snapshot
from lineage.review.source_reviews import review_source
from lineage.store.engine import open_store
from lineage.store.log import list_events
from storeutil import state


def build_world(url: str) -> dict:
    """Digits split 70/30; a red-team trigger injection and an intern's relabel on the training
    side; a crowd batch carrying poisoned rows appended (snapshot snap-s2, scanned, approved,
    model clf:1 trained and released); and that version edited outside the store (snapshot
    snap-edit, pending). The scan runs one detector, the one that finds the patch: the full
    scan's cost is the detectors' to test, not the report's."""
    actors = ("engineer", "red-team", "reviewer", "intern")
    eng, red, rev, intern = (open_store(url, actor=a) for a in actors)
    try:
        info = ingest_digits(eng)
        review_source(rev, info.source, decision="approve", reason="license checked")
        split = split_version(eng, version=info.version_id, test_size=0.3, seed=0, name="d",
                              reason="holdout")
        create_snapshot(rev, "eval", version=split.test_version_id)
        set_policy(rev, evaluation_snapshot="eval", max_asr=1.0, reason="lab: measure, do not gate")
        injected = inject_trigger(red, version=split.train_version_id, source_class=1,
                                  target_class=7, rate=0.2, seed=0, reason="compromised step",
                                  name="s1")
        members = version_members(eng, "s1")
        clean = members.row_ids[~np.isin(members.row_ids, injected.poisoned_row_ids)
                                & (members.y == 1)][:2]
        relabel_rows(intern, version="s1", rows=clean.tolist(), to=3, reason="looked like a 3",
                     name="s1-relabel")
        pool = split_version(eng, version=split.train_version_id, test_size=0.3, seed=1,
                             name="pool", reason="a share goes to the crowd")
        batch = version_members(eng, pool.test_version_id)
        Xb, yb, poisoned = poison(batch.X, batch.y, rate=0.3, trigger=LabSettings().trigger,
                                  source_class=1, target_class=7, seed=0)
        add_source(eng, "crowd", kind="crowdsourced", uri="https://crowd.example/7",
                   license="CC-BY-4.0")
        review_source(rev, "crowd", decision="approve", reason="contract checked")
        crowd = ingest_arrays(eng, Xb.astype(np.uint8), yb, source="crowd", dataset="digits")
        s2 = append_ingest(eng, version="s1-relabel", ingest=crowd.id, name="s2",
                           reason="crowd batch delivered")
        create_snapshot(eng, "snap-s2", version=s2.version_id)
        scan_version(rev, "snap-s2", detectors=["shared_patch"])
        approve_snapshot(rev, "snap-s2")
        model = train(eng, snapshot="snap-s2", model="clf", seed=0)
        release_model(rev, model.ref, reason="lab release")

        folder = Path(tempfile.mkdtemp(prefix="lineage-report-"))
        export_version(eng, "s2", folder / "edited.csv")
        lines = (folder / "edited.csv").read_text().splitlines()
        lines[1] = lines[1].rsplit(",", 1)[0] + ",3"
        (folder / "edited.csv").write_text("\n".join(lines) + "\n")
        edit = import_external_edit(eng, folder / "edited.csv", as_version_of="s2",
                                    source="crowd", name="s2-edited")
        create_snapshot(eng, "snap-edit", version=edit.version_id)
        shutil.rmtree(folder)
    finally:
        for s in (eng, red, rev, intern):
            s.close()
    return {"model": model.ref, "injected": sorted(int(i) for i in injected.poisoned_row_ids),
            "relabelled": sorted(int(i) for i in clean), "crowd_ingest": crowd.id,
            "crowd_poisoned": sorted(int(i) for i in crowd.first_row_id + np.flatnonzero(poisoned)),
            "s2": s2.version_id, "edit": edit.version_id, "edit_step": edit.transformation_id,
            "inject_step": injected.transformation_id}


@pytest.fixture
def world(backend, tmp_path, stores):
    url, facts = stores.copy(backend, tmp_path, build=build_world)
    store = open_store(url, actor="reviewer")
    yield store, facts
    store.close()
    stores.drop(url)


@pytest.fixture
def sqlite_world(tmp_path, stores):
    url, facts = stores.copy("sqlite", tmp_path, build=build_world)
    store = open_store(url, actor="reviewer")
    yield store, facts
    store.close()


def by_kind(graph, kind):
    return [n for n in graph.nodes if n.kind == kind]


# ----------------------------------------------------------------------------- the graph

def test_a_false_alarm_or_two_blames_no_source():
    """Flags no record explains blame a source only when it holds far more of them than of
    the rows: one false alarm in the source of nearly every row blames nothing, a source of a
    third of the rows that delivered 13 of 14 is blamed, and a source of every row cannot be
    blamed by flags at all (nothing to compare with)."""
    from lineage.lab.report import _flags_blame

    assert _flags_blame(1, 1, 0.88, n_sources=2)[0] is False
    assert _flags_blame(2, 14, 0.7, n_sources=2)[0] is False
    blamed, log10_p = _flags_blame(13, 14, 0.3, n_sources=2)
    assert blamed and log10_p < -5
    assert _flags_blame(40, 40, 1.0, n_sources=1)[0] is False
    assert _flags_blame(0, 14, 0.3, n_sources=2)[0] is False


def test_graph_of_a_model_marks_poisoned_steps_and_suspect_sources(world):
    store, facts = world
    graph = lineage_graph(store, model=facts["model"])
    assert graph.target == f"model {facts['model']}"
    kinds = [n.kind for n in graph.nodes]
    assert kinds[0] == "source" and kinds[-1] == "model"  # data-flow order: sources first
    steps = {n.info["kind"]: n for n in by_kind(graph, "transformation")}
    assert set(steps) == {"split", "inject_trigger", "relabel", "append"}
    assert "poisoned" in steps["inject_trigger"].marks
    assert "implicated" in steps["relabel"].marks  # by an intern who reviews nothing
    assert not {"poisoned", "implicated"} & set(steps["split"].marks + steps["append"].marks)
    sources = {n.info["name"]: n for n in by_kind(graph, "source")}
    assert "suspect" in sources["crowd"].marks  # delivered rows the recorded scan flags
    assert "suspect" not in sources["sklearn-digits"].marks  # its rows were poisoned by a step
    assert sources["crowd"].info["suspect"][0].startswith(
        f"delivered {len(facts['crowd_poisoned'])} rows the detectors flag and no record "
        "explains, holding ")
    # Taint flows downstream only: the split before the injection stays clean.
    tainted = {n.id for n in graph.nodes if "tainted" in n.marks}
    assert by_kind(graph, "snapshot")[0].id in tainted and by_kind(graph, "model")[0].id in tainted
    assert "tainted" not in graph.node("v1").marks
    # Coverage on every node: rows covered for states, complete records for steps.
    assert all(n.coverage == 1.0 for n in graph.nodes)
    s2 = graph.node(f"v{facts['s2']}").info
    assert s2["covered_rows"] == s2["n_rows"]
    edges = {(e.source, e.target) for e in graph.edges}
    ingest = f"ingest{facts['crowd_ingest']}"
    assert (f"source{sources['crowd'].record_id}", ingest) in edges
    assert (f"t{steps['append'].record_id}", f"v{facts['s2']}") in edges
    roots = [t for s, t in edges if s == ingest]
    assert len(roots) == 1 and (roots[0], f"t{steps['append'].record_id}") in edges


def test_graph_of_a_snapshot_with_an_external_edit(world):
    store, facts = world
    graph = lineage_graph(store, snapshot="snap-edit")
    edit = graph.node(f"t{facts['edit_step']}")
    assert edit.info["kind"] == "external_edit" and "poisoned" in edit.marks
    assert edit.coverage == 0.0 and "external edit" in edit.info["missing"]
    file_node = graph.node(f"file{facts['edit_step']}")
    assert {"suspect", "uncovered"} <= set(file_node.marks)
    assert (file_node.id, edit.id) in {(e.source, e.target) for e in graph.edges}
    tip = graph.node(f"v{facts['edit']}")
    assert 0 < tip.coverage < 1 and "uncovered" in tip.marks
    assert tip.info["uncovered_because"]["external edit"] >= 1
    assert not by_kind(graph, "model")
    with pytest.raises(NotFoundError, match="no snapshot named 'nope'"):
        lineage_graph(store, snapshot="nope")
    with pytest.raises(BadInputError, match="give one of --model NAME:N and --snapshot NAME"):
        lineage_graph(store, model=facts["model"], snapshot="snap-s2")


def test_mermaid_and_dot_name_every_node_edge_and_mark(world):
    store, facts = world
    graph = lineage_graph(store, model=facts["model"])
    mermaid = render_graph(graph, "mermaid")
    dot = render_graph(graph, "dot")
    assert mermaid.startswith(f"%% lineage of {graph.target}\nflowchart TB\n")
    assert dot.splitlines()[1] == "digraph lineage {" and dot.rstrip().endswith("}")
    for n in graph.nodes:
        assert re.search(rf"^    {n.id}[\[(]", mermaid, re.M), n.id
        assert re.search(rf'^    {n.id} \[label="{re.escape(n.label)}\\n', dot, re.M), n.id
    for e in graph.edges:
        assert f"    {e.source} --> {e.target}\n" in mermaid
        assert f"    {e.source} -> {e.target};\n" in dot
    poisoned = [n.id for n in graph.nodes if "poisoned" in n.marks]
    assert f"    class {','.join(poisoned)} poisoned\n" in mermaid
    assert dot.count("penwidth=2.5") == sum(
        1 for n in graph.nodes if {"poisoned", "suspect", "implicated"} & set(n.marks))
    with pytest.raises(BadInputError, match="unknown graph format 'svg'"):
        render_graph(graph, "svg")


def test_graph_cli(world, tmp_path):
    store, facts = world
    from conftest import Cli

    cli = Cli(str(store.url))
    result = cli("graph", "--model", facts["model"], "--format", "dot")
    assert result.exit_code == 0, result.output
    assert result.output == to_dot(lineage_graph(store, model=facts["model"]))
    result = cli("graph", "--snapshot", "snap-edit")  # mermaid by default
    assert result.exit_code == 0 and result.output.startswith("%% lineage of snapshot snap-edit")
    data = json.loads(cli("graph", "--snapshot", "snap-s2", "--json").output)
    assert {n["kind"] for n in data["nodes"]} == {"source", "ingest", "version", "transformation",
                                                  "snapshot"}
    before = state(store)
    for args, code, message in [
        (["--model", "clf:9"], 3, "Error: no model version 'clf:9' (see `lineage model list`)"),
        (["--snapshot", "nope"], 3, "Error: no snapshot named 'nope'"),
        ([], 2, "Error: give one of --model NAME:N and --snapshot NAME"),
        (["--model", facts["model"], "--format", "svg"], 2, "Error: "),
    ]:
        result = cli("graph", *args)
        assert result.exit_code == code, result.output
        assert result.output.startswith(message) and len(result.output.splitlines()) == 1
    assert state(store) == before


# ----------------------------------------------------------------------------- the report

def test_report_data_gates_audit_and_chart(world):
    store, facts = world
    report = build_report(store, model=facts["model"])
    s = report.summary
    assert s["snapshot"] == "snap-s2" and s["coverage"] == 1.0
    assert s["trace_verified"]["ok"] is True
    assert s["suspect_sources"] == ["source crowd"]
    assert any(label.endswith("inject_trigger") for label in s["poisoned_steps"])
    # Gate reports: the snapshot's approval and the model's release, each signed and verified.
    decisions = [(r["of"], r["decision"], r["passed"]) for r in report.reviews]
    assert decisions == [("snapshot snap-s2", "approve", True),
                         (f"model {facts['model']}", "release", True)]
    assert all(r["signer"] == "reviewer" and r["signature"] == "verified" for r in report.reviews)
    assert {g["name"] for g in report.reviews[0]["gates"]} == {
        "coverage", "sources", "four_eyes", "shadow_evaluation"}
    # The audit: every recorded poisoning and every flagged crowd row, with its source.
    audit = report.audit
    rows = {r["row_id"]: r for r in audit["rows"]}
    assert set(facts["injected"]) | set(facts["relabelled"]) <= set(rows)
    assert set(facts["crowd_poisoned"]) <= set(rows)
    assert all(rows[r]["source"] == "crowd" and rows[r]["detectors"]
               for r in facts["crowd_poisoned"])
    assert all(rows[r]["label"] == 7 and rows[r]["records"] for r in facts["injected"])
    assert audit["scan"] is not None and audit["from_detectors"] > 0
    # The chart: clean accuracy and the scanned triggers' ASR, with the policy's thresholds.
    bars = report.chart["bars"]
    assert bars[0]["kind"] == "accuracy" and 0.8 < bars[0]["value"] <= 1
    assert [b["kind"] for b in bars[1:]] == ["asr"] * (len(bars) - 1) and len(bars) > 1
    assert report.chart["thresholds"] == {"min_clean_accuracy": 0.9, "max_asr": 1.0}
    # Self-contained: no element loads anything.
    page = report_html(report)
    assert not re.search(r"<(link|img|iframe|object)\b|\b(src|href)\s*=", page, re.I)
    assert "default-src 'none'" in page
    data = json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>',
                                page, re.S).group(1))
    assert len(data["graph"]["nodes"]) == len(report.graph.nodes)


def test_report_of_a_snapshot_uses_its_shadow_evaluation(world):
    store, _ = world
    report = build_report(store, snapshot="snap-s2")
    assert "model" not in report.summary
    [review] = report.reviews
    assert review["decision"] == "approve" and review["passed"] is True
    assert report.chart["title"].startswith(f"shadow evaluation of review {review['id']}")
    assert report.chart["bars"][0]["kind"] == "accuracy" and len(report.chart["bars"]) > 1
    pending = build_report(store, snapshot="snap-edit")
    assert pending.reviews == [] and pending.chart["bars"] == []
    assert pending.chart["empty"].startswith("no shadow evaluation recorded yet")
    assert pending.audit["scan"] is None  # snap-edit's content was never scanned
    assert pending.summary["snapshot_status"] == "pending" and pending.summary["coverage"] < 1


# ----------------------------------------------------------------------------- in a browser

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


@pytest.fixture
def browser() -> str:
    """The headless browser: skipped without one on a user's machine, a failure in CI (asked
    for first, so a missing browser skips before the store is built)."""
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    message = ("no chromium on PATH: the report's browser test needs Debian's `chromium` "
               "package (apt-get install chromium; .ci/run installs it)")
    if os.environ.get("CI"):
        pytest.fail(message + ": CI must run the browser test")
    pytest.skip(message)


def run_chromium(browser: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False)


class DrawnPage(HTMLParser):
    """The drawn DOM's graph nodes, edges, chart bars and the page's own render status."""

    def __init__(self):
        super().__init__()
        self.nodes, self.bars, self.edges, self.status = {}, [], [], {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "g" and "node" in classes:
            self.nodes[a["data-id"]] = a
        elif tag == "g" and "bar" in classes:
            self.bars.append(a)
        elif tag == "path" and "edge" in classes:
            self.edges.append((a["data-source"], a["data-target"]))
        elif a.get("id") == "render-status":
            self.status = a


def size(attrs: dict) -> tuple[int, int]:
    w, h = attrs.get("data-size", "0x0").split("x")
    return int(w), int(h)


def check_drawn(browser: str, report_path: Path, tmp_path: Path, graph, n_bars: int) -> None:
    """Load the report in headless chromium; on failure keep a screenshot and name it."""
    dom = run_chromium(browser, tmp_path, "--dump-dom", report_path.as_uri())
    page = DrawnPage()
    page.feed(dom.stdout)
    try:
        assert dom.returncode == 0, dom.stderr[-2000:]
        assert page.status.get("data-state") == "ok", page.status
        assert set(page.nodes) == {n.id for n in graph.nodes}
        assert all(size(a)[0] > 100 and size(a)[1] > 20 for a in page.nodes.values()), page.nodes
        assert sorted(page.edges) == sorted((e.source, e.target) for e in graph.edges)
        assert len(page.bars) == n_bars and all(size(b)[1] > 0 for b in page.bars)
        for node in graph.nodes:
            assert page.nodes[node.id]["data-marks"] == " ".join(node.marks)
    except AssertionError:
        shot = tmp_path / "report-screenshot.png"
        run_chromium(browser, tmp_path, f"--screenshot={shot}", "--window-size=1300,2400",
                     report_path.as_uri())
        print(f"the report did not draw as expected; screenshot: {shot}")
        raise


def test_report_draws_graph_and_chart_in_a_browser(browser, sqlite_world, tmp_path):
    store, facts = sqlite_world
    from conftest import Cli

    cli = Cli(str(store.url))
    path = tmp_path / "out" / "report.html"
    before = state(store)
    result = cli("report", "--model", facts["model"], "--out", path)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"wrote {path}: lineage of model {facts['model']}")
    assert state(store) == before  # a report reads; it writes nothing to the store
    report = build_report(store, model=facts["model"])
    check_drawn(browser, path, tmp_path, report.graph, len(report.chart["bars"]))


def test_snapshot_report_draws_in_a_browser(browser, sqlite_world, tmp_path):
    store, _ = sqlite_world
    path = tmp_path / "snapshot.html"
    from lineage.lab.report import write_report

    report = write_report(store, path, snapshot="snap-edit")
    check_drawn(browser, path, tmp_path, report.graph, len(report.chart["bars"]))


# ----------------------------------------------------------------------------- the command

def test_report_scan_option_records_a_scan(sqlite_world, tmp_path):
    store, _ = sqlite_world  # (the scan itself is the same on both backends, and slow)
    from conftest import Cli

    cli = Cli(str(store.url))
    scans = len(list_events(store, kind="scan"))
    result = cli("report", "--snapshot", "eval", "--scan", "--out", tmp_path / "r.html",
                 "--json", actor="reviewer")  # the smallest snapshot: the scan is the cost
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["out"] == str(tmp_path / "r.html") and data["audit"]["scan"] is not None
    assert len(list_events(store, kind="scan")) == scans + 1


def test_report_bad_inputs_write_nothing(world, tmp_path):
    store, facts = world
    from conftest import Cli

    cli = Cli(str(store.url))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    (tmp_path / "folder").mkdir()
    before = state(store)
    cases = [
        (["--model", "clf:9"], 3, "Error: no model version 'clf:9' (see `lineage model list`)"),
        (["--model", "clf:x"], 2, "Error: model reference 'clf:x': write NAME:NUMBER"),
        (["--snapshot", "nope"], 3, "Error: no snapshot named 'nope'"),
        ([], 2, "Error: give one of --model NAME:N and --snapshot NAME"),
        (["--model", facts["model"], "--snapshot", "snap-s2"], 2, "Error: give one of"),
        (["--model", facts["model"], "--out", blocker / "r.html"], 2,
         f"Error: --out {blocker / 'r.html'}: {blocker} is a file, not a folder"),
        (["--model", facts["model"], "--out", tmp_path / "folder"], 2,
         f"Error: --out {tmp_path / 'folder'}: is a folder"),
    ]
    for args, code, message in cases:
        result = cli("report", *args, "--out", tmp_path / "report.html") if "--out" not in args \
            else cli("report", *args)
        assert result.exit_code == code, (args, result.output)
        assert result.output.startswith(message), result.output
        assert len(result.output.splitlines()) == 1, result.output
    assert not (tmp_path / "report.html").exists() and not list((tmp_path / "folder").iterdir())
    assert state(store) == before
    missing = Cli(f"sqlite:///{tmp_path / 'typo.db'}")("report", "--model", facts["model"],
                                                       "--out", tmp_path / "report.html")
    assert missing.exit_code == 3 and missing.output.startswith("Error: no store at ")
    assert not (tmp_path / "typo.db").exists() and not (tmp_path / "report.html").exists()
