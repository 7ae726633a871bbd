"""`lineage ingest ...`: append raw rows from a file or from scikit-learn's digits."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from lineage.cli.common import (
    ActorOpt,
    DbOpt,
    JsonOpt,
    handle_errors,
    opened,
    plain,
    print_json,
    print_record,
    print_table,
    progress_bar,
)
from lineage.cli.transform import print_transformation
from lineage.errors import BadInputError

ingest_app = typer.Typer(help="Append raw rows (append-only) from a source, or list ingests.",
                         no_args_is_help=True)

SourceOpt = Annotated[str, typer.Option("--source", help="The registered source the rows come from.")]
DatasetOpt = Annotated[Optional[str], typer.Option(
    "--dataset", help="The dataset to append to, made by its first ingest [default: the store's "
                      "only dataset; in an empty store, one named after the source].",
    show_default=False)]
RangeOpt = Annotated[Optional[str], typer.Option(
    "--value-range", help="A new dataset's allowed feature range, MIN:MAX (e.g. 0:16).")]
ShapeOpt = Annotated[Optional[str], typer.Option(
    "--image-shape", help="A new dataset's image shape HxW [default: square when the feature count is].")]


def dataset_schema(value_range: Optional[str], image_shape: Optional[str]) -> dict:
    schema: dict = {"image_shape": image_shape}
    if value_range is not None:
        try:
            lo, hi = (float(p) for p in value_range.split(":"))
        except ValueError:
            raise BadInputError(f"--value-range {value_range!r}: write it as MIN:MAX, e.g. 0:16") from None
        schema["value_range"] = (lo, hi)
    return schema


def _report(info, as_json: bool) -> None:
    if as_json:
        print_json(_plain_ingest(info))
    else:
        print_record(f"ingest {info.id}", [
            ("dataset", info.dataset), ("source", info.source), ("rows", info.n_rows),
            ("row ids", _id_range(info)), ("version", f"v{info.version_id}"),
            ("file", info.file_name), ("file sha256", info.file_sha256)])


def _id_range(info) -> str:
    return f"{info.first_row_id}..{info.first_row_id + info.n_rows - 1}"


def _plain_ingest(info) -> dict:
    # Row ids are contiguous: first_row_id..last_row_id names every one of them.
    return {**plain(info), "last_row_id": info.first_row_id + info.n_rows - 1}


@ingest_app.command("digits")
@handle_errors
def digits(dataset: Annotated[str, typer.Option(help="Dataset name.")] = "digits",
           db: DbOpt = None, actor: ActorOpt = None, as_json: JsonOpt = False):
    """Ingest scikit-learn's digits (1797 8x8 images, values 0..16) from source sklearn-digits,
    registering that source (internal, BSD-3-Clause) if needed.

    Example: lineage ingest digits
    """
    from lineage.data.ingest import ingest_digits

    with opened(db, actor, create=True) as store, progress_bar("ingesting digits") as progress:
        _report(ingest_digits(store, dataset=dataset, progress=progress), as_json)


@ingest_app.command("csv")
@handle_errors
def csv(path: Annotated[Path, typer.Argument(help="CSV file with a header line.")],
        source: SourceOpt, label_column: Annotated[str, typer.Option(help="The label column.")] = "label",
        dataset: DatasetOpt = None, value_range: RangeOpt = None, image_shape: ShapeOpt = None,
        as_version_of: Annotated[Optional[str], typer.Option(
            "--as-version-of", help="The file is a copy of this version edited outside the store: "
            "record the differences as an unattributed external edit.", show_default=False)] = None,
        row_id_column: Annotated[Optional[str], typer.Option(
            help="With --as-version-of: the column holding row ids (rows matched by position "
                 "when the file has none; blank = a new row) [default: row_id].",
            show_default=False)] = None,
        name: Annotated[Optional[str], typer.Option(
            help="With --as-version-of: a name for the version the edit makes.",
            show_default=False)] = None,
        db: DbOpt = None, actor: ActorOpt = None, as_json: JsonOpt = False):
    """Ingest a CSV file: every column but the label column is a feature. With --as-version-of,
    the file is diffed against that version and the changes recorded as an "external edit".

    Example: lineage ingest csv batch7.csv --source crowd-batch-7 --label-column label
    """
    if as_version_of is not None:
        from lineage.data.external_edit import import_external_edit

        ignored = [flag for flag, given in (("--dataset", dataset), ("--value-range", value_range),
                                            ("--image-shape", image_shape)) if given is not None]
        if ignored:
            raise BadInputError(f"{ignored[0]} cannot be used with --as-version-of: an edited "
                                "copy belongs to that version's dataset and schema")
        with opened(db, actor) as store:
            result = import_external_edit(
                store, path, as_version_of=as_version_of, source=source,
                label_column=label_column, row_id_column=row_id_column or "row_id", name=name,
                require_row_ids=row_id_column is not None)
        print_transformation(result, as_json)
        return
    for flag, given in (("--name", name), ("--row-id-column", row_id_column)):
        if given is not None:
            raise BadInputError(f"{flag} is for an edited copy: use it with --as-version-of "
                                "(an ingest makes a root version of raw rows)")
    from lineage.data.ingest import ingest_csv

    schema = dataset_schema(value_range, image_shape)
    with opened(db, actor, create=True) as store, progress_bar(f"ingesting {path.name}") as progress:
        _report(ingest_csv(store, path, source=source, label_column=label_column, dataset=dataset,
                           progress=progress, **schema), as_json)


@ingest_app.command("npz")
@handle_errors
def npz(path: Annotated[Path, typer.Argument(help=".npz file with arrays X (n, d) and y (n,).")],
        source: SourceOpt, dataset: DatasetOpt = None, value_range: RangeOpt = None,
        image_shape: ShapeOpt = None, db: DbOpt = None, actor: ActorOpt = None,
        as_json: JsonOpt = False):
    """Ingest a NumPy .npz file holding X of shape (n_samples, n_features) and y of shape (n_samples,).

    Example: lineage ingest npz arrays.npz --source crowd-batch-7
    """
    from lineage.data.ingest import ingest_npz

    schema = dataset_schema(value_range, image_shape)
    with opened(db, actor, create=True) as store, progress_bar(f"ingesting {path.name}") as progress:
        _report(ingest_npz(store, path, source=source, dataset=dataset, progress=progress, **schema),
                as_json)


@ingest_app.command("list")
@handle_errors
def list_(db: DbOpt = None, as_json: JsonOpt = False):
    """List ingests: source, dataset, row ids assigned, file digest, actor, time.

    Example: lineage ingest list --json
    """
    from lineage.data.ingest import list_ingests

    with opened(db) as store:
        ingests = list_ingests(store)
    if as_json:
        print_json([_plain_ingest(i) for i in ingests])
    else:
        print_table("ingests", ["id", "dataset", "source", "rows", "row ids", "version", "actor",
                                "at", "file", "sha256"],
                    [[i.id, i.dataset, i.source, i.n_rows, _id_range(i), f"v{i.version_id}",
                      i.actor, i.created_at, i.file_name, i.file_sha256[:12]] for i in ingests],
                    drop=["sha256", "at", "file", "actor", "dataset"])
