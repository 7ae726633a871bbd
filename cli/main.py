"""The `lineage` command: mounts one Typer app per command group."""

from typing import Annotated, Optional

import typer

from lineage.cli.audit import audit_app
from lineage.cli.checkpoint import checkpoint_command, prove_command
from lineage.cli.common import (
    EXIT_CODES_HELP,
    DbOpt,
    JsonOpt,
    OneLineErrors,
    handle_errors,
    more,
    opened,
    out,
    plain,
    print_json,
    print_table,
    progress_bar,
)
from lineage.cli.coverage import coverage as coverage_command
from lineage.cli.demo import DemoCommand, demo_command
from lineage.cli.ingest import ingest_app
from lineage.cli.key import TrustOpt, key_app
from lineage.cli.model import model_app, train_command
from lineage.cli.policy import policy_app
from lineage.cli.report import export_app, graph_command, report_command
from lineage.cli.scan import ScanCommand, scan_command
from lineage.cli.snapshot import snapshot_app
from lineage.cli.source import source_app
from lineage.cli.trace import trace_app
from lineage.cli.transform import transform_app
from lineage.cli.version import version_app

app = typer.Typer(
    name="lineage",
    help="Append-only provenance and lineage for ML training data. " + EXIT_CODES_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=OneLineErrors,
    context_settings={"help_option_names": ["-h", "--help"]},
)
db_app = typer.Typer(help="Database schema: create or upgrade through the migrations.",
                     no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(source_app, name="source")
app.add_typer(ingest_app, name="ingest")
app.add_typer(version_app, name="version")
app.add_typer(transform_app, name="transform")
app.add_typer(trace_app, name="trace")
app.add_typer(snapshot_app, name="snapshot")
app.add_typer(model_app, name="model")
app.add_typer(policy_app, name="policy")
app.add_typer(key_app, name="key")
app.command("checkpoint")(checkpoint_command)
app.command("prove")(prove_command)
app.command("train")(train_command)
app.command("coverage")(coverage_command)
app.add_typer(audit_app, name="audit")
app.command("report")(report_command)
app.command("graph")(graph_command)
app.add_typer(export_app, name="export")
app.command("demo", cls=DemoCommand)(demo_command)
app.command("scan", cls=ScanCommand)(scan_command)


def _print_version(value: bool) -> None:
    if value:
        from lineage import __version__

        out.print(f"lineage {__version__}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option(
        "--version", help="Print the version and exit.", callback=_print_version,
        is_eager=True)] = False):
    # The group's help is the app's help= above; a docstring here would replace it.
    pass


@db_app.command("upgrade")
@handle_errors
def db_upgrade(db: DbOpt = None):
    """Create the schema in an empty database, or upgrade an older one, through the migrations.

    Example: lineage db upgrade --db sqlite:///lineage.db
    """
    from lineage.store.engine import open_for_upgrade, upgrade_store

    store = open_for_upgrade(db)
    try:
        before, after = upgrade_store(store)
    finally:
        store.close()
    if before == after:
        out.print(f"{store.url}: schema is up to date ({after})")
    else:
        out.print(f"{store.url}: schema {before or 'empty'} -> {after}")


@db_app.command("head")
def db_head():
    """Print the schema revision this lineage needs.

    Example: lineage db head
    """
    from lineage.store.engine import head_revision

    out.print(head_revision())


