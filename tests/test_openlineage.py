"""`lineage export openlineage`: RunEvents (spec 2-0-2) checked against a JSON Schema of the spec,
against the OpenLineage client's own event classes, and posted to a local HTTP consumer."""

import json
import os
import re
import socket
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import jsonschema
import pytest
from conftest import Cli
from test_report import build_world

from lineage.errors import BadInputError
from lineage.lab.openlineage import (
    CUSTOM_FACETS,
    EVENT_SCHEMA,
    FACET_SCHEMAS,
    STANDARD_FACETS,
    events_jsonl,
    openlineage_events,
)
from lineage.lab.report import lineage_graph
from lineage.store.engine import open_store
from storeutil import state

# The RunEvent of the OpenLineage spec 2-0-2 (https://openlineage.io/spec/2-0-2/OpenLineage.json),
# written out here as JSON Schema 2020-12: the openlineage-python package ships the event classes
# but not the schema file. Facets must be objects with _producer and _schemaURL (URIs).
BASE_FACET = {"type": "object", "required": ["_producer", "_schemaURL"],
              "properties": {"_producer": {"type": "string", "format": "uri"},
                             "_schemaURL": {"type": "string", "format": "uri"}}}
DELETABLE_FACET = {"allOf": [{"$ref": "#/$defs/BaseFacet"},
                             {"properties": {"_deleted": {"type": "boolean"}}}]}
FACETS = {"type": "object", "additionalProperties": {"$ref": "#/$defs/BaseFacet"}}
RUN_EVENT_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$ref": "#/$defs/RunEvent",
    "$defs": {
        "BaseEvent": {"type": "object", "required": ["eventTime", "producer", "schemaURL"],
                      "properties": {"eventTime": {"type": "string", "format": "date-time"},
                                     "producer": {"type": "string", "format": "uri"},
                                     "schemaURL": {"type": "string", "format": "uri"}}},
        "RunEvent": {"allOf": [{"$ref": "#/$defs/BaseEvent"}, {
            "type": "object", "required": ["run", "job"],
            "properties": {
                "eventType": {"enum": ["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"]},
                "run": {"$ref": "#/$defs/Run"}, "job": {"$ref": "#/$defs/Job"},
                "inputs": {"type": "array", "items": {"$ref": "#/$defs/InputDataset"}},
                "outputs": {"type": "array", "items": {"$ref": "#/$defs/OutputDataset"}}}}]},
        "Run": {"type": "object", "required": ["runId"],
                "properties": {"runId": {"type": "string", "format": "uuid"},
                               "facets": {"type": "object",
                                          "additionalProperties": {"$ref": "#/$defs/BaseFacet"}}}},
        "Job": {"type": "object", "required": ["namespace", "name"],
                "properties": {"namespace": {"type": "string"}, "name": {"type": "string"},
                               "facets": {"type": "object",
                                          "additionalProperties": {"$ref": "#/$defs/JobFacet"}}}},
        "Dataset": {"type": "object", "required": ["namespace", "name"],
                    "properties": {"namespace": {"type": "string"}, "name": {"type": "string"},
                                   "facets": {"type": "object", "additionalProperties": {
                                       "$ref": "#/$defs/DatasetFacet"}}}},
        "InputDataset": {"allOf": [{"$ref": "#/$defs/Dataset"},
                                   {"properties": {"inputFacets": FACETS}}]},
        "OutputDataset": {"allOf": [{"$ref": "#/$defs/Dataset"},
                                    {"properties": {"outputFacets": FACETS}}]},
        "BaseFacet": BASE_FACET, "JobFacet": DELETABLE_FACET, "DatasetFacet": DELETABLE_FACET,
    },
}

FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: str) -> bool:
    return "T" in value and datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None


@FORMATS.checks("uri", raises=ValueError)
def _uri(value: str) -> bool:
    parts = urlsplit(value)
    return bool(parts.scheme) and (bool(parts.netloc) or bool(parts.path)) and " " not in value


def openlineage_client():
    """The OpenLineage Python client (the `test` extra): skipped without it, a failure in CI."""
    try:
        from openlineage.client import event_v2, facet_v2
        from openlineage.client.serde import Serde
    except ImportError:
        message = "openlineage-python is not installed (pip install -e '.[test]')"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return event_v2, facet_v2, Serde


@pytest.fixture
def world(backend, tmp_path, stores):
    url, facts = stores.copy(backend, tmp_path, build=build_world)
    store = open_store(url, actor="reviewer")
    yield store, facts
    store.close()
    stores.drop(url)


