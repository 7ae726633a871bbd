"""The lab's outputs: the results CSV and the clean-accuracy / ASR plot, each written whole or
not at all."""

from __future__ import annotations

import csv
import math
import os
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from lineage.errors import BadInputError
from lineage.lab.experiment import LabRow, LabSettings
from lineage.poison.detectors import DETECTORS
from lineage.store.files import write_atomically


def check_output(path: Optional[str | os.PathLike], what: str = "--out",
                 example: str = "results/sweep.csv") -> Optional[Path]:
    """Check up front that ``path`` can be written: its folder exists or can be made, and a file
    can be created in it. The probe (and any folder it had to make) is removed again.
    ``example`` is the file name a refusal suggests."""
    if path is None:
        return None
    path = Path(path)
    if str(path).strip() in ("", ".") or path.is_dir():
        raise BadInputError(f"{what} {path}: is a folder; give a file name, e.g. "
                            f"{path / Path(example).name if path.is_dir() else example}")
    folder = path.parent
    missing = []
    probe = folder
    while not probe.exists() and probe.parent != probe:
        missing.append(probe)
        probe = probe.parent
    if not probe.is_dir():
        raise BadInputError(f"{what} {path}: {probe} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise BadInputError(f"{what} {path}: the folder {folder} cannot be written "
                            f"({exc.strerror or exc})") from None
    finally:
        for made in missing:  # deepest first
            try:
                made.rmdir()
            except OSError:
                pass
    return path


CSV_COLUMNS = (
    ["scenario", "estimator", "seed", "source_fraction", "poison_rate", "poisoned_rows",
     "training_rows", "clean_accuracy", "trigger_attack_success_rate", "provenance_coverage",
     "trigger_visibility", "gate", "worst_scanned_trigger", "worst_scanned_asr",
     "combined_precision", "combined_recall", "combined_f1"]
    + [f"{d}_{m}" for d in DETECTORS for m in ("precision", "recall")]
    + ["snapshot", "model", "scan_event"])


def csv_record(row: LabRow, settings: LabSettings) -> dict:
    """A LabRow as a CSV record (``CSV_COLUMNS``); undefined values are empty."""
    record = {"scenario": row.scenario, "estimator": settings.estimator, "seed": settings.seed,
              "source_fraction": row.source_fraction, "poison_rate": round(row.poison_rate, 6),
              "poisoned_rows": row.poisoned_rows, "training_rows": row.training_rows,
              "clean_accuracy": round(row.clean_accuracy, 6),
              "trigger_attack_success_rate": round(row.trigger_attack_success_rate, 6),
              "provenance_coverage": row.provenance_coverage,
              "trigger_visibility": row.trigger_visibility, "gate": row.gate,
              "worst_scanned_trigger": row.worst_scanned_trigger,
              "worst_scanned_asr": row.worst_scanned_asr, "snapshot": row.snapshot,
              "model": row.model, "scan_event": row.scan_event}
    for name, d in row.detection.items():
        record[f"{name}_precision"] = d.precision
        record[f"{name}_recall"] = d.recall
        if name == "combined":
            record["combined_f1"] = d.f1
    return {k: ("" if record.get(k) is None or (isinstance(record.get(k), float) and math.isnan(record[k]))
                else (round(record[k], 6) if isinstance(record[k], float) else record[k]))
            for k in CSV_COLUMNS}


def write_csv(path: str | os.PathLike, rows: Sequence[LabRow], settings: LabSettings) -> Path:
    """Write the rows as CSV (``CSV_COLUMNS``), atomically."""
    path = Path(path)

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            for row in rows:
                writer.writerow(csv_record(row, settings))

    write_atomically(path, write)
    return path


def write_plot(path: str | os.PathLike, rows: Sequence[LabRow], settings: LabSettings) -> Path:
    """Clean accuracy and ASR against poison rate (needs matplotlib: the `plot` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BadInputError("--plot needs matplotlib: pip install 'lineage-store[plot]'") from None
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for scenario in sorted({r.scenario for r in rows}):
        mine = sorted((r for r in rows if r.scenario == scenario), key=lambda r: r.poison_rate)
        x = [r.poison_rate for r in mine]
        tag = "" if len({r.scenario for r in rows}) == 1 else f" (scenario {scenario})"
        ax.plot(x, [r.clean_accuracy for r in mine], "o-", label="clean accuracy" + tag)
        ax.plot(x, [r.trigger_attack_success_rate for r in mine], "s--",
                label="attack success rate" + tag)
    # The x axis is the share of all training rows (the CSV's poison_rate), not --rates, which
    # is the share of the source class's rows (the table's "1s poisoned").
    ax.set_xlabel("poison rate (poisoned rows / all training rows)")
    ax.set_ylabel("clean accuracy and ASR (0 to 1)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"digits, {settings.trigger.describe()} on {settings.source_class} -> "
                 f"{settings.target_class}, {settings.estimator}, seed {settings.seed}")
    ax.grid(alpha=0.3)
    ax.legend(loc="center right")
    fig.tight_layout()

    def write(tmp: Path) -> None:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=120)

    try:
        write_atomically(path, write)
    except ValueError as exc:  # an unknown image format
        raise BadInputError(f"--plot {path}: {exc}") from None
    finally:
        plt.close(fig)
    return path
