"""Benchmark: lineage ingest and read-back against raw baselines, on synthetic digit-like rows.

    python bench/bench_store.py [--rows 1000000] [--repeat 3] [--json]

Rows: ``rows`` x 64 uint8 features in 0..16 and int64 labels 0..9 (seeded numpy). Every figure is
measured ``repeat`` times in this run, interleaved (one round of every method, then the next), and
the table shows medians. Ratios compare medians measured in the same run, so a busy machine moves
both sides. The lineage store is a local SQLite file in a temp dir, shipped settings: event chain
and every digest on; reads verify each chunk's digest (``read_rows``' default).

Baselines: sqlite3 executemany one row per record (blob + sha256), sqlite3 with contiguous
8192-row blobs (+ sha256 per chunk; 64 KiB pages and mmap reads, as lineage), np.save / np.load, and lance (pylance) and deltalake when
importable (``pip install -e '.[bench]'``). ``--pg URL`` (an empty PostgreSQL database or
schema) ingests the same rows there once and reads its root version in every round too, against
SQLite's (issue 13: within 2x).

Peak memory of the ingest is measured in a child process (so the parent's arrays do not count):
the RSS high-water mark during ``ingest_arrays`` minus the RSS just before it (Linux
``/proc/self/clear_refs`` resets the mark), and separately tracemalloc's peak (Python and numpy
allocations only), both against the raw array size X.nbytes + y.nbytes.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from lineage.data.datasets import read_rows
from lineage.data.deltas import materialize
from lineage.store.tables import Version

# Benchmark the code in this repository (the repo root, not whatever ``lineage`` the path finds).
REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

N_FEATURES = 64
SEED = 20260101
INGEST_TARGET = 0.9  # lineage ingest rate / lance write rate (issue 13; issue 2 asked 1.5)
RAW_INGEST_TARGET = 0.8  # lineage ingest rate / raw sqlite3 chunk inserts: within 1.25x the time
READ_TARGET = 1.2  # lineage read rate / lance read rate
PG_READ_TARGET = 0.5  # PostgreSQL root read rate / SQLite's: within 2x the time (issue 13)
MEMORY_TARGET = 3.0  # ingest peak / raw array size


def make_rows(n: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """X of shape (n, 64) uint8 in 0..16 and y of shape (n,) int64 in 0..9."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 17, size=(n, N_FEATURES), dtype=np.uint8)
    y = rng.integers(0, 10, size=n, dtype=np.int64)
    return X, y


# ----------------------------------------------------------------------------- lineage

# Experiments only (off by default, so the figures are lineage as shipped): SQLite settings the
# store does not make itself, to measure what they would change.
EXPERIMENT = {"page_size": None, "mmap_size": None}


def lineage_ingest(workdir: Path, X: np.ndarray, y: np.ndarray) -> tuple[float, object]:
    import lineage

    db = workdir / "lineage.db"
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    if EXPERIMENT["page_size"]:  # fixed when the file is created, before any table exists
        conn = sqlite3.connect(db)
        conn.execute(f"PRAGMA page_size={int(EXPERIMENT['page_size'])}")
        conn.execute("CREATE TABLE page_size_set (x)")  # the size is kept from the first table
        conn.execute("DROP TABLE page_size_set")
        conn.close()
    store = lineage.open_store(f"sqlite:///{db}", actor="bench")
    if EXPERIMENT["mmap_size"]:
        from sqlalchemy import event

        mmap_size = int(EXPERIMENT["mmap_size"])
        event.listen(store.engine, "connect",
                     lambda dbapi_conn, _rec: dbapi_conn.execute(f"PRAGMA mmap_size={mmap_size}"))
        store.engine.dispose()  # pooled connections reconnect with the setting
    lineage.add_source(store, "synthetic", kind="internal", uri="bench:synthetic",
                       license="CC0-1.0", owner="bench")
    t0 = time.perf_counter()
    info = lineage.ingest_arrays(store, X, y, source="synthetic", dataset="digits-like",
                                 file_name="bench:synthetic", value_range=(0, 16),
                                 image_shape="8x8")
    elapsed = time.perf_counter() - t0
    assert info.n_rows == len(X)
    return elapsed, store


def lineage_read_rows(store, X: np.ndarray, y: np.ndarray) -> float:

    t0 = time.perf_counter()
    ids, Xr, yr = read_rows(store)
    elapsed = time.perf_counter() - t0
    assert Xr.shape == X.shape and np.array_equal(Xr, X) and np.array_equal(yr, y)
    return elapsed


