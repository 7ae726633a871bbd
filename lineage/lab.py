"""The poisoning lab: the reference experiment, its metrics, and the demo that runs it through
the store.

The reference experiment (DESIGN.md): scikit-learn digits split 70/30 (seeded); a 2x2 patch at
value 16 stamped in the lower-right corner of a fraction of the training rows of digit 1, which
are relabelled 7; a model trained on the result; then its clean accuracy and its attack success
rate. Two scenarios:

1. poisoning inside the pipeline: a compromised preprocessing step, recorded as an inject-trigger
   transformation, so the records say exactly which rows it poisoned;
2. poisoning upstream: a crowdsourced source delivers rows already triggered and relabelled, with
   no record of it; only the detectors and the per-source shadow evaluation can tell.

Metrics, per poison rate:

- ``poison_rate``: poisoned rows / training rows; ``source_fraction``: poisoned rows / training
  rows of the source class (the ``rate`` of the inject-trigger transformation);
- ``clean_accuracy``: accuracy on the untouched held-out rows;
- ``trigger_attack_success_rate``: the share of held-out source-class rows that the model
  predicts as the target class once the trigger is stamped on them;
- ``trigger_visibility``: see ``lineage.detectors.trigger_visibility`` (recall of a simple
  abnormal-pixel-block inspection on the poisoned rows at a 1% false-positive rate on the clean
  rows);
- ``provenance_coverage``: the training version's coverage (store runs only);
- each detector's precision and recall, and the combined scan's, against the poisoned rows.

``run_arrays`` runs the experiment in memory (no store: tests and benchmarks);
``run_demo`` runs it through the store's public functions, so every step is in the lineage.
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from lineage.detectors import DETECTORS, ScanReport, scan_rows, trigger_visibility
from lineage.errors import BadInputError, GateFailedError
from lineage.triggers import Trigger, make_trigger, stamp

IMAGE_SHAPE = (8, 8)
VALUE_MAX = 16.0
DEFAULT_RATES = (0.0, 0.05, 0.1, 0.2, 0.5)
QUICK_RATES = (0.0, 0.1)
SCENARIO_2_RATE = 0.1
ESTIMATORS = ("logistic", "mlp")

Progress = Optional[Callable[[str], None]]


@dataclass(frozen=True)
class LabSettings:
    """What one lab run does. ``rates`` are source fractions: the share of the source class's
    training rows that get the trigger (0 = the unpoisoned baseline)."""

    rates: tuple[float, ...] = DEFAULT_RATES
    estimator: str = "logistic"
    seed: int = 0
    source_class: int = 1
    target_class: int = 7
    size: int = 2
    position: str = "lower-right"
    value: float = 16.0
    test_size: float = 0.3

    @property
    def trigger(self) -> Trigger:
        return make_trigger(size=self.size, position=self.position, value=self.value,
                            image_shape=IMAGE_SHAPE)


def parse_rates(text: str | Sequence[float]) -> tuple[float, ...]:
    """``"0,0.05,0.1"`` -> (0.0, 0.05, 0.1); BadInputError naming the bad entry."""
    items = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    rates = []
    for item in items:
        if item == "":
            continue
        try:
            rates.append(float(item))
        except (TypeError, ValueError):
            raise BadInputError(f"--rates: {item!r} is not a number (give e.g. 0,0.05,0.1)") from None
    if not rates:
        raise BadInputError("--rates: give at least one rate, e.g. 0,0.05,0.1")
    return tuple(rates)


def check_settings(settings: LabSettings) -> LabSettings:
    """Validate every option before anything runs; BadInputError with one clear line."""
    for rate in settings.rates:
        if not (0.0 <= rate < 1.0) or math.isnan(rate):
            raise BadInputError(f"--rates: {rate:g} is outside [0, 1): a rate is the share of the "
                                "source class's training rows to poison, e.g. 0.1")
    if settings.estimator not in ESTIMATORS:
        raise BadInputError(f"unknown estimator {settings.estimator!r}: use one of "
                            f"{', '.join(ESTIMATORS)}")
    for name in ("source_class", "target_class"):
        label = getattr(settings, name)
        if label not in range(10):
            raise BadInputError(f"--{name.replace('_', '-')} {label}: digits has classes 0..9")
    if settings.source_class == settings.target_class:
        raise BadInputError(f"source and target class are both {settings.source_class}: a trigger "
                            "must move rows to another class")
    if not (0.0 <= settings.value <= VALUE_MAX):
        raise BadInputError(f"--value {settings.value:g} is outside digits' range 0..16")
    if not (0.0 < settings.test_size < 1.0):
        raise BadInputError(f"--test-size {settings.test_size:g} is outside (0, 1)")
    settings.trigger  # raises BadInputError when the patch does not fit
    rates = tuple(sorted(set(float(r) for r in settings.rates)))
    return replace(settings, rates=rates)


def check_output(path: Optional[str | os.PathLike], what: str = "--out") -> Optional[Path]:
    """Check up front that ``path`` can be written: its folder exists or can be made, and a file
    can be created in it. The probe (and any folder it had to make) is removed again."""
    if path is None:
        return None
    path = Path(path)
    if str(path).strip() in ("", ".") or path.is_dir():
        raise BadInputError(f"{what} {path}: is a folder; give a file name, e.g. results/sweep.csv")
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


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write to a temporary file next to ``path``, then rename: never a half-written file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise BadInputError(f"{path}: cannot be written ({exc.strerror})") from None
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a result file is for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------- metrics

@dataclass(frozen=True)
class Detection:
    """Precision, recall and F1 of a set of flags against the poisoned rows (None: undefined,
    e.g. precision without flags or recall without poisoned rows)."""

    precision: Optional[float]
    recall: Optional[float]
    f1: Optional[float]
    n_flagged: int


def detection(flagged: np.ndarray, poisoned: np.ndarray) -> Detection:
    """Compare flags (boolean mask) with the poisoned rows (boolean mask)."""
    flagged = np.asarray(flagged, dtype=bool)
    poisoned = np.asarray(poisoned, dtype=bool)
    tp = int((flagged & poisoned).sum())
    precision = tp / int(flagged.sum()) if flagged.any() else None
    recall = tp / int(poisoned.sum()) if poisoned.any() else None
    f1 = None
    if precision is not None and recall is not None:
        f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    elif recall is not None:
        f1 = 0.0
    return Detection(precision=precision, recall=recall, f1=f1, n_flagged=int(flagged.sum()))


def scan_detection(report: ScanReport, poisoned: np.ndarray) -> dict[str, Detection]:
    """Per detector and ``combined``: its flags against the poisoned rows."""
    out = {name: detection(result.flag_mask, poisoned) for name, result in report.results.items()}
    combined = np.zeros(len(poisoned), dtype=bool)
    combined[report.flagged] = True
    out["combined"] = detection(combined, poisoned)
    return out


def attack_success_rate(model, X_test: np.ndarray, y_test: np.ndarray, *, trigger: Trigger,
                        source_class: int, target_class: int) -> float:
    """The share of held-out ``source_class`` rows predicted ``target_class`` once stamped."""
    rows = np.asarray(y_test) == source_class
    if not rows.any():
        return float("nan")
    stamped = stamp(np.asarray(X_test, dtype=np.float64)[rows], trigger, IMAGE_SHAPE)
    return float((model.predict(stamped) == target_class).mean())


def clean_accuracy(model, X_test: np.ndarray, y_test: np.ndarray) -> float:
    return float((model.predict(np.asarray(X_test, dtype=np.float64)) == np.asarray(y_test)).mean())


@dataclass(frozen=True)
class LabRow:
    """One poison rate's results: one line of the demo's table and CSV."""

    scenario: int
    source_fraction: float
    poison_rate: float
    poisoned_rows: int
    training_rows: int
    clean_accuracy: float
    trigger_attack_success_rate: float
    trigger_visibility: Optional[float]
    detection: dict = field(default_factory=dict)  # detector (and "combined") -> Detection
    provenance_coverage: Optional[float] = None
    gate: Optional[str] = None  # approved | refused (store runs)
    gate_message: Optional[str] = None
    worst_scanned_trigger: Optional[str] = None
    worst_scanned_asr: Optional[float] = None
    snapshot: Optional[str] = None
    model: Optional[str] = None
    scan_event: Optional[int] = None


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

    _write_atomically(path, write)
    return path


def write_plot(path: str | os.PathLike, rows: Sequence[LabRow], settings: LabSettings) -> Path:
    """Clean accuracy and ASR against poison rate (matplotlib: ``pip install 'lineage[plot]'``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BadInputError("--plot needs matplotlib: pip install 'lineage[plot]'") from None
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for scenario in sorted({r.scenario for r in rows}):
        mine = sorted((r for r in rows if r.scenario == scenario), key=lambda r: r.poison_rate)
        x = [r.poison_rate for r in mine]
        tag = "" if len({r.scenario for r in rows}) == 1 else f" (scenario {scenario})"
        ax.plot(x, [r.clean_accuracy for r in mine], "o-", label="clean accuracy" + tag)
        ax.plot(x, [r.trigger_attack_success_rate for r in mine], "s--",
                label="attack success rate" + tag)
    ax.set_xlabel("poison rate (poisoned / training rows)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"digits, {settings.trigger.describe()} on {settings.source_class} -> "
                 f"{settings.target_class}, {settings.estimator}, seed {settings.seed}")
    ax.grid(alpha=0.3)
    ax.legend(loc="center right")
    fig.tight_layout()

    def write(tmp: Path) -> None:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=120)

    try:
        _write_atomically(path, write)
    except ValueError as exc:  # an unknown image format
        raise BadInputError(f"--plot {path}: {exc}") from None
    finally:
        plt.close(fig)
    return path