@app.command("verify")
@handle_errors
def verify(expect: Annotated[Optional[str], typer.Option(
               help="A chain head digest noted earlier (12+ hex digits): fail if that event is "
                    "gone, i.e. the newest history was cut off.")] = None,
           checkpoint: Annotated[Optional[str], typer.Option(
               "--checkpoint", help="A checkpoint or witness file [default: $LINEAGE_WITNESS]: "
                                    "prove the log extends every checkpoint in it.",
               show_default=False)] = None,
           fast: Annotated[bool, typer.Option(
               "--fast", help="Check the chain and the digests of records without re-reading "
                              "chunk payloads or the hash they name (their recorded digests are "
                              "trusted).")] = False,
           trust: TrustOpt = None, db: DbOpt = None, as_json: JsonOpt = False):
    """Recompute the event chain and every content digest, check that every stored row has one
    chunk and every chunk its ingest's or transformation's rows, verify every review's signature
    against the trust file (when there is one) and the log against checkpoints; exit 5 naming
    the first problem.

    Example: lineage verify --checkpoint witness.jsonl
    """
    from lineage.data.integrity import verify_all
    from lineage.review.attestations import verify_signatures
    from lineage.review.checkpoints import check_checkpoints
    from lineage.review.keys import read_trust

    with opened(db) as store, progress_bar("verifying every digest") as progress:
        report = verify_all(store, expect=expect, fast=fast, progress=progress)
        trusted = read_trust(trust, required=False)
        signatures = verify_signatures(store, trusted) if trusted.keys else None
        checked = check_checkpoints(store, checkpoint, trust=trusted)
    if as_json:
        print_json({"ok": True, **plain(report), "rate_bytes_per_s": round(report.rate),
                    "signatures": plain(signatures),
                    "trust_file": trusted.path if trusted.keys else None, "checkpoints": checked})
        return
    out.print(f"OK: {report.events} events and {report.records} records verified; "
              f"chain head {report.head_digest[:16]}")
    if report.fast:
        out.print(f"fast: chunk payloads were not re-read (their recorded digests were checked "
                  f"against the chain); {report.versions} content digests checked from recorded "
                  "leaves (an ingest's root from its chunks' digests); run without --fast to "
                  "re-hash every byte", markup=False)
    else:
        out.print(f"{report.chunk_rows:,} rows ({report.chunk_bytes / 1e6:,.1f} MB of chunk payloads) "
                  f"re-hashed and {report.versions} content digests recomputed in "
                  f"{report.seconds:.1f} s ({report.rate / 1e6:,.0f} MB/s)", markup=False)
    if signatures is None:
        out.print(f"signatures not checked: no trust file {trusted.path} (see `lineage key`)",
                  markup=False)
    else:
        out.print(f"{signatures.signed} signed records verified against {trusted.path}"
                  + (f"; {signatures.legacy} unsigned from before signed reviews"
                     if signatures.legacy else ""), markup=False)
    if checked:
        out.print(f"the log extends all {checked} checkpoints", markup=False)


@app.command("log")
@handle_errors
def log(limit: Annotated[int, typer.Option(help="Show only the newest N events (0: all).")] = 20,
        kind: Annotated[Optional[str], typer.Option(help="Only events of this kind.")] = None,
        db: DbOpt = None, as_json: JsonOpt = False):
    """Show the event log, newest first: every write, its actor, time and digest.

    Example: lineage log --limit 5
    """
    from lineage.store.log import list_events

    with opened(db) as store:
        events = list_events(store, limit=limit or None, kind=kind)
        # The table says how many older events it left out: counted only when there may be some.
        total = (len(list_events(store, kind=kind)) if not as_json and limit
                 and len(events) == limit else len(events))
    if as_json:
        print_json(events)
        return
    print_table("events (newest first)", ["#", "kind", "actor", "at", "summary", "digest"],
                [[e.id, e.kind, e.actor, e.created_at, e.summary, e.digest[:12]] for e in events],
                drop=["digest", "at", "actor"])
    more(total, limit, "events")


def _markdown_help(typer_app: typer.Typer) -> None:
    # Markdown help joins a docstring's wrapped lines into one paragraph (rich mode keeps the
    # source's line breaks, which reads as ragged text in a terminal).
    typer_app.rich_markup_mode = "markdown"
    for group in typer_app.registered_groups:
        _markdown_help(group.typer_instance)


_markdown_help(app)

if __name__ == "__main__":
    app()
