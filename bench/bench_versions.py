"""Benchmark: transformations, versions as deltas, trace and diff on a large store.

    python bench/bench_versions.py [--rows 1000000] [--repeat 5] [--db URL] [--json]

Builds a store of ``rows`` synthetic digit-like rows (64 uint8 features in 0..16, labels 0..9,
seeded) with ``lineage.ingest_arrays`` (SQLite file in a temp dir unless ``--db`` names an empty
database), then a chain of five transformations that each touch 1% of the rows:
filter (1% of row ids), relabel (1%), inject-trigger (class 1 at rate 0.1, about 1%), filter,
relabel. It reports:

- commit time of each transformation (one call, one write: effects, delta, event), wall and
  this process's CPU time (the machine may be shared); the rows a filter or relabel touches are
  drawn from the version before the timer starts (until 2026-12-02 the draw, a read of the
  whole version and a permutation of its ids, was timed with the commit);
- bytes each one added to the database (SQLite: file size, before/after (a store still in WAL mode is checkpointed first);
  PostgreSQL: pg_total_relation_size of the store's tables in its schema) against a full copy
  of the version (ids + labels + features);
- materialize rows/s of the root and of the version five transformations deep (same run,
  interleaved, median of ``repeat``);
- ``trace_row`` and ``version_diff`` latency (median of ``repeat``, wall and CPU) for versions
  1% apart, and from the root to the version five deep;
- a split of the whole root (test 0.3): commit time and bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lineage.data.datasets import find_version
from lineage.data.deltas import materialize
from lineage.data.ingest import ingest_arrays
from lineage.data.sources import add_source
from lineage.data.transforms import filter_rows, inject_trigger, relabel_rows, split_version
from lineage.store.engine import open_store

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from lineage.trace import trace_row, version_diff  # noqa: E402

SEED = 20260101


def make_rows(n: int, seed: int = SEED):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 17, size=(n, 64), dtype=np.uint8)
    y = rng.integers(0, 10, size=n, dtype=np.int64)
    return X, y


def db_bytes(store) -> int:
    if store.engine.dialect.name == "sqlite":
        path = store.engine.url.database
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        return os.path.getsize(path)
    from sqlalchemy import text

    with store.engine.connect() as conn:  # this store's schema only: tables, indexes, TOAST
        return int(conn.scalar(text(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'")))


CPU: list = []  # process CPU seconds of the last ``timed`` call (wall time is the figure;
# CPU time shows how much of it was this process working when the machine is shared)


def timed(fn):
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    CPU[:] = [time.process_time() - c0]
    return out, time.perf_counter() - t0


def median_time(fn, repeat: int) -> tuple[float, float]:
    """(median wall seconds, median CPU seconds)."""
    times, cpus = [], []
    for _ in range(repeat):
        _, dt = timed(fn)
        times.append(dt)
        cpus.append(CPU[0])
    return statistics.median(times), statistics.median(cpus)


def read_version(store, ref):
    with store.read() as s:
        return materialize(s, find_version(s, ref))


def fixed_relabel(sizes: list[int], repeat: int, db: str | None) -> None:
    """A fixed 100-row relabel (seeded random rows, each of a chain of ``repeat`` + 1 relabels
    from the root; the first, which warms the process up, is left out) at each store size, in
    one process, and each median against the smallest size's."""
    medians = {}
    for n in sizes:
        tmp = tempfile.mkdtemp(prefix="lineage-bench-relabel-")
        store = open_store(db or f"sqlite:///{tmp}/bench.db", actor="bench")
        X, y = make_rows(n)
        add_source(store, "synthetic", kind="internal")
        v = ingest_arrays(store, X, y, source="synthetic", value_range=(0, 16)).version_id
        del X, y
        rng = np.random.default_rng(SEED + 2)
        times = []
        for i in range(repeat + 1):
            rows = np.sort(rng.choice(n, 100, replace=False)) + 1
            r, t = timed(lambda: relabel_rows(store, version=v, rows=rows, to=i % 10, reason="b"))
            v = r.version_id
            times.append(t)
        store.close()
        medians[n] = statistics.median(times[1:])
        print(f"{n:>10,} rows: fixed 100-row relabel median {medians[n] * 1000:.1f} ms "
              f"({medians[n] / medians[sizes[0]]:.2f}x {sizes[0]:,}); runs "
              + ", ".join(f"{t * 1000:.1f}" for t in times[1:]), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--db", default=None, help="an empty database URL (default: SQLite in a temp dir)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--fixed-relabel", default=None, metavar="N,N,...",
                    help="only time a fixed 100-row relabel at these store sizes (SQLite)")
    args = ap.parse_args()
    if args.fixed_relabel:
        fixed_relabel([int(x) for x in args.fixed_relabel.split(",")], args.repeat, None)
        return

    tmp = tempfile.mkdtemp(prefix="lineage-bench-versions-")
    url = args.db or f"sqlite:///{tmp}/bench.db"
    store = open_store(url, actor="bench")
    n = args.rows
    X, y = make_rows(n)
    add_source(store, "synthetic", kind="internal", uri="bench://synthetic", license="CC0-1.0")
    info, t_ingest = timed(lambda: ingest_arrays(store, X, y, source="synthetic", dataset="bench",
                                                 value_range=(0, 16), image_shape="8x8",
                                                 classes=range(10)))
    full_copy = n * (8 + 8 + 64)  # row id + label + features per row
    rng = np.random.default_rng(SEED + 1)
    k = n // 100
    results = {"rows": n, "backend": store.engine.dialect.name, "ingest_s": t_ingest,
               "full_copy_bytes": full_copy, "steps": []}

    version = info.version_id
    versions = [version]
    # Each step gets its version and the 1% of its rows to touch, drawn before the timer
    # starts (reading the version and drawing from it are not the commit).
    steps = [
        ("filter 1% rows", lambda v, rows: filter_rows(store, version=v, reason="bench", rows=rows)),
        ("relabel 1% rows", lambda v, rows: relabel_rows(store, version=v, to=0, reason="bench",
                                                         rows=rows)),
        ("inject-trigger class 1 rate 0.1", lambda v, rows: inject_trigger(
            store, version=v, source_class=1, target_class=7, rate=0.1, seed=0, reason="bench")),
        ("filter 1% rows", lambda v, rows: filter_rows(store, version=v, reason="bench", rows=rows)),
        ("relabel 1% rows", lambda v, rows: relabel_rows(store, version=v, to=0, reason="bench",
                                                         rows=rows)),
    ]

    def live(v):
        return read_version(store, v).row_ids

    poisoned = None
    for label, step in steps:
        rows = (None if label.startswith("inject") else
                np.sort(rng.choice(live(version), k, replace=False)).tolist())
        before = db_bytes(store)
        res, dt = timed(lambda: step(version, rows))
        grown = db_bytes(store) - before
        touched = res.n_removed + res.n_added + res.n_relabelled + res.n_modified
        results["steps"].append({"step": label, "commit_s": dt, "commit_cpu_s": CPU[0],
                                 "rows_touched": touched,
                                 "bytes_written": grown, "vs_full_copy": grown / full_copy})
        if res.poisoned_row_ids:
            poisoned = res.poisoned_row_ids[0]
        version = res.version_id
        versions.append(version)

    # Reads: root vs five deep, interleaved.
    root_t, deep_t, root_c, deep_c = [], [], [], []
    for _ in range(args.repeat):
        root_t.append(timed(lambda: read_version(store, versions[0]))[1])
        root_c.append(CPU[0])
        deep_t.append(timed(lambda: read_version(store, versions[-1]))[1])
        deep_c.append(CPU[0])
    n_deep = find_n(store, versions[-1])
    results["read_root_rows_per_s"] = n / statistics.median(root_t)
    results["read_deep_rows_per_s"] = n_deep / statistics.median(deep_t)
    results["read_root_s"] = statistics.median(root_t)
    results["read_deep_s"] = statistics.median(deep_t)
    results["read_root_cpu_s"] = statistics.median(root_c)
    results["read_deep_cpu_s"] = statistics.median(deep_c)

    # Trace and diff.
    plain_row = int(live(versions[-1])[n // 2])
    ms = lambda pair: [round(1e3 * pair[0], 1), round(1e3 * pair[1], 1)]  # [wall, cpu]
    results["trace_plain_row_ms"] = ms(median_time(lambda: trace_row(store, plain_row), args.repeat))
    results["trace_poisoned_row_ms"] = ms(median_time(lambda: trace_row(store, poisoned), args.repeat))
    diffs = []
    for a, b in zip(versions, versions[1:]):
        diffs.append(ms(median_time(lambda: version_diff(store, a, b), args.repeat)))
    results["diff_1pct_ms"] = diffs
    results["diff_root_to_deep_ms"] = ms(median_time(
        lambda: version_diff(store, versions[0], versions[-1]), args.repeat))
    d = version_diff(store, versions[0], versions[-1])
    results["diff_root_to_deep_counts"] = {"added": len(d.added), "removed": len(d.removed),
                                           "relabelled": len(d.relabelled_ids),
                                           "modified": len(d.modified_child)}

    before = db_bytes(store)
    split, dt = timed(lambda: split_version(store, version=versions[0], test_size=0.3, seed=0,
                                            reason="bench"))
    results["split_commit_s"] = dt
    results["split_commit_cpu_s"] = CPU[0]
    results["split_bytes_written"] = db_bytes(store) - before
    results["trace_row_after_split_ms"] = ms(median_time(lambda: trace_row(store, plain_row), args.repeat))
    results["load_average"] = os.getloadavg()
    results["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    store.close()

    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{n} rows on {results['backend']} ({results['machine']}; load average "
          f"{', '.join(f'{x:.1f}' for x in results['load_average'])}); ingest {t_ingest:.1f} s; "
          f"full copy of a version = {full_copy / 1e6:.0f} MB")
    print("| transformation | rows touched | commit wall (s) | commit CPU (s) | bytes written | vs full copy |")
    print("| --- | --- | --- | --- | --- | --- |")
    for s in results["steps"]:
        print(f"| {s['step']} | {s['rows_touched']} | {s['commit_s']:.2f} | {s['commit_cpu_s']:.2f} | "
              f"{s['bytes_written'] / 1e6:.2f} MB | {s['vs_full_copy']:.2%} |")
    print(f"| split root 0.3 | {n} | {results['split_commit_s']:.2f} | "
          f"{results['split_commit_cpu_s']:.2f} | {results['split_bytes_written'] / 1e6:.2f} MB | "
          f"{results['split_bytes_written'] / full_copy:.2%} |")
    print(f"read root: {results['read_root_rows_per_s'] / 1e6:.2f} M rows/s "
          f"({results['read_root_s'] * 1e3:.0f} ms wall, {results['read_root_cpu_s'] * 1e3:.0f} ms CPU); "
          f"five deep: {results['read_deep_rows_per_s'] / 1e6:.2f} M rows/s "
          f"({results['read_deep_s'] * 1e3:.0f} ms wall, {results['read_deep_cpu_s'] * 1e3:.0f} ms CPU)")
    fmt = lambda p: f"{p[0]:.1f} ms ({p[1]:.1f} CPU)"
    print(f"trace row: plain {fmt(results['trace_plain_row_ms'])}, poisoned "
          f"{fmt(results['trace_poisoned_row_ms'])}, plain after a split of the root "
          f"{fmt(results['trace_row_after_split_ms'])}")
    print("version diff, consecutive versions 1% apart: "
          + ", ".join(fmt(d) for d in results["diff_1pct_ms"])
          + f"; root -> five deep: {fmt(results['diff_root_to_deep_ms'])} "
          f"({results['diff_root_to_deep_counts']})")


def find_n(store, ref) -> int:
    with store.read() as s:
        return find_version(s, ref).n_rows


if __name__ == "__main__":
    main()