# ----------------------------------------------------------------------------- in memory

def reference_split(*, seed: int = 0, test_size: float = 0.3):
    """Digits split as ``split_version`` splits: (X_train, y_train, X_test, y_test)."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    n_test = int(math.ceil(test_size * len(X)))
    is_test = np.zeros(len(X), dtype=bool)
    is_test[np.random.default_rng(seed).permutation(len(X))[:n_test]] = True
    return X[~is_test], y[~is_test], X[is_test], y[is_test]


def poison(X: np.ndarray, y: np.ndarray, *, rate: float, trigger: Trigger, source_class: int,
           target_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stamp ``trigger`` on a seeded ``rate`` of the ``source_class`` rows and relabel them, as the
    inject-trigger transformation chooses them. Returns (X, y, poisoned mask); rate 0 changes
    nothing."""
    X = np.array(X, dtype=np.float64, copy=True)
    y = np.array(y, copy=True)
    poisoned = np.zeros(len(y), dtype=bool)
    if rate <= 0:
        return X, y, poisoned
    src = np.flatnonzero(y == source_class)
    n = max(1, int(round(rate * len(src))))
    chosen = np.sort(np.random.default_rng(seed).choice(src, size=n, replace=False))
    X[chosen] = stamp(X[chosen], trigger, IMAGE_SHAPE)
    y[chosen] = target_class
    poisoned[chosen] = True
    return X, y, poisoned


