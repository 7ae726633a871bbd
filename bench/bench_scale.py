"""Benchmark: one store end to end at scale, each step's time and peak memory.

    python bench/bench_scale.py --rows 10000000 [--db URL] [--work DIR] [--json]

Data: ``rows`` digit-like rows (scikit-learn's digits drawn with replacement, pixels nudged by
+-1 with probability 0.1, clipped to 0..16; 64 uint8 features, int64 labels), written once as
an .npz and as a CSV (fixed-width two-digit cells) in the work folder. Raw size = rows x (64 +
8) bytes. Steps, in order, each in a child process of its own (so its peak RSS is its own:
``os.wait4``'s ``ru_maxrss``), timed inside the child around the library call:

1. ingest-npz: ``ingest_npz`` into dataset ``digits`` (engineer);
2. ingest-csv: ``ingest_csv`` of the same rows into dataset ``digits-csv`` (the same store);
3. split: ``v1`` into ``scale-train`` and ``scale-test`` (2,000 rows: the evaluation rows);
4. relabel: 100 seeded rows of ``scale-train`` -> 7 (``relabelled``);
5. inject-trigger: class 1 -> 7 at rate 0.05 on ``relabelled`` (``poisoned``);
6. snapshot: ``create_snapshot`` of ``scale-train`` as ``train`` (the clean side: the label
   detector rightly refuses the 100 relabelled rows; the eval snapshot and the policy are made
   before, untimed);
7. approve: ``approve_snapshot(train)`` as the reviewer, every gate as shipped (when a gate
   refuses it, the verdict is reported and the approval is then recorded with the cheap gates,
   as bench_snapshots.py does, so that the steps after it can run);
8. load: ``load_snapshot(train)`` (signed approval, every chunk re-hashed);
9. train: ``train`` a logistic model on ``train`` (``max_iter`` 20);
10. trace: ``trace_row`` of a poisoned row and ``trace_model`` of the model;
11. scan: ``scan_version(poisoned)``, every detector;
12. verify: the whole store (chain, records, every chunk re-hashed, every content digest);
    verify-fast: the same without re-reading chunk payloads.

``--db`` runs against an empty database (e.g. a PostgreSQL schema); the default is an SQLite
file in the work folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

STEPS = ["generate", "setup", "ingest-npz", "ingest-csv", "split", "relabel", "inject-trigger",
         "prepare", "snapshot", "approve", "load", "train", "trace", "scan", "verify",
         "verify-fast"]
REPORTED = [s for s in STEPS if s not in ("generate", "setup", "prepare")]
BLOCK = 1_000_000


def digit_rows(n: int, seed: int = 0, start: int = 0):
    """Rows start..start+n of the seeded digit-like data (blocks are independent streams)."""
    from sklearn.datasets import load_digits

    base_X, base_y = load_digits(return_X_y=True)
    rng = np.random.default_rng([seed, start])
    pick = rng.integers(0, len(base_X), size=n)
    X = base_X[pick].astype(np.int16)
    nudge = rng.random(X.shape) < 0.1
    X[nudge] += rng.choice(np.array([-1, 1], dtype=np.int16), size=int(nudge.sum()))
    return np.clip(X, 0, 16).astype(np.uint8), base_y[pick].astype(np.int64)


def write_csv(path: Path, X: np.ndarray, y: np.ndarray, header: bool) -> None:
    """Fixed-width cells ("03,16,...,7\\n"), built as one byte array per block: np.savetxt
    would take minutes at 10M rows."""
    values = np.concatenate([X.astype(np.uint8), y.astype(np.uint8)[:, None]], axis=1)
    cells = np.empty((len(values), values.shape[1], 3), dtype=np.uint8)
    cells[:, :, 0] = values // 10 + 48
    cells[:, :, 1] = values % 10 + 48
    cells[:, :, 2] = 44
    cells[:, -1, 2] = 10
    with open(path, "ab") as f:
        if header:
            f.write((",".join([f"f{i}" for i in range(X.shape[1])] + ["label"]) + "\n").encode())
        f.write(cells.tobytes())


# ----------------------------------------------------------------------------- steps (child)

class AnonPeak:
    """Peak anonymous RSS (RssAnon: heap and arrays, not the pages of the SQLite file that reads
    map, which ru_maxrss also counts), sampled every 5 ms on a thread."""

    def __init__(self):
        import threading

        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(0.005):
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        self.peak = max(self.peak, int(line.split()[1]) * 1024)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak / 2**20


def run_step(step: str, work: Path, db: str, n: int) -> dict:
    from lineage.store.engine import open_store

    eng = open_store(db, actor="engineer")
    rev = open_store(db, actor="reviewer")
    out: dict = {}
    t = time.perf_counter()
    try:
        if step == "generate":
            Xs, ys = [], []
            (work / "rows.csv").unlink(missing_ok=True)
            for start in range(0, n, BLOCK):
                X, y = digit_rows(min(BLOCK, n - start), start=start)
                write_csv(work / "rows.csv", X, y, header=start == 0)
                Xs.append(X)
                ys.append(y)
            np.savez(work / "rows.npz", X=np.concatenate(Xs), y=np.concatenate(ys))
        elif step == "setup":
            from lineage.data.sources import add_source
            from lineage.review.source_reviews import review_source

            add_source(eng, "synthetic", kind="internal", uri="bench:digit_rows", license="CC0-1.0")
            review_source(rev, "synthetic", decision="approve", reason="bench")
        elif step == "ingest-npz":
            from lineage.data.ingest import ingest_npz

            ingest_npz(eng, work / "rows.npz", source="synthetic", dataset="digits",
                       value_range=(0, 16), image_shape="8x8")
        elif step == "ingest-csv":
            from lineage.data.ingest import ingest_csv

            ingest_csv(eng, work / "rows.csv", source="synthetic", dataset="digits-csv",
                       value_range=(0, 16), image_shape="8x8")
        elif step == "split":
            from lineage.data.transforms import split_version

            split_version(eng, version="v1", test_size=2000 / n, seed=0, name="scale",
                          reason="holdout")
        elif step == "relabel":
            from lineage.data.transforms import relabel_rows
            from lineage.data.versions import show_version

            rows = np.random.default_rng(1).choice(np.arange(1, n + 1), size=400, replace=False)
            with eng.read() as session:
                from lineage.data.datasets import find_version
                from lineage.data.deltas import chain_deltas, members_among

                rows = np.sort(rows)
                rows = rows[members_among(chain_deltas(session, find_version(session, "scale-train")),
                                          rows)][:100]
            t = time.perf_counter()
            relabel_rows(eng, version="scale-train", rows=rows, to=7, reason="bench",
                         name="relabelled")
            out["rows"] = len(rows)
            out["version"] = show_version(eng, "relabelled").id
        elif step == "inject-trigger":
            from lineage.data.transforms import inject_trigger

            r = inject_trigger(eng, version="relabelled", source_class=1, target_class=7,
                               rate=0.05, seed=0, reason="red team", name="poisoned")
            out["poisoned"] = len(r.poisoned_row_ids)
            (work / "poisoned.json").write_text(json.dumps(list(r.poisoned_row_ids[:5])))
        elif step == "prepare":
            from lineage.review.policy import set_policy
            from lineage.review.snapshots import create_snapshot

            create_snapshot(rev, "eval", version="scale-test")
            set_policy(rev, evaluation_snapshot="eval", reason="bench")
        elif step == "snapshot":
            from lineage.review.snapshots import create_snapshot

            create_snapshot(eng, "train", version="scale-train")
        elif step == "approve":
            from lineage.errors import GateFailedError
            from lineage.review.gates import approve_snapshot

            try:
                approve_snapshot(rev, "train", reason="bench")
                out["passed"] = True
            except GateFailedError as exc:
                out["passed"] = False
                out["error"] = str(exc)
                out["seconds"] = time.perf_counter() - t
                # The approval's own peak, before the fallback below reads the snapshot again.
                import resource

                out["verdict_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                # So that load and train can be measured: the approval recorded with the cheap
                # gates, signed as approve_snapshot signs (bench_snapshots.record_approval).
                from bench_snapshots import record_approval

                record_approval(rev, "train")
                return out
        elif step == "load":
            from lineage.review.approval import load_snapshot

            out["rows"] = int(len(load_snapshot("train", store=eng).target))
        elif step == "train":
            from lineage.models.training import train

            info = train(eng, snapshot="train", model="scale", params={"max_iter": 20})
            out["model"] = info.ref
        elif step == "trace":
            from lineage.trace import trace_model, trace_row

            row = json.loads((work / "poisoned.json").read_text())[0]
            trace_row(eng, row)
            out["trace_row_s"] = time.perf_counter() - t
            trace_model(eng, "scale:1")
        elif step == "scan":
            from lineage.lab.audit import scan_version

            record = scan_version(eng, "poisoned")
            out["flagged"] = len(record.flagged)
        elif step in ("verify", "verify-fast"):
            from lineage.data.integrity import verify_all

            report = verify_all(eng, fast=step == "verify-fast")
            out.update(events=report.events, records=report.records, versions=report.versions,
                       chunk_rows=report.chunk_rows, rate_mb_s=round(report.rate / 1e6, 1))
        else:
            raise SystemExit(f"unknown step {step}")
        out["seconds"] = time.perf_counter() - t
    finally:
        eng.close()
        rev.close()
    return out


# ----------------------------------------------------------------------------- parent

def child(step: str, work: Path, db: str, n: int, env: dict) -> dict:
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--step", step, "--work", str(work),
                             "--db", db, "--rows", str(n)], stdout=subprocess.PIPE, env=env)
    data = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"step {step} failed (exit {proc.returncode})")
    result = json.loads(data.decode().strip().splitlines()[-1])
    result.update(wall=wall, peak_rss_mb=usage.ru_maxrss / 1024)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--db", default=None, help="an empty database URL (default: SQLite in --work)")
    ap.add_argument("--work", default=None, help="work folder (default: a new temp folder)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--steps", help="comma-separated steps to run (default: all, in order); "
                    "later steps expect the store the earlier ones left in --work")
    ap.add_argument("--step", help=argparse.SUPPRESS)
    args = ap.parse_args()
    n = args.rows
    if args.step:
        anon = AnonPeak()
        out = run_step(args.step, Path(args.work), args.db, n)
        out["peak_anon_mb"] = anon.stop()
        print(json.dumps(out))
        return
    work = Path(args.work or tempfile.mkdtemp(prefix="lineage-bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    db = args.db or f"sqlite:///{work / 'lineage.db'}"
    env = {**os.environ, "XDG_CONFIG_HOME": str(work / "config"),
           "LINEAGE_TRUST": str(work / "lineage-trust.json"), "OMP_NUM_THREADS": "1"}
    os.environ.update(env)
    from lineage.review.keys import create_key, trust_key

    if not (work / "lineage-trust.json").exists():  # a --steps rerun keeps the keys it made
        for actor in ("engineer", "reviewer"):
            create_key(actor)
            trust_key(actor)
    raw = n * (64 + 8)
    results = {"rows": n, "raw_mb": raw / 1e6, "db": db.split("://")[0],
               "python": platform.python_version(), "cpus": os.cpu_count(),
               "load_average": os.getloadavg(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                           time.gmtime()),
               "steps": {}}
    chosen = args.steps.split(",") if args.steps else STEPS
    unknown = set(chosen) - set(STEPS)
    if unknown:
        raise SystemExit(f"unknown steps {sorted(unknown)}: use {', '.join(STEPS)}")
    for step in [s for s in STEPS if s in chosen]:
        if step == "generate" and (work / "rows.npz").exists() and (work / "rows.csv").exists():
            continue
        r = child(step, work, db, n, env)
        results["steps"][step] = r
        if step in REPORTED:
            print(f"{step:15s} {r['seconds']:9.2f} s  peak RSS {r['peak_rss_mb']:8.0f} MB "
                  f"({r['peak_rss_mb'] * 2**20 / raw:.2f}x raw; anon {r['peak_anon_mb']:.0f} MB = "
                  f"{r['peak_anon_mb'] * 2**20 / raw:.2f}x)  "
                  f"{ {k: v for k, v in r.items() if k not in ('seconds', 'wall', 'peak_rss_mb', 'peak_anon_mb')} }",
                  flush=True)
    results["load_average_end"] = os.getloadavg()
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"\n{n:,} rows on {results['db']}; raw {raw / 1e6:,.0f} MB; {results['cpus']} cpus; "
          f"load average {results['load_average'][0]:.1f} at start, "
          f"{results['load_average_end'][0]:.1f} at end; {results['started']}\n")
    print("| step | seconds | peak RSS (MB) | RSS / raw | peak anon (MB) | anon / raw |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for step in [s for s in REPORTED if s in results["steps"]]:
        r = results["steps"][step]
        print(f"| {step} | {r['seconds']:.2f} | {r['peak_rss_mb']:,.0f} | "
              f"{r['peak_rss_mb'] * 2**20 / raw:.2f}x | {r['peak_anon_mb']:,.0f} | "
              f"{r['peak_anon_mb'] * 2**20 / raw:.2f}x |")


if __name__ == "__main__":
    main()