def custom_validators() -> dict:
    return {key: jsonschema.Draft202012Validator(
        {**FACET_SCHEMAS, "$ref": f"#/$defs/{name}"}, format_checker=FORMATS)
        for key, name in CUSTOM_FACETS.items()}


def all_facets(event):
    """(where, key, facet) of every facet in an event."""
    yield from (("run", k, f) for k, f in event["run"].get("facets", {}).items())
    yield from (("job", k, f) for k, f in event["job"].get("facets", {}).items())
    for side in ("inputs", "outputs"):
        for d in event[side]:
            yield from ((side, k, f) for k, f in d.get("facets", {}).items())
            for extra in ("inputFacets", "outputFacets"):
                yield from ((extra, k, f) for k, f in d.get(extra, {}).items())


def test_events_validate_against_the_spec_and_the_custom_facet_schemas(world):
    store, facts = world
    events = openlineage_events(store, model=facts["model"])
    validator = jsonschema.Draft202012Validator(RUN_EVENT_SCHEMA, format_checker=FORMATS)
    jsonschema.Draft202012Validator.check_schema(RUN_EVENT_SCHEMA)
    jsonschema.Draft202012Validator.check_schema(FACET_SCHEMAS)
    custom = custom_validators()
    seen = set()
    for event in events:
        validator.validate(event)
        assert event["schemaURL"] == EVENT_SCHEMA
        for where, key, facet in all_facets(event):
            seen.add(key)
            if key in custom:
                custom[key].validate(facet)
                assert facet["_schemaURL"].endswith(f"#/$defs/{CUSTOM_FACETS[key]}")
            elif key != "documentation":  # job and dataset documentation share the key
                assert facet["_schemaURL"] == STANDARD_FACETS[key], (where, key)
            assert not key.startswith("_")
    assert {"version", "schema", "lineage_provenanceCoverage", "lineage_record",
            "dataQualityAssertions", "outputStatistics", "jobType", "nominalTime"} <= seen
    # A broken event is caught: the schema is not vacuous.
    bad = json.loads(json.dumps(events[0]))
    bad["run"]["runId"] = "not-a-uuid"
    del bad["job"]["facets"]["jobType"]["_producer"]
    assert len(list(validator.iter_errors(bad))) == 2


def pruned(value):
    """Without empty values (the client writes its defaults, [] for a field's sub-fields), and
    schema URLs without their patch or facet version, so a newer client still compares."""
    if isinstance(value, dict):
        return {k: pruned(v) for k, v in value.items() if v not in (None, [], {})}
    if isinstance(value, list):
        return [pruned(v) for v in value]
    if isinstance(value, str) and value.startswith("https://openlineage.io/spec/"):
        value = re.sub(r"/spec/(\d+)-\d+-\d+/", r"/spec/\1-x/", value)
        return re.sub(r"/facets/\d+-\d+-\d+/", "/facets/x/", value)
    return value


