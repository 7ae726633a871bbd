"""`lineage version ...`: the version DAG, one version in detail, and diffs between versions."""

from pathlib import Path
from typing import Annotated

import typer

from lineage.cli.common import (
    ActorOpt,
    DbOpt,
    JsonOpt,
    handle_errors,
    opened,
    out,
    print_json,
    print_record,
    print_table,
)
from lineage.errors import BadInputError

version_app = typer.Typer(help="Dataset versions: list the DAG, show one, diff two, export one.",
                          no_args_is_help=True)

VersionArg = Annotated[str, typer.Argument(help="A version: id (v5 or 5) or name.")]


@version_app.command("list")
@handle_errors
def list_(db: DbOpt = None, as_json: JsonOpt = False):
    """List versions newest first, each with its parent and the transformation that made it.

    Example: lineage version list --json
    """
    from lineage.data.versions import list_versions

    with opened(db) as store:
        versions = list_versions(store)
    if as_json:
        print_json(versions)
    else:
        print_table("versions (newest first)",
                    ["id", "name", "parent", "made by", "rows", "actor", "at", "digest"],
                    [[f"v{v.id}", v.name, f"v{v.parent_id}" if v.parent_id else "-",
                      f"{v.kind} (t{v.transformation_id})" if v.transformation_id
                      else f"ingest {v.ingest_id}", v.n_rows, v.actor, v.created_at,
                      v.content_digest[:12]] for v in versions], drop=["digest", "at", "actor"])


@version_app.command("show")
@handle_errors
def show(version: VersionArg, db: DbOpt = None, as_json: JsonOpt = False):
    """Show a version: parent, transformation (actor, reason, params, code identity), counts,
    content digest and provenance coverage.

    Example: lineage version show v5
    """
    from lineage.data.versions import show_version

    with opened(db) as store:
        info = show_version(store, version)
    if as_json:
        print_json(info)
        return
    c = info.coverage
    print_record(f"version v{info.id}" + (f" ({info.name})" if info.name else ""), [
        ("dataset", info.dataset),
        ("parent", ", ".join(f"v{p}" for p in info.parent_ids) or "- (root)"),
        ("made by", f"{info.kind} (transformation {info.transformation_id})"
         if info.transformation_id else f"ingest {info.ingest_id}"),
        ("actor", info.actor), ("reason", info.reason),
        ("params", ", ".join(f"{k}={v}" for k, v in info.params.items() if k != "effects") or "-"),
        ("code identity", info.code_identity), ("at", info.created_at),
        ("rows", info.n_rows),
        ("delta", f"{info.n_removed} removed, {info.n_added} added, {info.n_relabelled} relabelled, "
                  f"{info.n_modified} modified"),
        ("content digest", info.content_digest),
        ("coverage", f"{c.coverage:.1%} ({c.n_covered} of {c.n_rows} rows)"
         + "".join(f"; {r}: {n}" for r, n in c.breakdown.items())),
    ])


@version_app.command("diff")
@handle_errors
def diff(a: VersionArg, b: Annotated[str, typer.Argument(help="The version to compare against A.")],
         limit: Annotated[int, typer.Option(help="Rows shown per kind of change (table only).")] = 20,
         db: DbOpt = None, as_json: JsonOpt = False):
    """Rows added, removed, relabelled (old -> new) and modified (parent -> child) from A to B.

    Example: lineage version diff v2 v5
    """
    from lineage.trace import version_diff

    if limit < 0:
        raise BadInputError(f"--limit {limit} is negative: give the number of rows to show per "
                            "kind of change")
    with opened(db) as store:
        d = version_diff(store, a, b)
    if as_json:
        print_json(d.as_dict())
        return
    data = d.as_dict()
    out.print(f"v{d.from_id} -> v{d.to_id}: {len(d.added)} added, {len(d.removed)} removed, "
              f"{len(d.relabelled_ids)} relabelled, {len(d.modified_child)} modified")
    rows = ([["added", r["row_id"], ""] for r in data["added"][:limit]]
            + [["removed", r["row_id"], ""] for r in data["removed"][:limit]]
            + [["relabelled", r["row_id"], f"{r['old']} -> {r['new']}"] for r in data["relabelled"][:limit]]
            + [["modified", r["row_id"], f"from row {r['parent_row_id']}"] for r in data["modified"][:limit]])
    if rows:
        print_table(f"changes (first {limit} of each kind)", ["change", "row", "detail"], rows)


@version_app.command("export")
@handle_errors
def export(version: VersionArg,
           out_path: Annotated[Path, typer.Option("--out", help="The CSV file to write.")],
           force: Annotated[bool, typer.Option("--force", help="Overwrite the file if it exists.")] = False,
           db: DbOpt = None, actor: ActorOpt = None, as_json: JsonOpt = False):
    """Write a version to a CSV file (row_id, f0..f{n-1}, label; one line per row, in row-id
    order), e.g. to edit it outside the store and import the edited copy with
    `lineage ingest csv FILE --as-version-of VERSION`, which records the changes as an external
    edit. Every row is re-verified against its chunk's digest first (exit 5, no file, if one
    does not match), and the export is recorded as an event: who, which version, which file and
    its sha256. Refuses to overwrite a file unless --force.

    Example: lineage version export v5 --out v5.csv
    """
    from lineage.data.versions import export_version

    with opened(db, actor) as store:
        info = export_version(store, version, out_path, force=force)
    if as_json:
        print_json(info)
        return
    out.print(f"v{info.version_id}" + (f" ({info.version_name})" if info.version_name else "")
              + f": {info.n_rows} rows written to {info.path} (sha256 {info.file_sha256[:16]})",
              markup=False, highlight=False)