def _fit(settings: LabSettings, X: np.ndarray, y: np.ndarray):
    from lineage.training import fit_estimator

    return fit_estimator(settings.estimator, X, y, seed=settings.seed, value_max=VALUE_MAX)


def measure(settings: LabSettings, X: np.ndarray, y: np.ndarray, poisoned: np.ndarray,
            X_test: np.ndarray, y_test: np.ndarray, *, model=None, scenario: int = 1,
            rate: float = 0.0, scan: Optional[ScanReport] = None) -> LabRow:
    """Every in-memory metric of one training set: train (unless ``model`` is given), measure on
    the held-out rows, run the detectors (unless ``scan`` is given)."""
    model = _fit(settings, X, y) if model is None else model
    if scan is None:
        scan = scan_rows(X, y, image_shape=IMAGE_SHAPE, value=settings.value,
                         random_state=settings.seed)
    n_source = int(((y == settings.source_class) | poisoned).sum())
    return LabRow(
        scenario=scenario, source_fraction=rate, poison_rate=float(poisoned.mean()),
        poisoned_rows=int(poisoned.sum()), training_rows=len(y),
        clean_accuracy=clean_accuracy(model, X_test, y_test),
        trigger_attack_success_rate=attack_success_rate(
            model, X_test, y_test, trigger=settings.trigger, source_class=settings.source_class,
            target_class=settings.target_class),
        trigger_visibility=(None if not poisoned.any() else
                            trigger_visibility(X, y, poisoned, image_shape=IMAGE_SHAPE)),
        detection=scan_detection(scan, poisoned) if n_source else {})