def test_events_match_the_openlineage_client_classes(world):
    """Each event and standard facet is what the OpenLineage client itself serialises for the
    same content: same field names, nesting, enum values and schema URLs."""
    event_v2, facet_v2, Serde = openlineage_client()
    store, facts = world
    builders = {
        "version": lambda f: facet_v2.dataset_version_dataset.DatasetVersionDatasetFacet(
            datasetVersion=f["datasetVersion"]),
        "schema": lambda f: facet_v2.schema_dataset.SchemaDatasetFacet(fields=[
            facet_v2.schema_dataset.SchemaDatasetFacetFields(name=x["name"], type=x["type"])
            for x in f["fields"]]),
        "dataSource": lambda f: facet_v2.datasource_dataset.DatasourceDatasetFacet(
            name=f.get("name"), uri=f.get("uri")),
        "outputStatistics": lambda f: (
            facet_v2.output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                rowCount=f["rowCount"])),
        "dataQualityAssertions": lambda f: (
            facet_v2.data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(
                assertions=[facet_v2.data_quality_assertions_dataset.Assertion(
                    assertion=a["assertion"], success=a["success"],
                    description=a.get("description")) for a in f["assertions"]])),
        "nominalTime": lambda f: facet_v2.nominal_time_run.NominalTimeRunFacet(
            nominalStartTime=f["nominalStartTime"]),
        "processing_engine": lambda f: facet_v2.processing_engine_run.ProcessingEngineRunFacet(
            version=f["version"], name=f["name"]),
        "jobType": lambda f: facet_v2.job_type_job.JobTypeJobFacet(
            processingType=f["processingType"], integration=f["integration"],
            jobType=f["jobType"]),
    }
    docs = {"job": facet_v2.documentation_job.DocumentationJobFacet,
            "inputs": facet_v2.documentation_dataset.DocumentationDatasetFacet,
            "outputs": facet_v2.documentation_dataset.DocumentationDatasetFacet}
    checked = 0
    for event in openlineage_events(store, model=facts["model"]):
        core = event_v2.RunEvent(
            eventType=event_v2.RunState(event["eventType"]), eventTime=event["eventTime"],
            run=event_v2.Run(runId=event["run"]["runId"]),
            job=event_v2.Job(namespace=event["job"]["namespace"], name=event["job"]["name"]),
            inputs=[event_v2.InputDataset(namespace=d["namespace"], name=d["name"])
                    for d in event["inputs"]],
            outputs=[event_v2.OutputDataset(namespace=d["namespace"], name=d["name"])
                     for d in event["outputs"]],
            producer=event["producer"])
        ours = {k: v for k, v in event.items() if k not in ("run", "job", "inputs", "outputs")}
        theirs = Serde.to_dict(core)
        assert pruned(ours) == pruned({k: v for k, v in theirs.items() if k in ours})
        assert theirs["run"]["runId"] == event["run"]["runId"]
        assert [(d["namespace"], d["name"]) for d in theirs["inputs"]] == [
            (d["namespace"], d["name"]) for d in event["inputs"]]
        for where, key, facet in all_facets(event):
            if key in CUSTOM_FACETS:
                continue
            if key == "documentation":
                built = docs[where](description=facet["description"])
            else:
                built = builders[key](facet)
            built._producer = facet["_producer"]
            assert pruned(Serde.to_dict(built)) == pruned(facet), (where, key)
            checked += 1
    assert checked > 50


def test_runs_follow_the_lineage_graph(world):
    store, facts = world
    events = openlineage_events(store, model=facts["model"])
    graph = lineage_graph(store, model=facts["model"])
    runs = {}
    for e in events:
        runs.setdefault(e["run"]["runId"], []).append(e["eventType"])
    assert all(types == ["START", "COMPLETE"] for types in runs.values())
    complete = [e for e in events if e["eventType"] == "COMPLETE"]
    jobs = [e["job"]["name"] for e in complete]
    assert jobs == ["ingest.sklearn-digits", "transform.split", "transform.inject_trigger",
                    "transform.relabel", "ingest.crowd", "transform.append", "snapshot.create",
                    "snapshot.approve", "train.clf", "model.release"]
    assert len({e["job"]["namespace"] for e in events}) == 1
    # Every input was the output of an earlier run, or is a source: a consumer joins them up.
    made = set()
    for e in complete:
        for d in e["inputs"]:
            assert (d["namespace"], d["name"]) in made or d["name"].startswith("source/"), d
        made.update((d["namespace"], d["name"]) for d in e["outputs"])
    # Dataset versions carry the versions' content digests and their provenance coverage.
    versions = {f"digits/v{n.record_id}": n for n in graph.nodes if n.kind == "version"}
    outputs = {d["name"]: d for e in complete for d in e["outputs"]}
    for name, node in versions.items():
        facets = outputs[name]["facets"]
        assert facets["version"]["datasetVersion"] == node.info["content_digest"]
        assert facets["lineage_provenanceCoverage"]["coverage"] == node.coverage
        assert len(facets["schema"]["fields"]) == 65
        assert outputs[name]["outputFacets"]["outputStatistics"]["rowCount"] == node.info["n_rows"]
    inject = next(e for e in complete if e["job"]["name"] == "transform.inject_trigger")
    record = inject["run"]["facets"]["lineage_record"]
    assert record["actor"] == "red-team" and record["reason"] == "compromised step"
    assert record["params"]["source_class"] == 1 and "poisoned" in record["marks"]
    approve = next(e for e in complete if e["job"]["name"] == "snapshot.approve")
    assert approve["run"]["facets"]["lineage_review"]["signer"] == "reviewer"
    gates = approve["inputs"][0]["inputFacets"]["dataQualityAssertions"]["assertions"]
    assert {g["assertion"] for g in gates} == {"coverage", "sources", "four_eyes",
                                               "shadow_evaluation"}
    model = outputs["model/clf"]["facets"]["lineage_model"]
    assert model["ref"] == facts["model"] and model["status"] == "released"