def lineage_read_version(store, X: np.ndarray, y: np.ndarray, verify: bool = False) -> float:
    from sqlalchemy import select

    t0 = time.perf_counter()
    with store.read() as session:
        root = session.scalars(select(Version).where(Version.parent_id.is_(None))
                               .order_by(Version.id)).first()
        members = materialize(session, root, verify=verify)
    elapsed = time.perf_counter() - t0
    assert np.array_equal(members.X, X) and np.array_equal(members.y, y)
    return elapsed


# ----------------------------------------------------------------------------- baselines

def _fresh_sqlite(path: Path, page_size: Optional[int] = None) -> sqlite3.Connection:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    if page_size:
        conn.execute(f"PRAGMA page_size={int(page_size)}")
    # The journal and sync settings lineage's store uses (lineage/store/engine.py).
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def sqlite_rows_write(workdir: Path, X: np.ndarray, y: np.ndarray) -> float:
    conn = _fresh_sqlite(workdir / "rows.db")
    conn.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, features BLOB, label INTEGER, "
                 "sha256 TEXT)")
    t0 = time.perf_counter()
    conn.execute("BEGIN")
    sha = hashlib.sha256
    conn.executemany("INSERT INTO rows VALUES (?, ?, ?, ?)",
                     ((i + 1, b, int(label), sha(b + label.tobytes()).hexdigest())
                      for i, (b, label) in enumerate(zip(map(bytes, X), y))))
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def sqlite_rows_read(workdir: Path, X: np.ndarray, y: np.ndarray) -> float:
    conn = sqlite3.connect(workdir / "rows.db")
    t0 = time.perf_counter()
    rows = conn.execute("SELECT features, label FROM rows ORDER BY id").fetchall()
    Xr = np.frombuffer(b"".join(r[0] for r in rows), dtype=np.uint8).reshape(-1, N_FEATURES)
    yr = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
    elapsed = time.perf_counter() - t0
    conn.close()
    assert np.array_equal(Xr, X) and np.array_equal(yr, y)
    return elapsed


def sqlite_chunks_write(workdir: Path, X: np.ndarray, y: np.ndarray, chunk: int = 8192) -> float:
    # The page size lineage creates its files with (lineage/store.py), so this is the floor of
    # lineage's own chunk insert: the same blobs, one pass of the hash lineage hashes new chunks
    # with (BLAKE3 since migration 0010, sha256 before), no digests chain, no ORM.
    from lineage.store.chain import BLOB_HASHES
    from lineage.store.chunks import CHUNK_BLOB_HASH

    chunk_hash = BLOB_HASHES[CHUNK_BLOB_HASH]
    conn = _fresh_sqlite(workdir / "chunks.db", page_size=65536)
    conn.execute("CREATE TABLE chunks (id INTEGER PRIMARY KEY, first_row INTEGER, n INTEGER, "
                 "features BLOB, labels BLOB, sha256 TEXT)")
    t0 = time.perf_counter()
    conn.execute("BEGIN")

    def records():
        for i, start in enumerate(range(0, len(X), chunk)):
            f = X[start:start + chunk].tobytes()
            lab = y[start:start + chunk].tobytes()
            h = chunk_hash(f)
            h.update(lab)
            yield i + 1, start, len(lab) // 8, f, lab, h.hexdigest()

    conn.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?)", records())
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def sqlite_chunks_read(workdir: Path, X: np.ndarray, y: np.ndarray) -> float:
    conn = sqlite3.connect(workdir / "chunks.db")
    conn.execute("PRAGMA mmap_size=1073741824")  # as lineage's connections read
    t0 = time.perf_counter()
    rows = conn.execute("SELECT features, labels FROM chunks ORDER BY id").fetchall()
    Xr = np.frombuffer(b"".join(r[0] for r in rows), dtype=np.uint8).reshape(-1, N_FEATURES)
    yr = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.int64)
    elapsed = time.perf_counter() - t0
    conn.close()
    assert np.array_equal(Xr, X) and np.array_equal(yr, y)
    return elapsed


def npy_write(workdir: Path, X: np.ndarray, y: np.ndarray) -> float:
    t0 = time.perf_counter()
    np.save(workdir / "X.npy", X)
    np.save(workdir / "y.npy", y)
    return time.perf_counter() - t0


def npy_read(workdir: Path, X: np.ndarray, y: np.ndarray) -> float:
    t0 = time.perf_counter()
    Xr = np.load(workdir / "X.npy")
    yr = np.load(workdir / "y.npy")
    elapsed = time.perf_counter() - t0
    assert np.array_equal(Xr, X) and np.array_equal(yr, y)
    return elapsed


