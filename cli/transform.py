"""`lineage transform ...`: record a change to a version as a transformation (new version)."""

from typing import Annotated, Optional

import typer

from lineage.cli.common import (
    ActorOpt,
    DbOpt,
    JsonOpt,
    err,
    handle_errors,
    opened,
    out,
    plain,
    print_json,
    print_table,
)

transform_app = typer.Typer(
    help="Record a change to a dataset version (split, filter, relabel, inject-trigger, dedupe, "
         "append): each makes a transformation record and new version(s); nothing is edited.",
    no_args_is_help=True)

VersionOpt = Annotated[str, typer.Option("--version", help="The version to transform: id (v5 or 5) or name.")]
ReasonOpt = Annotated[Optional[str], typer.Option(help="Why the data changes (recorded).", show_default=False)]
NameOpt = Annotated[Optional[str], typer.Option(help="A name for the new version.", show_default=False)]


NO_REASON = "note: no --reason: the rows it touched will count as uncovered"
NO_REASON_SPLIT = ("note: no --reason: a split places every row, so every row of both versions "
                   "will count as uncovered; split again with --reason to keep them covered")


def _note_reason(reason: Optional[str], split: bool = False) -> None:
    """One line on stderr when a transformation was recorded without a reason (coverage counts
    the rows it touched as uncovered)."""
    if not (reason or "").strip():
        err.print(NO_REASON_SPLIT if split else NO_REASON, markup=False, highlight=False)


def print_transformation(result, as_json: bool) -> None:
    """A recorded transformation (a split's two versions, or one new version) as a table or JSON;
    `lineage ingest csv --as-version-of` prints its external edit the same way."""
    from lineage.data.transforms import SplitResult

    if isinstance(result, SplitResult):
        if as_json:
            data = plain(result)
            data["versions"] = [
                {"id": result.train_version_id, "name": result.train_name, "role": "train",
                 "n_rows": result.n_train},
                {"id": result.test_version_id, "name": result.test_name, "role": "test",
                 "n_rows": result.n_test}]
            print_json(data)
        else:
            print_table(f"transformation {result.transformation_id}: split of v{result.parent_id}",
                        ["version", "name", "role", "rows"],
                        [[f"v{result.train_version_id}", result.train_name, "train", result.n_train],
                         [f"v{result.test_version_id}", result.test_name, "test", result.n_test]])
        return
    if as_json:
        print_json(result)
        return
    print_table(f"transformation {result.transformation_id}: {result.kind.replace('_', '-')} "
                f"of v{result.parent_id}",
                ["version", "name", "rows", "removed", "added", "relabelled", "modified", "digest"],
                [[f"v{result.version_id}", result.version_name, result.n_rows, result.n_removed,
                  result.n_added, result.n_relabelled, result.n_modified,
                  result.content_digest[:12]]], drop=["digest", "name"])
    if result.poisoned_row_ids:
        shown = ", ".join(f"{p}->{c}" for p, c in zip(result.parent_row_ids[:10],
                                                        result.poisoned_row_ids[:10]))
        more = " ..." if len(result.poisoned_row_ids) > 10 else ""
        out.print(f"poisoned rows (parent->new): {shown}{more}", markup=False, highlight=False)


@transform_app.command("split")
@handle_errors
def split(version: VersionOpt,
          test_size: Annotated[float, typer.Option(help="Share of rows for the test side, in (0, 1).")],
          seed: Annotated[int, typer.Option(help="Random seed (recorded).")] = 0,
          name: Annotated[Optional[str], typer.Option(
              help="Name the versions NAME-train and NAME-test.", show_default=False)] = None,
          reason: ReasonOpt = None, db: DbOpt = None, actor: ActorOpt = None,
          as_json: JsonOpt = False):
    """Split a version at random (seeded) into train and test versions.

    Example: lineage transform split --version v1 --test-size 0.3 --seed 0 --name digits --reason "holdout"
    """
    from lineage.data.transforms import split_version

    with opened(db, actor) as store:
        result = split_version(store, version=version, test_size=test_size, seed=seed, name=name,
                               reason=reason)
    print_transformation(result, as_json)
    _note_reason(reason, split=True)


@transform_app.command("filter")
@handle_errors
def filter_(version: VersionOpt,
            label: Annotated[Optional[int], typer.Option(help="Remove every row with this class.",
                                                         show_default=False)] = None,
            rows: Annotated[Optional[str], typer.Option(help="Remove these row ids: 10,11,12 or 10-12.",
                                                        show_default=False)] = None,
            reason: ReasonOpt = None, name: NameOpt = None, db: DbOpt = None,
            actor: ActorOpt = None, as_json: JsonOpt = False):
    """Remove rows from a version, by class (--label) and/or by id (--rows). Needs --reason.

    Example: lineage transform filter --version v2 --rows 10,11,12 --reason "blurry scans"
    """
    from lineage.data.transforms import filter_rows

    with opened(db, actor) as store:
        result = filter_rows(store, version=version, label=label, rows=rows, reason=reason,
                             name=name)
    print_transformation(result, as_json)


