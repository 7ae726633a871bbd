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
- each detector's precision and recall, and the combined scan's (calibrated p-values combined
  and flagged at false discovery rate 1%, ``lineage.poison.detectors``), against the poisoned
  rows.

``run_arrays`` runs the experiment in memory (no store: tests and benchmarks);
``run_demo`` runs it through the store's public functions, so every step is in the lineage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Optional, Sequence

import numpy as np

from lineage.errors import BadInputError
from lineage.poison.detectors import ScanReport, scan_rows, trigger_visibility
from lineage.poison.estimators import ESTIMATORS, fit_estimator
from lineage.poison.metrics import attack_success_rate, clean_accuracy, scan_detection
from lineage.poison.triggers import Trigger, make_trigger, stamp

IMAGE_SHAPE = (8, 8)
VALUE_MAX = 16.0
DEFAULT_RATES = (0.0, 0.05, 0.1, 0.2, 0.5)
QUICK_RATES = (0.0, 0.1)
SCENARIO_2_RATE = 0.1

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
            target_class=settings.target_class, image_shape=IMAGE_SHAPE),
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
    report how many clean rows each detector flags (``clean_flagged``: their share)."""
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
                            "recall": d.recall, "f1": d.f1, "clean_flagged": d.clean_flagged})
    return out