def _arrow_table(X: np.ndarray, y: np.ndarray):
    import pyarrow as pa

    features = pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1), type=pa.uint8()),
                                                 N_FEATURES)
    return pa.table({"features": features, "label": pa.array(y, type=pa.int64())})


def _table_to_numpy(table) -> tuple[np.ndarray, np.ndarray]:
    feats = table.column("features").combine_chunks()
    Xr = feats.flatten().to_numpy(zero_copy_only=False).reshape(-1, N_FEATURES)
    yr = table.column("label").to_numpy()
    return Xr, yr


def lance_write(workdir: Path, X: np.ndarray, y: np.ndarray) -> float:
    import lance

    path = workdir / "data.lance"
    shutil.rmtree(path, ignore_errors=True)
    t0 = time.perf_counter()
    lance.write_dataset(_arrow_table(X, y), str(path))
    return time.perf_counter() - t0


def lance_read(workdir: Path, X: np.ndarray, y: np.ndarray) -> float:
    import lance

    t0 = time.perf_counter()
    Xr, yr = _table_to_numpy(lance.dataset(str(workdir / "data.lance")).to_table())
    elapsed = time.perf_counter() - t0
    assert np.array_equal(Xr, X) and np.array_equal(yr, y)
    return elapsed


def delta_write(workdir: Path, X: np.ndarray, y: np.ndarray) -> float:
    from deltalake import write_deltalake

    path = workdir / "data.delta"
    shutil.rmtree(path, ignore_errors=True)
    t0 = time.perf_counter()
    write_deltalake(str(path), _arrow_table(X, y))
    return time.perf_counter() - t0


def delta_read(workdir: Path, X: np.ndarray, y: np.ndarray) -> float:
    from deltalake import DeltaTable

    t0 = time.perf_counter()
    dt = DeltaTable(str(workdir / "data.delta"))
    table = dt.to_pyarrow_table() if hasattr(dt, "to_pyarrow_table") else dt.to_pyarrow_dataset().to_table()
    Xr, yr = _table_to_numpy(table)
    elapsed = time.perf_counter() - t0
    # Delta's files need not come back in write order: compare as multisets of (row, label).
    if not (np.array_equal(Xr, X) and np.array_equal(yr, y)):
        assert len(Xr) == len(X) and np.array_equal(np.sort(yr), np.sort(y))
    return elapsed


def _importable(name: str) -> bool:
    try:
        __import__(name)
        return True
    except Exception:
        return False


# ----------------------------------------------------------------------------- memory

MEMORY_CHILD = r"""
import json, sys, tempfile, threading, time, tracemalloc
from pathlib import Path
sys.path.insert(0, {bench_dir!r})
import bench_store as b

def rss_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None

rows, mode = {rows}, {mode!r}
X, y = b.make_rows(rows)
import lineage, lineage.data.ingest  # imports outside the measured window
with tempfile.TemporaryDirectory(prefix="lineage-bench-mem-") as tmp:
    store = lineage.open_store(f"sqlite:///{{tmp}}/m.db", actor="bench")
    lineage.add_source(store, "synthetic", kind="internal", uri="bench:synthetic")
    out = {{}}
    if mode == "rss":
        before = rss_kb("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the RSS high-water mark (Linux >= 4.0)
            sampled = False
        except OSError:
            sampled = True
        peak = [before]
        stop = threading.Event()
        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], rss_kb("VmRSS"))
                time.sleep(0.005)
        t = threading.Thread(target=sample, daemon=True); t.start()
        lineage.ingest_arrays(store, X, y, source="synthetic", dataset="digits-like",
                              value_range=(0, 16), image_shape="8x8")
        stop.set(); t.join()
        hwm = peak[0] if sampled else max(rss_kb("VmHWM"), peak[0])
        out = {{"rss_before": before * 1024, "rss_peak": hwm * 1024,
                "peak_bytes": (hwm - before) * 1024, "sampled": sampled}}
    else:
        tracemalloc.start()
        lineage.ingest_arrays(store, X, y, source="synthetic", dataset="digits-like",
                              value_range=(0, 16), image_shape="8x8")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out = {{"peak_bytes": peak}}
    store.close()
out["raw_bytes"] = X.nbytes + y.nbytes
print(json.dumps(out))
"""


def measure_memory(rows: int, mode: str) -> dict:
    code = MEMORY_CHILD.format(bench_dir=str(Path(__file__).resolve().parent), rows=rows, mode=mode)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child ({mode}) failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- driver

