"""The estimators: seeded scikit-learn pipelines that training, the approval gate's reference
model, the trigger scan and the lab all fit (one table of names and default parameters)."""

from functools import partial
from typing import Optional

import numpy as np

from lineage._version import __version__
from lineage.errors import BadInputError

# The estimators a policy, a training run and the lab may name, with their default parameters.
DEFAULT_PARAMS = {
    "logistic": {"C": 1.0, "max_iter": 300},
    "mlp": {"hidden_layer_sizes": [32], "alpha": 1e-4, "max_iter": 200},
}
ESTIMATORS = tuple(DEFAULT_PARAMS)

# A fit in memory holds the rows as float64 (8 bytes a value, 8x uint8 rows) and the solver's
# copies of them: 13 GB for 10M digit rows. Beyond this many values a model is fitted out of
# core instead: blocks of OUT_OF_CORE_BLOCK rows, converted to float32 one at a time, in a seeded
# order, for OUT_OF_CORE_EPOCHS passes (at most max_iter), so memory follows the stored rows.
# logistic -> SGDClassifier with the same L2-regularized log loss (alpha = 1 / (C n)), mlp ->
# the same MLPClassifier through partial_fit. A fixed size, not the machine's free memory: the
# same rows always get the same fit, and the model version records which (``fit_plan``).
IN_MEMORY_MAX_VALUES = 1 << 25  # 33.5M values: 524,288 rows of 64 features, 256 MiB as float64
OUT_OF_CORE_BLOCK = 65536
OUT_OF_CORE_EPOCHS = 1  # 1M digit rows, 2% of the 1s stamped: accuracy 0.994, ASR 0.94 (lbfgs 1.0, 1.0)


