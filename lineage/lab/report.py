"""The lineage of a model version or a snapshot, to look at: a graph (model -> snapshot ->
versions -> transformations -> ingests -> sources) as Mermaid, DOT or one self-contained HTML
report that adds the gate reports, the poisoned-row audit and the clean-accuracy/ASR chart.

``lineage_graph`` walks the records once; the text formats and the report draw that one graph.
Steps that poison by record (trigger injections, edits made outside the store) are marked
``poisoned``; other steps whose rows the records implicate (a relabel by someone who reviews
nothing) ``implicated``; sources and ingests that are not approved, or that carry rows the records
or the newest recorded scan implicate, ``suspect``; every state downstream of those ``tainted``;
nodes whose provenance is incomplete ``uncovered``. Every node carries its provenance coverage:
the covered share of rows for versions, the snapshot and the model, and whether the record itself
has all its provenance fields (1.0 or 0.0) for transformations, ingests and sources.

The report is one HTML file with no network access: inline CSS, the data as embedded JSON and a
small script that lays the graph and the chart out as SVG, then writes what it drew into
``#render-status`` (the tests read it in a headless browser).
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Optional

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from lineage._version import __version__
from lineage.data.coverage import (
    EXTERNAL_EDIT,
    origins,
    row_makers,
    row_sources,
    version_coverage,
)
from lineage.data.datasets import LAZY_BLOBS
from lineage.data.deltas import version_chain
from lineage.data.sources import source_status
from lineage.errors import BadInputError, IntegrityError, RefusedError
from lineage.lab.audit import record_implicated, scan_version
from lineage.models.registry import find_model_version, model_info, model_reviews
from lineage.poison.calibration import FDR_Q
from lineage.review.attestations import attestation_of, verified_attestation
from lineage.review.keys import Trust, read_trust
from lineage.review.snapshots import (
    find_snapshot,
    read_snapshot_rows,
    snapshot_info,
    snapshot_manifest_digest,
    snapshot_reviews,
    snapshot_row_ids,
)
from lineage.store.engine import Store
from lineage.store.files import write_atomically
from lineage.store.tables import (
    Dataset,
    Event,
    Ingest,
    ModelVersion,
    Policy,
    Snapshot,
    Source,
    Transformation,
    Version,
)
from lineage.trace import trace_model

POISONING_KINDS = ("inject_trigger", EXTERNAL_EDIT)
FORMATS = ("mermaid", "dot")
MAX_AUDIT_ROWS = 500  # rows of the audit table written into the report (the counts cover all)
MAX_TRIGGERS = 8  # scanned triggers drawn in the chart, worst first
_STEP = re.compile(r"transformation (\d+)")


@dataclass(frozen=True)
class GraphNode:
    """One record in the lineage: ``kind`` is model, snapshot, version, transformation, ingest,
    source or file (an edited file from outside the store)."""

    id: str
    kind: str
    label: str
    detail: str
    coverage: Optional[float]
    marks: tuple = ()
    info: dict = field(default_factory=dict)
    record_id: Optional[int] = None  # the id of the record in its table (a file: its edit's)


@dataclass(frozen=True)
class GraphEdge:
    """Data flows from ``source`` to ``target`` (node ids)."""

    source: str
    target: str


@dataclass(frozen=True)
class LineageGraph:
    """The lineage of one model version or snapshot, in data-flow order (sources first)."""

    target: str  # "model clf:1" or "snapshot snap-s1"
    nodes: tuple
    edges: tuple

    def node(self, node_id: str) -> GraphNode:
        return next(n for n in self.nodes if n.id == node_id)

    def as_dict(self) -> dict:
        return {"target": self.target,
                "nodes": [{"id": n.id, "kind": n.kind, "label": n.label, "detail": n.detail,
                           "coverage": n.coverage, "marks": list(n.marks),
                           "info": _jsonable(n.info), "record_id": n.record_id}
                          for n in self.nodes],
                "edges": [{"source": e.source, "target": e.target} for e in self.edges]}


@dataclass
class _Walk:
    """What one walk of the records found, for the graph and the report."""

    snapshot: Snapshot
    model: Optional[ModelVersion]
    version: Version
    member_ids: np.ndarray
    implicated: dict  # row id -> reasons from the records
    scan: Optional[dict]  # the newest recorded scan of the snapshot: event, flagged rows
    row_ingest: dict  # implicated or flagged row id -> ingest of its raw row (-1: outside)
    delivered: dict  # ingest id -> flagged rows it stored as they are that no record explains


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds") + "Z"
    if isinstance(value, np.generic):
        return value.item()
    return value


def check_target(model: Optional[str], snapshot: Optional[str]) -> None:
    """Exactly one of a model version and a snapshot."""
    if (model is None) == (snapshot is None):
        raise BadInputError("give one of --model NAME:N and --snapshot NAME")


def _newest_scan(session: Session, snap: Snapshot) -> Optional[dict]:
    """The newest recorded scan of this snapshot's content (by name, or of its version with the
    same content digest): its event id, time, actor and the rows in its combined list."""
    for ev in session.scalars(select(Event).where(Event.kind == "scan").order_by(Event.id.desc())):
        payload = json.loads(ev.payload)
        if payload.get("content_digest") != snap.content_digest:
            continue
        if payload.get("snapshot") not in (snap.name, None):
            continue
        flagged = {int(f["row_id"]): f for f in payload.get("flagged", []) if f.get("combined")}
        return {"event": ev.id, "at": ev.created_at, "actor": ev.actor,
                "target": payload.get("target"), "flagged": flagged}
    return None


def _walk(session: Session, *, model: Optional[str], snapshot: Optional[str]) -> _Walk:
    mv = None
    if model is not None:
        mv = find_model_version(session, model)
        snap = session.get(Snapshot, mv.snapshot_id)
    else:
        snap = find_snapshot(session, snapshot)
    if snapshot_manifest_digest(snap) != snap.manifest_digest:
        raise IntegrityError(f"snapshot {snap.name!r}: its manifest does not match its digest: "
                             "run `lineage verify`")
    version = session.get(Version, snap.version_id, options=LAZY_BLOBS)
    ids = snapshot_row_ids(snap)
    implicated = record_implicated(session, version, ids)
    scan = _newest_scan(session, snap)
    rows = sorted(set(implicated) | set(scan["flagged"] if scan else ()))
    row_ingest, delivered = {}, {}
    if rows:
        ingest_of, _ = origins(session, snap.dataset_id, np.asarray(rows, dtype=np.int64))
        row_ingest = {r: int(i) for r, i in zip(rows, ingest_of, strict=True)}
    # A source is to blame for flagged rows it delivered as they are; a derived row (a trigger
    # injection's child) or a row the records explain is the step's doing, not the source's.
    unexplained = np.asarray(sorted(set(scan["flagged"] if scan else ()) - set(implicated)),
                             dtype=np.int64)
    if len(unexplained):
        stored_by, made_by = row_makers(session, snap.dataset_id, unexplained)
        for ingest_id in stored_by[(made_by < 0) & (stored_by >= 0)].tolist():
            delivered[int(ingest_id)] = delivered.get(int(ingest_id), 0) + 1
    return _Walk(snapshot=snap, model=mv, version=version, member_ids=ids, implicated=implicated,
                 scan=scan, row_ingest=row_ingest, delivered=delivered)


def _pct(coverage: Optional[float]) -> str:
    if coverage is None:
        return "-"
    return f"{coverage:.0%}" if coverage in (0.0, 1.0) else f"{coverage:.1%}"


def _flags_blame(carried: int, unexplained: int, share: float, *,
                 n_sources: int) -> tuple[bool, float]:
    """Whether a source that delivered ``carried`` of the ``unexplained`` flagged rows (rows no
    record explains) while holding ``share`` of the snapshot's rows is to blame for them: the
    binomial tail of that count against its share, below the scan's FDR q with Bonferroni over
    the snapshot's sources (a false alarm or two in a large source blames nothing; a source
    that holds every row can only be blamed by its status or by ``lineage audit sources``).
    Returns (blamed, log10 of the tail)."""
    if carried == 0 or share >= 1.0:
        return False, 0.0
    from scipy.stats import binom

    log10_p = float(binom.logsf(carried - 1, unexplained, share)) / math.log(10)
    return log10_p < math.log10(FDR_Q / max(n_sources, 1)), log10_p


def _graph(session: Session, walk: _Walk) -> LineageGraph:
    snap, mv = walk.snapshot, walk.model
    nodes: dict[str, GraphNode] = {}
    edges: list[GraphEdge] = []
    flagged_ingests = walk.delivered
    rows_from = {e["ingest"]: e["rows"]
                 for e in row_sources(session, snap.dataset_id, walk.member_ids)}
    sources_in_snapshot = set(session.scalars(
        select(Ingest.source_id).where(Ingest.id.in_(list(rows_from)))))
    implicated_steps: dict[int, int] = {}  # transformation -> implicated rows it touched
    for reasons in walk.implicated.values():
        for reason in reasons:  # each names its step: "... transformation 3 ..."
            found = _STEP.search(reason)
            if found:
                t_id = int(found.group(1))
                implicated_steps[t_id] = implicated_steps.get(t_id, 0) + 1

    def add(node: GraphNode) -> str:
        nodes.setdefault(node.id, node)
        return node.id

    def source_node(src: Source) -> str:
        status = source_status(session, src)
        missing = [m for m, ok in (("source without uri", (src.uri or "").strip()),
                                   ("no license", (src.license or "").strip()),
                                   ("source not approved", status == "approved")) if not ok]
        ingest_ids = set(session.scalars(select(Ingest.id).where(Ingest.source_id == src.id)))
        carried = sum(flagged_ingests.get(i, 0) for i in ingest_ids)
        share = sum(rows_from.get(i, 0) for i in ingest_ids) / max(len(walk.member_ids), 1)
        blamed, log10_p = _flags_blame(carried, sum(flagged_ingests.values()), share,
                                       n_sources=len(sources_in_snapshot))
        marks = (("suspect",) if status != "approved" or blamed else ()) + (
            ("uncovered",) if missing else ())
        why = ([f"status {status}"] if status != "approved" else []) + (
            [f"delivered {carried} rows the detectors flag and no record explains, holding "
             f"{share:.0%} of the rows (p=1e{log10_p:.0f})"] if blamed else [])
        return add(GraphNode(
            id=f"source{src.id}", kind="source", record_id=src.id, label=f"source {src.name}",
            detail=f"{src.kind} · {status}", coverage=0.0 if missing else 1.0, marks=marks,
            info={"name": src.name, "kind": src.kind, "uri": src.uri, "license": src.license,
                  "owner": src.owner, "status": status, "missing": missing, "suspect": why}))

    def ingest_node(ing: Ingest) -> str:
        src = session.get(Source, ing.source_id)
        src_id = source_node(src)
        missing = [m for m, ok in (("ingest without file digest", (ing.file_sha256 or "").strip()),
                                   ("ingest without actor", (ing.actor or "").strip())) if not ok]
        carried = flagged_ingests.get(ing.id, 0)
        in_snap = rows_from.get(ing.id, 0)
        blamed, _ = _flags_blame(carried, sum(flagged_ingests.values()),
                                 in_snap / max(len(walk.member_ids), 1),
                                 n_sources=len(rows_from))
        node_id = add(GraphNode(
            id=f"ingest{ing.id}", kind="ingest", record_id=ing.id, label=f"ingest {ing.id}",
            detail=f"{in_snap} of {ing.n_rows} rows · by {ing.actor}",
            coverage=0.0 if missing or "uncovered" in nodes[src_id].marks else 1.0,
            marks=(("suspect",) if blamed or "suspect" in nodes[src_id].marks else ())
            + (("uncovered",) if missing else ()),
            info={"id": ing.id, "source": src.name, "file_name": ing.file_name,
                  "file_sha256": ing.file_sha256, "n_rows": ing.n_rows,
                  "rows_in_snapshot": in_snap, "actor": ing.actor, "created_at": ing.created_at,
                  "flagged_rows_delivered": carried, "missing": missing}))
        edges.append(GraphEdge(src_id, node_id))
        return node_id

    def version_node(v: Version) -> str:
        report = version_coverage(session, v)
        return add(GraphNode(
            id=f"v{v.id}", kind="version", record_id=v.id,
            label=f"v{v.id}" + (f" {v.name}" if v.name else ""),
            detail=f"{v.n_rows} rows · coverage {_pct(report.coverage)}", coverage=report.coverage,
            marks=("uncovered",) if report.coverage < 1 else (),
            info={"id": v.id, "name": v.name, "n_rows": v.n_rows,
                  "content_digest": v.content_digest, "actor": v.actor,
                  "created_at": v.created_at, "covered_rows": report.n_covered,
                  "uncovered_because": report.breakdown}))

    def root_of(ing: Ingest) -> Optional[Version]:
        return session.scalars(select(Version).options(*LAZY_BLOBS).where(
            Version.ingest_id == ing.id, Version.parent_id.is_(None)).order_by(Version.id)).first()

    chain = version_chain(session, walk.version)
    for v in chain:
        vid = version_node(v)
        if v.parent_id is None:
            if v.ingest_id is not None:
                edges.append(GraphEdge(ingest_node(session.get(Ingest, v.ingest_id)), vid))
            continue
        t = session.get(Transformation, v.transformation_id)
        params = json.loads(t.params)
        missing = [m for m, ok in (("transformation without actor", (t.actor or "").strip()),
                                   ("transformation without reason", (t.reason or "").strip()),
                                   ("transformation without code identity",
                                    (t.code_identity or "").strip())) if not ok]
        if t.kind == EXTERNAL_EDIT:
            missing.append("external edit")
        marks = ("poisoned",) if t.kind in POISONING_KINDS else (
            ("implicated",) if implicated_steps.get(t.id) else ())
        tid = add(GraphNode(
            id=f"t{t.id}", kind="transformation", record_id=t.id, label=f"t{t.id} {t.kind}",
            detail=f"by {t.actor}" + (f": {t.reason}" if t.reason else ""),
            coverage=0.0 if missing else 1.0, marks=marks + (("uncovered",) if missing else ()),
            info={"id": t.id, "kind": t.kind, "actor": t.actor, "reason": t.reason,
                  "code_identity": t.code_identity, "params": params,
                  "created_at": t.created_at, "implicated_rows": implicated_steps.get(t.id, 0),
                  "missing": missing}))
        edges.append(GraphEdge(f"v{v.parent_id}", tid))
        edges.append(GraphEdge(tid, vid))
        if t.kind == "append" and params.get("ingest") is not None:
            ing = session.get(Ingest, int(params["ingest"]))
            root = root_of(ing) if ing is not None else None
            if root is not None:
                rid = version_node(root)
                edges.append(GraphEdge(ingest_node(ing), rid))
                edges.append(GraphEdge(rid, tid))
            elif ing is not None:
                edges.append(GraphEdge(ingest_node(ing), tid))
        elif t.kind == EXTERNAL_EDIT:
            name = Path(str(params.get("file", "edited file"))).name
            fid = add(GraphNode(
                id=f"file{t.id}", kind="file", record_id=t.id, label=f"file {name}",
                detail="edited outside the store", coverage=0.0, marks=("suspect", "uncovered"),
                info={"file": params.get("file"), "file_sha256": params.get("file_sha256"),
                      "named_source": params.get("source")}))
            edges.append(GraphEdge(fid, tid))

    sinfo = snapshot_info(session, snap, detail=True)
    tip = f"v{walk.version.id}"
    tip_cov = nodes[tip].coverage
    sid = add(GraphNode(
        id=f"snapshot{snap.id}", kind="snapshot", record_id=snap.id, label=f"snapshot {snap.name}",
        detail=f"{sinfo.status} · {snap.n_rows} rows · coverage {_pct(tip_cov)}",
        coverage=tip_cov, marks=("uncovered",) if tip_cov is not None and tip_cov < 1 else (),
        info={"name": snap.name, "status": sinfo.status, "n_rows": snap.n_rows,
              "content_digest": snap.content_digest, "manifest_digest": snap.manifest_digest,
              "actor": snap.actor, "created_at": snap.created_at,
              "coverage_at_approval": sinfo.coverage, "models": list(sinfo.models)}))
    edges.append(GraphEdge(tip, sid))
    if mv is not None:
        info = model_info(session, mv)
        metrics = ("acc -" if info.clean_accuracy is None else f"acc {info.clean_accuracy:.3f}") + (
            "" if info.worst_asr is None else f" · ASR {info.worst_asr:.3f}")
        mid = add(GraphNode(
            id=f"model{mv.id}", kind="model", record_id=mv.id, label=f"model {info.ref}",
            detail=f"{info.status} · {metrics}", coverage=tip_cov,
            marks=("uncovered",) if tip_cov is not None and tip_cov < 1 else (),
            info={"ref": info.ref, "status": info.status, "estimator": info.estimator,
                  "params": info.params, "clean_accuracy": info.clean_accuracy,
                  "worst_asr": info.worst_asr, "worst_trigger": info.metrics.get("worst_trigger"),
                  "artifact_sha256": info.artifact_sha256, "code_identity": info.code_identity,
                  "actor": info.actor, "created_at": info.created_at,
                  "affected_reason": info.affected_reason}))
        edges.append(GraphEdge(sid, mid))

    # Taint flows downstream from poisoned and implicated steps and suspect inputs.
    out_of: dict[str, list[str]] = {}
    for e in edges:
        out_of.setdefault(e.source, []).append(e.target)
    frontier = [n.id for n in nodes.values()
                if {"poisoned", "implicated", "suspect"} & set(n.marks)]
    tainted: set[str] = set()
    while frontier:
        nxt = []
        for node_id in frontier:
            for target in out_of.get(node_id, ()):
                if target not in tainted:
                    tainted.add(target)
                    nxt.append(target)
        frontier = nxt
    final = []
    for n in nodes.values():
        if n.id in tainted and n.kind in ("version", "snapshot", "model"):
            n = dataclasses.replace(n, marks=("tainted",) + n.marks)
        final.append(n)
    # Sources first: nodes by their longest path from a node without inputs, then as found.
    ins: dict[str, list[str]] = {}
    for e in edges:
        ins.setdefault(e.target, []).append(e.source)
    level: dict[str, int] = {}

    def level_of(node_id: str) -> int:
        if node_id not in level:
            level[node_id] = 0  # (the graph has no cycles; this only guards the recursion)
            level[node_id] = max((level_of(s) + 1 for s in ins.get(node_id, ())), default=0)
        return level[node_id]

    found = {n.id: i for i, n in enumerate(final)}
    final.sort(key=lambda n: (level_of(n.id), found[n.id]))
    unique_edges = list(dict.fromkeys((e.source, e.target) for e in edges))
    unique_edges.sort(key=lambda e: (level_of(e[0]), found[e[0]], found[e[1]]))
    target = f"model {mv.model}:{mv.number}" if mv is not None else f"snapshot {snap.name}"
    return LineageGraph(target=target, nodes=tuple(final),
                        edges=tuple(GraphEdge(s, t) for s, t in unique_edges))


def lineage_graph(store: Store, *, model: Optional[str] = None,
                  snapshot: Optional[str] = None) -> LineageGraph:
    """The lineage graph of a model version (``name:number``) or a snapshot: every node with its
    provenance coverage and marks (poisoned, implicated, suspect, tainted, uncovered).

    Example: ``lineage_graph(store, model="digits-clf:1").nodes``
    """
    check_target(model, snapshot)
    with store.read() as session:
        return _graph(session, _walk(session, model=model, snapshot=snapshot))


# ----------------------------------------------------------------------------- text formats

_STYLE = {  # fill, stroke for each mark (first mark wins), then for each kind
    "poisoned": ("#fde2e2", "#c62828"), "implicated": ("#fff1d6", "#d97706"),
    "suspect": ("#ffe9d6", "#ea580c"), "tainted": ("#fbeaea", "#b45309"),
    "source": ("#eef2ff", "#4f46e5"), "ingest": ("#eef6ff", "#2563eb"),
    "version": ("#f3f4f6", "#4b5563"), "transformation": ("#ecfdf5", "#059669"),
    "snapshot": ("#f5f3ff", "#7c3aed"), "model": ("#fefce8", "#a16207"),
    "file": ("#fde2e2", "#c62828"),
}


def _style(node: GraphNode) -> tuple[str, str]:
    for mark in ("poisoned", "implicated", "suspect", "tainted"):
        if mark in node.marks:
            return _STYLE[mark]
    return _STYLE[node.kind]


def _text_lines(node: GraphNode) -> list[str]:
    marks = [m for m in node.marks if m != "uncovered"] + (
        ["uncovered"] if "uncovered" in node.marks else [])
    return [node.label, node.detail] + ([", ".join(marks)] if marks else [])


def to_mermaid(graph: LineageGraph) -> str:
    """The graph as a Mermaid flowchart (top to bottom, data flow), for Markdown docs."""

    def esc(text: str) -> str:
        return (text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;")
                .replace(">", "#gt;"))

    lines = [f"%% lineage of {graph.target}", "flowchart TB"]
    for n in graph.nodes:
        text = "<br/>".join(esc(t) for t in _text_lines(n))
        shape = ('[("', '")]') if n.kind == "source" else (
            ('(["', '"])') if n.kind == "transformation" else ('["', '"]'))
        lines.append(f"    {n.id}{shape[0]}{text}{shape[1]}")
    for e in graph.edges:
        lines.append(f"    {e.source} --> {e.target}")
    for mark in ("poisoned", "implicated", "suspect", "tainted"):
        fill, stroke = _STYLE[mark]
        lines.append(f"    classDef {mark} fill:{fill},stroke:{stroke},stroke-width:2px")
        ids = [n.id for n in graph.nodes if _style(n) == _STYLE[mark]]
        if ids:
            lines.append(f"    class {','.join(ids)} {mark}")
    return "\n".join(lines) + "\n"


def to_dot(graph: LineageGraph) -> str:
    """The graph in Graphviz DOT (``dot -Tsvg``)."""

    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace('"', '\\"')

    lines = [f"// lineage of {graph.target}", "digraph lineage {", "    rankdir=TB;",
             '    node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
             '    edge [color="#6b7280"];']
    for n in graph.nodes:
        fill, stroke = _style(n)
        label = "\\n".join(esc(t) for t in _text_lines(n))
        width = 2.5 if {"poisoned", "suspect", "implicated"} & set(n.marks) else 1
        shape = ", shape=cylinder" if n.kind == "source" else ""
        lines.append(f'    {n.id} [label="{label}", fillcolor="{fill}", color="{stroke}", '
                     f'penwidth={width}{shape}];')
    for e in graph.edges:
        lines.append(f"    {e.source} -> {e.target};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_graph(graph: LineageGraph, fmt: str) -> str:
    """``mermaid`` or ``dot``."""
    if fmt == "mermaid":
        return to_mermaid(graph)
    if fmt == "dot":
        return to_dot(graph)
    raise BadInputError(f"unknown graph format {fmt!r}: choose from {', '.join(FORMATS)}")


# ----------------------------------------------------------------------------- the report

@dataclass(frozen=True)
class Report:
    """Everything the HTML report shows, as JSON-ready values."""

    target: str
    summary: dict
    graph: LineageGraph
    reviews: list  # gate reports: decision, passed, actor, signer and each gate's result
    audit: dict  # counts and rows (records, detectors)
    chart: dict  # bars (clean accuracy, ASR per scanned trigger) and thresholds
    generated_by: str = f"lineage {__version__}"

    def as_dict(self) -> dict:
        return {"target": self.target, "summary": _jsonable(self.summary),
                "graph": self.graph.as_dict(), "reviews": _jsonable(self.reviews),
                "audit": _jsonable(self.audit), "chart": _jsonable(self.chart),
                "generated_by": self.generated_by}


def _signature(session: Session, record, trust: Trust, what: str) -> dict:
    row = attestation_of(session, record)
    if row is None:
        return {"signer": None, "keyid": None, "signature": "unsigned"}
    out = {"signer": row.signer, "keyid": row.keyid}
    if not trust.keys:
        return {**out, "signature": f"not checked (no trust file at {trust.path})"}
    try:
        verified = verified_attestation(session, record, trust, what=what)
    except RefusedError:
        return {**out, "signature": "signed by a key the trust file does not list"}
    except IntegrityError:
        return {**out, "signature": "signature does not verify"}
    return {**out, "signer": verified.signer, "signature": "verified"}


def _gates(report: dict) -> list[dict]:
    items = report.get("gates") or report.get("checks") or []
    return [{"name": g.get("gate") or g.get("check"), "passed": bool(g.get("passed")),
             "message": g.get("message", "")} for g in items]


def _reviews(session: Session, walk: _Walk, trust: Trust) -> list[dict]:
    out = []
    for r in snapshot_reviews(session, walk.snapshot):
        report = json.loads(r.report)
        out.append({"of": f"snapshot {walk.snapshot.name}", "id": r.id, "decision": r.decision,
                    "passed": r.passed, "reason": r.reason, "actor": r.actor,
                    "created_at": r.created_at, "policy_version": r.policy_id or 0,
                    **_signature(session, r, trust, f"review {r.id}"), "gates": _gates(report)})
    if walk.model is not None:
        for r in model_reviews(session, walk.model):
            report = json.loads(r.report)
            out.append({"of": f"model {walk.model.model}:{walk.model.number}", "id": r.id,
                        "decision": r.decision, "passed": r.passed, "reason": r.reason,
                        "actor": r.actor, "created_at": r.created_at,
                        "policy_version": r.policy_id or 0,
                        **_signature(session, r, trust, f"model review {r.id}"),
                        "gates": _gates(report)})
    return out


def _audit(session: Session, walk: _Walk, graph: LineageGraph) -> dict:
    ids, _, y = read_snapshot_rows(session, walk.snapshot)  # digest-verified, for the labels
    label_of = dict(zip(ids.tolist(), y.tolist(), strict=True))
    flagged = walk.scan["flagged"] if walk.scan else {}
    source_of = {}
    for n in graph.nodes:
        if n.kind == "ingest":
            source_of[n.info["id"]] = n.info["source"]
    rows = []
    for row_id in sorted(set(walk.implicated) | set(flagged)):
        f = flagged.get(row_id, {})
        ingest = walk.row_ingest.get(row_id, -1)
        rows.append({"row_id": row_id, "label": label_of.get(row_id),
                     "source": source_of.get(ingest, "outside the store" if ingest < 0 else None),
                     "records": walk.implicated.get(row_id, []),
                     "detectors": f.get("detectors", []), "score": f.get("score", 0.0)})
    rows.sort(key=lambda r: (not r["records"], -(r["score"] or 0.0), r["row_id"]))
    scan = walk.scan
    return {"n_rows": len(ids), "n_implicated": len(rows),
            "from_records": len(walk.implicated), "from_detectors": len(flagged),
            "both": len(set(walk.implicated) & set(flagged)),
            "poison_rate": len(rows) / len(ids) if len(ids) else 0.0,
            "scan": None if scan is None else {
                k: scan[k] for k in ("event", "at", "actor", "target")},
            "rows": rows[:MAX_AUDIT_ROWS], "rows_left_out": max(0, len(rows) - MAX_AUDIT_ROWS)}


def _bars(clean_accuracy, triggers) -> list[dict]:
    bars = []
    if clean_accuracy is not None:
        bars.append({"label": "clean accuracy", "value": float(clean_accuracy), "kind": "accuracy"})
    for t in sorted(triggers or [], key=lambda t: -t.get("asr", 0.0))[:MAX_TRIGGERS]:
        name = t.get("trigger", "?") + (f" -> {t['target']}" if "target" in t else "")
        bars.append({"label": f"ASR {name}", "value": float(t.get("asr", 0.0)), "kind": "asr"})
    return bars


def _chart(session: Session, walk: _Walk) -> dict:
    if walk.model is not None:
        mv = walk.model
        metrics = json.loads(mv.metrics)
        policy = session.get(Policy, mv.policy_id) if mv.policy_id else None
        settings = json.loads(policy.settings) if policy is not None else {}
        return {"title": f"model {mv.model}:{mv.number} on evaluation snapshot "
                         f"{metrics.get('evaluation_snapshot', '-')} "
                         f"({metrics.get('evaluation_rows', '-')} rows)",
                "bars": _bars(metrics.get("clean_accuracy"), metrics.get("triggers")),
                "thresholds": {"min_clean_accuracy": settings.get("min_clean_accuracy"),
                               "max_asr": settings.get("max_asr")},
                "empty": "the model version has no recorded metrics"}
    for r in reversed(snapshot_reviews(session, walk.snapshot)):
        report = json.loads(r.report)
        shadow = next((g for g in report.get("gates", [])
                       if g.get("gate") == "shadow_evaluation"), None)
        if shadow is None:
            continue
        return {"title": f"shadow evaluation of review {r.id} ({shadow.get('estimator')}, seed "
                         f"{shadow.get('seed')}) on evaluation snapshot "
                         f"{shadow.get('evaluation_snapshot')} "
                         f"({shadow.get('evaluation_rows')} rows)",
                "bars": _bars(shadow.get("clean_accuracy"), shadow.get("top_triggers")),
                "thresholds": {"min_clean_accuracy": shadow.get("min_clean_accuracy"),
                               "max_asr": shadow.get("max_asr")}, "empty": ""}
    return {"title": f"snapshot {walk.snapshot.name}", "bars": [], "thresholds": {},
            "empty": "no shadow evaluation recorded yet: `lineage snapshot approve` runs one"}


def build_report(store: Store, *, model: Optional[str] = None, snapshot: Optional[str] = None,
                 scan: bool = False, trust: Optional[str] = None) -> Report:
    """The report's data for a model version or a snapshot. For a model, the trace is verified
    first (every record's digest, the artifact, the manifest; IntegrityError names what failed).
    ``scan=True`` runs the detectors on the snapshot first and records the scan; otherwise the
    audit uses the newest recorded scan, if any. Signatures of the reviews are checked against
    the trust file (``trust``, else $LINEAGE_TRUST, else ./lineage-trust.json) when there is one.

    Example: ``build_report(store, model="digits-clf:1")``
    """
    check_target(model, snapshot)
    trusted = read_trust(trust or store.trust, required=False)
    verified = trace_model(store, model).verified if model is not None else None
    if scan:
        with store.read() as session:
            snap_name = (session.get(Snapshot, find_model_version(session, model).snapshot_id).name
                         if model is not None else find_snapshot(session, snapshot).name)
        scan_version(store, snap_name)
    with store.read() as session:
        walk = _walk(session, model=model, snapshot=snapshot)
        graph = _graph(session, walk)
        dataset = session.get(Dataset, walk.snapshot.dataset_id)
        summary = {"store": _safe_url(store.url), "dataset": dataset.name,
                   "snapshot": walk.snapshot.name,
                   "snapshot_status": graph.node(f"snapshot{walk.snapshot.id}").info["status"],
                   "content_digest": walk.snapshot.content_digest,
                   "coverage": graph.node(f"snapshot{walk.snapshot.id}").coverage,
                   "poisoned_steps": [n.label for n in graph.nodes if "poisoned" in n.marks],
                   "suspect_sources": [n.label for n in graph.nodes
                                       if n.kind in ("source", "file") and "suspect" in n.marks],
                   "trace_verified": verified}
        if walk.model is not None:
            summary["model"] = graph.node(f"model{walk.model.id}").info
        report = Report(target=graph.target, summary=summary, graph=graph,
                        reviews=_reviews(session, walk, trusted),
                        audit=_audit(session, walk, graph), chart=_chart(session, walk))
    return report


def _safe_url(url: str) -> str:
    """The store's URL without a password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # not a URL SQLAlchemy parses: show no part of it
        return "-"


def write_report(store: Store, path, *, model: Optional[str] = None,
                 snapshot: Optional[str] = None, scan: bool = False,
                 trust: Optional[str] = None) -> Report:
    """Build the report and write it to ``path`` as one self-contained HTML file (whole or not
    at all: every check runs before the file is written).

    Example: ``write_report(store, "report.html", model="digits-clf:1")``
    """
    path = Path(path)
    if str(path).strip() in ("", ".") or path.is_dir():
        raise BadInputError(f"--out {path}: is a folder; give a file name, e.g. report.html")
    report = build_report(store, model=model, snapshot=snapshot, scan=scan, trust=trust)
    page = report_html(report)
    write_atomically(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return report


# ----------------------------------------------------------------------------- HTML

def _e(value) -> str:
    return html.escape("-" if value is None else str(value))


def _short(digest: Optional[str]) -> str:
    return "-" if not digest else f'<code title="{_e(digest)}">{_e(digest[:16])}</code>'


def _reviews_html(reviews: list[dict]) -> str:
    if not reviews:
        return '<p class="muted">No reviews recorded yet.</p>'
    parts = []
    for r in reviews:
        verdict = "passed" if r["passed"] else "failed"
        sig = r["signature"]
        bad = any(word in sig for word in ("not verify", "unsigned", "does not list"))
        sig_class = "ok" if sig == "verified" else "bad" if bad else "muted"
        gates = "".join(
            f'<tr><td>{_e(g["name"])}</td><td class="{"ok" if g["passed"] else "bad"}">'
            f'{"pass" if g["passed"] else "FAIL"}</td><td>{_e(g["message"])}</td></tr>'
            for g in r["gates"])
        parts.append(
            f'<div class="review"><h3>{_e(r["of"])}: {_e(r["decision"])} '
            f'<span class="{"ok" if r["passed"] else "bad"}">{verdict}</span> '
            f'<span class="muted">review {r["id"]} · {_e(_jsonable(r["created_at"]))} · policy '
            f'version {r["policy_version"]}</span></h3>'
            f'<p>by <b>{_e(r["actor"])}</b>; signed by <b>{_e(r["signer"])}</b> '
            f'(key {_short(r["keyid"])}): <span class="{sig_class}">{_e(sig)}</span>'
            + (f'; reason: {_e(r["reason"])}' if r["reason"] else "") + "</p>"
            + (f'<table class="gates"><tr><th>gate</th><th>result</th><th>message</th></tr>'
               f'{gates}</table>'
               if gates else "") + "</div>")
    return "\n".join(parts)


def _score(row: dict) -> str:
    return f"{row['score']:.3g}" if row["detectors"] else "-"


def _audit_html(audit: dict) -> str:
    scan = audit["scan"]
    scan_text = (f'detectors: scan event {scan["event"]} ({_e(scan["target"])}, by '
                 f'{_e(scan["actor"])} at {_e(_jsonable(scan["at"]))})' if scan else
                 "detectors: no recorded scan of this content (run `lineage scan` or add --scan)")
    head = (f'<p><b>{audit["n_implicated"]}</b> of {audit["n_rows"]} rows implicated '
            f'({audit["poison_rate"]:.2%}): {audit["from_records"]} by the records, '
            f'{audit["from_detectors"]} by the detectors, {audit["both"]} by both. '
            f'<span class="muted">{scan_text}</span></p>')
    if not audit["rows"]:
        return head
    rows = "".join(
        f'<tr><td>{r["row_id"]}</td><td>{_e(r["label"])}</td><td>{_e(r["source"])}</td>'
        f'<td>{"<br>".join(_e(x) for x in r["records"]) or "-"}</td>'
        f'<td>{_e(", ".join(r["detectors"]) or "-")}</td>'
        f'<td>{_score(r)}</td></tr>' for r in audit["rows"])
    more = (f'<p class="muted">{audit["rows_left_out"]} more rows left out; '
            "`lineage audit poisoned --json` lists all.</p>" if audit["rows_left_out"] else "")
    return (head + '<div class="scroll"><table id="audit-table"><tr><th>row</th><th>label</th>'
            '<th>source</th><th>records</th><th>detectors</th><th>score</th></tr>'
            f"{rows}</table></div>{more}")


def _summary_html(report: Report) -> str:
    s = report.summary
    items = [("store", _e(s["store"])), ("dataset", _e(s["dataset"])),
             ("snapshot", (f'{_e(s["snapshot"])} ({_e(s["snapshot_status"])}), content '
                           f'{_short(s["content_digest"])}')),
             ("provenance coverage", _e(_pct(s["coverage"]))),
             ("poisoned steps", _e(", ".join(s["poisoned_steps"]) or "none recorded")),
             ("suspect sources", _e(", ".join(s["suspect_sources"]) or "none"))]
    if "model" in s:
        m = s["model"]
        items.insert(0, ("model", (f'{_e(m["ref"])} ({_e(m["status"])}), '
                                   f'{_e(m["estimator"])}, artifact '
                                   f'{_short(m["artifact_sha256"])}')))
        if m.get("affected_reason"):
            items.append(("affected", _e(m["affected_reason"])))
    if s.get("trace_verified"):
        v = s["trace_verified"]
        items.append(("trace verified", _e(f'{v["records"]} records anchored in the event chain, '
                                           "artifact and manifest digests match"
                                           if v.get("ok") else "NO")))
    return "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def report_html(report: Report) -> str:
    """The report as one HTML page with nothing to fetch: CSS, data and script inline."""
    data = json.dumps(report.as_dict(), sort_keys=True, separators=(",", ":"))
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return (_PAGE.replace("{{title}}", _e(f"lineage report: {report.target}"))
            .replace("{{generated}}", _e(report.generated_by))
            .replace("{{summary}}", _summary_html(report))
            .replace("{{reviews}}", _reviews_html(report.reviews))
            .replace("{{audit}}", _audit_html(report.audit))
            .replace("{{chart_title}}", _e(report.chart["title"]))
            .replace("{{data}}", data))


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>{{title}}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       color: #111827; margin: 0; background: #f9fafb; }
header { background: #111827; color: #f9fafb; padding: 14px 24px; }
header h1 { font-size: 20px; margin: 0; } header p { margin: 2px 0 0; color: #d1d5db; }
main { padding: 8px 24px 32px; max-width: 1400px; }
section { background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; padding: 12px 16px;
          margin: 14px 0; }
h2 { font-size: 16px; margin: 0 0 8px; } h3 { font-size: 14px; margin: 10px 0 4px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 0; }
dt { color: #6b7280; } dd { margin: 0; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; border-bottom: 1px solid #e5e7eb; padding: 3px 8px;
         vertical-align: top; }
th { background: #f3f4f6; position: sticky; top: 0; }
#audit-table td:nth-child(3) { white-space: nowrap; }
table.gates { table-layout: fixed; } table.gates th:nth-child(1) { width: 170px; }
table.gates th:nth-child(2) { width: 60px; }
code { font: 12px ui-monospace, Menlo, Consolas, monospace; }
.ok { color: #047857; font-weight: 600; } .bad { color: #b91c1c; font-weight: 600; }
.muted { color: #6b7280; font-weight: normal; }
.scroll { max-height: 420px; overflow: auto; }
.review { border-top: 1px solid #f3f4f6; } .review:first-child { border-top: 0; }
.legend { display: flex; flex-wrap: wrap; gap: 14px; font-size: 12px; color: #374151;
          margin: 4px 0 8px; }
.legend span::before { content: ""; display: inline-block; width: 12px; height: 12px;
  margin-right: 5px; vertical-align: -2px; border-radius: 3px; border: 2px solid var(--s);
  background: var(--f); }
#graph, #chart { overflow-x: auto; }
svg text { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; }
</style>
</head>
<body>
<header><h1>{{title}}</h1>
<p>Generated by {{generated}} from the store's records. Hover a node for its details.</p></header>
<main>
<section id="summary"><h2>Summary</h2>{{summary}}</section>
<section><h2>Lineage graph</h2>
<div class="legend">
<span style="--f:#fde2e2;--s:#c62828">poisoned step</span>
<span style="--f:#fff1d6;--s:#d97706">implicated step</span>
<span style="--f:#ffe9d6;--s:#ea580c">suspect source</span>
<span style="--f:#fbeaea;--s:#b45309">tainted (downstream)</span>
<span style="--f:#fff;--s:#9ca3af">bar: provenance coverage</span>
</div>
<div id="graph"><noscript>The graph and the chart are drawn by the page's own script: allow
JavaScript for this file.</noscript></div>
</section>
<section><h2>Clean accuracy and attack success rate</h2>
<p class="muted">{{chart_title}}</p><div id="chart"></div></section>
<section id="reviews"><h2>Gate reports</h2>{{reviews}}</section>
<section id="audit"><h2>Poisoned-row audit</h2>{{audit}}</section>
<p id="render-status" class="muted">not drawn</p>
</main>
<script type="application/json" id="report-data">{{data}}</script>
<script>
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var STYLE = {
    poisoned: ["#fde2e2", "#c62828"], implicated: ["#fff1d6", "#d97706"],
    suspect: ["#ffe9d6", "#ea580c"], tainted: ["#fbeaea", "#b45309"],
    source: ["#eef2ff", "#4f46e5"], ingest: ["#eef6ff", "#2563eb"], version: ["#f3f4f6", "#4b5563"],
    transformation: ["#ecfdf5", "#059669"], snapshot: ["#f5f3ff", "#7c3aed"],
    model: ["#fefce8", "#a16207"], file: ["#fde2e2", "#c62828"]
  };
  function el(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    for (var k in attrs) { node.setAttribute(k, attrs[k]); }
    if (parent) { parent.appendChild(node); }
    return node;
  }
  function text(parent, x, y, s, attrs) {
    var t = el("text", Object.assign({x: x, y: y}, attrs || {}), parent);
    t.textContent = s;
    return t;
  }
  function styleOf(n) {
    var order = ["poisoned", "implicated", "suspect", "tainted"];
    for (var i = 0; i < order.length; i++) {
      if (n.marks.indexOf(order[i]) >= 0) { return STYLE[order[i]]; }
    }
    return STYLE[n.kind] || ["#fff", "#6b7280"];
  }
  function clip(s, n) { return s.length > n ? s.slice(0, n - 1) + "\\u2026" : s; }
  function tooltip(n) {
    var lines = [n.label, n.detail];
    if (n.marks.length) { lines.push("marks: " + n.marks.join(", ")); }
    Object.keys(n.info).forEach(function (k) {
      var v = n.info[k];
      if (v === null || v === undefined || (Array.isArray(v) && !v.length)) { return; }
      lines.push(k + ": " + (typeof v === "object" ? JSON.stringify(v) : v));
    });
    return lines.join("\\n");
  }

  function drawGraph(graph, box) {
    var nodes = graph.nodes, edges = graph.edges, byId = {}, outs = {}, ins = {};
    nodes.forEach(function (n) { byId[n.id] = n; outs[n.id] = []; ins[n.id] = []; });
    edges.forEach(function (e) { outs[e.source].push(e.target); ins[e.target].push(e.source); });
    // Rank by the longest path to the end of the flow, so every input sits just above the
    // step that uses it (an appended source next to its append, not beside the first ingest).
    var depth = {};
    function depthOf(id) {
      if (depth[id] !== undefined) { return depth[id]; }
      depth[id] = 0;
      var d = 0;
      outs[id].forEach(function (t) { d = Math.max(d, depthOf(t) + 1); });
      depth[id] = d;
      return d;
    }
    var maxDepth = 0;
    nodes.forEach(function (n) { maxDepth = Math.max(maxDepth, depthOf(n.id)); });
    var ranks = [];
    nodes.forEach(function (n) {
      var r = maxDepth - depth[n.id];
      (ranks[r] = ranks[r] || []).push(n);
    });
    var W = 290, H = 56, GAP = 28, ROW = 84, PAD = 16;
    var widest = 0;
    ranks.forEach(function (rank) { widest = Math.max(widest, rank.length); });
    var width = Math.max(box.clientWidth || 640, widest * (W + GAP) + 2 * PAD);
    var height = ranks.length * ROW + PAD;
    var svg = el("svg", {width: width, height: height, viewBox: "0 0 " + width + " " + height,
                         role: "img", "aria-label": "lineage graph of " + graph.target,
                         id: "graph-svg"}, box);
    var defs = el("defs", {}, svg);
    var marker = el("marker", {id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7,
                               markerHeight: 7, orient: "auto-start-reverse"}, defs);
    el("path", {d: "M0,0 L10,5 L0,10 z", fill: "#6b7280"}, marker);
    var pos = {};
    // Bottom-up: order each rank by where the nodes it feeds sit.
    for (var r = ranks.length - 1; r >= 0; r--) {
      var rank = ranks[r];
      rank.forEach(function (n, i) {
        var xs = outs[n.id].filter(function (t) { return pos[t]; })
          .map(function (t) { return pos[t].x; });
        n._key = xs.length ? xs.reduce(function (a, b) { return a + b; }, 0) / xs.length : i * 1e-3;
      });
      rank.sort(function (a, b) { return a._key - b._key; });
      var total = rank.length * W + (rank.length - 1) * GAP, x0 = (width - total) / 2;
      rank.forEach(function (n, i) {
        pos[n.id] = {x: x0 + i * (W + GAP) + W / 2, y: PAD + r * ROW};
      });
    }
    var edgeLayer = el("g", {class: "edges"}, svg);
    edges.forEach(function (e) {
      var a = pos[e.source], b = pos[e.target];
      var y1 = a.y + H, y2 = b.y - 2, mid = (y1 + y2) / 2;
      el("path", {d: "M" + a.x + "," + y1 + " C" + a.x + "," + mid + " " + b.x + "," + mid + " " +
                     b.x + "," + y2, fill: "none", stroke: "#9ca3af", "stroke-width": 1.5,
                  "marker-end": "url(#arrow)", class: "edge", "data-source": e.source,
                  "data-target": e.target}, edgeLayer);
    });
    nodes.forEach(function (n) {
      var p = pos[n.id], st = styleOf(n), strong = n.marks.some(function (m) {
        return m === "poisoned" || m === "suspect" || m === "implicated"; });
      var g = el("g", {class: "node node-" + n.kind, "data-id": n.id, "data-kind": n.kind,
                       "data-marks": n.marks.join(" "),
                       transform: "translate(" + (p.x - W / 2) + "," + p.y + ")"}, svg);
      el("title", {}, g).textContent = tooltip(n);
      el("rect", {width: W, height: H, rx: n.kind === "transformation" ? 18 : 6,
                  fill: st[0], stroke: st[1], "stroke-width": strong ? 2.5 : 1.2,
                  "stroke-dasharray": n.marks.indexOf("tainted") >= 0 && !strong ? "5 3" : "none"},
         g);
      var flags = n.marks.filter(function (m) { return m !== "uncovered"; });
      // The label leaves room for the mark's badge at the top right.
      text(g, 10, 17, clip(n.label, flags.length ? 27 : 34),
           {"font-size": 13, "font-weight": 600, fill: "#111827"});
      text(g, 10, 33, clip(n.detail, 44), {"font-size": 11, fill: "#374151"});
      if (flags.length) {
        text(g, W - 8, 16, flags[0].toUpperCase(), {"font-size": 9, "font-weight": 700,
             fill: st[1], "text-anchor": "end"});
      }
      // Provenance coverage as a bar along the bottom edge.
      if (n.coverage !== null && n.coverage !== undefined) {
        var c = n.coverage, bw = W - 20;
        el("rect", {x: 10, y: H - 13, width: bw, height: 5, rx: 2.5, fill: "#e5e7eb"}, g);
        el("rect", {x: 10, y: H - 13, width: Math.max(c * bw, c > 0 ? 2 : 0), height: 5, rx: 2.5,
                    fill: c >= 1 ? "#10b981" : c >= 0.9 ? "#f59e0b" : "#ef4444",
                    class: "coverage-bar"}, g);
      }
    });
    return svg;
  }

  function drawChart(chart, box) {
    var bars = chart.bars;
    if (!bars.length) {
      var p = document.createElement("p");
      p.className = "muted";
      p.textContent = chart.empty;
      box.appendChild(p);
      return null;
    }
    var LEFT = 270, RIGHT = 60, BAR = 22, GAP = 8, TOP = 34, width = 900;
    var plot = width - LEFT - RIGHT, height = TOP + bars.length * (BAR + GAP) + 34;
    var svg = el("svg", {width: width, height: height, viewBox: "0 0 " + width + " " + height,
                         role: "img", "aria-label": "clean accuracy and ASR", id: "chart-svg"},
                  box);
    [0, 0.25, 0.5, 0.75, 1].forEach(function (t) {
      var x = LEFT + t * plot;
      el("line", {x1: x, x2: x, y1: TOP - 6, y2: height - 28, stroke: "#e5e7eb"}, svg);
      text(svg, x, height - 12, (t * 100) + "%", {"font-size": 11, fill: "#6b7280",
           "text-anchor": "middle"});
    });
    var th = chart.thresholds || {};
    function known(v) { return v !== null && v !== undefined; }
    bars.forEach(function (b, i) {
      var y = TOP + i * (BAR + GAP);
      var over = b.kind === "asr"
        ? known(th.max_asr) && b.value > th.max_asr
        : known(th.min_clean_accuracy) && b.value < th.min_clean_accuracy;
      var fill = b.kind === "accuracy" ? (over ? "#f59e0b" : "#2563eb")
                                       : (over ? "#dc2626" : "#fb923c");
      text(svg, LEFT - 8, y + BAR / 2 + 4, clip(b.label, 40), {"font-size": 12,
           "text-anchor": "end", fill: "#111827"});
      var g = el("g", {class: "bar", "data-kind": b.kind, "data-value": b.value}, svg);
      el("title", {}, g).textContent = b.label + ": " + (b.value * 100).toFixed(1) + "%";
      el("rect", {x: LEFT, y: y, width: Math.max(b.value * plot, 1), height: BAR, rx: 3,
                  fill: fill}, g);
      // The value beside its bar, or inside a long one (clear of the threshold lines).
      var inside = b.value > 0.8, end = LEFT + Math.max(b.value * plot, 1);
      text(svg, inside ? end - 6 : end + 6, y + BAR / 2 + 4, (b.value * 100).toFixed(1) + "%",
           {"font-size": 12, "font-weight": inside ? 600 : 400, fill: inside ? "#fff" : "#111827",
            "text-anchor": inside ? "end" : "start"});
    });
    function pct(v) { return (v * 100).toFixed(0) + "%"; }
    function line(value, label, color, row) {
      var x = LEFT + value * plot, y = row ? TOP - 8 : TOP - 22;
      el("line", {x1: x, x2: x, y1: y + 3, y2: height - 28, stroke: color, "stroke-width": 2,
                  "stroke-dasharray": "6 4", class: "threshold"}, svg);
      // Labels on two rows, each to the side of its line that has room.
      text(svg, value > 0.5 ? x - 4 : x + 4, y, label, {"font-size": 11, fill: color,
           "text-anchor": value > 0.5 ? "end" : "start"});
    }
    if (known(th.min_clean_accuracy)) {
      line(th.min_clean_accuracy, "min clean accuracy " + pct(th.min_clean_accuracy), "#2563eb", 0);
    }
    if (known(th.max_asr)) {
      line(th.max_asr, "max ASR " + pct(th.max_asr), "#dc2626", 1);
    }
    return svg;
  }

  var status = document.getElementById("render-status");
  try {
    drawGraph(data.graph, document.getElementById("graph"));
    drawChart(data.chart, document.getElementById("chart"));
    // What was drawn, with sizes, for people and for the tests' headless browser.
    var sized = 0, nodes = document.querySelectorAll("#graph g.node");
    nodes.forEach(function (g) {
      var r = g.getBoundingClientRect();
      g.setAttribute("data-size", Math.round(r.width) + "x" + Math.round(r.height));
      if (r.width > 0 && r.height > 0) { sized++; }
    });
    var bars = document.querySelectorAll("#chart g.bar"), sizedBars = 0;
    bars.forEach(function (g) {
      var r = g.getBoundingClientRect();
      g.setAttribute("data-size", Math.round(r.width) + "x" + Math.round(r.height));
      if (r.width > 0 && r.height > 0) { sizedBars++; }
    });
    status.setAttribute("data-nodes", sized);
    status.setAttribute("data-edges", document.querySelectorAll("#graph path.edge").length);
    status.setAttribute("data-bars", sizedBars);
    status.setAttribute("data-state", sized === data.graph.nodes.length &&
                        sizedBars === data.chart.bars.length ? "ok" : "incomplete");
    status.textContent = "drawn: " + sized + " of " + data.graph.nodes.length + " nodes, " +
      sizedBars + " of " + data.chart.bars.length + " bars";
  } catch (err) {
    status.setAttribute("data-state", "error");
    status.textContent = "drawing failed: " + err;
  }
})();
</script>
</body>
</html>
"""
