"""Black-box trigger reverse engineering, in the spirit of Neural Cleanse: for each source class
-> target class, the smallest mask (and the pattern under it) that flips the source's rows to the
target, found through ``predict_proba`` alone with a fixed query budget and a seed.

The search is greedy coordinate ascent on the mask. For each target, a sample of the rows of
every other class that the model classifies right is drawn; each step tries every pixel not yet
in a source's mask set to the top of the value range (the pattern: a stamp adds ink, as the
trigger scan's squares do) and keeps, per source class, the pixel that raises the target's mean
log-probability most. A source stops once ``tau`` of its sampled rows flip, or at ``max_pixels``.
Its *effort* is the area above its target-probability curve: every pixel added counts the mean
share of probability the rows still lack once it is set, so fewer pixels and a more confident
flip make it smaller (a backdoor's trigger flips with near certainty). ``budget`` bounds the rows
predicted: the sample per source is the largest that ``max_pixels`` steps of every pair fit.

A clean model has easy pairs too (a few pixels turn many 3s into 9s), so a small trigger alone
proves nothing. The decision (``decide``) compares like with like:

1. against reference models: the same search, same budget, on models trained on the trusted
   evaluation rows and searched on rows they never saw (cross-fitted); ``ratio`` is the model's
   effort over the smallest reference effort for that pair (the most vulnerable reference).
   The caller's references are joined by ``RAW_REFERENCES``, a family fitted here on the raw
   values the external model is fed (an MLP on raw 0..16 values is flipped by a one-pixel stamp
   on rarely inked pixels far more easily than one on scaled values: without it, 8 of 10 clean
   raw-value MLP vendors of bench/bench_external.py were refused);
2. against the model's own other pairs: Neural Cleanse's anomaly index of ``log(ratio)``,
   ``(median - x) / (1.4826 * MAD)``, so a pair that is easy only because every pair of this
   model is easy does not count.

A pair is flagged when it reached ``tau`` within ``max_pixels``, its ratio is at most
``max_ratio`` (a third of the reference effort) and its anomaly index is above
``min_anomaly`` (2, Neural Cleanse's threshold). The two numbers were set by looking at ten
random backdoored and ten clean models of bench/bench_external.py (seeds 1000-1009); its
reported figures come from other seeds. Per-model nulls were measured and not kept: random
stamps of the found trigger's size on pixels of the same kind (blank or stroke), the found mask
shifted by a pixel, half the value, or how many classes the trigger sends to the target flip
clean and backdoored models alike (bench/README.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from lineage.poison.triggers import Pattern, parse_image_geometry

DEFAULT_BUDGET = 2_000_000  # rows predicted per searched model (all targets together)
MAX_PIXELS = 10  # the largest trigger searched for (pixels of the image, all channels)
# The pattern's values: the top of the range, as the trigger scan stamps its squares (a stamp
# adds ink; erasing strokes is how a clean model's classes naturally turn into one another, so
# searching it too mostly finds natural perturbations and halves the rows a budget buys).
ENDS = ("high",)
BLOCKS = (1,)  # the moves: one pixel (2x2 blocks too halve the rows a budget buys: more false alarms)
TAU = 0.8  # share of one source class's sampled rows that must flip
MAX_RATIO = 1 / 3
CONFIRM = 3  # pairs searched again on more rows before any is flagged
MIN_ANOMALY = 2.0
MAD_SCALE = 1.4826  # MAD of a normal distribution -> its standard deviation
EPS = 1e-6
# The reference family ``reverse_engineer`` adds to the caller's: an external model is fed the
# features exactly as the store holds them (0..16 for the digits), and a multi-layer perceptron
# trained on those raw values answers a stamp at the top of the range far more strongly than one
# trained on values scaled to 0..1 (bench/README.md: against scaled references only, 8 of 10
# clean raw-value MLPs were refused). An estimator of lineage.poison.estimators with
# ``value_max`` 1, i.e. unscaled; cross-fitted on the evaluation rows as the caller's are.
RAW_REFERENCES = (("mlp", {"hidden_layer_sizes": [64], "max_iter": 600}),)
_RAW: dict = {}  # (digest of the rows, settings) -> (references, their screening searches)
_RAW_CONFIRMED: dict = {}  # (digest of the rows, settings, pair, budget, n pairs) -> searches


@dataclass(frozen=True)
class TargetSearch:
    """The smallest trigger found for one target class on one model."""

    target: int
    source: Optional[int]  # the source class it flips best (None: no sample rows)
    size: int  # pixels in the mask; max_pixels + 1 when no source reached tau
    asr: float  # share of the source's sampled rows flipped by the final mask
    pixels: tuple  # ((row, col), ...) in the order the search added them
    values: tuple  # the pattern value set at each pixel
    curve: tuple  # (mask pixels, the source's ASR) after each step
    queries: int
    # The area above the target-probability curve until tau: each pixel added counts the
    # share of the target's probability the source's rows still lack once it is set (the mean
    # over rows of 1 - p(target)); when tau was never reached, the pixels up to max_pixels + 1
    # count the share left. A continuous trigger size: fewer pixels, and a more confident
    # flip, make it smaller (a backdoor's trigger flips with near certainty).
    effort: float = 0.0

    def pattern(self, image_shape) -> Pattern:
        """The found trigger as a ``Pattern`` the trigger scan can stamp."""
        h, w, c = parse_image_geometry(image_shape)
        features, values = [], []
        for (r, col), v in zip(self.pixels, self.values):
            for k in range(c):
                features.append((r * w + col) * c + k)
                values.append(float(v))
        return Pattern(name=f"reverse-engineered {len(self.pixels)}-pixel trigger for class "
                       f"{self.target}", features=tuple(features), values=tuple(values),
                       origin="reverse")

    def arrays(self, image_shape) -> tuple[np.ndarray, np.ndarray]:
        """(mask of shape (h, w), 0/1; pattern of shape (h, w), the value under the mask)."""
        h, w, _ = parse_image_geometry(image_shape)
        mask, pattern = np.zeros((h, w)), np.zeros((h, w))
        for (r, col), v in zip(self.pixels, self.values):
            mask[r, col], pattern[r, col] = 1.0, v
        return mask, pattern


@dataclass(frozen=True)
class ReverseReport:
    """Per target: the model's search, the references' sizes, the ratio, the anomaly index and
    whether the target is flagged; ``smallest`` is the flagged target with the smallest ratio
    (else the target with the smallest ratio)."""

    searches: tuple  # TargetSearch per target, in class order
    reference_sizes: tuple  # per target: the smallest reference trigger size
    ratios: tuple
    anomaly: tuple
    flagged: tuple  # targets flagged
    queries: int
    budget: int
    seed: int
    max_pixels: int
    tau: float
    max_ratio: float = MAX_RATIO
    min_anomaly: float = MIN_ANOMALY
    image_shape: str = field(default="")

    @property
    def smallest(self) -> Optional[TargetSearch]:
        if not self.searches:
            return None
        pool = [i for i, s in enumerate(self.searches) if (s.source, s.target) in self.flagged] or \
            list(range(len(self.searches)))
        i = min(pool, key=lambda j: (self.ratios[j], self.searches[j].size, -self.anomaly[j]))
        return self.searches[i]

    def as_dict(self) -> dict:
        """Plain values: every (source, target) search in brief; the smallest trigger and each
        flagged one with its picture (``mask`` and ``pattern`` as (h, w) arrays)."""
        def one(i: int, s: TargetSearch, picture: bool) -> dict:
            out = {"source": s.source, "target": s.target, "size": s.size,
                   "asr": round(s.asr, 4), "effort": round(s.effort, 4),
                   "reference_effort": self.reference_sizes[i],
                   "ratio": round(self.ratios[i], 4), "anomaly_index": round(self.anomaly[i], 3),
                   "flagged": (s.source, s.target) in self.flagged,
                   "pixels": [list(p) for p in s.pixels], "values": list(s.values)}
            if picture:
                mask, pattern = s.arrays(self.image_shape)
                out.update(mask=mask.tolist(), pattern=pattern.tolist())
            return out

        best = self.smallest
        return {"budget": self.budget, "queries": self.queries, "seed": self.seed,
                "max_pixels": self.max_pixels, "tau": self.tau, "max_ratio": self.max_ratio,
                "min_anomaly": self.min_anomaly, "flagged": [list(f) for f in self.flagged],
                "smallest": None if best is None else one(self.searches.index(best), best, True),
                "flagged_triggers": [one(i, s, True) for i, s in enumerate(self.searches)
                                     if (s.source, s.target) in self.flagged],
                "pairs": [one(i, s, False) for i, s in enumerate(self.searches)]}


def _sample(pred: np.ndarray, y: np.ndarray, classes: np.ndarray, target: int, per_source: int,
            rng: np.random.Generator) -> np.ndarray:
    """Row indices: up to ``per_source`` rows of each class but the target that the model
    classifies correctly (a row it gets wrong says nothing about a trigger)."""
    out = []
    for s in classes:
        if s == target:
            continue
        rows = np.flatnonzero((y == s) & (pred == s))
        if len(rows):
            out.append(rng.choice(rows, size=min(per_source, len(rows)), replace=False))
    return np.sort(np.concatenate(out)) if out else np.empty(0, dtype=np.int64)


def moves_of(h: int, w: int, value_range: tuple[float, float],
             blocks: Sequence[int]) -> list[tuple[tuple[int, ...], float]]:
    """Every move of the search: a block of ``blocks`` sizes at every place (pixel indices
    ``r * w + c``), set to the top of the value range (``ENDS``)."""
    values = [value_range[1] if end == "high" else value_range[0] for end in ENDS]
    out = []
    for k in blocks:
        for r in range(h - k + 1):
            for col in range(w - k + 1):
                pixels = tuple((r + a) * w + col + b for a in range(k) for b in range(k))
                out.extend((pixels, v) for v in values)
    return out


def search_target(predict_proba: Callable, X: np.ndarray, y: np.ndarray, *, target: int,
                  classes: Sequence[int], image_shape, value_range: tuple[float, float],
                  rows: np.ndarray, max_pixels: int = MAX_PIXELS, tau: float = TAU,
                  blocks: Sequence[int] = BLOCKS) -> list[TargetSearch]:
    """The greedy mask search for one target, one mask per source class of the sample rows
    (see the module): a TargetSearch per source class."""
    h, w, c = parse_image_geometry(image_shape)
    classes = np.asarray(classes)
    t_col = int(np.searchsorted(classes, target))
    current = np.asarray(X, dtype=np.float64)[rows].reshape(len(rows), h * w, c).copy()
    src = np.asarray(y)[rows]
    sources = [int(s) for s in np.unique(src)]
    moves = moves_of(h, w, value_range, blocks)
    member = np.zeros((len(moves), h * w), dtype=bool)
    for m, (pixels, _) in enumerate(moves):
        member[m, list(pixels)] = True
    proba = np.asarray(predict_proba(current.reshape(len(rows), -1)))
    base_logp = np.log(proba[:, t_col] + EPS)
    state = {s: {"rows": np.flatnonzero(src == s), "mask": np.zeros(h * w, dtype=bool),
                 "pixels": [], "values": [], "curve": [], "asr": 0.0, "queries": len(rows),
                 "effort": 0.0, "soft": 0.0, "done": False} for s in sources}
    for s in sources:
        state[s]["logp"] = float(base_logp[state[s]["rows"]].mean())
    while True:
        active = [s for s in sources if not state[s]["done"]]
        if not active:
            break
        idx = np.concatenate([state[s]["rows"] for s in active])
        batch = np.repeat(current[idx][None], len(moves), axis=0)  # (moves, n, h*w, c)
        for m, (pixels, v) in enumerate(moves):
            batch[m, :, list(pixels), :] = v
        proba = np.asarray(predict_proba(batch.reshape(len(moves) * len(idx), -1)))
        proba = proba.reshape(len(moves), len(idx), -1)
        logp = np.log(proba[:, :, t_col] + EPS)
        hit = proba.argmax(axis=2) == t_col
        start = 0
        for s in active:
            st = state[s]
            n = len(st["rows"])
            part = slice(start, start + n)
            start += n
            st["queries"] += len(moves) * n
            new = (member & ~st["mask"][None, :]).sum(axis=1)
            fits = (new > 0) & (st["mask"].sum() + new <= max_pixels)
            if not fits.any():
                st["done"] = True
                continue
            # The largest rise of the target's mean log-probability per pixel added.
            gain = np.where(fits, (logp[:, part].mean(axis=1) - st["logp"]) / np.maximum(new, 1),
                            -np.inf)
            m_best = int(np.argmax(gain))
            pixels, v = moves[m_best]
            added = [p for p in pixels if not st["mask"][p]]
            soft = float(proba[m_best, part, t_col].mean())
            st["effort"] += (1.0 - soft) * len(added)
            st["soft"] = soft
            current[np.ix_(st["rows"], added)] = v
            st["mask"][added] = True
            st["pixels"].extend((p // w, p % w) for p in added)
            st["values"].extend([float(v)] * len(added))
            st["logp"] = float(logp[m_best, part].mean())
            st["asr"] = float(hit[m_best, part].mean())
            st["curve"].append((int(st["mask"].sum()), round(st["asr"], 4)))
            st["done"] = st["asr"] >= tau
    out = []
    for s, st in state.items():
        reached = st["asr"] >= tau
        out.append(TargetSearch(
            target=int(target), source=s, size=len(st["pixels"]) if reached else max_pixels + 1,
            asr=st["asr"], pixels=tuple(st["pixels"]), values=tuple(st["values"]),
            curve=tuple(st["curve"]), queries=st["queries"],
            effort=st["effort"] + (0.0 if reached else (1.0 - st["soft"]) *
                                   (max_pixels + 1 - len(st["pixels"])))))
    return out


def search_triggers(predict_proba: Callable, X: np.ndarray, y: np.ndarray, *,
                    classes: Sequence[int], image_shape, value_range: tuple[float, float],
                    budget: int = DEFAULT_BUDGET, max_pixels: int = MAX_PIXELS, tau: float = TAU,
                    random_state: int = 0,
                    pairs: Optional[Sequence[tuple[int, int]]] = None) -> list[TargetSearch]:
    """The smallest trigger per source -> target class, through ``predict_proba`` only.

    X : ndarray of shape (n_samples, n_features); y : ndarray of shape (n_samples,).
    ``predict_proba`` maps (n, n_features) to (n, len(classes)), columns in ``classes`` order.
    ``budget`` bounds the rows predicted: the sample per source class is the largest that fits
    ``max_pixels`` steps of every pair searched (every pair, or only ``pairs``).
    """
    h, w, _ = parse_image_geometry(image_shape)
    classes = np.asarray(sorted(int(k) for k in classes))
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    per_step = len(moves_of(h, w, value_range, BLOCKS))
    k = len(classes)
    n_pairs = len(pairs) if pairs is not None else k * max(k - 1, 1)
    per_source = max(1, int(budget // (max_pixels * per_step * max(n_pairs, 1))))
    proba = np.asarray(predict_proba(X))
    pred = classes[proba.argmax(axis=1)]
    rng = np.random.default_rng(random_state)
    out = []
    for t in classes:
        rows = _sample(pred, y, classes, int(t), per_source, rng)
        if pairs is not None:
            sources = [s for s, tt in pairs if tt == t]
            if not sources:
                continue
            rows = rows[np.isin(y[rows], sources)]
        out.extend(search_target(predict_proba, X, y, target=int(t), classes=classes,
                                 image_shape=image_shape, value_range=value_range, rows=rows,
                                 max_pixels=max_pixels, tau=tau))
    return out


def kept(cache: dict, key, make, limit: int = 8):
    """``cache[key]``, made by ``make()`` the first time (at most ``limit`` entries kept)."""
    if key not in cache:
        if len(cache) >= limit:
            cache.pop(next(iter(cache)))
        cache[key] = make()
    return cache[key]


def raw_references(X: np.ndarray, y: np.ndarray, *, classes: Sequence[int], image_shape,
                   value_range: tuple[float, float], budget: int,
                   random_state: int = 0) -> tuple[list, list, tuple]:
    """The ``RAW_REFERENCES`` models cross-fitted on (X, y) (two stratified folds, each model
    searched on the fold it never saw), as (predict_proba, X, y), their screening searches at
    ``budget`` and the key their confirmations are kept under; made once per process for the
    same rows and settings (every model evaluated on one snapshot shares them)."""
    from sklearn.model_selection import StratifiedKFold

    from lineage.poison.estimators import fit_estimator

    X = np.ascontiguousarray(X, dtype=np.float64)
    y = np.ascontiguousarray(y)
    classes = [int(c) for c in sorted(int(k) for k in classes)]
    key = (hashlib.sha256(X.tobytes() + y.tobytes()).hexdigest(), tuple(classes),
           str(image_shape), tuple(float(v) for v in value_range), int(budget), int(random_state))

    def aligned(model):
        known = [int(c) for c in model.classes_]
        cols = [known.index(c) if c in known else -1 for c in classes]

        def predict_proba(Z):
            proba = np.asarray(model.predict_proba(np.asarray(Z, dtype=np.float64)))
            if cols == list(range(len(classes))):
                return proba
            out = np.zeros((len(proba), len(classes)))
            for j, c in enumerate(cols):
                if c >= 0:
                    out[:, j] = proba[:, c]
            return out
        return predict_proba

    def make():
        refs = []
        splitter = StratifiedKFold(2, shuffle=True, random_state=random_state)
        for estimator, params in RAW_REFERENCES:
            for train_idx, test_idx in splitter.split(X, y):
                model = fit_estimator(estimator, X[train_idx], y[train_idx], seed=random_state,
                                      value_max=1.0, params=params)
                refs.append((aligned(model), X[test_idx], y[test_idx]))
        screened = [search_triggers(f, Xr, yr, classes=classes, image_shape=image_shape,
                                    value_range=value_range, budget=int(budget) * 3 // 4,
                                    random_state=random_state) for f, Xr, yr in refs]
        return refs, screened

    refs, screened = kept(_RAW, key, make, 4)
    return refs, screened, key


def confirm_searches(cache: dict, refs: list, key: tuple, pairs: Sequence[tuple[int, int]],
                     rest: int, *, classes: Sequence[int], image_shape,
                     value_range: tuple[float, float], random_state: int = 0,
                     limit: int = 512) -> list:
    """Reference models' (``refs``: (predict_proba, X, y)) confirming searches of ``pairs`` at
    ``rest`` rows, one list per reference: a pair's search at a fixed rows-per-source does not
    depend on the model that picked it, so each is kept in ``cache`` under ``key``."""
    h, w, _ = parse_image_geometry(image_shape)
    missing = [p for p in pairs if (*key, p, rest, len(pairs)) not in cache]
    if missing:
        steps = MAX_PIXELS * len(moves_of(h, w, value_range, BLOCKS))
        # Exactly the rows per source the whole set of pairs would get.
        part = max(1, rest // (steps * len(pairs))) * steps * len(missing)
        found = [search_triggers(f, Xr, yr, classes=classes, image_shape=image_shape,
                                 value_range=value_range, budget=part,
                                 random_state=random_state, pairs=missing)
                 for f, Xr, yr in refs]
        for p in missing:
            kept(cache, (*key, p, rest, len(pairs)),
                 lambda p=p: [[s for s in r if (s.source, s.target) == p] for r in found], limit)
    per_pair = [cache[(*key, p, rest, len(pairs))] for p in pairs]
    return [[s for pair in per_pair for s in pair[i]] for i in range(len(refs))]


def reverse_engineer(predict_proba: Callable, X: np.ndarray, y: np.ndarray, *,
                     classes: Sequence[int], image_shape, value_range: tuple[float, float],
                     references: Sequence[tuple[Callable, np.ndarray, np.ndarray]],
                     budget: int = DEFAULT_BUDGET, random_state: int = 0,
                     screened: Optional[Sequence[Sequence[TargetSearch]]] = None,
                     confirm: int = CONFIRM,
                     confirm_references: Optional[Callable] = None,
                     raw: bool = True) -> "ReverseReport":
    """Screen, then confirm. Three quarters of ``budget`` screen every source -> target pair
    on a few rows per source (``search_triggers``), on the model and on each reference model
    (``references``: (predict_proba, rows it never saw, their labels); ``screened``: their
    screening searches when already made with the same settings). The last quarter searches
    the ``confirm`` pairs of smallest ratio again on as many rows as it buys, on the model and
    the references alike: the decision reads those confirmed efforts, so a pair flagged is
    never one that only a handful of rows made look easy. ``confirm_references(pairs,
    budget)``, if given, makes the references' confirming searches (a caller may keep them:
    they depend on the pair, not on the model). With ``raw`` the ``RAW_REFERENCES`` family,
    cross-fitted here on (X, y), joins the caller's references (``raw_references``). Returns
    the ``decide`` report."""
    first = int(budget) * 3 // 4
    kw = dict(classes=classes, image_shape=image_shape, value_range=value_range,
              random_state=random_state)
    searches = search_triggers(predict_proba, X, y, budget=first, **kw)
    if screened is None:
        screened = [search_triggers(f, Xr, yr, budget=first, **kw) for f, Xr, yr in references]
    caller_refs = list(references)
    raw_refs, raw_key = [], None
    if raw and RAW_REFERENCES:
        raw_refs, raw_screened, raw_key = raw_references(X, y, budget=budget, **kw)
        references = caller_refs + list(raw_refs)
        screened = list(screened) + list(raw_screened)
    screen = decide(searches, screened, budget=budget, seed=random_state,
                    image_shape=image_shape)
    order = [i for i in np.argsort(screen.ratios) if searches[i].size <= MAX_PIXELS][:confirm]
    pairs = [(searches[i].source, searches[i].target) for i in order]
    if not pairs:
        return screen
    rest = int(budget) - first
    again = search_triggers(predict_proba, X, y, budget=rest, pairs=pairs, **kw)
    refs = (list(confirm_references(pairs, rest)) if confirm_references is not None else
            [search_triggers(f, Xr, yr, budget=rest, pairs=pairs, **kw)
             for f, Xr, yr in caller_refs])
    if raw_refs:
        refs += confirm_searches(_RAW_CONFIRMED, raw_refs, raw_key, pairs, rest, **kw)
    return decide(searches, screened, budget=budget, seed=random_state, image_shape=image_shape,
                  confirmed=(again, refs))


def decide(searches: Sequence[TargetSearch], references: Sequence[Sequence[TargetSearch]], *,
           budget: int, seed: int, image_shape, max_pixels: int = MAX_PIXELS, tau: float = TAU,
           max_ratio: float = MAX_RATIO, min_anomaly: float = MIN_ANOMALY,
           confirmed: Optional[tuple] = None) -> ReverseReport:
    """Compare the model's trigger efforts with the references' and with its own other pairs
    (see the module); ``references`` holds one ``search_triggers`` result per reference model.
    With ``confirmed`` (the model's and the references' searches of a few pairs again, on more
    rows), those pairs are judged on the confirmed efforts, against the median and spread of
    every pair's screening ratio; only confirmed pairs can be flagged."""
    def ratios_of(mine, refs):
        efforts = np.array([s.effort for s in mine], dtype=np.float64)
        # Per (source, target): the most vulnerable reference (a pair a reference could not
        # search, for want of rows it classifies right, counts as needing more than max_pixels).
        ref = np.full(len(mine), float(max_pixels + 1))
        for r in refs:
            by_pair = {(s.source, s.target): s.effort for s in r}
            ref = np.minimum(ref, [by_pair.get((s.source, s.target), max_pixels + 1.0)
                                   for s in mine])
        ref = np.maximum(ref, EPS)
        return efforts / ref, ref

    searches = list(searches)
    ratios, ref = ratios_of(searches, references)
    logs = np.log(np.maximum(ratios, EPS))
    med = np.median(logs)
    scale = max(MAD_SCALE * np.median(np.abs(logs - med)), 0.05)
    anomaly = (med - logs) / scale
    candidates = range(len(searches))
    queries = sum(s.queries for s in searches) + sum(s.queries for r in references for s in r)
    if confirmed is not None:
        again, refs = confirmed
        c_ratios, c_ref = ratios_of(again, refs)
        index = {(s.source, s.target): i for i, s in enumerate(searches)}
        candidates = []
        for j, s in enumerate(again):
            i = index[(s.source, s.target)]
            searches[i], ratios[i], ref[i] = s, c_ratios[j], c_ref[j]
            anomaly[i] = (med - np.log(max(c_ratios[j], EPS))) / scale
            candidates.append(i)
        queries += sum(s.queries for s in again) + sum(s.queries for r in refs for s in r)
    flagged = tuple((searches[i].source, searches[i].target) for i in candidates
                    if searches[i].size <= max_pixels and ratios[i] <= max_ratio
                    and anomaly[i] > min_anomaly)
    return ReverseReport(searches=tuple(searches),
                         reference_sizes=tuple(round(float(v), 4) for v in ref),
                         ratios=tuple(float(v) for v in ratios),
                         anomaly=tuple(float(v) for v in anomaly), flagged=flagged,
                         queries=int(queries), budget=int(budget), seed=int(seed),
                         max_pixels=max_pixels, tau=tau, max_ratio=max_ratio,
                         min_anomaly=min_anomaly, image_shape=str(image_shape))