def make_estimator(name: str, *, seed: int, value_max: float, params: Optional[dict] = None,
                   n_equivalent: Optional[int] = None, n_samples: Optional[int] = None):
    """A scikit-learn pipeline: features scaled by 1/value_max, then the classifier.

    ``n_equivalent`` (reference models of the trigger scan): scale a logistic model's C by
    n_equivalent / n_samples so it is regularized as a model trained on n_equivalent rows.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    if name not in ESTIMATORS:
        raise BadInputError(f"unknown estimator {name!r}: use one of {', '.join(ESTIMATORS)}")
    p = {**DEFAULT_PARAMS[name], **(params or {})}
    unknown = set(p) - set(DEFAULT_PARAMS[name])
    if unknown:
        raise BadInputError(f"estimator {name} has no parameter {sorted(unknown)[0]!r} (known: "
                            f"{', '.join(sorted(DEFAULT_PARAMS[name]))})")

    def number(key: str, kind, low, example: str):
        value = p[key]
        try:
            if isinstance(value, bool) or (kind is int and isinstance(value, float)
                                           and not value.is_integer()):
                raise ValueError
            out = kind(value)
        except (TypeError, ValueError):
            out = None
        if out is not None and kind is int and not -2**31 < out < 2**31:  # the solvers' C ints
            out = None
        if out is None or not np.isfinite(out) or out < low or (kind is float and low > 0 and out == 0):
            raise BadInputError(f"--param {key}={value!r}: {example}")
        return out

    if name == "logistic":
        C = number("C", float, 1e-300, "give a positive number, e.g. C=1.0")
        max_iter = number("max_iter", int, 1, "give a whole number of at least 1, e.g. max_iter=300")
        if n_equivalent and n_samples:
            C *= n_equivalent / n_samples
        clf = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    else:
        sizes = p["hidden_layer_sizes"]
        sizes = [sizes] if isinstance(sizes, (int, float)) and not isinstance(sizes, bool) else sizes
        try:
            if isinstance(sizes, (str, bytes)) or any(isinstance(h, bool) or int(h) != h or h < 1
                                                      for h in sizes):
                raise ValueError
            hidden = tuple(int(h) for h in sizes)
        except (TypeError, ValueError):
            hidden = ()
        if not hidden:
            raise BadInputError(f"--param hidden_layer_sizes={p['hidden_layer_sizes']!r}: give layer "
                                "sizes of at least 1 as a JSON list, e.g. hidden_layer_sizes=[32,16]")
        alpha = number("alpha", float, 0.0, "give a number of at least 0, e.g. alpha=0.0001")
        max_iter = number("max_iter", int, 1, "give a whole number of at least 1, e.g. max_iter=200")
        clf = MLPClassifier(hidden_layer_sizes=hidden, alpha=alpha, max_iter=max_iter,
                            random_state=seed)
    scale = FunctionTransformer(partial(np.multiply, 1.0 / float(value_max or 1.0)))
    return Pipeline([("scale", scale), ("clf", clf)])


def out_of_core(X: np.ndarray) -> bool:
    return int(np.prod(X.shape)) > IN_MEMORY_MAX_VALUES


def fit_plan(name: str, X: np.ndarray, params: Optional[dict] = None) -> str:
    """How ``fit_estimator`` fits ``name`` on rows shaped like X, as a model version records it."""
    if not out_of_core(X):
        return "in memory, float64" + (" (lbfgs)" if name == "logistic" else " (adam)")
    max_iter = int({**DEFAULT_PARAMS[name], **(params or {})}["max_iter"])
    solver = "SGD, log loss, L2 alpha 1/(C n)" if name == "logistic" else "adam, partial_fit"
    return (f"out of core ({solver}): {min(max_iter, OUT_OF_CORE_EPOCHS)} seeded pass(es) over "
            f"float32 blocks of {OUT_OF_CORE_BLOCK} rows")


def fit_estimator(name: str, X: np.ndarray, y: np.ndarray, *, seed: int, value_max: float,
                  params: Optional[dict] = None, n_equivalent: Optional[int] = None):
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    model = make_estimator(name, seed=seed, value_max=value_max, params=params,
                           n_equivalent=n_equivalent, n_samples=len(X))
    # Small problems: a multi-threaded BLAS only fights other processes for the cores (measured
    # 0.4 s single-threaded vs 11 s on a loaded 2-core machine for the digits logistic model).
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter is recorded; fine here
        try:
            if out_of_core(X):
                _fit_out_of_core(model, X, y, seed=seed, value_max=value_max)
            else:
                model.fit(np.asarray(X, dtype=np.float64), y)
        except ValueError as exc:  # e.g. one class only, or no rows
            raise BadInputError(f"cannot train {name} on these {len(X)} rows: "
                                f"{str(exc).splitlines()[0]}") from None
    return model


def _fit_out_of_core(model, X: np.ndarray, y: np.ndarray, *, seed: int, value_max: float) -> None:
    """Fit the pipeline's classifier block by block (see IN_MEMORY_MAX_VALUES), in place."""
    from sklearn.linear_model import LogisticRegression, SGDClassifier

    scale, clf = model.steps[0][1], model.steps[-1][1]
    epochs = min(int(clf.max_iter), OUT_OF_CORE_EPOCHS)
    if isinstance(clf, LogisticRegression):
        # One-vs-rest: the classes' binary fits are independent (same result on any number of
        # threads), so they share the cores; this is the one large fit a command makes.
        clf = SGDClassifier(loss="log_loss", penalty="l2", alpha=1.0 / (clf.C * len(X)),
                            learning_rate="adaptive", eta0=0.1, random_state=seed, n_jobs=-1)
        model.steps[-1] = ("clf", clf)
    classes = np.unique(y)
    factor = np.float32(1.0 / float(value_max or 1.0))
    scale.fit(X[:1])
    for epoch in range(epochs):
        order = np.random.default_rng([seed, epoch]).permutation(len(X))
        for start in range(0, len(X), OUT_OF_CORE_BLOCK):
            rows = np.sort(order[start:start + OUT_OF_CORE_BLOCK])  # sorted: reads stay local
            block = X[rows].astype(np.float32)
            block *= factor
            clf.partial_fit(block, y[rows], classes=classes)


def estimator_identity(estimator: str) -> str:
    import sklearn

    return (f"lineage {__version__} lineage.poison.estimators.make_estimator[{estimator}]; "
            f"scikit-learn {sklearn.__version__}; numpy {np.__version__}")
