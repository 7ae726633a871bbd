"""`lineage report`, `lineage graph` and `lineage export openlineage`: the lineage of a model
version or a snapshot to look at (one HTML file), as text (Mermaid, DOT) and as OpenLineage
events for other tools."""

import sys
from enum import Enum
from typing import Annotated, Optional

import typer

from lineage.cli.common import ActorOpt, DbOpt, JsonOpt, handle_errors, opened, out, print_json
from lineage.cli.key import TrustOpt

ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", help="A model version, NAME:NUMBER (or NAME for its newest).", show_default=False)]
SnapshotOpt = Annotated[Optional[str], typer.Option(
    "--snapshot", help="A snapshot name (instead of --model).", show_default=False)]


class GraphFormat(str, Enum):
    mermaid = "mermaid"
    dot = "dot"


@handle_errors
def report_command(model: ModelOpt = None, snapshot: SnapshotOpt = None,
                   out_path: Annotated[str, typer.Option(
                       "--out", help="The HTML file to write.")] = "report.html",
                   scan: Annotated[bool, typer.Option(
                       "--scan", help="Run the detectors on the snapshot first (recorded as a "
                                      "scan); otherwise the audit uses the newest recorded scan.")]
                   = False,
                   trust: TrustOpt = None, db: DbOpt = None, actor: ActorOpt = None,
                   as_json: JsonOpt = False):
    """Write the lineage of a model version or snapshot as one HTML file to look at.

    The file is self-contained (no network access): the lineage graph with poisoned steps,
    suspect sources and coverage per node, the gate reports and who signed them, the
    poisoned-row audit, and the clean-accuracy/ASR chart.

    Example: lineage report --model digits-clf:1 --out report.html
    """
    from lineage.lab.output import check_output
    from lineage.lab.report import check_target, write_report

    check_target(model, snapshot)
    path = check_output(out_path, example="report.html")
    with opened(db, actor) as store:
        report = write_report(store, path, model=model, snapshot=snapshot, scan=scan, trust=trust)
    audit = report.audit
    if as_json:
        print_json({"out": str(path), **report.as_dict()})
        return
    out.print(f"wrote {path}: lineage of {report.target}, {len(report.graph.nodes)} nodes; "
              f"{audit['n_implicated']} of {audit['n_rows']} rows implicated; "
              f"{len(report.reviews)} reviews", markup=False, highlight=False, soft_wrap=True)


@handle_errors
def graph_command(model: ModelOpt = None, snapshot: SnapshotOpt = None,
                  fmt: Annotated[GraphFormat, typer.Option(
                      "--format", help="Mermaid (Markdown docs) or Graphviz DOT.")]
                  = GraphFormat.mermaid,
                  db: DbOpt = None, as_json: JsonOpt = False):
    """Print the lineage graph of a model version or snapshot as Mermaid or DOT text.

    Sources first, data flowing down, with the same marks and coverage as `lineage report`.

    Example: lineage graph --model digits-clf:1 --format dot | dot -Tsvg > lineage.svg
    """
    from lineage.lab.report import check_target, lineage_graph, render_graph

    check_target(model, snapshot)
    with opened(db) as store:
        graph = lineage_graph(store, model=model, snapshot=snapshot)
    if as_json:
        print_json(graph.as_dict())
        return
    sys.stdout.write(render_graph(graph, fmt.value))


export_app = typer.Typer(help="Export lineage for other tools.", no_args_is_help=True)


@export_app.command("openlineage")
@handle_errors
def export_openlineage(model: ModelOpt = None, snapshot: SnapshotOpt = None,
                       out_path: Annotated[Optional[str], typer.Option(
                           "--out", help="Write the JSON lines to this file instead of stdout.",
                           show_default=False)] = None,
                       url: Annotated[Optional[str], typer.Option(
                           "--url", help="POST each event to this OpenLineage endpoint, e.g. "
                                         "Marquez's http://localhost:5000/api/v1/lineage.",
                           show_default=False)] = None,
                       namespace: Annotated[Optional[str], typer.Option(
                           "--namespace", help="Namespace of the jobs and datasets [default: "
                                               "lineage:// and the store's first event digest].",
                           show_default=False)] = None,
                       db: DbOpt = None):
    """Export the lineage of a model version or snapshot as OpenLineage RunEvents.

    Spec 2-0-2, one JSON object per line: every ingest, transformation, snapshot, review and
    training as a job run; dataset versions with DatasetVersion, schema and provenance-coverage
    facets. Marquez or any OpenLineage consumer reads them (`--url` posts them).

    Example: lineage export openlineage --model digits-clf:1 --out lineage.jsonl
    """
    from lineage.lab.openlineage import (
        check_url,
        events_jsonl,
        openlineage_events,
        post_events,
        write_events,
    )
    from lineage.lab.output import check_output
    from lineage.lab.report import check_target

    check_target(model, snapshot)
    path = check_output(out_path, example="lineage.jsonl") if out_path is not None else None
    if url is not None:
        check_url(url)
    with opened(db) as store:
        events = openlineage_events(store, model=model, snapshot=snapshot, namespace=namespace)
    if url is not None:  # first: a consumer that cannot be reached leaves no file behind
        sent = post_events(events, url)
        out.print(f"posted {sent} events to {url}", markup=False, highlight=False,
                  soft_wrap=True)
    if path is not None:
        write_events(events, path)
        out.print(f"wrote {len(events)} events to {path}", markup=False, highlight=False,
                  soft_wrap=True)
    elif url is None:
        sys.stdout.write(events_jsonl(events))
