"""`lineage source ...`: register sources and review them."""

from typing import Annotated, Optional

import typer

from lineage.cli.common import (
    ActorOpt,
    DbOpt,
    JsonOpt,
    TrustOpt,
    handle_errors,
    opened,
    print_json,
    print_record,
    print_table,
)
from lineage.data.kinds import SourceKind
from lineage.errors import BadInputError

source_app = typer.Typer(help="Register data sources and review them (approve, reject, revoke).",
                         no_args_is_help=True)


def _show(info, as_json: bool) -> None:
    if as_json:
        print_json(info)
    else:
        print_record(f"source {info.name}", [
            ("id", info.id), ("kind", info.kind), ("status", info.status),
            ("reviewed by", info.reviewed_by), ("uri", info.uri), ("license", info.license),
            ("owner", info.owner)])


@source_app.command("add")
@handle_errors
def add(
    name: Annotated[str, typer.Argument(help="A unique name for the source.")],
    kind: Annotated[SourceKind, typer.Option(help="Where the data comes from; every kind but "
                                             "internal starts quarantined.")] = SourceKind.internal,
    uri: Annotated[Optional[str], typer.Option(help="Where the data lives.")] = None,
    license: Annotated[Optional[str], typer.Option(help="The data's license (SPDX id).")] = None,
    owner: Annotated[Optional[str], typer.Option(help="Who answers for the data.")] = None,
    db: DbOpt = None, actor: ActorOpt = None, as_json: JsonOpt = False,
):
    """Register a source of rows.

    Example: lineage source add crowd-batch-7 --kind crowdsourced --uri s3://vendor/batch7.csv --license CC-BY-4.0
    """
    from lineage.data.sources import add_source

    with opened(db, actor, create=True) as store:
        _show(add_source(store, name, kind=kind.value, uri=uri, license=license, owner=owner), as_json)


@source_app.command("review")
@handle_errors
def review(
    name: Annotated[str, typer.Argument(help="The source to review.")],
    approve: Annotated[bool, typer.Option("--approve", help="Approve the source.")] = False,
    reject: Annotated[bool, typer.Option("--reject", help="Reject the source.")] = False,
    revoke: Annotated[bool, typer.Option("--revoke", help="Revoke an earlier approval.")] = False,
    reason: Annotated[Optional[str], typer.Option(help="Why (required to reject or revoke).")] = None,
    db: DbOpt = None, actor: ActorOpt = None, trust: TrustOpt = None, as_json: JsonOpt = False,
):
    """Record a review of a source: exactly one of --approve, --reject, --revoke.

    Example: lineage source review crowd-batch-7 --approve --reason "license checked" --as reviewer
    """
    from lineage.review.source_reviews import review_source

    chosen = [d for d, on in (("approve", approve), ("reject", reject), ("revoke", revoke)) if on]
    if len(chosen) != 1:
        raise BadInputError("give exactly one of --approve, --reject, --revoke")
    with opened(db, actor, trust=trust) as store:
        _show(review_source(store, name, decision=chosen[0], reason=reason), as_json)


@source_app.command("list")
@handle_errors
def list_(db: DbOpt = None, as_json: JsonOpt = False):
    """List sources with their status (from their newest review).

    Example: lineage source list --json
    """
    from lineage.data.sources import list_sources

    with opened(db) as store:
        sources = list_sources(store)
    if as_json:
        print_json(sources)
    else:
        print_table("sources", ["id", "name", "kind", "status", "reviewed by", "uri", "license", "owner"],
                    [[s.id, s.name, s.kind, s.status, s.reviewed_by, s.uri, s.license, s.owner]
                     for s in sources], drop=["id", "owner", "uri", "reviewed by", "license"])