def run_arrays(settings: LabSettings, *, progress: Progress = None) -> list[LabRow]:
    """The reference experiment in memory (scenario 1's data, no store): one row per rate."""
    settings = check_settings(settings)
    X_train, y_train, X_test, y_test = reference_split(seed=settings.seed,
                                                       test_size=settings.test_size)
    rows = []
    for rate in settings.rates:
        if progress:
            progress(f"rate {rate:g}")
        X, y, poisoned = poison(X_train, y_train, rate=rate, trigger=settings.trigger,
                                source_class=settings.source_class,
                                target_class=settings.target_class, seed=settings.seed)
        rows.append(measure(settings, X, y, poisoned, X_test, y_test, rate=rate))
    return rows


def detector_sweep(*, fractions: Sequence[float] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5),
                   seeds: Sequence[int] = (0, 1, 2), settings: LabSettings = LabSettings(),
                   detectors: Optional[Sequence[str]] = None) -> list[dict]:
    """Detector precision/recall/F1 on scenario-2 data (rows arrive stamped and relabelled; the
    detectors are told nothing about the trigger) for each source fraction and seed; rate 0 rows
    report how many clean rows each detector flags."""
    out = []
    for seed in seeds:
        X_train, y_train, _, _ = reference_split(seed=seed, test_size=settings.test_size)
        for fraction in fractions:
            X, y, poisoned = poison(X_train, y_train, rate=fraction, trigger=settings.trigger,
                                    source_class=settings.source_class,
                                    target_class=settings.target_class, seed=seed)
            report = scan_rows(X, y, image_shape=IMAGE_SHAPE, value=settings.value,
                               random_state=seed, detectors=detectors)
            for name, d in scan_detection(report, poisoned).items():
                out.append({"seed": seed, "source_fraction": fraction, "detector": name,
                            "poisoned_rows": int(poisoned.sum()), "n_rows": len(y),
                            "n_flagged": d.n_flagged, "precision": d.precision,
                            "recall": d.recall, "f1": d.f1})
    return out


# ----------------------------------------------------------------------------- through the store

ACTORS = {"engineer": "data-engineer", "red_team": "red-team", "reviewer": "reviewer",
          "lab": "poison-lab"}


@dataclass(frozen=True)
class DemoReport:
    """What ``run_demo`` did and found."""

    tag: str
    db: str
    settings: LabSettings
    quick: bool
    rows: list  # LabRow, scenario 1 by rate, then scenario 2
    lessons: list  # plain lines
    scenario_1_audit: dict = field(default_factory=dict)
    scenario_2_audit: dict = field(default_factory=dict)
    seconds: float = 0.0


