"""`lineage coverage VERSION`: provenance coverage and why each uncovered row is uncovered."""

from typing import Annotated

import typer

from lineage.cli.common import DbOpt, JsonOpt, handle_errors, opened, out, print_json, print_table


@handle_errors
def coverage(version: Annotated[str, typer.Argument(help="A version: id (v5 or 5) or name.")],
             db: DbOpt = None, as_json: JsonOpt = False):
    """Provenance coverage of a version: the share of rows whose whole history is known (source
    with uri, license and approval; ingest with digest and actor; every transformation with actor,
    reason and code identity; no external edit), with the count of rows per reason.

    Example: lineage coverage v5
    """
    from lineage.data.coverage import get_coverage

    with opened(db) as store:
        report = get_coverage(store, version)
    if as_json:
        print_json(report)
        return
    out.print(f"v{report.version_id}: {report.coverage:.1%} covered ({report.n_covered} of "
              f"{report.n_rows} rows)")
    if report.breakdown:
        print_table("uncovered rows by reason", ["reason", "rows", "e.g. rows"],
                    [[r, n, ", ".join(map(str, report.examples.get(r, [])))]
                     for r, n in report.breakdown.items()])
