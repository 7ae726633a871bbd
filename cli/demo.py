"""`lineage demo`: the poisoning lab through the store (see ``lineage.lab``)."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from lineage.cli.common import (
    Estimator,
    JsonOpt,
    cell,
    deferred_help,
    handle_errors,
    out,
    print_json,
    print_table,
    progress_bar,
)
from lineage.errors import BadInputError


def default_rates() -> str:
    from lineage.lab.experiment import DEFAULT_RATES

    return ",".join(f"{r:g}" for r in DEFAULT_RATES)


DemoCommand = deferred_help(default_rates=default_rates)

DemoDbOpt = Annotated[Optional[str], typer.Option(
    "--db", help="The demo's store [default: sqlite:///lineage-demo.db in the working folder; "
                 "never $LINEAGE_DB].", show_default=False)]


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
            help="Write a picture of clean accuracy and ASR against the poison rate (needs the "
                 "plot extra: matplotlib).",
            show_default=False)] = None,
        db: DemoDbOpt = None, as_json: JsonOpt = False):
    """Run the poisoning lab in a store of its own (./lineage-demo.db; your store, keys and
    policy are never touched): ingest digits, split, per rate an inject-trigger
    transformation, a snapshot, the approval gates, training and the metrics; then (unless
    --quick) scenario 2, an upstream source that delivers poisoned rows with no record of it.
    Prints a table and the lesson; every step is recorded in the demo's store, signed with the
    demo's own keys (in lineage-demo/ beside it). Bad options exit 2 before anything is written.

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
            raise BadInputError("--plot needs matplotlib: pip install 'lineage-store[plot]'") from None
    _run(settings, quick, csv_path, plot_path, db, as_json)


def _run(settings, quick, csv_path, plot_path, db, as_json) -> None:
    from lineage.lab.demo import run_demo
    from lineage.lab.output import csv_record, write_csv, write_plot

    with progress_bar("poisoning lab") as update:
        progress = None if update is None else (
            lambda message, done, total: update(done, total, message))
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
    src = settings.source_class
    rows = []
    for r in report.rows:
        c = r.detection.get("combined")
        rows.append([r.scenario, f"{r.source_fraction:.0%}",
                     f"{r.poisoned_rows} ({r.poison_rate:.1%})", r.clean_accuracy,
                     r.trigger_attack_success_rate, r.gate,
                     f"{cell(c.precision)}/{cell(c.recall)}" if c else "-",
                     f"{r.worst_scanned_trigger} ({cell(r.worst_scanned_asr)})",
                     r.provenance_coverage, r.trigger_visibility, r.model])
    print_table(f"{report.tag}: poisoning lab in {report.db} ({settings.estimator}, seed "
                f"{settings.seed}, trigger {settings.trigger.describe()}, {src} -> "
                f"{settings.target_class}, {report.seconds:.1f} s)",
                ["scenario", f"{src}s poisoned", "poisoned rows", "clean acc", "ASR", "gate",
                 "scan P/R", "model's worst trigger (ASR)", "coverage", "visibility", "model"],
                rows, drop=["model's worst trigger (ASR)", "visibility", "coverage", "model"])
    out.print(f"{src}s poisoned: the share of the training rows of class {src} given the trigger "
              f"(--rates); poisoned rows: how many, and their share of all training rows (the "
              f"plot's x axis, the CSV's poison_rate). ASR: triggered test {src}s predicted as "
              f"{settings.target_class}. scan P/R: the detectors' precision/recall.",
              markup=False, highlight=False)
    for line in report.lessons:
        out.print("")
        out.print(line, markup=False, highlight=False)
    if written:
        out.print("")
    for path in written:
        out.print(f"wrote {path}", markup=False, highlight=False)


demo_command = handle_errors(demo_command)