def _next_tag(store) -> str:
    from lineage.versions import list_versions

    used = {v.name.split("-")[0] for v in list_versions(store) if v.name}
    n = 1
    while f"demo{n}" in used:
        n += 1
    return f"demo{n}"


def _attempt_approval(store, name: str) -> tuple[str, str]:
    from lineage.gates import approve_snapshot

    try:
        approve_snapshot(store, name, reason="production approval")
        return "approved", "all gates passed"
    except GateFailedError as exc:
        return "refused", str(exc)


def _store_row(stores, settings: LabSettings, *, scenario: int, rate: float, snapshot: str,
               version: int, poisoned_ids, gate: str, gate_message: str, model_info,
               X_test, y_test) -> LabRow:
    from lineage.audit import scan_version
    from lineage.training import load_model
    from lineage.coverage import get_coverage
    from lineage.versions import version_members

    lab = stores["lab"]
    members = version_members(lab, version)
    poisoned = np.isin(members.row_ids, np.asarray(poisoned_ids, dtype=np.int64))
    model = load_model(lab, model_info.ref)
    record = scan_version(lab, snapshot, seed=settings.seed)
    flagged_by = {name: set() for name in record.detectors}
    for r in record.flagged + record.noted:
        for d in r.detectors:
            flagged_by[d].add(r.row_id)
    det = {name: detection(np.isin(members.row_ids, list(ids)), poisoned)
           for name, ids in flagged_by.items()}
    det["combined"] = detection(np.isin(members.row_ids, [r.row_id for r in record.flagged]),
                                poisoned)
    metrics = model_info.metrics
    return LabRow(
        scenario=scenario, source_fraction=rate, poison_rate=float(poisoned.mean()),
        poisoned_rows=int(poisoned.sum()), training_rows=len(members.row_ids),
        clean_accuracy=clean_accuracy(model, X_test, y_test),
        trigger_attack_success_rate=attack_success_rate(
            model, X_test, y_test, trigger=settings.trigger, source_class=settings.source_class,
            target_class=settings.target_class),
        trigger_visibility=(trigger_visibility(members.X, members.y, poisoned,
                                               image_shape=IMAGE_SHAPE) if poisoned.any() else None),
        detection=det, provenance_coverage=round(get_coverage(lab, version).coverage, 6),
        gate=gate, gate_message=gate_message,
        worst_scanned_trigger=metrics.get("worst_trigger"),
        worst_scanned_asr=metrics.get("worst_asr"), snapshot=snapshot, model=model_info.ref,
        scan_event=record.event_id)


