"""OpenLineage export: the lineage of a model version or a snapshot as OpenLineage RunEvents
(spec 2-0-2), for Marquez or any other OpenLineage consumer.

The events are drawn from the same graph as `lineage graph` and `lineage report`
(``lineage.lab.report.lineage_graph``): every ingest, transformation, snapshot creation, review
and training is a job with one run (a START and a COMPLETE event at the record's time); dataset
versions, snapshots, sources and models are datasets. Each dataset state carries a
``DatasetVersion`` facet (its content digest), a ``schema`` facet (the feature columns and the
label) and the custom ``lineage_provenanceCoverage`` facet; runs carry the record (actor, reason,
parameters, code identity) in custom ``lineage_*`` facets, and reviews their gates as
``dataQualityAssertions``. Custom facets follow ``FACET_SCHEMAS`` below.

Deterministic: the same store gives the same events, byte for byte. Run ids are UUIDv5 of the
namespace, the record's table, id and record digest; times are the records' own.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Iterable, Optional

from sqlalchemy import select

from lineage._version import __version__
from lineage.errors import BadInputError, LineageError
from lineage.lab.report import LineageGraph, check_target, lineage_graph
from lineage.review.attestations import attestation_of
from lineage.store.engine import Store
from lineage.store.files import write_atomically
from lineage.store.tables import (
    Dataset,
    Event,
    Ingest,
    ModelReview,
    ModelVersion,
    Snapshot,
    SnapshotReview,
    Source,
    Transformation,
    Version,
)

PRODUCER = f"urn:lineage:{__version__}"
SPEC = "https://openlineage.io/spec"
EVENT_SCHEMA = f"{SPEC}/2-0-2/OpenLineage.json#/$defs/RunEvent"


def _spec_facet(version: str, name: str) -> str:
    return f"{SPEC}/facets/{version}/{name}.json#/$defs/{name}"


# The standard facets used, with the schema URLs the OpenLineage client writes for them.
STANDARD_FACETS = {
    "version": _spec_facet("1-0-1", "DatasetVersionDatasetFacet"),
    "schema": _spec_facet("1-2-0", "SchemaDatasetFacet"),
    "documentation": _spec_facet("1-1-0", "DocumentationDatasetFacet"),
    "dataSource": _spec_facet("1-0-1", "DatasourceDatasetFacet"),
    "outputStatistics": _spec_facet("1-0-2", "OutputStatisticsOutputDatasetFacet"),
    "dataQualityAssertions": _spec_facet("1-1-0", "DataQualityAssertionsDatasetFacet"),
    "nominalTime": _spec_facet("1-0-1", "NominalTimeRunFacet"),
    "processing_engine": _spec_facet("1-1-1", "ProcessingEngineRunFacet"),
    "jobType": _spec_facet("2-0-4", "JobTypeJobFacet"),
}
JOB_DOCUMENTATION = _spec_facet("1-1-0", "DocumentationJobFacet")
CUSTOM_SCHEMA = "urn:lineage:openlineage-facets:1-0-0"
_RUN_ID_SPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:lineage:openlineage:run")

# JSON Schemas (2020-12) of the custom facets, each also a BaseFacet (_producer, _schemaURL).
_STR = {"type": "string"}
_OPT_STR = {"type": ["string", "null"]}
_NUM = {"type": ["number", "null"]}
FACET_SCHEMAS = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": CUSTOM_SCHEMA,
    "$defs": {
        "ProvenanceCoverageDatasetFacet": {
            "description": "The share of rows whose whole history is known (source with uri, "
                           "license and approval; ingest with file digest and actor; every "
                           "transformation with actor, reason and code identity).",
            "type": "object",
            "properties": {"coverage": {"type": "number", "minimum": 0, "maximum": 1},
                           "coveredRows": {"type": "integer"}, "rows": {"type": "integer"},
                           "marks": {"type": "array", "items": _STR},
                           "uncoveredBecause": {"type": "object",
                                                "additionalProperties": {"type": "integer"}}},
            "required": ["coverage", "marks"]},
        "SourceDatasetFacet": {
            "type": "object",
            "properties": {"kind": _STR, "uri": _OPT_STR, "license": _OPT_STR, "owner": _OPT_STR,
                           "status": _STR, "marks": {"type": "array", "items": _STR}},
            "required": ["kind", "status"]},
        "SnapshotDatasetFacet": {
            "type": "object",
            "properties": {"status": _STR, "contentDigest": _STR, "manifestDigest": _STR,
                           "rows": {"type": "integer"}, "creator": _STR},
            "required": ["status", "contentDigest", "manifestDigest"]},
        "ModelDatasetFacet": {
            "type": "object",
            "properties": {"ref": _STR, "status": _STR, "estimator": _STR,
                           "params": {"type": "object"}, "cleanAccuracy": _NUM, "worstAsr": _NUM,
                           "worstTrigger": _OPT_STR, "artifactSha256": _STR,
                           "codeIdentity": _STR},
            "required": ["ref", "status", "artifactSha256"]},
        "RecordRunFacet": {
            "description": "The lineage record behind the run: what was done, by whom, why, "
                           "with which parameters and code.",
            "type": "object",
            "properties": {"table": _STR, "id": {"type": "integer"}, "kind": _STR, "actor": _STR,
                           "reason": _OPT_STR, "params": {"type": "object"},
                           "codeIdentity": _OPT_STR, "recordDigest": _STR,
                           "marks": {"type": "array", "items": _STR}},
            "required": ["table", "id", "kind", "actor", "recordDigest"]},
        "ReviewRunFacet": {
            "type": "object",
            "properties": {"decision": _STR, "passed": {"type": "boolean"}, "reason": _OPT_STR,
                           "policyVersion": {"type": "integer"}, "signer": _OPT_STR,
                           "keyid": _OPT_STR},
            "required": ["decision", "passed"]},
    },
}
CUSTOM_FACETS = {  # facet key -> definition in FACET_SCHEMAS
    "lineage_provenanceCoverage": "ProvenanceCoverageDatasetFacet",
    "lineage_source": "SourceDatasetFacet",
    "lineage_snapshot": "SnapshotDatasetFacet",
    "lineage_model": "ModelDatasetFacet",
    "lineage_record": "RecordRunFacet",
    "lineage_review": "ReviewRunFacet",
}


def _time(value: datetime) -> str:
    return value.isoformat(timespec="microseconds") + "Z"


def _facet(key: str, **fields) -> dict:
    url = STANDARD_FACETS.get(key) or f"{CUSTOM_SCHEMA}#/$defs/{CUSTOM_FACETS[key]}"
    return {"_producer": PRODUCER, "_schemaURL": url, **fields}


def store_namespace(store: Store) -> str:
    """The default namespace of a store's jobs and datasets: ``lineage://`` and the first 16 hex
    digits of its first event's digest, the same for every copy of the store and different for
    another store."""
    with store.read() as session:
        first = session.scalar(select(Event.digest).order_by(Event.id).limit(1))
    return f"lineage://{(first or 'empty')[:16]}"


def openlineage_events(store: Store, *, model: Optional[str] = None,
                       snapshot: Optional[str] = None,
                       namespace: Optional[str] = None) -> list[dict]:
    """The lineage of a model version (``name:number``) or a snapshot as OpenLineage RunEvents,
    in data-flow order (each run's START, then its COMPLETE).

    Example: ``openlineage_events(store, model="digits-clf:1")``
    """
    check_target(model, snapshot)
    graph = lineage_graph(store, model=model, snapshot=snapshot)
    ns = namespace if namespace is not None else store_namespace(store)
    if not ns.strip():
        raise BadInputError("--namespace is empty: give a name for the jobs and datasets, e.g. "
                            "lineage://team-store")
    with store.read() as session:
        runs = list(_Events(session, graph, ns).all())
    # In the order the records were made: every run comes after the runs that made its inputs.
    runs.sort(key=lambda run: run[0]["eventTime"])
    return [event for run in runs for event in run]


class _Events:
    """Builds the events of one graph inside one read session."""

    def __init__(self, session, graph: LineageGraph, namespace: str):
        self.session = session
        self.graph = graph
        self.ns = namespace
        self.nodes = {n.id: n for n in graph.nodes}
        self.ins: dict[str, list[str]] = {}
        self.outs: dict[str, list[str]] = {}
        for e in graph.edges:
            self.outs.setdefault(e.source, []).append(e.target)
            self.ins.setdefault(e.target, []).append(e.source)
        snap_node = next(n for n in graph.nodes if n.kind == "snapshot")
        snap = session.get(Snapshot, snap_node.record_id)
        self.ds = session.get(Dataset, snap.dataset_id)

    # -- datasets

    def _name(self, node) -> tuple[str, str]:
        if node.kind == "version":
            return self.ns, f"{self.ds.name}/v{node.record_id}"
        if node.kind == "snapshot":
            return self.ns, f"snapshot/{node.info['name']}"
        if node.kind == "model":
            return self.ns, f"model/{node.info['ref'].rpartition(':')[0]}"
        if node.kind == "source":
            return self.ns, f"source/{node.info['name']}"
        if node.kind == "file":
            return "file", str(node.info.get("file") or f"edit-{node.record_id}")
        raise AssertionError(node.kind)

    def _schema(self) -> dict:
        fields = [{"name": f"f{i}", "type": self.ds.dtype} for i in range(self.ds.n_features)]
        return _facet("schema", fields=fields + [{"name": "label", "type": "int64"}])

    def dataset(self, node, *, output: bool = False, version: Optional[str] = None) -> dict:
        """A dataset as an input (its identity: name and version) or an output (every facet)."""
        namespace, name = self._name(node)
        marks = list(node.marks)
        facets: dict = {}
        if node.kind == "version":
            info = node.info
            facets = {
                "version": _facet("version", datasetVersion=info["content_digest"]),
                "schema": self._schema(),
                "documentation": _facet("documentation", description=(
                    f"version v{info['id']}" + (f" ({info['name']})" if info["name"] else "")
                    + f" of dataset {self.ds.name}: {info['n_rows']} rows")),
                "lineage_provenanceCoverage": _facet(
                    "lineage_provenanceCoverage", coverage=node.coverage,
                    coveredRows=info["covered_rows"], rows=info["n_rows"], marks=marks,
                    uncoveredBecause=info["uncovered_because"])}
            rows = info["n_rows"]
        elif node.kind == "snapshot":
            info = node.info
            facets = {
                "version": _facet("version", datasetVersion=info["content_digest"]),
                "schema": self._schema(),
                "lineage_provenanceCoverage": _facet("lineage_provenanceCoverage",
                                                     coverage=node.coverage, marks=marks),
                "lineage_snapshot": _facet("lineage_snapshot", status=info["status"],
                                           contentDigest=info["content_digest"],
                                           manifestDigest=info["manifest_digest"],
                                           rows=info["n_rows"], creator=info["actor"])}
            rows = info["n_rows"]
        elif node.kind == "model":
            info = node.info
            facets = {
                "version": _facet("version", datasetVersion=info["artifact_sha256"]),
                "documentation": _facet("documentation", description=(
                    f"model version {info['ref']} ({info['estimator']})")),
                "lineage_provenanceCoverage": _facet("lineage_provenanceCoverage",
                                                     coverage=node.coverage, marks=marks),
                "lineage_model": _facet("lineage_model", ref=info["ref"], status=info["status"],
                                        estimator=info["estimator"], params=info["params"],
                                        cleanAccuracy=info["clean_accuracy"],
                                        worstAsr=info["worst_asr"],
                                        worstTrigger=info["worst_trigger"],
                                        artifactSha256=info["artifact_sha256"],
                                        codeIdentity=info["code_identity"])}
            rows = None
        elif node.kind == "source":
            info = node.info
            facets = {
                "dataSource": _facet("dataSource", name=info["name"],
                                     **({"uri": info["uri"]} if info["uri"] else {})),
                "lineage_source": _facet("lineage_source", kind=info["kind"], uri=info["uri"],
                                         license=info["license"], owner=info["owner"],
                                         status=info["status"], marks=marks),
                "lineage_provenanceCoverage": _facet("lineage_provenanceCoverage",
                                                     coverage=node.coverage, marks=marks)}
            if version:
                facets["version"] = _facet("version", datasetVersion=version)
            rows = None
        else:  # a file edited outside the store
            facets = {"lineage_provenanceCoverage": _facet("lineage_provenanceCoverage",
                                                           coverage=0.0, marks=marks)}
            if node.info.get("file_sha256"):
                facets["version"] = _facet("version", datasetVersion=node.info["file_sha256"])
            rows = None
        if not output and node.kind in ("version", "snapshot", "model"):
            # An input names the state it read; the run that made it reports the rest.
            facets = {k: v for k, v in facets.items() if k in ("version", "dataSource")}
        out = {"namespace": namespace, "name": name, "facets": facets}
        if output:
            out["outputFacets"] = ({"outputStatistics": _facet("outputStatistics", rowCount=rows)}
                                   if rows is not None else {})
        else:
            out["inputFacets"] = {}
        return out

    # -- runs

    def _run_id(self, table: str, record) -> str:
        key = f"{self.ns}|{table}|{record.id}|{record.record_digest}"
        return str(uuid.uuid5(_RUN_ID_SPACE, key))

    def _run(self, *, table: str, record, job: str, job_type: str, description: str,
             inputs: list, outputs: list, run_facets: dict) -> Iterable[list]:
        """One run: its START and COMPLETE events."""
        run_id = self._run_id(table, record)
        when = _time(record.created_at)
        job_obj = {"namespace": self.ns, "name": job, "facets": {
            "jobType": _facet("jobType", processingType="BATCH", integration="LINEAGE",
                              jobType=job_type),
            "documentation": {"_producer": PRODUCER, "_schemaURL": JOB_DOCUMENTATION,
                              "description": description}}}
        base = {"eventTime": when, "producer": PRODUCER, "schemaURL": EVENT_SCHEMA}
        start_facets = {"nominalTime": _facet("nominalTime", nominalStartTime=when),
                        "processing_engine": _facet("processing_engine", version=__version__,
                                                    name="lineage")}
        yield [{**base, "eventType": "START",
                "run": {"runId": run_id, "facets": start_facets},
                "job": job_obj, "inputs": inputs, "outputs": []},
               {**base, "eventType": "COMPLETE",
                "run": {"runId": run_id, "facets": {**start_facets, **run_facets}},
                "job": job_obj, "inputs": inputs, "outputs": outputs}]

    def _record(self, table: str, record, *, kind: str, reason=None, params=None,
                code_identity=None, marks=()) -> dict:
        return {"lineage_record": _facet("lineage_record", table=table, id=int(record.id),
                                         kind=kind, actor=record.actor, reason=reason,
                                         params=params or {}, codeIdentity=code_identity,
                                         recordDigest=record.record_digest, marks=list(marks))}

    def all(self) -> Iterable[list]:
        session = self.session
        for node in self.graph.nodes:
            if node.kind == "ingest":
                ing = session.get(Ingest, node.record_id)
                src = session.get(Source, ing.source_id)
                source = self.nodes[f"source{src.id}"]
                outputs = [self.dataset(self.nodes[t], output=True) for t in self.outs[node.id]
                           if self.nodes[t].kind == "version"]
                yield from self._run(
                    table="ingests", record=ing, job=f"ingest.{src.name}", job_type="INGEST",
                    description=f"append-only ingest of rows from source {src.name}",
                    inputs=[self.dataset(source, version=ing.file_sha256)], outputs=outputs,
                    run_facets=self._record("ingests", ing, kind="ingest", params={
                        "file_name": ing.file_name, "file_sha256": ing.file_sha256,
                        "n_rows": ing.n_rows, "first_row_id": ing.first_row_id},
                        marks=node.marks))
            elif node.kind == "transformation":
                t = session.get(Transformation, node.record_id)
                made = session.scalars(select(Version.id).where(
                    Version.transformation_id == t.id).order_by(Version.id))
                out_nodes = [self.nodes[f"v{v}"] for v in made if f"v{v}" in self.nodes]
                yield from self._run(
                    table="transformations", record=t, job=f"transform.{t.kind}",
                    job_type="TRANSFORMATION", description=f"lineage transformation {t.kind}",
                    inputs=[self.dataset(self.nodes[i]) for i in self.ins[node.id]],
                    outputs=[self.dataset(n, output=True) for n in out_nodes],
                    run_facets=self._record("transformations", t, kind=t.kind, reason=t.reason,
                                            params=json.loads(t.params),
                                            code_identity=t.code_identity, marks=node.marks))
            elif node.kind == "snapshot":
                snap = session.get(Snapshot, node.record_id)
                yield from self._run(
                    table="snapshots", record=snap, job="snapshot.create", job_type="SNAPSHOT",
                    description="freeze a version as a named snapshot with a full manifest",
                    inputs=[self.dataset(self.nodes[i]) for i in self.ins[node.id]],
                    outputs=[self.dataset(node, output=True)],
                    run_facets=self._record("snapshots", snap, kind="snapshot"))
                for r in session.scalars(select(SnapshotReview).where(
                        SnapshotReview.snapshot_id == snap.id).order_by(SnapshotReview.id)):
                    yield from self._review("snapshot_reviews", r, node, f"snapshot.{r.decision}")
            elif node.kind == "model":
                mv = session.get(ModelVersion, node.record_id)
                yield from self._run(
                    table="model_versions", record=mv, job=f"train.{mv.model}", job_type="TRAIN",
                    description=f"train model {mv.model} on an approved snapshot",
                    inputs=[self.dataset(self.nodes[i]) for i in self.ins[node.id]],
                    outputs=[self.dataset(node, output=True)],
                    run_facets=self._record("model_versions", mv, kind="train",
                                            params=json.loads(mv.params),
                                            code_identity=mv.code_identity))
                for r in session.scalars(select(ModelReview).where(
                        ModelReview.model_version_id == mv.id).order_by(ModelReview.id)):
                    yield from self._review("model_reviews", r, node, f"model.{r.decision}")

    def _review(self, table: str, review, node, job: str) -> Iterable[list]:
        report = json.loads(review.report)
        gates = report.get("gates") or report.get("checks") or []
        assertions = [{"assertion": g.get("gate") or g.get("check"),
                       "success": bool(g.get("passed")),
                       **({"description": g["message"]} if g.get("message") else {})}
                      for g in gates]
        reviewed = self.dataset(node)
        reviewed["inputFacets"] = ({"dataQualityAssertions": _facet(
            "dataQualityAssertions", assertions=assertions)} if assertions else {})
        signed = attestation_of(self.session, review)
        facets = self._record(table, review, kind=review.decision, reason=review.reason)
        facets["lineage_review"] = _facet(
            "lineage_review", decision=review.decision, passed=bool(review.passed),
            reason=review.reason, policyVersion=review.policy_id or 0,
            signer=signed.signer if signed else None, keyid=signed.keyid if signed else None)
        yield from self._run(table=table, record=review, job=job, job_type="REVIEW",
                             description=f"signed review: {review.decision}",
                             inputs=[reviewed], outputs=[], run_facets=facets)


def events_jsonl(events: list[dict]) -> str:
    """One event per line, keys sorted: the same events give the same bytes."""
    return "".join(json.dumps(e, sort_keys=True, separators=(",", ":")) + "\n" for e in events)


def write_events(events: list[dict], path) -> None:
    """Write the events as JSON lines to ``path``, whole or not at all."""
    path = Path(path)
    if str(path).strip() in ("", ".") or path.is_dir():
        raise BadInputError(f"--out {path}: is a folder; give a file name, e.g. lineage.jsonl")
    text = events_jsonl(events)
    write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def check_url(url: str) -> None:
    """An http(s) URL with a host, or BadInputError."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        ok = ok and (parts.port is None or parts.port > 0)  # .port: ValueError if not a number
    except ValueError:
        ok = False
    if not ok:
        raise BadInputError(f"--url {url!r}: give an http(s) URL, e.g. "
                            "http://localhost:5000/api/v1/lineage")


def post_events(events: list[dict], url: str, *, timeout: float = 10.0) -> int:
    """POST each event as JSON to an OpenLineage endpoint (Marquez: ``.../api/v1/lineage``), in
    order; returns how many were accepted. Stops at the first refusal with a LineageError that
    says how many were sent before it."""
    import urllib.error
    import urllib.request

    check_url(url)
    sent = 0
    for event in events:
        body = json.dumps(event, sort_keys=True, separators=(",", ":")).encode()
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            raise LineageError(f"{url} refused event {sent + 1} of {len(events)} with HTTP "
                               f"{exc.code} {exc.reason}; {sent} sent before it") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise LineageError(f"cannot reach {url} ({reason}); {sent} of {len(events)} events "
                               "sent") from None
        sent += 1
    return sent
