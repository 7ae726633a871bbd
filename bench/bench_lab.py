"""Benchmark the poisoning lab: `lineage demo --quick` wall time, and a detector scan of a big
store (rows/s), with the scan's precision and recall on the poisoned rows it contains.

    python bench/bench_lab.py                    # quick demo + scan of 1,000,000 rows
    python bench/bench_lab.py --rows 100000 --skip-demo

Data for the scan: scikit-learn digits rows drawn with replacement (seeded), each pixel nudged by
+-1 with probability 0.1 (clipped to 0..16), stored as uint8; 5% of the digit-1 rows get the
reference trigger (2x2 lower-right at 16) and label 7. The rows are ingested into a new SQLite
store (timed apart), then ``lineage.scan_version(store, "v1")`` runs: it reads the version back
(digest-verified), runs every detector, combines, and records the scan event.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lineage.lab.experiment import LabSettings
from lineage.poison.triggers import stamp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def digit_like(n: int, seed: int = 0):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(X), n)
    Xb, yb = X[pick], y[pick].copy()
    Xb = np.clip(Xb + rng.integers(-1, 2, Xb.shape) * (rng.random(Xb.shape) < 0.1), 0, 16)
    ones = np.flatnonzero(yb == 1)
    poisoned = np.sort(rng.choice(ones, len(ones) // 20, replace=False))
    Xb[poisoned] = stamp(Xb[poisoned], LabSettings().trigger, (8, 8))
    yb[poisoned] = 7
    return Xb.astype(np.uint8), yb, poisoned


def bench_demo() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "lineage.cli.main", "demo", "--quick", "--out",
                               "results/poisoning-results.csv"], cwd=tmp, capture_output=True,
                              text=True)
        seconds = time.perf_counter() - start
        if proc.returncode:
            raise SystemExit(f"demo failed: {proc.stderr}")
    return {"demo_quick_seconds": round(seconds, 2)}


def bench_scan(n: int) -> dict:
    from lineage import add_source, ingest_arrays, open_store, scan_version

    X, y, poisoned = digit_like(n)
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/lineage.db", actor="bench")
        add_source(store, "bench", kind="internal", uri="bench:digit-like", license="none")
        start = time.perf_counter()
        info = ingest_arrays(store, X, y, source="bench", dataset="digits", value_range=(0, 16),
                             image_shape="8x8")
        ingest_s = time.perf_counter() - start
        start = time.perf_counter()
        record = scan_version(store, f"v{info.version_id}")
        scan_s = time.perf_counter() - start
        store.close()
    flagged = np.array(sorted(r.row_id for r in record.flagged)) - info.first_row_id
    truth = set(poisoned.tolist())
    tp = len(truth & set(flagged.tolist()))
    return {"rows": n, "poisoned_rows": len(truth), "ingest_seconds": round(ingest_s, 2),
            "scan_seconds": round(scan_s, 2), "scan_rows_per_s": round(n / scan_s),
            "flagged": len(flagged), "precision": round(tp / max(len(flagged), 1), 4),
            "recall": round(tp / max(len(truth), 1), 4),
            "per_detector_flags": {k: v["flagged"] for k, v in record.detectors.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--skip-scan", action="store_true")
    args = parser.parse_args()
    report = {"cpus": os.cpu_count(), "load_average": os.getloadavg()[0]}
    if not args.skip_demo:
        report.update(bench_demo())
        print(f"lineage demo --quick: {report['demo_quick_seconds']} s", flush=True)
    if not args.skip_scan:
        scan = bench_scan(args.rows)
        report.update(scan)
        print(f"scan of {scan['rows']:,} rows: {scan['scan_seconds']} s = {scan['scan_rows_per_s']:,} "
              f"rows/s (ingest {scan['ingest_seconds']} s); flagged {scan['flagged']}, precision "
              f"{scan['precision']}, recall {scan['recall']} on {scan['poisoned_rows']} poisoned rows; "
              f"per detector {scan['per_detector_flags']}", flush=True)
    print(f"(load average {report['load_average']:.1f} on {report['cpus']} cores)")


if __name__ == "__main__":
    main()