def run_demo(db: Optional[str], settings: LabSettings = LabSettings(), *, quick: bool = False,
             progress: Progress = None) -> DemoReport:
    """The poisoning lab through the store's public functions, every step in the lineage.

    Ingest scikit-learn digits (source sklearn-digits, reviewed), split (seeded), freeze the
    held-out side as the policy's evaluation snapshot; then per rate (scenario 1) an
    inject-trigger transformation by ``red-team`` (a compromised preprocessing step), a snapshot,
    an approval attempt through the gates by ``reviewer``. Refused snapshots are then approved
    under a recorded red-team sandbox policy (``max_asr`` 1.0) so the lab can train on them and
    measure the attack; the production policy is restored and every poisoned snapshot revoked
    (also one the gate let through). Every
    snapshot is trained on, scanned (recorded) and measured. Unless ``quick``, scenario 2 follows:
    half of the training pool is set aside, a crowdsourced source delivers it as a batch with
    triggered, relabelled rows and no record of it, the batch is appended, snapshotted, refused,
    scanned, trained on in the sandbox, and ``audit_sources`` names the source. Names are
    prefixed with a fresh tag (``demo1``, ``demo2`` ...), so a store can hold several runs.
    """
    import time

    from lineage.audit import audit_poisoned, audit_sources
    from lineage.ingest import ingest_arrays, ingest_digits
    from lineage.policy import get_policy, set_policy
    from lineage.snapshots import create_snapshot, revoke_snapshot
    from lineage.gates import approve_snapshot
    from lineage.sources import add_source, get_source, review_source
    from lineage.store import open_store
    from lineage.training import train
    from lineage.transforms import append_ingest, inject_trigger, split_version
    from lineage.versions import version_members

    settings = check_settings(settings)
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    stores = {}
    try:
        for role, actor in ACTORS.items():
            stores[role] = open_store(db, actor=actor)
        eng, red, rev, lab = (stores[k] for k in ("engineer", "red_team", "reviewer", "lab"))
        tag = _next_tag(eng)
        trig = settings.trigger
        say(f"{tag}: ingest scikit-learn digits")
        info = ingest_digits(eng)
        if get_source(eng, info.source).status != "approved":
            review_source(rev, info.source, decision="approve",
                          reason="scikit-learn's bundled digits, BSD-3-Clause, checked")
        split = split_version(eng, version=info.version_id, test_size=settings.test_size,
                              seed=settings.seed, name=f"{tag}-digits",
                              reason="hold out a test split for evaluation")
        # The reviewer freezes the held-out split: four eyes keeps the evaluation snapshot out of
        # the hands of those whose snapshots it judges.
        create_snapshot(rev, f"{tag}-eval", version=split.test_version_id)
        production = set_policy(rev, evaluation_snapshot=f"{tag}-eval",
                                reason=f"{tag}: evaluate on the held-out split")
        test = version_members(eng, split.test_version_id)
        X_test, y_test = test.X.astype(np.float64), test.y

        # (scenario, rate, snapshot, version, poisoned ids, gate, message)
        runs = []
        for rate in settings.rates:
            name = f"{tag}-s1-r{rate:g}"
            version, poisoned_ids = split.train_version_id, ()
            if rate > 0:
                say(f"scenario 1, rate {rate:g}: inject-trigger (compromised preprocessing step)")
                res = inject_trigger(red, version=split.train_version_id,
                                     source_class=settings.source_class,
                                     target_class=settings.target_class, rate=rate, size=trig.size,
                                     position=(trig.row, trig.col), value=trig.value,
                                     seed=settings.seed, name=name,
                                     reason="preprocessing step normalize-v2 (compromised)")
                version, poisoned_ids = res.version_id, res.poisoned_row_ids
            create_snapshot(eng, name, version=version)
            say(f"scenario 1, rate {rate:g}: approval attempt through the gates")
            gate, message = _attempt_approval(rev, name)
            runs.append((1, rate, name, version, poisoned_ids, gate, message))

        s2 = None
        if not quick:
            say("scenario 2: a crowdsourced batch arrives already poisoned")
            pool = split_version(eng, version=split.train_version_id, test_size=0.5,
                                 seed=settings.seed, name=f"{tag}-pool",
                                 reason="half the training pool goes out for crowd labelling")
            kept = version_members(eng, pool.train_version_id)
            batch = version_members(eng, pool.test_version_id)
            n_source = int((kept.y == settings.source_class).sum()
                           + (batch.y == settings.source_class).sum())
            fraction = SCENARIO_2_RATE
            src_pos = np.flatnonzero(batch.y == settings.source_class)
            n_poison = min(len(src_pos), max(1, int(round(fraction * n_source))))
            chosen = np.sort(np.random.default_rng(settings.seed).choice(src_pos, n_poison,
                                                                         replace=False))
            Xb, yb = batch.X.copy(), batch.y.copy()
            Xb[chosen] = stamp(Xb[chosen], trig, IMAGE_SHAPE).astype(Xb.dtype)
            yb[chosen] = settings.target_class
            crowd = f"{tag}-crowd-batch-7"
            add_source(eng, crowd, kind="crowdsourced", uri="https://crowd.example/batches/7",
                       license="CC-BY-4.0", owner="Acme Labelling Ltd")
            review_source(rev, crowd, decision="approve", reason="vendor contract and license checked")
            ingest = ingest_arrays(eng, Xb, yb, source=crowd, dataset=info.dataset,
                                   file_name="crowd-batch-7.npz")
            appended = append_ingest(eng, version=pool.train_version_id, ingest=ingest.id,
                                     name=f"{tag}-s2", reason="crowd batch 7 delivered")
            name = f"{tag}-s2-crowd"
            create_snapshot(eng, name, version=appended.version_id)
            say("scenario 2: approval attempt through the gates")
            gate, message = _attempt_approval(rev, name)
            poisoned_ids = tuple(int(ingest.first_row_id + i) for i in chosen)
            s2 = (2, round(n_poison / n_source, 4), name, appended.version_id, poisoned_ids, gate,
                  message)
            runs.append(s2)

        refused = [r for r in runs if r[5] == "refused"]
        if refused:
            say("red-team sandbox: approve the refused snapshots to measure the attack")
            set_policy(rev, max_asr=1.0, reason=f"{tag}: red-team sandbox, train on refused "
                       "snapshots only to measure the attack")
            try:
                for r in refused:
                    approve_snapshot(rev, r[2], reason="red-team sandbox (max_asr 1.0)")
            finally:
                set_policy(rev, max_asr=production.max_asr,
                           reason=f"{tag}: sandbox over, production thresholds back")
        rows, models = [], {}
        for r in runs:
            scenario, rate, name, version, poisoned_ids, gate, message = r
            say(f"scenario {scenario}, {name}: train, scan, measure")
            models[name] = train(lab, snapshot=name, model=f"{tag}-clf", estimator=settings.estimator,
                                 seed=settings.seed)
            rows.append(_store_row(stores, settings, scenario=scenario, rate=rate, snapshot=name,
                                   version=version, poisoned_ids=poisoned_ids, gate=gate,
                                   gate_message=message, model_info=models[name],
                                   X_test=X_test, y_test=y_test))
        for r in runs:
            if r[5] == "refused":
                revoke_snapshot(rev, r[2], reason="poisoned: refused by the production gate, "
                                "approved only in the red-team sandbox")
            elif r[4]:  # poisoned, yet the gate let it through: the red team knows better
                revoke_snapshot(rev, r[2], reason=f"poisoned by the red-team exercise ({len(r[4])} "
                                "rows); the production gate missed it")

        audit1 = {}
        poisoned_runs = [r for r in runs if r[0] == 1 and r[1] > 0]
        if poisoned_runs:
            worst = poisoned_runs[-1]
            say(f"scenario 1: audit poisoned {models[worst[2]].ref}")
            audit = audit_poisoned(lab, models[worst[2]].ref, scan=False)
            truth = set(worst[4])
            listed = set(audit.from_records)
            audit1 = {"model": audit.model, "snapshot": audit.snapshot, "listed": len(listed),
                      "poisoned": len(truth),
                      "precision": len(listed & truth) / len(listed) if listed else None,
                      "recall": len(listed & truth) / len(truth) if truth else None}
        audit2 = {}
        if s2 is not None:
            say("scenario 2: audit sources (retrain without each source)")
            sources = audit_sources(lab, f"v{s2[3]}")
            audit2 = {"version": f"v{s2[3]}", "worst_trigger": sources.worst_trigger,
                      "worst_asr": sources.worst_asr,
                      "suspects": [f.source for f in sources.sources if f.suspect],
                      "sources": [{"source": f.source, "rows": f.rows,
                                   "trigger_asr_without": f.trigger_asr_without,
                                   "suspect": f.suspect} for f in sources.sources],
                      "crowd_source": crowd, "event": sources.event_id}
        report = DemoReport(tag=tag, db=eng.url, settings=settings, quick=quick, rows=rows,
                            lessons=[], scenario_1_audit=audit1, scenario_2_audit=audit2,
                            seconds=0.0)
        return replace(report, lessons=lessons(report),
                       seconds=round(time.perf_counter() - started, 2))
    finally:
        for s in stores.values():
            s.close()