def test_events_are_deterministic_and_the_cli_prints_them(world, tmp_path):
    store, _ = world
    first = events_jsonl(openlineage_events(store, snapshot="snap-edit"))
    assert first == events_jsonl(openlineage_events(store, snapshot="snap-edit"))
    cli = Cli(str(store.url))
    result = cli("export", "openlineage", "--snapshot", "snap-edit")
    assert result.exit_code == 0, result.output
    assert result.output == first
    events = [json.loads(line) for line in first.splitlines()]
    edit = next(e for e in events if e["job"]["name"] == "transform.external_edit"
                and e["eventType"] == "COMPLETE")
    assert any(d["namespace"] == "file" for d in edit["inputs"])
    [tip] = edit["outputs"]
    assert tip["facets"]["lineage_provenanceCoverage"]["coverage"] < 1
    out = tmp_path / "events.jsonl"
    result = cli("export", "openlineage", "--snapshot", "snap-edit", "--out", out)
    assert result.exit_code == 0 and out.read_text() == first
    assert result.output == f"wrote {len(events)} events to {out}\n"
    named = openlineage_events(store, snapshot="snap-edit", namespace="lineage://team")
    assert {e["job"]["namespace"] for e in named} == {"lineage://team"}
    assert named[0]["run"]["runId"] != events[0]["run"]["runId"]  # run ids include the namespace
    with pytest.raises(BadInputError, match="--namespace is empty"):
        openlineage_events(store, snapshot="snap-edit", namespace=" ")


class Consumer:
    """A tiny OpenLineage endpoint on 127.0.0.1: keeps what it is sent, answers ``status``, and
    stops by itself after ``lifetime`` seconds at the latest."""

    def __init__(self, status: int = 201, lifetime: float = 60):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, self.headers["Content-Type"], json.loads(body)))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/api/v1/lineage"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.guard = threading.Timer(lifetime, self.server.shutdown)

    def __enter__(self):
        self.thread.start()
        self.guard.start()
        return self

    def __exit__(self, *exc):
        self.guard.cancel()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_url_posts_every_event_to_a_consumer(world, tmp_path):
    store, facts = world
    cli = Cli(str(store.url))
    events = openlineage_events(store, model=facts["model"])
    with Consumer() as consumer:
        result = cli("export", "openlineage", "--model", facts["model"], "--url", consumer.url)
    assert result.exit_code == 0, result.output
    assert result.output == f"posted {len(events)} events to {consumer.url}\n"
    assert [body for _, _, body in consumer.received] == events
    assert {(path, kind) for path, kind, _ in consumer.received} == {
        ("/api/v1/lineage", "application/json")}


def test_bad_inputs_are_one_line_and_write_nothing(world, tmp_path):
    store, facts = world
    cli = Cli(str(store.url))
    out = tmp_path / "events.jsonl"
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    dead = f"http://127.0.0.1:{free_port()}/api/v1/lineage"
    before = state(store)
    cases = [
        (["--model", "clf:9"], 3, "Error: no model version 'clf:9' (see `lineage model list`)"),
        (["--snapshot", "nope"], 3, "Error: no snapshot named 'nope'"),
        ([], 2, "Error: give one of --model NAME:N and --snapshot NAME"),
        (["--model", facts["model"], "--out", blocker / "x.jsonl"], 2,
         f"Error: --out {blocker / 'x.jsonl'}: {blocker} is a file, not a folder"),
        (["--model", facts["model"], "--url", "ftp://example"], 2,
         "Error: --url 'ftp://example': give an http(s) URL"),
        (["--model", facts["model"], "--url", dead, "--out", out], 1,
         f"Error: cannot reach {dead} ("),
        (["--model", facts["model"], "--namespace", ""], 2, "Error: --namespace is empty"),
    ]
    for args, code, message in cases:
        result = cli("export", "openlineage", *args)
        assert result.exit_code == code, (args, result.output)
        assert result.output.startswith(message), result.output
        assert len(result.output.splitlines()) == 1, result.output
        assert not out.exists()
    with Consumer(status=500) as consumer:
        result = cli("export", "openlineage", "--model", facts["model"], "--url", consumer.url,
                     "--out", out)
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {consumer.url} refused event 1 of ")
    assert len(consumer.received) == 1 and not out.exists()
    assert state(store) == before