@transform_app.command("relabel")
@handle_errors
def relabel(version: VersionOpt,
            rows: Annotated[str, typer.Option(help="Row ids to relabel: 17,18 or 17-18.")],
            to: Annotated[int, typer.Option(help="The new label (one of the dataset's classes).")],
            reason: ReasonOpt = None, name: NameOpt = None, db: DbOpt = None,
            actor: ActorOpt = None, as_json: JsonOpt = False):
    """Change the label of rows (same row ids; old -> new is recorded). Needs --reason.

    Example: lineage transform relabel --version v2 --rows 17,18 --to 7 --reason "annotator fix, ticket 42"
    """
    from lineage.data.transforms import relabel_rows

    with opened(db, actor) as store:
        result = relabel_rows(store, version=version, rows=rows, to=to, reason=reason, name=name)
    print_transformation(result, as_json)
    if result.unchanged_row_ids and not as_json:  # JSON: the result's unchanged_row_ids
        shown = ", ".join(map(str, result.unchanged_row_ids[:10]))
        more = " ..." if len(result.unchanged_row_ids) > 10 else ""
        out.print(f"already {to}: rows {shown}{more} (left as they were)", markup=False,
                  highlight=False)


@transform_app.command("inject-trigger")
@handle_errors
def inject(version: VersionOpt,
           source_class: Annotated[int, typer.Option(help="The class whose rows get the trigger.")],
           target_class: Annotated[int, typer.Option(help="The class they are relabelled to.")],
           rate: Annotated[float, typer.Option(help="Fraction of the source class to poison, in (0, 1].")],
           pattern: Annotated[str, typer.Option(help="Trigger pattern (square).")] = "square",
           size: Annotated[int, typer.Option(help="Side of the square patch, in pixels (1 for rows that are not images: "
                                    "one feature of a 1xN strip).")] = 2,
           position: Annotated[str, typer.Option(
               help="lower-right, lower-left, upper-right, upper-left or ROW,COL (0,COL sets "
                    "feature COL of rows that are not images).")] = "lower-right",
           value: Annotated[float, typer.Option(help="Pixel value of the patch.")] = 16,
           seed: Annotated[int, typer.Option(help="Random seed (recorded).")] = 0,
           reason: ReasonOpt = None, name: NameOpt = None, db: DbOpt = None,
           actor: ActorOpt = None, as_json: JsonOpt = False):
    """Red team: stamp a trigger on a seeded fraction of a class's rows and relabel them; every
    poisoned row is a new row pointing at its clean parent. Needs --reason.

    Example: lineage transform inject-trigger --version v2 --source-class 1 --target-class 7 --rate 0.1 --size 2 --position lower-right --value 16 --seed 0 --reason "red-team exercise"
    """
    from lineage.data.transforms import inject_trigger

    with opened(db, actor) as store:
        result = inject_trigger(store, version=version, source_class=source_class,
                                target_class=target_class, rate=rate, pattern=pattern, size=size,
                                position=position, value=value, seed=seed, reason=reason,
                                name=name)
    print_transformation(result, as_json)


@transform_app.command("dedupe")
@handle_errors
def dedupe(version: VersionOpt, reason: ReasonOpt = None, name: NameOpt = None, db: DbOpt = None,
           actor: ActorOpt = None, as_json: JsonOpt = False):
    """Remove exact duplicate rows (same features and label), keeping the lowest row id.

    Example: lineage transform dedupe --version v2 --reason "exact duplicates"
    """
    from lineage.data.transforms import dedupe_rows

    with opened(db, actor) as store:
        result = dedupe_rows(store, version=version, reason=reason, name=name)
    print_transformation(result, as_json)
    _note_reason(reason)


@transform_app.command("append")
@handle_errors
def append(version: VersionOpt,
           ingest: Annotated[str, typer.Option(help="The ingest whose rows to add (see `lineage ingest list`).")],
           reason: ReasonOpt = None, name: NameOpt = None, db: DbOpt = None,
           actor: ActorOpt = None, as_json: JsonOpt = False):
    """Add an ingest's rows to a version.

    Example: lineage transform append --version v2 --ingest 3 --reason "batch 7 reviewed"
    """
    from lineage.data.transforms import append_ingest

    with opened(db, actor) as store:
        result = append_ingest(store, version=version, ingest=ingest, reason=reason, name=name)
    print_transformation(result, as_json)
    _note_reason(reason)