def lessons(report: DemoReport) -> list[str]:
    """The demo's lesson in plain lines, from its measured rows."""
    s = report.settings
    out = []
    s1 = sorted((r for r in report.rows if r.scenario == 1), key=lambda r: r.source_fraction)
    base = next((r for r in s1 if r.poisoned_rows == 0), None)
    poisoned = [r for r in s1 if r.poisoned_rows > 0]
    if poisoned:
        top = max(poisoned, key=lambda r: r.trigger_attack_success_rate)
        accs = [r.clean_accuracy for r in poisoned]
        out.append(
            f"Clean accuracy stays between {min(accs):.3f} and {max(accs):.3f}"
            + (f" (unpoisoned {base.clean_accuracy:.3f})" if base else "")
            + f" while the attack success rate of the {s.trigger.describe()} trigger "
            f"({s.source_class} -> {s.target_class}) climbs from "
            + (f"{base.trigger_attack_success_rate:.2f} unpoisoned " if base else "")
            + f"to {top.trigger_attack_success_rate:.2f} with {top.poisoned_rows} poisoned rows "
            f"({top.poison_rate:.1%} of the training rows): clean accuracy alone never shows it.")
        gated = [r for r in report.rows if r.poisoned_rows > 0]
        refused = [r for r in gated if r.gate == "refused"]
        line = (f"The approval gate refused {len(refused)} of {len(gated)} poisoned snapshots "
                "(shadow evaluation: the trigger scan found the patch without being told where)")
        passed = [r for r in gated if r.gate != "refused"]
        if passed:
            line += "; it let through " + ", ".join(
                f"{r.snapshot} ({r.poisoned_rows} poisoned rows; revoked afterwards)" for r in passed)
        if base is not None:
            line += f"; the unpoisoned snapshot was {base.gate}"
        out.append(line + ".")
    if report.scenario_1_audit:
        a = report.scenario_1_audit
        out.append(f"Scenario 1 (poisoned inside the pipeline): the records name the rows. "
                   f"`lineage audit poisoned --model {a['model']}` lists {a['listed']} rows of "
                   f"{a['poisoned']} poisoned: precision {a['precision']}, recall {a['recall']}.")
    s2 = [r for r in report.rows if r.scenario == 2]
    if s2 and report.scenario_2_audit:
        r, a = s2[0], report.scenario_2_audit
        c = r.detection.get("combined")
        suspects = ", ".join(str(x) for x in a["suspects"]) or "no source"
        without = next((x["trigger_asr_without"] for x in a["sources"]
                        if x["source"] == a["crowd_source"]), None)
        out.append(
            f"Scenario 2 (poisoned upstream, no record of it): the records cannot say which rows; "
            f"the detectors flagged {c.n_flagged if c else 0} rows (precision "
            f"{_fmt_opt(c.precision if c else None)}, recall {_fmt_opt(c.recall if c else None)}) "
            f"and `lineage audit sources --version {a['version']}` blames {suspects}: without "
            f"{a['crowd_source']} the ASR of {a['worst_trigger']} falls from {a['worst_asr']:.2f} "
            f"to {_fmt_opt(without)}.")
    covs = sorted({r.provenance_coverage for r in report.rows if r.provenance_coverage is not None})
    if covs and poisoned:
        out.append(f"Provenance coverage was {', '.join(f'{c:g}' for c in covs)} on the poisoned "
                   "snapshots: coverage shows the history is recorded, not that it is benign; "
                   "the gates and the detectors do that part.")
    return out


def _fmt_opt(v) -> str:
    return "-" if v is None else f"{v:.2f}"
