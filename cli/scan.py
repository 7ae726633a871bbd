"""`lineage scan`: run the poisoned-row detectors on a version or snapshot (recorded)."""

from typing import Annotated, Optional

import typer

from lineage.cli.common import (
    ActorOpt,
    DbOpt,
    JsonOpt,
    LimitOpt,
    deferred_help,
    handle_errors,
    more,
    opened,
    out,
    print_json,
    print_table,
    progress_bar,
    shorten,
    shown,
)


def detector_names() -> str:
    from lineage.poison.detectors import DETECTORS

    return ", ".join(DETECTORS)


ScanCommand = deferred_help(detectors=detector_names)


def _row(r) -> dict:
    return {"row_id": r.row_id, "label": r.label, "detectors": list(r.detectors), "score": r.score,
            "pvalue": r.pvalue, "pvalues": r.pvalues, "evidence": r.evidence}


@handle_errors
def scan_command(
        ref: Annotated[str, typer.Argument(help="A snapshot name, or a version (v7, 7 or its name).")],
        detector: Annotated[Optional[list[str]], typer.Option(
            "--detector", help="Run only this detector (repeatable): {detectors}.",
            show_default=False)] = None,
        seed: Annotated[int, typer.Option(help="Seed of the detectors' random steps.")] = 0,
        show_all: Annotated[bool, typer.Option(
            "--all", help="Also list rows flagged below the combined cut.")] = False,
        limit: LimitOpt = 20, db: DbOpt = None, actor: ActorOpt = None, as_json: JsonOpt = False):
    """Run the detectors (abnormal pixel blocks, shared patch, label disagreement, duplicates,
    spectral signatures, trigger scan) on a version or snapshot and record the scan as an event;
    list the flagged rows with which detectors flagged them and why.

    Example: lineage scan v7
    """
    from lineage.lab.audit import scan_version

    with opened(db, actor) as store, progress_bar(f"scanning {ref}") as bar:
        # on a terminal the bar moves after each detector; elsewhere bar is None (no output)
        record = scan_version(store, ref, detectors=detector, seed=seed, progress=bar)
    if as_json:
        print_json({"event": record.event_id, "target": record.target, "snapshot": record.snapshot,
                    "version": record.version_id, "content_digest": record.content_digest,
                    "n_rows": record.n_rows, "params": record.params,
                    "detectors": record.detectors,
                    "flagged": [_row(r) for r in record.flagged],
                    "noted": [_row(r) for r in record.noted]})
        return
    listed = record.flagged + (record.noted if show_all else [])
    print_table(f"scan of {record.target} ({record.n_rows} rows; event {record.event_id}): "
                f"{len(record.flagged)} flagged",
                ["row", "label", "score", "detectors", "why"],
                [[r.row_id, r.label, r.score, ", ".join(r.detectors),
                  shorten(" | ".join(f"{d}: {t}" for d, t in r.evidence.items()))]
                 for r in shown(listed, limit)])
    more(len(listed), limit)
    out.print("per detector: " + ", ".join(f"{k} {v['flagged']}" for k, v in record.detectors.items())
              + (f"; {len(record.noted)} more rows flagged below the combined cut (general "
                 "detectors that do not agree enough; --all lists them)"
                 if record.noted and not show_all else ""),
              markup=False, highlight=False)
