"""`lineage demo`: the poisoning lab through the store (see ``lineage.lab``)."""

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from lineage.cli.common import (
    DbOpt,
    JsonOpt,
    cell,
    deferred_help,
    err,
    handle_errors,
    out,
    print_json,
    print_table,
)
from lineage.errors import BadInputError


def default_rates() -> str:
    from lineage.lab.experiment import DEFAULT_RATES

    return ",".join(f"{r:g}" for r in DEFAULT_RATES)


DemoCommand = deferred_help(default_rates=default_rates)


class Estimator(str, Enum):
    logistic = "logistic"
    mlp = "mlp"


def demo_command(
        quick: Annotated[bool, typer.Option(
            "--quick", help="Only the reference experiment (scenario 1, rates 0 and 0.1 unless "
                            "--rates): seconds instead of a minute.")] = False,
        rates: Annotated[Optional[str], typer.Option(
            help="Comma-separated source fractions in [0, 1): the share of the source class's "
                 "training rows to poison [default: {default_rates}].",
            show_default=False)] = None,
        estimator: Annotated[Estimator, typer.Option(help="The model trained on each snapshot.")]
        = Estimator.logistic,
        seed: Annotated[int, typer.Option(help="Seed of every random step (recorded).")] = 0,
        source_class: Annotated[int, typer.Option(help="Class whose rows get the trigger.")] = 1,
        target_class: Annotated[int, typer.Option(help="Class the triggered rows are relabelled to.")] = 7,
        size: Annotated[int, typer.Option(help="Trigger: side of the square patch.")] = 2,
        position: Annotated[str, typer.Option(help="Trigger: a corner (lower-right, ...) or ROW,COL.")]
        = "lower-right",
        value: Annotated[float, typer.Option(help="Trigger: pixel value of the patch (0..16).")] = 16.0,
        out_path: Annotated[Optional[Path], typer.Option(
            "--out", help="Write one CSV row per rate and scenario here.", show_default=False)] = None,
        plot: Annotated[Optional[Path], typer.Option(
            help="Write a picture of clean accuracy and ASR against poison rate (needs matplotlib).",
            show_default=False)] = None,
        db: DbOpt = None, as_json: JsonOpt = False):
    """Run the poisoning lab through the store: ingest digits, split, per rate an inject-trigger
    transformation, a snapshot, the approval gates, training and the metrics; then (unless
    --quick) scenario 2, an upstream source that delivers poisoned rows with no record of it.
    Prints a table and the lesson; every step is recorded in the store. Bad options exit 2
    before anything is written.

    Example: lineage demo --quick --out results/poisoning-results.csv
    """
    from lineage.lab.experiment import (
        DEFAULT_RATES,
        QUICK_RATES,
        LabSettings,
        check_settings,
        parse_rates,
    )
    from lineage.lab.output import check_output

    rate_list = parse_rates(rates) if rates is not None else (QUICK_RATES if quick else DEFAULT_RATES)
    settings = check_settings(LabSettings(
        rates=rate_list, estimator=estimator.value, seed=seed, source_class=source_class,
        target_class=target_class, size=size, position=position, value=value))
    csv_path = check_output(out_path, "--out")
    plot_path = check_output(plot, "--plot")
    if plot_path is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise BadInputError("--plot needs matplotlib: pip install 'lineage[plot]'") from None
    _run(settings, quick, csv_path, plot_path, db, as_json)


def _run(settings, quick, csv_path, plot_path, db, as_json) -> None:
    import sys

    from lineage.lab.demo import run_demo
    from lineage.lab.output import csv_record, write_csv, write_plot

    def progress(message: str) -> None:
        if sys.stderr.isatty():
            err.print(f"[dim]{message}[/]")

    report = run_demo(db, settings, quick=quick, progress=progress)
    written = []
    if csv_path is not None:
        written.append(str(write_csv(csv_path, report.rows, settings)))
    if plot_path is not None:
        written.append(str(write_plot(plot_path, report.rows, settings)))
    if as_json:
        print_json({"tag": report.tag, "db": report.db, "quick": report.quick,
                    "seconds": report.seconds,
                    "rows": [csv_record(r, settings) for r in report.rows],
                    "lessons": report.lessons, "scenario_1_audit": report.scenario_1_audit,
                    "scenario_2_audit": report.scenario_2_audit, "written": written})
        return
    rows = []
    for r in report.rows:
        c = r.detection.get("combined")
        rows.append([r.scenario, f"{r.source_fraction:g}", r.poisoned_rows, r.clean_accuracy,
                     r.trigger_attack_success_rate, r.gate,
                     f"{r.worst_scanned_trigger} ({cell(r.worst_scanned_asr)})",
                     r.provenance_coverage, r.trigger_visibility,
                     f"{cell(c.precision)}/{cell(c.recall)}" if c else "-", r.model])
    print_table(f"{report.tag}: poisoning lab on {report.db} ({settings.estimator}, seed "
                f"{settings.seed}, {settings.trigger.describe()} {settings.source_class}->"
                f"{settings.target_class}, {report.seconds:.1f} s)",
                ["scen.", "rate", "poisoned", "clean acc", "ASR", "gate", "model's worst trigger (ASR)",
                 "coverage", "visibility", "scan P/R", "model"],
                rows)
    for line in report.lessons:
        out.print(line, markup=False, highlight=False)
    for path in written:
        out.print(f"wrote {path}", markup=False, highlight=False)


demo_command = handle_errors(demo_command)