def run(rows: int, repeat: int, memory: bool, baselines: bool, tmp: Optional[str],
        log: Callable[[str], None], skip: frozenset = frozenset(),
        pg: Optional[str] = None) -> dict:
    X, y = make_rows(rows)
    pg_store = None
    if pg:  # the same rows, ingested once; its root read is timed in every round
        import lineage

        pg_store = lineage.open_store(pg, actor="bench")
        lineage.add_source(pg_store, "synthetic", kind="internal", uri="bench:synthetic",
                           license="CC0-1.0", owner="bench")
        lineage.ingest_arrays(pg_store, X, y, source="synthetic", dataset="digits-like",
                              file_name="bench:synthetic", value_range=(0, 16), image_shape="8x8")
    raw = X.nbytes + y.nbytes
    times: dict[str, list[float]] = {}
    have_lance = baselines and _importable("lance") and _importable("pyarrow")
    have_delta = baselines and _importable("deltalake") and _importable("pyarrow")

    def timed(name: str, fn, *args):
        if any(word in name for word in skip):
            return
        gc.collect()
        t = fn(*args)
        times.setdefault(name, []).append(t)
        log(f"  {name:<34} {t:8.3f} s  {rows / t / 1e6:7.3f} M rows/s")

    with tempfile.TemporaryDirectory(prefix="lineage-bench-", dir=tmp) as work:
        workdir = Path(work)
        for r in range(repeat):
            log(f"round {r + 1}/{repeat}")
            gc.collect()
            elapsed, store = lineage_ingest(workdir, X, y)
            times.setdefault("lineage ingest", []).append(elapsed)
            log(f"  {'lineage ingest':<34} {elapsed:8.3f} s  {rows / elapsed / 1e6:7.3f} M rows/s")
            timed("lineage read_rows (whole)", lineage_read_rows, store, X, y)
            timed("lineage read root version", lineage_read_version, store, X, y)
            timed("lineage read root version, verify", lineage_read_version, store, X, y, True)
            store.close()
            if pg_store is not None:
                timed("postgresql root version", lineage_read_version, pg_store, X, y)
                timed("postgresql root version, verify", lineage_read_version, pg_store, X,
                      y, True)
            if baselines:
                timed("sqlite3 row-per-record write", sqlite_rows_write, workdir, X, y)
                timed("sqlite3 row-per-record read", sqlite_rows_read, workdir, X, y)
                timed("sqlite3 8192-row chunks write", sqlite_chunks_write, workdir, X, y)
                timed("sqlite3 8192-row chunks read", sqlite_chunks_read, workdir, X, y)
                timed("np.save", npy_write, workdir, X, y)
                timed("np.load", npy_read, workdir, X, y)
            if have_lance:
                timed("lance write", lance_write, workdir, X, y)
                timed("lance read", lance_read, workdir, X, y)
            if have_delta:
                timed("deltalake write", delta_write, workdir, X, y)
                timed("deltalake read", delta_read, workdir, X, y)
            db_bytes = sum(p.stat().st_size for p in workdir.glob("lineage.db*"))

    results = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        results[name] = {"seconds_median": med, "seconds": ts, "rows_per_s": rows / med}

    ratios = {}

    def ratio(key: str, num: str, den: str, target: float) -> None:
        if num in results and den in results:
            value = results[num]["rows_per_s"] / results[den]["rows_per_s"]
            per_round = [b / a for a, b in zip(times[num], times[den])]
            ratios[key] = {"value": value, "per_round": per_round, "target": target,
                           "met": value >= target}

    ratio("lineage ingest / lance write", "lineage ingest", "lance write", INGEST_TARGET)
    ratio("lineage ingest / sqlite3 chunks write", "lineage ingest",
          "sqlite3 8192-row chunks write", RAW_INGEST_TARGET)
    ratio("lineage read_rows / lance read", "lineage read_rows (whole)", "lance read", READ_TARGET)
    ratio("lineage read version / lance read", "lineage read root version", "lance read",
          READ_TARGET)
    ratio("lineage read version+verify / lance", "lineage read root version, verify",
          "lance read", READ_TARGET)
    ratio("postgresql / sqlite version", "postgresql root version",
          "lineage read root version", PG_READ_TARGET)
    ratio("postgresql / sqlite version+verify", "postgresql root version, verify",
          "lineage read root version, verify", PG_READ_TARGET)
    if pg_store is not None:
        pg_store.close()

    mem = {}
    if memory:
        for mode in ("rss", "tracemalloc"):
            log(f"memory ({mode}) in a child process ...")
            m = measure_memory(rows, mode)
            m["ratio"] = m["peak_bytes"] / m["raw_bytes"]
            m["target"] = MEMORY_TARGET
            m["met"] = m["ratio"] < MEMORY_TARGET
            mem[mode] = m
            log(f"  peak {m['peak_bytes'] / 2**20:.1f} MiB = {m['ratio']:.2f}x raw")

    return {
        "rows": rows, "repeat": repeat, "raw_bytes": raw, "lineage_db_bytes": db_bytes,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "versions": _versions(), "results": results, "ratios": ratios, "memory": mem,
        "experiment": {k: v for k, v in EXPERIMENT.items() if v},
    }


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"numpy": np.__version__, "sqlite": sqlite3.sqlite_version}
    for pkg in ("lineage", "sqlalchemy", "pylance", "deltalake", "pyarrow"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def render(report: dict) -> str:
    rows = report["rows"]
    lines = [f"{rows:,} rows x {N_FEATURES} uint8 + int64 label; raw {report['raw_bytes'] / 2**20:.1f} MiB; "
             f"median of {report['repeat']} runs; {report['machine']['cpus']} cpus; {report['date']}",
             "", f"| {'how':<34} | {'M rows/s':>9} | {'median s':>9} | {'runs (s)':<26} |",
             f"| {'-' * 34} | {'-' * 8}: | {'-' * 8}: | {'-' * 26} |"]
    for name, r in report["results"].items():
        runs = ", ".join(f"{t:.2f}" for t in r["seconds"])
        lines.append(f"| {name:<34} | {r['rows_per_s'] / 1e6:>9.3f} | {r['seconds_median']:>9.3f} "
                     f"| {runs:<26} |")
    if report["ratios"]:
        lines += ["", f"| {'ratio (medians)':<36} | {'value':>6} | {'target':>7} | {'met':<4} | per round |",
                  f"| {'-' * 36} | {'-' * 5}: | {'-' * 6}: | {'-' * 4} | --------- |"]
        for name, r in report["ratios"].items():
            per = ", ".join(f"{v:.2f}" for v in r["per_round"])
            lines.append(f"| {name:<36} | {r['value']:>6.2f} | >= {r['target']:<4} | "
                         f"{'yes' if r['met'] else 'NO':<4} | {per} |")
    if report["memory"]:
        lines += ["", f"| {'ingest peak memory':<28} | {'MiB':>7} | {'x raw':>6} | {'target':>7} | met  |",
                  f"| {'-' * 28} | {'-' * 6}: | {'-' * 5}: | {'-' * 6}: | ---- |"]
        for mode, m in report["memory"].items():
            label = "RSS high-water - RSS before" if mode == "rss" else "tracemalloc peak"
            lines.append(f"| {label:<28} | {m['peak_bytes'] / 2**20:>7.1f} | {m['ratio']:>6.2f} | "
                         f"< {m['target']:<5} | {'yes' if m['met'] else 'NO':<4} |")
    lines += ["", f"lineage store file: {report['lineage_db_bytes'] / 2**20:.1f} MiB"]
    if report["experiment"]:
        lines.append(f"EXPERIMENT, not lineage as shipped: {report['experiment']}")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the report as JSON only")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory children")
    parser.add_argument("--no-baselines", action="store_true", help="lineage figures only")
    parser.add_argument("--tmp", default=None, help="folder for the temp dir (default: system)")
    parser.add_argument("--sqlite-page-size", type=int, default=None,
                        help="experiment: create the lineage SQLite file with this page size")
    parser.add_argument("--sqlite-mmap-size", type=int, default=None,
                        help="experiment: PRAGMA mmap_size on the lineage store's connections")
    parser.add_argument("--skip", default="", help="comma-separated words: leave out the "
                        "baselines whose name contains one (e.g. row-per-record,deltalake)")
    parser.add_argument("--pg", default=None, metavar="URL",
                        help="an empty PostgreSQL database or schema: the same rows ingested "
                        "there once, its root version read in every round beside SQLite's")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.repeat < 1:
        parser.error("--rows and --repeat must be at least 1")
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if not args.json else (lambda s: None)
    skip = frozenset(s.strip() for s in args.skip.split(",") if s.strip())
    EXPERIMENT["page_size"] = args.sqlite_page_size
    EXPERIMENT["mmap_size"] = args.sqlite_mmap_size
    report = run(args.rows, args.repeat, not args.no_memory, not args.no_baselines, args.tmp, log,
                 skip, args.pg)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
