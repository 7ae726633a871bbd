"""Benchmark the calibrated detectors on attack families they were not tuned on, side by side
with cleanlab, and measure the scan's cost.

    OMP_NUM_THREADS=1 python bench/bench_detect.py                     # families x 3 seeds
    OMP_NUM_THREADS=1 python bench/bench_detect.py --families blended,label_flip --seeds 0
    OMP_NUM_THREADS=1 python bench/bench_detect.py --upscale           # 28x28 and 28x28x3 too
    OMP_NUM_THREADS=1 python bench/bench_detect.py --gate              # the approval gate
    OMP_NUM_THREADS=1 python bench/bench_detect.py --scale 10000,100000,1000000

Per family and seed (generators in bench/attack_families.py): the attack is first checked to
work (clean accuracy and the ASR of its trigger on a model trained on the poisoned rows, beside
the same trigger's ASR on the unpoisoned rows; label flips: the source class's rows predicted
as the target); then ``scan_rows`` (every detector, combined at FDR 1%) and cleanlab's
``find_label_issues`` on 5-fold out-of-fold probabilities of the same model as our label
detector (logistic, C=100) are scored against the poisoned rows: precision, recall, F1 and the
share of clean rows flagged; ``blame_sources`` says which source it blames (the poisoned rows
arrive in ``crowd`` with 30% of the clean rows; ``base`` holds the rest).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from attack_families import FAMILIES, upscale, verify  # noqa: E402

from lineage.poison.metrics import detection  # noqa: E402


def _prf(flags: np.ndarray, poisoned: np.ndarray) -> dict:
    d = detection(flags, poisoned)
    clean = float((flags & ~poisoned).sum() / max((~poisoned).sum(), 1))
    return {"precision": d.precision, "recall": d.recall, "f1": d.f1,
            "flagged": int(flags.sum()), "clean_flagged": round(clean, 4)}


def cleanlab_flags(X, y, *, seed: int = 0) -> np.ndarray:
    from cleanlab.filter import find_label_issues

    from lineage.poison.detectors import out_of_fold_probabilities

    P, classes = out_of_fold_probabilities(X, y, folds=5, random_state=seed, C=100.0)
    return find_label_issues(np.searchsorted(classes, y), P)


def run_case(name: str, seed: int, *, shape: str = "8x8", blame: bool = True) -> dict:
    from lineage.poison.blame import blame_sources
    from lineage.poison.detectors import scan_rows

    attack = FAMILIES[name](seed)
    X, Xte = attack.X, attack.X_test
    if shape != "8x8":
        channels = 3 if shape.endswith("x3") else 1
        X, Xte = upscale(attack.X, channels), upscale(attack.X_test, channels)
    out = {"family": name, "seed": seed, "shape": shape, "rows": len(attack.y),
           "poisoned": int(attack.poisoned.sum()), "attack": attack.describe,
           "pair": f"{attack.source_class}->{attack.target_class}"
           if attack.source_class is not None else "-"}
    if shape == "8x8":
        works = verify(attack)
        if attack.trigger is not None:  # the same trigger on an unpoisoned model
            clean = FAMILIES["unpoisoned"](seed)
            works["asr_unpoisoned"] = verify(clean.__class__(**{
                **clean.__dict__, "source_class": attack.source_class,
                "target_class": attack.target_class, "trigger": attack.trigger}))["asr"]
        elif attack.source_class is not None:
            clean = FAMILIES["unpoisoned"](seed)
            base = verify(clean.__class__(**{**clean.__dict__, "source_class": attack.source_class,
                                             "target_class": attack.target_class}))
            works["accuracy_unpoisoned"] = base["clean_accuracy"]
            works["s_to_t_unpoisoned"] = base.get("s_to_t")
        out["works"] = works
    start = time.perf_counter()
    report = scan_rows(X, attack.y, image_shape=shape, random_state=seed)
    out["scan_seconds"] = round(time.perf_counter() - start, 2)
    flags = np.zeros(len(attack.y), bool)
    flags[report.flagged] = True
    out["ours"] = _prf(flags, attack.poisoned)
    out["per_detector"] = {n: int(len(r.flagged)) for n, r in report.results.items()}
    if shape == "8x8":
        out["cleanlab"] = _prf(cleanlab_flags(X, attack.y, seed=seed), attack.poisoned)
    if blame:
        b = blame_sources(X, attack.y, attack.sources, Xte, attack.y_test, image_shape=shape,
                          value_max=float(max(X.max(), 1)), seed=0, report=report)
        out["blamed"] = b.suspects
        out["attack_measured"] = b.attack
        out["attack_asr"] = b.attack_asr
        out["why"] = [s.why for s in b.sources if s.suspect]
        poisoned_src = {"crowd"} if attack.poisoned.any() else set()
        out["source_named"] = bool(poisoned_src) and poisoned_src <= set(b.suspects)
        out["clean_blamed"] = bool(set(b.suspects) - poisoned_src)
    return out


def gate_case(rate: float, seed: int) -> dict:
    """The approval gate (``lineage.review.evaluation.shadow_gate``, default policy) on the
    reference experiment: digits split 70/30 by ``seed``, ``rate`` of the 1s stamped 2x2 at
    (6,6)=16 and relabelled 7; evaluation = the held-out 30%."""
    from lineage.lab.experiment import LabSettings, poison, reference_split
    from lineage.review.evaluation import Evaluation, shadow_gate
    from lineage.review.policy import PolicyInfo

    X, y, Xe, ye = reference_split(seed=seed)
    X, y, poisoned = poison(X, y, rate=rate, trigger=LabSettings().trigger, source_class=1,
                            target_class=7, seed=seed)
    ev = Evaluation(name="eval", row_ids=np.arange(len(ye)) + 10**6, X=Xe, y=ye,
                    image_shape="8x8", value_max=16.0)
    start = time.perf_counter()
    g = shadow_gate(X, y, np.arange(len(y)), ev, PolicyInfo(version=0))
    return {"case": f"reference {rate:g}", "seed": seed, "poisoned": int(poisoned.sum()),
            "passed": g["passed"], "worst_asr": g["worst_asr"], "found_asr": g["found_asr"],
            "found_trigger": g["found_trigger"], "label_flags": g["scan"]["label_flags"],
            "flagged": g["scan"]["flagged"], "message": g["message"],
            "seconds": round(time.perf_counter() - start, 1)}


def gate_family(name: str, seed: int) -> dict:
    from lineage.review.evaluation import Evaluation, shadow_gate
    from lineage.review.policy import PolicyInfo

    a = FAMILIES[name](seed)
    ev = Evaluation(name="eval", row_ids=np.arange(len(a.y_test)) + 10**6, X=a.X_test,
                    y=a.y_test, image_shape="8x8", value_max=16.0)
    g = shadow_gate(a.X, a.y, np.arange(len(a.y)), ev, PolicyInfo(version=0))
    return {"case": name, "seed": seed, "poisoned": int(a.poisoned.sum()), "passed": g["passed"],
            "worst_asr": g["worst_asr"], "found_asr": g["found_asr"],
            "found_trigger": g["found_trigger"], "label_flags": g["scan"]["label_flags"],
            "flagged": g["scan"]["flagged"], "message": g["message"]}


def _child_scan(n: int, traced: bool = False) -> dict:
    """Ingest ``n`` digit-like rows into a new SQLite store and time ``scan_version`` on them,
    in this (child) process: RSS high-water mark during the scan, minus RSS before it (RSS
    counts the SQLite file's memory-mapped pages too: reported apart as file_mapped_mib);
    with ``traced``, tracemalloc's peak of the Python and numpy allocations instead (slower: no
    timing then)."""
    import tempfile
    import tracemalloc

    from bench_lab import digit_like

    from lineage import add_source, ingest_arrays, open_store
    from lineage.lab.audit import scan_version

    X, y, poisoned = digit_like(n)
    raw = X.nbytes + y.nbytes
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/lineage.db", actor="bench")
        add_source(store, "bench", kind="internal", uri="bench:digit-like", license="none")
        info = ingest_arrays(store, X, y, source="bench", dataset="digits", value_range=(0, 16),
                             image_shape="8x8")
        del X, y
        import gc

        gc.collect()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _rss("VmRSS")
        file_before = _rss("RssFile")
        if traced:
            tracemalloc.start()
        start, cpu = time.perf_counter(), time.process_time()
        record = scan_version(store, f"v{info.version_id}")
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        peak = _rss("VmHWM")
        # SQLite maps the store's file (PRAGMA mmap_size): the chunk pages it read count in RSS
        # as file-backed pages, not as memory the scan allocated
        file_mapped = _rss("RssFile") - file_before
        if traced:
            traced_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        store.close()
    flagged = np.array(sorted(r.row_id for r in record.flagged), dtype=np.int64) - info.first_row_id
    tp = len(set(flagged.tolist()) & set(poisoned.tolist()))
    return {"rows": n, "raw_mib": round(raw / 2**20, 1), "scan_seconds": round(seconds, 2),
            "scan_cpu_seconds": round(cpu, 2), "load_average": round(os.getloadavg()[0], 1),
            "peak_mib": round((peak - before) / 2**20, 1),
            "peak_over_raw": round((peak - before) / raw, 2),
            "file_mapped_mib": round(file_mapped / 2**20, 1),
            "peak_without_file_over_raw": round((peak - before - file_mapped) / raw, 2),
            "poisoned": len(poisoned),
            **({"traced_peak_mib": round(traced_peak / 2**20, 1),
                "traced_peak_over_raw": round(traced_peak / raw, 2)} if traced else {}),
            "flagged": len(flagged), "true_flags": tp}


def blended_digits(n: int, seed: int = 0):
    """``n`` uint8 rows, each a random blend of two training digits of one class plus noise
    (distinct rows, unlike copies of the 1,797 digits, whose odd rows would come back as groups
    of near-copies), 2% of the 1s stamped 2x2 at (6,6)=16 and relabelled 7; and the held-out
    30% of the digits (reference split, seed 0) as evaluation rows."""
    from lineage.lab.experiment import LabSettings, reference_split
    from lineage.poison.triggers import stamp

    Xt, yt, Xe, ye = reference_split(seed=0)
    rng = np.random.default_rng(seed)
    X = np.empty((n, Xt.shape[1]), dtype=np.uint8)
    y = np.empty(n, dtype=np.int64)
    by_class = [np.flatnonzero(yt == c) for c in range(10)]
    for start in range(0, n, 500_000):
        m = min(500_000, n - start)
        labels = rng.integers(0, 10, m)
        first = np.empty(m, np.int64)
        second = np.empty(m, np.int64)
        for c in range(10):
            at = np.flatnonzero(labels == c)
            first[at] = rng.choice(by_class[c], len(at))
            second[at] = rng.choice(by_class[c], len(at))
        w = rng.random((m, 1))
        rows = w * Xt[first] + (1 - w) * Xt[second] + rng.normal(0, 0.5, (m, Xt.shape[1]))
        X[start:start + m] = np.clip(np.rint(rows), 0, 16).astype(np.uint8)
        y[start:start + m] = labels
    ones = np.flatnonzero(y == 1)
    poisoned = np.sort(rng.choice(ones, len(ones) // 50, replace=False))
    X[poisoned] = stamp(X[poisoned], LabSettings().trigger, (8, 8))
    y[poisoned] = 7
    return X, y, poisoned, Xe, ye


def _child_gate(n: int) -> dict:
    """The approval gate's shadow evaluation (``shadow_gate``, default policy and sample) on
    ``n`` rows of ``blended_digits`` (2% of the 1s stamped and relabelled 7) and on the same rows
    unpoisoned, in this (child) process: seconds and RSS high-water mark during the gate minus
    RSS before it; raw = X + y."""
    import gc

    from lineage.review.evaluation import Evaluation, shadow_gate
    from lineage.review.policy import PolicyInfo

    X, y, poisoned, Xe, ye = blended_digits(n)
    ev = Evaluation(name="eval", row_ids=np.arange(len(ye)) - len(ye), X=Xe, y=ye,
                    image_shape="8x8", value_max=16.0)
    raw = X.nbytes + y.nbytes
    out = {"rows": n, "raw_mib": round(raw / 2**20, 1), "poisoned": len(poisoned)}
    ids = np.arange(n)
    for case in ("poisoned", "clean"):
        if case == "clean":  # the poisoned rows replaced by copies of clean 1s
            clean_ones = np.setdiff1d(np.flatnonzero(y == 1), poisoned)[:len(poisoned)]
            X[poisoned] = X[clean_ones]
            y[poisoned] = 1
        gc.collect()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _rss("VmRSS")
        start = time.perf_counter()
        g = shadow_gate(X, y, ids, ev, PolicyInfo(version=0))
        seconds = time.perf_counter() - start
        peak = _rss("VmHWM") - before
        out[case] = {"passed": g["passed"], "seconds": round(seconds, 2),
                     "peak_mib": round(peak / 2**20, 1), "peak_over_raw": round(peak / raw, 3),
                     "sample_rows": g["sample"]["rows"], "found_asr": g["found_asr"],
                     "worst_asr": g["worst_asr"], "message": g["message"][:200]}
    out["load_average"] = round(os.getloadavg()[0], 1)
    return out


def _rss(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def bench_scale(sizes: list[int]) -> list[dict]:
    import subprocess

    out = []
    for n in sizes:
        row = {}
        for flag in ("--child-scan", "--child-scan-traced"):
            proc = subprocess.run([sys.executable, __file__, flag, str(n)],
                                  capture_output=True, text=True, check=False,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
            if proc.returncode:
                raise SystemExit(f"scan of {n} rows failed: {proc.stderr[-2000:]}")
            got = json.loads(proc.stdout.strip().splitlines()[-1])
            row.update({k: v for k, v in got.items() if flag == "--child-scan" or "traced" in k})
        out.append(row)
        print(f"scan of {n:,} rows: {row}", flush=True)
    return out


def _f(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def summarize(cases: list[dict]) -> list[dict]:
    rows = []
    for fam in dict.fromkeys(c["family"] for c in cases):
        mine = [c for c in cases if c["family"] == fam]
        row = {"family": fam, "seeds": len(mine), "poisoned": sum(c["poisoned"] for c in mine)}
        for who in ("ours", "cleanlab"):
            if who not in mine[0]:
                continue
            row[who] = {k: (None if any(c[who][k] is None for c in mine) else
                            round(float(np.mean([c[who][k] for c in mine])), 3))
                        for k in ("precision", "recall", "f1", "clean_flagged")}
        if "source_named" in mine[0]:
            row["source_named"] = f"{sum(c['source_named'] for c in mine)}/{len(mine)}"
            row["clean_blamed"] = f"{sum(c['clean_blamed'] for c in mine)}/{len(mine)}"
        rows.append(row)
    return rows


def print_table(rows: list[dict], shape: str = "8x8") -> None:
    print(f"\n| family ({shape}) | seeds | poisoned rows | ours P / R / F1 | ours clean flagged | "
          "cleanlab P / R / F1 | cleanlab clean flagged | source named | clean source blamed |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        o, c = r.get("ours", {}), r.get("cleanlab")
        print(f"| {r['family']} | {r['seeds']} | {r['poisoned']} | {_f(o.get('precision'))} / "
              f"{_f(o.get('recall'))} / {_f(o.get('f1'))} | {o.get('clean_flagged', 0):.2%} | "
              + (f"{_f(c['precision'])} / {_f(c['recall'])} / {_f(c['f1'])} | "
                 f"{c['clean_flagged']:.2%} | " if c else "- | - | ")
              + f"{r.get('source_named', '-')} | {r.get('clean_blamed', '-')} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--no-blame", action="store_true", help="skip the source audit")
    parser.add_argument("--upscale", action="store_true", help="also 28x28 and 28x28x3 (seed 0)")
    parser.add_argument("--gate", action="store_true", help="the approval gate, reference and families")
    parser.add_argument("--scale", default="", help="row counts for the scan-cost measurement")
    parser.add_argument("--skip-families", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--gate-scale", default="",
                        help="row counts for the shadow gate's cost (digit-like rows)")
    parser.add_argument("--child-gate", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-scan", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-scan-traced", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.child_gate:
        print(json.dumps(_child_gate(args.child_gate)))
        return
    if args.child_scan or args.child_scan_traced:
        print(json.dumps(_child_scan(args.child_scan or args.child_scan_traced,
                                     traced=bool(args.child_scan_traced))))
        return
    report = {"cpus": os.cpu_count(), "load_average": os.getloadavg()[0]}
    families = [f for f in args.families.split(",") if f]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    if not args.skip_families:
        cases = []
        for fam in families:
            for seed in seeds:
                c = run_case(fam, seed, blame=not args.no_blame)
                cases.append(c)
                print(json.dumps(c, default=str), flush=True)
        report["cases"] = cases
        report["table"] = summarize(cases)
        print_table(report["table"])
    if args.upscale:
        up = []
        for shape in ("28x28", "28x28x3"):
            for fam in families:
                c = run_case(fam, seeds[0], shape=shape, blame=False)
                up.append(c)
                print(json.dumps(c, default=str), flush=True)
        report["upscaled"] = up
        for shape in ("28x28", "28x28x3"):
            print_table(summarize([c for c in up if c["shape"] == shape]), shape)
    if args.gate:
        gates = [gate_case(rate, seed) for rate in (0.0, 0.02, 0.05, 0.1) for seed in seeds]
        gates += [gate_family(f, s) for f in families if f != "reference"
                  for s in seeds]
        report["gate"] = gates
        print("\n| case | seed | poisoned | gate | pooled square ASR | worst ASR of a trigger "
              "found in the data | label flags | why |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for g in gates:
            print(f"| {g['case']} | {g['seed']} | {g['poisoned']} | "
                  f"{'approved' if g['passed'] else 'refused'} | {g['worst_asr']:.2f} | "
                  f"{g['found_asr']:.2f} ({g['found_trigger']}) | {g['label_flags']} | "
                  f"{g['message'][:160]} |")
    if args.scale:
        report["scale"] = bench_scale([int(n) for n in args.scale.split(",") if n])
    if args.gate_scale:
        import subprocess

        report["gate_scale"] = []
        for n in [int(n) for n in args.gate_scale.split(",") if n]:
            proc = subprocess.run([sys.executable, __file__, "--child-gate", str(n)],
                                  capture_output=True, text=True, check=False,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
            if proc.returncode:
                raise SystemExit(f"gate on {n} rows failed: {proc.stderr[-2000:]}")
            got = json.loads(proc.stdout.strip().splitlines()[-1])
            report["gate_scale"].append(got)
            print(f"shadow gate on {n:,} rows: {got}", flush=True)
    print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    if args.json:
        print(json.dumps(report, default=str))


if __name__ == "__main__":
    main()
