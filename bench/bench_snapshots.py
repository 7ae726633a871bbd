"""Benchmark: snapshot create, load_snapshot (approved, digest verified) and trace model on a
large store, in the same run as raw baselines (np.load, lance read).

    python bench/bench_snapshots.py [--rows 1000000] [--repeat 5] [--json]

Builds a SQLite store in a temp dir with ``rows`` synthetic digit-like rows (64 uint8 features in
0..16, labels 0..9, seeded; an internal source with uri and license, approved), then splits the
root version seeded into train (all but 2000 rows) and eval (2000 rows). It measures:

- ``create_snapshot`` of the root version (all rows) and of the train version (ids with gaps);
- ``load_snapshot`` of both, approved, every chunk re-hashed against the approved manifest;
- the same load of all rows from a second store whose chunks are hashed with sha256, as every
  chunk written before migration 0010 (lineage now hashes new chunks with BLAKE3);
- np.load of the same arrays from an .npy pair, lance (pylance) read of the same table;
- ``trace_model`` of a model trained on the train snapshot (median of ``repeat``).

Rates are rows/s, medians of ``repeat`` rounds, interleaved (one round of every method, then the
next), so a busy machine moves both sides of a ratio. The approval of the big snapshots is
recorded with the coverage, sources and four-eyes gates computed as usual, but the shadow
evaluation is skipped (a reference model on 1M rows is not what is measured here); the model for
the trace is trained by ``lineage.training.train`` itself with ``max_iter=5``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lineage.data.ingest import ingest_arrays
from lineage.data.sources import add_source
from lineage.data.transforms import split_version
from lineage.models.training import train
from lineage.review.approval import check_signed_approval, load_snapshot
from lineage.review.attestations import attest, signing_key_for
from lineage.review.gates import coverage_gate, four_eyes_gate, sources_gate
from lineage.review.keys import create_key, read_trust, trust_key
from lineage.review.policy import policy_in_force, set_policy
from lineage.review.snapshots import (
    approving_review,
    create_snapshot,
    find_snapshot,
    read_snapshot_rows,
    snapshot_reviews,
)
from lineage.review.source_reviews import review_source
from lineage.store.chain import canonical
from lineage.store.engine import open_store
from lineage.store.tables import Dataset, SnapshotReview, Version
from lineage.trace import trace_model

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SEED = 20260101
LOAD_TARGET = 1.2  # load_snapshot rate / lance read rate
TRACE_TARGET_MS = 100.0
SIGN_TARGET = 0.05  # signature checks / load_snapshot time


def signature_check(store, name: str) -> None:
    """The checks signed reviews add to every load: the trust file read, the approval's
    signature and statement verified (what load_snapshot runs besides reading rows)."""
    trust = read_trust(store.trust)
    with store.read() as session:
        snap = find_snapshot(session, name)
        review = approving_review(snapshot_reviews(session, snap))
        check_signed_approval(session, snap, review, trust)


def make_rows(n: int, seed: int = SEED):
    rng = np.random.default_rng(seed)
    # Digit-like: most pixels dark, so the trigger scan and training see image-like data.
    X = (rng.random((n, 64)) < 0.4) * rng.integers(0, 17, size=(n, 64))
    return X.astype(np.uint8), rng.integers(0, 10, size=n, dtype=np.int64)


def record_approval(store, name: str) -> None:
    """Approve with the cheap gates computed as usual, signed as approve_snapshot signs; the
    shadow evaluation is skipped."""
    key, trust = signing_key_for(store)
    with store.read() as session:
        snap = find_snapshot(session, name)
        ids, _, _ = read_snapshot_rows(session, snap)
        policy = policy_in_force(session)
        gates = [coverage_gate(session, session.get(Version, snap.version_id), policy),
                 sources_gate(session, snap, ids),
                 four_eyes_gate(session, snap, store.actor, ids=ids, key=key, trust=trust),
                 {"gate": "shadow_evaluation", "passed": True, "message": "skipped (benchmark)"}]
        dataset_digest = session.get(Dataset, snap.dataset_id).record_digest
        report = {"snapshot": name, "passed": True, "policy_version": policy.version,
                  "content_digest": snap.content_digest, "manifest_digest": snap.manifest_digest,
                  "dataset_digest": dataset_digest, "gates": gates}
    assert all(g["passed"] for g in gates), gates
    with store.write() as tx:
        snap = find_snapshot(tx.session, name)
        review = tx.add(SnapshotReview(snapshot_id=snap.id, decision="approve", passed=True,
                                       reason="bench", policy_id=policy.version or None,
                                       content_digest=snap.content_digest, report=canonical(report)))
        attest(tx, key, review, subject=f"snapshot:{name}", digest=snap.content_digest,
               predicate={"decision": "approve", "passed": True, "snapshot": name,
                          "manifest_digest": snap.manifest_digest,
                          "dataset_digest": dataset_digest, "reason": "bench",
                          "policy_version": policy.version, "report": report})
        tx.event("snapshot.approve", f"snapshot {name} approved (benchmark)", snapshot=name)


def sha256_store(work: Path, X: np.ndarray, y: np.ndarray):
    """A store holding the same rows with their chunks hashed with sha256, as lineage wrote
    every chunk before migration 0010, and snapshot "all-0" of all of them approved."""
    import lineage.store.chunks as chunks

    url = f"sqlite:///{work / 'sha256.db'}"
    eng = open_store(url, actor="engineer")
    rev = open_store(url, actor="reviewer")
    add_source(eng, "synthetic", kind="internal", uri="bench:make_rows", license="CC0-1.0")
    review_source(rev, "synthetic", decision="approve", reason="bench")
    saved, chunks.CHUNK_BLOB_HASH = chunks.CHUNK_BLOB_HASH, "sha256"
    try:
        ingest_arrays(eng, X, y, source="synthetic", dataset="digits", value_range=(0, 16),
                      image_shape="8x8", classes=range(10))
    finally:
        chunks.CHUNK_BLOB_HASH = saved
    create_snapshot(eng, "all-0", version="v1")
    create_snapshot(eng, "eval", version="v1")
    set_policy(rev, evaluation_snapshot="eval", min_clean_accuracy=0.0, max_asr=1.0,
               reason="benchmark: gates measured, not enforced")
    record_approval(rev, "all-0")
    rev.close()
    return eng


def _importable(name: str) -> bool:
    try:
        __import__(name)
        return True
    except Exception:
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    n = args.rows
    work = Path(tempfile.mkdtemp(prefix="lineage-bench-snap-"))
    results: dict = {"rows": n, "repeat": args.repeat, "python": platform.python_version(),
                     "machine": f"{platform.machine()}, {os.cpu_count()} cpus"}
    try:
        # Keys for the benchmark's actors, in its own folder (never the user's).
        os.environ["XDG_CONFIG_HOME"] = str(work / "config")
        os.environ["LINEAGE_TRUST"] = str(work / "lineage-trust.json")
        for actor in ("engineer", "reviewer"):
            create_key(actor)
            trust_key(actor)
        url = f"sqlite:///{work / 'lineage.db'}"
        eng = open_store(url, actor="engineer")
        rev = open_store(url, actor="reviewer")
        X, y = make_rows(n)
        add_source(eng, "synthetic", kind="internal", uri="bench:make_rows", license="CC0-1.0")
        review_source(rev, "synthetic", decision="approve", reason="bench")
        t0 = time.perf_counter()
        ingest_arrays(eng, X, y, source="synthetic", dataset="digits", value_range=(0, 16),
                      image_shape="8x8", classes=range(10))
        results["ingest_s"] = time.perf_counter() - t0
        split_version(eng, version="v1", test_size=2000 / n, seed=0, name="bench", reason="holdout")

        timings: dict[str, list[float]] = {}

        def timed(label: str, fn) -> None:
            t = time.perf_counter()
            fn()
            timings.setdefault(label, []).append(time.perf_counter() - t)

        # Snapshot create: each round freezes new snapshots of the same versions.
        for r in range(args.repeat):
            timed("create_snapshot (all rows)", lambda: create_snapshot(eng, f"all-{r}", version="v1"))
            timed("create_snapshot (train, gaps)", lambda: create_snapshot(eng, f"train-{r}", version="bench-train"))
        create_snapshot(eng, "eval", version="bench-test")
        set_policy(rev, evaluation_snapshot="eval", min_clean_accuracy=0.0, max_asr=1.0,
                   reason="benchmark: gates measured, not enforced")
        record_approval(rev, "all-0")
        record_approval(rev, "train-0")

        old = sha256_store(work, X, y)

        np.save(work / "X.npy", X)
        np.save(work / "y.npy", y)
        have_lance = _importable("lance") and _importable("pyarrow")
        if have_lance:
            import lance
            import pyarrow as pa

            table = pa.table({"features": pa.FixedSizeListArray.from_arrays(
                pa.array(X.reshape(-1), type=pa.uint8()), 64), "label": pa.array(y)})
            lance.write_dataset(table, str(work / "data.lance"))
            del table

        def lance_read():
            t = lance.dataset(str(work / "data.lance")).to_table()
            Xr = t.column("features").combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(-1, 64)
            return Xr, t.column("label").to_numpy()

        n_train = n - 2000
        for _ in range(args.repeat):
            timed("np.load", lambda: (np.load(work / "X.npy"), np.load(work / "y.npy")))
            if have_lance:
                timed("lance read", lance_read)
            timed("load_snapshot (all rows)", lambda: load_snapshot("all-0", store=eng))
            timed("load_snapshot (all rows, sha256 chunks)", lambda: load_snapshot("all-0", store=old))
            timed("load_snapshot (train, gaps)", lambda: load_snapshot("train-0", store=eng))
            timed("signature checks of a load", lambda: signature_check(eng, "all-0"))
        bunch = load_snapshot("all-0", store=eng)
        assert np.array_equal(bunch.data, X) and np.array_equal(bunch.target, y)

        t0 = time.perf_counter()
        train(eng, snapshot="train-0", model="bench", seed=0, params={"max_iter": 5})
        results["train_max_iter5_s"] = time.perf_counter() - t0
        for _ in range(args.repeat):
            timed("trace_model", lambda: trace_model(eng, "bench:1"))

        rows_of = {"np.load": n, "lance read": n, "load_snapshot (all rows)": n,
                   "load_snapshot (all rows, sha256 chunks)": n,
                   "load_snapshot (train, gaps)": n_train, "create_snapshot (all rows)": n,
                   "create_snapshot (train, gaps)": n_train}
        table_rows = []
        for label, ts in timings.items():
            med = statistics.median(ts)
            entry = {"median_s": med, "runs_s": [round(t, 4) for t in ts]}
            if label in rows_of:
                entry["rows_per_s"] = rows_of[label] / med
            results[label] = entry
            table_rows.append((label, med, entry.get("rows_per_s")))
        if have_lance:
            lance_rate = results["lance read"]["rows_per_s"]
            for label in ("load_snapshot (all rows)", "load_snapshot (train, gaps)"):
                results[f"{label} / lance read"] = results[label]["rows_per_s"] / lance_rate
                # Per round (both measured back to back): robust to the machine's load drifting.
                rounds = [(rows_of[label] / a) / (n / b)
                          for a, b in zip(timings[label], timings["lance read"])]
                results[f"{label} / lance read, per round"] = [round(r, 2) for r in rounds]
        # BLAKE3 against sha256 chunks, the same rows, per round.
        results["load_snapshot speed-up, BLAKE3 over sha256 chunks"] = statistics.median(
            b / a for a, b in zip(timings["load_snapshot (all rows)"],
                                  timings["load_snapshot (all rows, sha256 chunks)"]))
        results["trace_model_ms"] = results["trace_model"]["median_s"] * 1000
        # What signed reviews add to a load: reading the trust file and verifying the approval's
        # signature and statement, against the whole verified load of all rows, per round.
        shares = [a / b for a, b in zip(timings["signature checks of a load"],
                                        timings["load_snapshot (all rows)"])]
        results["signature share of load_snapshot"] = statistics.median(shares)
        eng.close()
        rev.close()
        old.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{n} rows, median of {args.repeat}, {results['machine']}, Python {results['python']}")
    print(f"{'what':40} {'median s':>10} {'rows/s':>14}")
    for label, med, rate in table_rows:
        print(f"{label:40} {med:10.4f} {(f'{rate / 1e6:.2f} M' if rate else '-'):>14}")
    for key, value in results.items():
        if key.endswith("/ lance read"):
            print(f"{key}: {value:.2f}x (target >= {LOAD_TARGET}x); per round "
                  f"{results[key + ', per round']}")
    print("load_snapshot (all rows), BLAKE3 chunks over sha256 chunks: "
          f"{results['load_snapshot speed-up, BLAKE3 over sha256 chunks']:.2f}x, median per round")
    print(f"trace_model: {results['trace_model_ms']:.1f} ms (target < {TRACE_TARGET_MS:.0f} ms)")
    print(f"signature checks: {100 * results['signature share of load_snapshot']:.2f}% of "
          f"load_snapshot (all rows), median per round (target <= {SIGN_TARGET:.0%})")


if __name__ == "__main__":
    main()
