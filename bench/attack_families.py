"""Attack generators for bench/bench_detect.py: one function per family, each returning the
poisoned training rows, the truth, the two sources and a way to measure that the attack works.

Every family is built on scikit-learn digits (8x8, values 0..16) split 70/30 by seed; the
poisoned rows arrive in a second source (``crowd``) together with a random 30% of the clean rows,
the rest come from ``base``. None of these settings is known to the detectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

PAIRS = [(1, 7), (3, 8), (5, 2), (0, 6), (9, 4)]  # (source, target) class pairs, one per seed


@dataclass
class Attack:
    family: str
    seed: int
    X: np.ndarray  # training rows (float64, n x 64)
    y: np.ndarray
    poisoned: np.ndarray  # bool mask over the training rows
    sources: np.ndarray  # per training row: "base" or "crowd"
    X_test: np.ndarray
    y_test: np.ndarray
    source_class: Optional[int]
    target_class: int
    trigger: Optional[Callable[[np.ndarray], np.ndarray]]  # stamps test rows (None: label flips)
    describe: str


def split(seed: int):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(X), bool)
    test[rng.permutation(len(X))[: int(np.ceil(0.3 * len(X)))]] = True
    return X[~test].astype(np.float64), y[~test], X[test].astype(np.float64), y[test]


def _patch(mask_rc: list[tuple[int, int]], value: float) -> Callable[[np.ndarray], np.ndarray]:
    idx = np.array([r * 8 + c for r, c in mask_rc])

    def apply(X):
        X = np.array(X, dtype=np.float64, copy=True)
        X[:, idx] = value
        return X

    return apply


def _square(size, row, col, value):
    return _patch([(r, c) for r in range(row, row + size) for c in range(col, col + size)], value)


def _finish(family, seed, X, y, Xp_rows, yp_rows, chosen, Xte, yte, s, t, trigger, describe,
            rng) -> Attack:
    X = X.copy()
    y = y.copy()
    X[chosen] = Xp_rows
    y[chosen] = yp_rows
    poisoned = np.zeros(len(y), bool)
    poisoned[chosen] = True
    crowd = poisoned | (rng.random(len(y)) < 0.3)
    sources = np.where(crowd, "crowd", "base")
    return Attack(family, seed, X, y, poisoned, sources, Xte, yte, s, t, trigger, describe)


def dirty_label(family, seed, trigger_of, fraction, describe, pair=None) -> Attack:
    X, y, Xte, yte = split(seed)
    s, t = pair or PAIRS[seed % len(PAIRS)]
    rng = np.random.default_rng(1000 + seed)
    src = np.flatnonzero(y == s)
    # ceil: a low rate stays an attack that works (2% of ~125 rows rounds to 2, and two rows
    # barely move a model: ASR 0.07 at seed 1)
    count = max(1, int(np.ceil(fraction * len(src) - 1e-9)))
    chosen = np.sort(rng.choice(src, count, replace=False))
    trigger = trigger_of(rng)
    return _finish(family, seed, X, y, trigger(X[chosen]), t, chosen, Xte, yte, s, t, trigger,
                   describe, rng)


def reference(seed):
    return dirty_label("reference 2x2=16 lower-right, 10%", seed, lambda r: _square(2, 6, 6, 16),
                       0.10, "2x2 at (6,6)=16", pair=(1, 7))


def low_rate(seed):
    return dirty_label("low rate (2%, 2x2=16)", seed, lambda r: _square(2, 6, 6, 16), 0.02,
                       "2x2 at (6,6)=16, 2% of the source class")


def other_value(seed):
    # 3x3 in the upper-left at a value below the maximum
    return dirty_label("3x3 upper-left=10", seed, lambda r: _square(3, 0, 0, 10), 0.10,
                       "3x3 at (0,0)=10")


def non_square(seed):
    shapes = [[(0, 7), (1, 7), (2, 7), (3, 7)],  # a vertical bar on the right edge
              [(6, 0), (7, 0), (7, 1), (7, 2)],  # an L in the lower-left
              [(5, 1), (6, 0), (6, 1), (6, 2), (7, 1)]]  # a plus in the lower-left
    shape = shapes[seed % len(shapes)]
    return dirty_label("non-square shape=13", seed, lambda r: _patch(shape, 13), 0.10,
                       f"pixels {shape}=13")


def blended(seed):
    def trig(rng):
        pattern = rng.uniform(0, 16, 64)

        def apply(X):
            return (1 - 0.2) * np.asarray(X, float) + 0.2 * pattern[None, :]

        return apply

    return dirty_label("blended random pattern (alpha 0.2)", seed, trig, 0.15,
                       "x' = 0.8 x + 0.2 P, P uniform 0..16 (fixed)")


def position_varying(seed):
    def trig(rng):
        def apply(X):
            X = np.array(X, dtype=np.float64, copy=True)
            where = np.random.default_rng(len(X) + 7).integers(0, 4, len(X))
            for i, k in enumerate(where):
                r, c = [(0, 0), (0, 6), (6, 0), (6, 6)][k]
                img = X[i].reshape(8, 8)
                img[r:r + 2, c:c + 2] = 16
            return X

        return apply

    return dirty_label("position-varying 2x2=16 (random corner)", seed, trig, 0.15,
                       "2x2=16 at a random corner per row")


def in_stroke(seed):
    # a patch inside the strokes: the source class's brightest 2x2 region, at 16
    X, y, _, _ = split(seed)
    s, _ = PAIRS[seed % len(PAIRS)]
    mean = X[y == s].mean(0).reshape(8, 8)
    best = max(((r, c) for r in range(7) for c in range(7)),
               key=lambda rc: mean[rc[0]:rc[0] + 2, rc[1]:rc[1] + 2].sum())
    return dirty_label("in-stroke 2x2=16", seed, lambda r: _square(2, best[0], best[1], 16), 0.5,
                       f"2x2 at {best}=16, inside the source class's strokes")


def label_flip(seed):
    X, y, Xte, yte = split(seed)
    s, t = PAIRS[seed % len(PAIRS)]
    rng = np.random.default_rng(1000 + seed)
    a = np.flatnonzero(y == s)
    b = np.flatnonzero(y == t)
    # both ways: s -> t and t -> s, 20% each (the two classes' flipped rows neighbour each other)
    ca = rng.choice(a, int(round(0.2 * len(a))), replace=False)
    cb = rng.choice(b, int(round(0.2 * len(b))), replace=False)
    chosen = np.sort(np.concatenate([ca, cb]))
    new = np.where(np.isin(chosen, ca), t, s)
    return _finish("label flips s<->t (20% each), no trigger", seed, X, y, X[chosen], new, chosen,
                   Xte, yte, s, t, None, f"labels {s}<->{t}", rng)


def clean_label(seed):
    X, y, Xte, yte = split(seed)
    s, t = PAIRS[seed % len(PAIRS)]
    rng = np.random.default_rng(1000 + seed)
    trigger = _square(3, 5, 5, 16)
    tgt = np.flatnonzero(y == t)
    chosen = np.sort(rng.choice(tgt, int(round(0.5 * len(tgt))), replace=False))
    # label-consistent: the target rows are made harder (blended towards source-class rows) and
    # stamped; their labels stay t
    partners = rng.choice(np.flatnonzero(y == s), len(chosen))
    rows = trigger(0.6 * X[chosen] + 0.4 * X[partners])
    return _finish("clean-label (3x3=16 on hardened target rows)", seed, X, y, rows, t, chosen,
                   Xte, yte, s, t, trigger, "3x3 at (5,5)=16 on target rows blended 40% to source",
                   rng)


def unpoisoned(seed):
    X, y, Xte, yte = split(seed)
    rng = np.random.default_rng(1000 + seed)
    return _finish("unpoisoned", seed, X, y, X[:0], y[:0], np.empty(0, np.int64), Xte, yte,
                   None, 0, None, "none", rng)


FAMILIES = {
    "reference": reference, "low_rate": low_rate, "other_value": other_value,
    "non_square": non_square, "blended": blended, "position_varying": position_varying,
    "in_stroke": in_stroke, "label_flip": label_flip, "clean_label": clean_label,
    "unpoisoned": unpoisoned,
}


def upscale(X: np.ndarray, channels: int = 1) -> np.ndarray:
    """8x8 rows -> 28x28 (np.kron by 3, then a 2-pixel border), optionally 3 channels (HxWxC,
    channels last; the channels are the grey image scaled by 1, 0.8 and 0.6)."""
    imgs = np.asarray(X, float).reshape(-1, 8, 8)
    big = np.kron(imgs, np.ones((1, 3, 3)))
    big = np.pad(big, ((0, 0), (2, 2), (2, 2)))
    if channels == 1:
        return big.reshape(len(X), -1)
    tint = np.array([1.0, 0.8, 0.6])[:channels]
    return (big[..., None] * tint).reshape(len(X), -1)


def verify(attack: Attack, *, X=None, X_test=None, fit=None) -> dict:
    """Train the reference logistic model on the poisoned rows; clean accuracy and the ASR
    (triggered source-class test rows predicted as the target) or, for label flips, the share
    of source-class test rows predicted as the target, beside the same on the unpoisoned rows."""
    from lineage.poison.estimators import fit_estimator

    X = attack.X if X is None else X
    Xte = attack.X_test if X_test is None else X_test
    vmax = float(max(X.max(), 1))
    model = fit_estimator("logistic", X, attack.y, seed=0, value_max=vmax)
    acc = float((model.predict(Xte) == attack.y_test).mean())
    out = {"clean_accuracy": round(acc, 3)}
    if attack.source_class is None:
        return out
    rows = attack.y_test == attack.source_class
    if attack.trigger is not None:
        stamped = attack.trigger(attack.X_test[rows])
        out["asr"] = round(float((model.predict(stamped) == attack.target_class).mean()), 3)
    else:
        out["s_to_t"] = round(float((model.predict(Xte[rows]) == attack.target_class).mean()), 3)
    return out
