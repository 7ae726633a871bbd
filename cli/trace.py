"""`lineage trace row ID` and `lineage trace model REF`: walk back from a row or a model version
to its sources, from records."""

from typing import Annotated

import typer

from lineage.cli.common import DbOpt, JsonOpt, handle_errors, opened, out, print_json, print_table
from lineage.cli.model import RefArg

trace_app = typer.Typer(help="Walk lineage back: a row's source, ingest, transformations, versions.",
                        no_args_is_help=True)


@trace_app.command("row")
@handle_errors
def row(row_id: Annotated[str, typer.Argument(help="The row id.")], db: DbOpt = None,
        as_json: JsonOpt = False):
    """Trace a row: raw ingest and source -> every transformation that touched it (or the rows
    it derives from) -> the versions that hold it.

    Example: lineage trace row 1234
    """
    from lineage.trace import trace_row

    with opened(db) as store:
        t = trace_row(store, row_id)
    if as_json:
        print_json(t)
        return
    o = t.origin
    lineage_text = " <- ".join(str(r) for r in (t.row_id, *t.ancestors))
    out.print(f"row {t.row_id} (dataset {t.dataset}, stored label {t.stored_label}); "
              f"derived: {lineage_text if t.ancestors else 'no (raw row)'}"
              + (f"; rows made from it: {', '.join(map(str, t.descendants))}" if t.descendants else ""))
    if o is None:
        out.print("origin: none in the store (row came from an external edit)")
    else:
        out.print(f"origin: raw row {o.raw_row_id}, ingest {o.ingest_id} by {o.ingest_actor} at "
                  f"{o.ingested_at:%Y-%m-%d %H:%M:%S} (file {o.file_name}, sha256 "
                  f"{o.file_sha256[:16]}); source {o.source} ({o.source_kind}, {o.source_status}, "
                  f"license {o.license or '-'}, uri {o.uri or '-'})")
    print_table("transformations (oldest first)",
                ["t", "kind", "effect", "row", "detail", "version", "actor", "reason"],
                [[s.transformation_id, s.kind, s.effect, s.row_id,
                  (f"{s.old_label} -> {s.new_label}" if s.effect == "relabelled" else
                   f"from row {s.parent_row_id}, label {s.old_label} -> {s.new_label}"
                   if s.effect == "modified" else s.side or ""),
                  f"v{s.version_id}" + (f" ({s.version_name})" if s.version_name else ""),
                  s.actor, s.reason] for s in t.steps], drop=["t", "actor", "row"])
    codes = sorted({(s.transformation_id, s.code_identity) for s in t.steps})
    if codes:
        out.print("code: " + "; ".join(f"t{i} {c}" for i, c in codes))
    out.print("versions holding it: " + (", ".join(
        f"v{v.id}" + (f" ({v.name})" if v.name else "") for v in t.versions) or "none"))


@trace_app.command("model")
@handle_errors
def model(ref: RefArg, db: DbOpt = None, as_json: JsonOpt = False):
    """Trace a model version: model -> snapshot -> versions -> transformations -> ingests ->
    sources, with row counts and coverage, every digest verified on the way. An external
    model: its source, file digest, evaluations and reviews.

    Example: lineage trace model digits-clf:1 --json
    """
    from lineage.trace import trace_model

    with opened(db) as store:
        t = trace_model(store, ref)
    if as_json:
        print_json(t)
        return
    if getattr(t, "external", False):
        _external(t)
        return
    m, s = t.model, t.snapshot
    out.print(f"model {m['ref']} ({m['status']}, {m['estimator']}): clean accuracy "
              f"{m['clean_accuracy']}, worst ASR {m['worst_asr']} ({m['worst_trigger']}); artifact "
              f"{m['artifact_sha256'][:16]}", markup=False)
    out.print(f"<- snapshot {s['name']} ({s['status']}, {s['n_rows']} rows, digest "
              f"{s['content_digest'][:16]}, approved by {s['approved_by']}, coverage {s['coverage']})",
              markup=False)
    print_table("versions (oldest first)", ["id", "name", "rows", "transformation", "ingest", "by", "digest"],
                [[v["id"], v["name"], v["n_rows"], v["transformation_id"], v["ingest_id"], v["actor"],
                  v["content_digest"][:12]] for v in t.versions], drop=["digest", "by"])
    print_table("transformations", ["id", "kind", "actor", "reason", "code"],
                [[x["id"], x["kind"], x["actor"], x["reason"], x["code_identity"]] for x in t.transformations])
    print_table("ingests", ["id", "source", "rows in snapshot", "file", "sha256", "by"],
                [[i["id"], i["source"], i.get("rows_in_snapshot", i["rows"] if "rows" in i else None),
                  i.get("file_name"), (i.get("file_sha256") or "")[:12], i.get("actor")] for i in t.ingests],
                drop=["sha256", "file"])
    print_table("sources", ["name", "kind", "status", "rows", "uri", "license"],
                [[x["name"], x["kind"], x["status"], x["rows"], x["uri"], x["license"]] for x in t.sources],
                drop=["uri"])
    out.print(f"verified: {t.verified['records']} records, artifact sha256, manifest digest", markup=False)


def _external(t) -> None:
    m, src = t.model, t.source
    out.print(f"external model {m['ref']} ({m['status']}, {m['format']}): file {m['file_name']}, "
              f"{m['file_size']} bytes, sha256 {m['file_sha256'][:16]}; imported by {m['actor']} "
              f"at {m['created_at']:%Y-%m-%d %H:%M:%S}", markup=False)
    out.print(f"<- source {src['name']} ({src['kind']}, {src['status']}, uri {src['uri'] or '-'}, "
              f"license {src['license'] or '-'})", markup=False)
    print_table("evaluations", ["id", "passed", "snapshot", "clean acc", "reverse flagged", "by"],
                [[e["id"], e["passed"], e["evaluation_snapshot"], e["clean_accuracy"],
                  len(e["reverse_flagged"] or []), e["actor"]] for e in t.evaluations])
    print_table("reviews", ["id", "decision", "by", "evaluation", "reason"],
                [[r["id"], r["decision"], r["actor"], r["evaluation"], r["reason"]]
                 for r in t.reviews])
    out.print(f"verified: {t.verified['records']} records, file sha256", markup=False)
