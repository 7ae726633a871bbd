"""`lineage audit ...`: which rows behind a model were poisoned; which source carries a backdoor."""

from typing import Annotated, Optional

import typer

from lineage.cli.common import (
    ActorOpt,
    DbOpt,
    Estimator,
    JsonOpt,
    LimitOpt,
    cell,
    handle_errors,
    more,
    opened,
    out,
    plain,
    print_json,
    print_table,
    progress_bar,
    shorten,
    shown,
)

audit_app = typer.Typer(help="Audit poisoning: the poisoned rows behind a model, the source "
                             "behind a backdoor.", no_args_is_help=True)


@audit_app.command("poisoned")
@handle_errors
def poisoned(model: Annotated[str, typer.Option("--model", help="A model version, NAME:NUMBER.")],
             scan: Annotated[bool, typer.Option(
                 "--scan/--no-scan", help="Also run (and record) the detectors on its snapshot.")] = True,
             seed: Annotated[int, typer.Option(help="Seed of the detectors.")] = 0,
             limit: LimitOpt = 20, db: DbOpt = None, actor: ActorOpt = None, as_json: JsonOpt = False):
    """List the rows behind a model version that were poisoned, and how we know: from the records
    (trigger injections, edits made outside the store, label changes by actors who review
    nothing) and from the detectors (a recorded scan of the model's snapshot).

    Example: lineage audit poisoned --model digits-clf:3
    """
    from lineage.lab.audit import audit_poisoned

    with opened(db, actor) as store, progress_bar(f"auditing {model}"):
        audit = audit_poisoned(store, model, scan=scan, seed=seed)
    if as_json:
        print_json(audit)
        return
    print_table(f"model {audit.model}: snapshot {audit.snapshot} (v{audit.version_id}, "
                f"{audit.n_rows} rows): {len(audit.from_records)} rows implicated by records, "
                f"{len(audit.from_detectors)} flagged by detectors",
                ["row", "label", "records", "detectors", "why"],
                [[r.row_id, r.label, "yes" if r.records else "-", ", ".join(r.detectors) or "-",
                  shorten(" | ".join(list(r.records) + [f"{d}: {t}" for d, t in r.evidence.items()]))]
                 for r in shown(audit.rows, limit)])
    more(len(audit.rows), limit)
    if audit.scan_event:
        out.print(f"scan recorded as event {audit.scan_event}", markup=False, highlight=False)
    if audit.earlier_scans:
        out.print("earlier scans of this snapshot: " + ", ".join(
            f"event {s['event']} ({s['flagged']} flagged)" for s in audit.earlier_scans),
            markup=False, highlight=False)


@audit_app.command("sources")
@handle_errors
def sources(version: Annotated[str, typer.Option("--version", help="A version (v7) or snapshot name.")],
            estimator: Annotated[Optional[Estimator], typer.Option(
                help="Estimator of the shadow models [default: the policy's].",
                show_default=False)] = None,
            seed: Annotated[Optional[int], typer.Option(
                help="Seed of the shadow models [default: the policy's].", show_default=False)] = None,
            db: DbOpt = None, actor: ActorOpt = None, as_json: JsonOpt = False):
    """Per-source shadow evaluation: retrain without each source and name the source whose
    removal collapses the attack success rate of the worst scanned trigger (recorded).

    Example: lineage audit sources --version v7
    """
    from lineage.lab.audit import audit_sources

    with opened(db, actor) as store, progress_bar(f"retraining without each source of {version}"):
        audit = audit_sources(store, version, estimator=estimator and estimator.value, seed=seed)
    if as_json:
        data = plain(audit)
        print_json(data)
        return
    print_table(f"{audit.target}: worst scanned trigger {audit.worst_trigger} ASR "
                f"{audit.worst_asr:.4f} with every source (clean accuracy {audit.clean_accuracy:.4f}; "
                f"{audit.estimator}, seed {audit.seed}, evaluated on {audit.evaluation_snapshot}). "
                "Without each source in turn:",
                ["source", "kind", "status", "rows", "that ASR", "clean acc", "worst trigger",
                 "suspect"],
                [[f.source or "(outside the store)", f.kind, f.status, f.rows, f.trigger_asr_without,
                  f.clean_accuracy_without,
                  f"{f.worst_trigger_without} ({cell(f.worst_asr_without)})"
                  if f.worst_trigger_without else "-",
                  "SUSPECT" if f.suspect else ""] for f in audit.sources],
                drop=["kind", "status", "worst trigger"])
    suspects = [f.source for f in audit.sources if f.suspect]
    out.print(("suspect: " + ", ".join(str(s) for s in suspects)) if suspects else
              "no source's removal collapses the worst trigger's ASR",
              markup=False, highlight=False)
