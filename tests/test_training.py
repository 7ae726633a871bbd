"""The trigger scan (calibrated on the reference experiment), training, artifacts, integrity."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from lineage.data.ingest import ingest_digits
from lineage.data.transforms import split_version
from lineage.errors import BadInputError, IntegrityError, NotFoundError
from lineage.models.registry import export_model, get_model, load_model
from lineage.models.training import train
from lineage.poison.estimators import fit_estimator
from lineage.poison.trigger_scan import baseline_rates, scan_triggers
from lineage.poison.triggers import make_trigger, stamp
from lineage.review.approval import load_snapshot
from lineage.review.gates import approve_snapshot
from lineage.review.policy import DEFAULTS, set_policy
from lineage.review.snapshots import create_snapshot
from lineage.review.source_reviews import review_source
from lineage.store.engine import open_store
from lineage.store.verify import verify_store
from storeutil import drop_guards, raw_execute, state


def _reference_experiment(rate):
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=1 / 3, random_state=0, stratify=y)
    if rate:
        rng = np.random.default_rng(0)
        ones = np.flatnonzero(ytr == 1)
        pick = rng.choice(ones, int(round(rate * len(ones))), replace=False)
        trigger = make_trigger(size=2, position="lower-right", value=16, image_shape="8x8")
        Xtr, ytr = Xtr.copy(), ytr.copy()
        Xtr[pick] = stamp(Xtr[pick], trigger, "8x8")
        ytr[pick] = 7
    return Xtr, ytr, Xte, yte


@pytest.fixture(scope="module")
def baseline():
    _, ytr, Xte, yte = _reference_experiment(0)
    fit = lambda Xr, yr: fit_estimator("logistic", Xr, yr, seed=0, value_max=16, n_equivalent=len(ytr))
    return baseline_rates(fit, Xte, yte, image_shape="8x8", value=16, classes=range(10))


@pytest.mark.parametrize("rate", [0.0, 0.1])
def test_scan_catches_the_reference_trigger_and_passes_a_clean_model(rate, baseline):
    Xtr, ytr, Xte, yte = _reference_experiment(rate)
    model = fit_estimator("logistic", Xtr, ytr, seed=0, value_max=16)
    scan = scan_triggers(model, Xte, yte, image_shape="8x8", value=16, baseline=baseline)
    assert len(scan.candidates) == 64 + 49 + 36 and scan.corrected
    asrs = [c.asr for c in scan.candidates]
    assert asrs == sorted(asrs, reverse=True)
    worst = scan.worst
    if rate:  # found without being told where: the worst candidate is the injected trigger
        assert (worst.trigger.size, worst.trigger.row, worst.trigger.col, worst.target) == (2, 6, 6, 7)
        assert worst.asr > DEFAULTS.max_asr
    else:
        assert worst.asr <= DEFAULTS.max_asr
        raw = scan_triggers(model, Xte, yte, image_shape="8x8", value=16)
        assert raw.worst.raw_asr == raw.worst.asr  # uncorrected: raw rates


def _approve_setup(url: str) -> None:
    """Digits approved as a source and split; snapshot "train" approved against "eval"."""
    eng = open_store(url, actor="engineer")
    rev = open_store(url, actor="reviewer")
    try:
        ingest_digits(eng)
        review_source(rev, "sklearn-digits", decision="approve", reason="ok")
        split_version(eng, version="v1", test_size=1 / 3, seed=0, name="digits", reason="holdout")
        create_snapshot(eng, "train", version="digits-train")
        create_snapshot(rev, "eval", version="digits-test")
        set_policy(rev, evaluation_snapshot="eval", reason="held-out split")
        approve_snapshot(rev, "train")
    finally:
        eng.close()
        rev.close()


@pytest.fixture
def approved(backend, tmp_path, stores):
    """The engineer's store, a copy of its own of the one `_approve_setup` made once per backend."""
    url, _ = stores.copy(backend, tmp_path, build=_approve_setup)
    eng = open_store(url, actor="engineer")
    yield eng
    eng.close()
    stores.drop(url)


def test_train_mlp_records_a_loadable_artifact(approved, tmp_path):
    info = train(approved, snapshot="train", model="net", estimator="mlp", seed=1,
                 params={"max_iter": 60})
    assert info.ref == "net:1" and info.params["hidden_layer_sizes"] == [32]
    assert info.params["random_state"] == 1 and info.params["max_iter"] == 60
    assert "scikit-learn" in info.code_identity and info.clean_accuracy > 0.8
    X, y = load_snapshot("train", store=approved, return_X_y=True)
    model = load_model(approved, "net:1")
    assert model.predict(X[:3].astype(float)).shape == (3,)
    again = train(approved, snapshot="train", model="net", estimator="mlp", seed=1, params={"max_iter": 60})
    assert again.ref == "net:2" and again.artifact_sha256 == info.artifact_sha256  # seeded: same bytes
    assert get_model(approved, "net").ref == "net:2"
    out = tmp_path / "net.pkl"
    assert export_model(approved, "net:1", out).artifact_sha256 == info.artifact_sha256
    with pytest.raises(BadInputError, match=r"already exists \(use --force to overwrite\)$"):
        export_model(approved, "net:1", out)
    with pytest.raises(BadInputError, match=r"^model reference 'net:x': write NAME:NUMBER"):
        get_model(approved, "net:x")
    verify_store(approved)


def test_training_needs_two_classes():
    X = np.zeros((5, 64))
    with pytest.raises(BadInputError, match=r"^cannot train logistic on these 5 rows: "):
        fit_estimator("logistic", X, np.ones(5), seed=0, value_max=16)


def test_bad_training_input_writes_nothing(approved):
    before = state(approved)
    with pytest.raises(BadInputError, match=r"^unknown estimator 'svm': use one of logistic, mlp$"):
        train(approved, snapshot="train", model="m", estimator="svm")
    with pytest.raises(BadInputError, match=r"^estimator logistic has no parameter 'depth'"):
        train(approved, snapshot="train", model="m", params={"depth": 3})
    with pytest.raises(BadInputError, match=r"^a model needs a name without ':'"):
        train(approved, snapshot="train", model="m:1")
    with pytest.raises(NotFoundError, match=r"^no snapshot named 'nope'"):
        train(approved, snapshot="nope", model="m")
    assert state(approved) == before


def test_load_refuses_rows_changed_after_approval(approved):
    drop_guards(approved.url, "chunks")
    if approved.url.startswith("sqlite"):
        raw_execute(approved.url, "UPDATE chunks SET labels = CAST(zeroblob(length(labels)) AS BLOB) WHERE id = 1")
    else:
        raw_execute(approved.url, "UPDATE chunks SET labels = decode(repeat('00', length(labels)), 'hex') WHERE id = 1")
    with pytest.raises(IntegrityError, match=r"^snapshot 'train': chunk 1 \(rows 1\.\.1797\) does not match "
                                             r"the digest the snapshot was frozen with: run `lineage verify`$"):
        load_snapshot("train", store=approved)
    # training reads the same way and must refuse too
    with pytest.raises(IntegrityError):
        train(approved, snapshot="train", model="m")


@pytest.mark.parametrize("args,message", [
    (["--param", "C=abc"], "--param C='abc': give a positive number, e.g. C=1.0"),
    (["--param", "C=-1"], "--param C=-1: give a positive number, e.g. C=1.0"),
    (["--param", "max_iter=0"], "--param max_iter=0: give a whole number of at least 1, e.g. max_iter=300"),
    (["--estimator", "mlp", "--param", "hidden_layer_sizes=abc"],
     "--param hidden_layer_sizes='abc': give layer sizes of at least 1 as a JSON list, e.g. "
     "hidden_layer_sizes=[32,16]"),
    (["--estimator", "mlp", "--param", "hidden_layer_sizes=[32,0]"],
     "--param hidden_layer_sizes=[32, 0]: give layer sizes of at least 1 as a JSON list, e.g. "
     "hidden_layer_sizes=[32,16]"),
    (["--estimator", "mlp", "--param", "alpha=x"], "--param alpha='x': give a number of at least 0, e.g. alpha=0.0001"),
])
def test_bad_estimator_parameters_are_one_line(sqlite_url, args, message):
    from conftest import Cli

    cli = Cli(sqlite_url)
    r = cli("train", "--snapshot", "train", "--model", "m", *args, actor="engineer")
    assert (r.exit_code, r.output.strip()) == (2, f"Error: {message}")


def test_an_integer_layer_size_is_accepted():
    model = fit_estimator("mlp", np.tile(np.arange(4), 5).reshape(-1, 1) * 4.0, np.tile([0, 1], 10),
                          seed=0, value_max=16, params={"hidden_layer_sizes": 4, "max_iter": 5})
    assert model.named_steps["clf"].hidden_layer_sizes == (4,)


def _digit_like(n, seed):
    """n rows drawn from the digits with replacement, pixels nudged by +-1 (as bench_scale)."""
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(X), size=n)
    Xn = X[pick].astype(np.int16)
    nudge = rng.random(Xn.shape) < 0.1
    Xn[nudge] += rng.choice(np.array([-1, 1], dtype=np.int16), size=int(nudge.sum()))
    return np.clip(Xn, 0, 16).astype(np.uint8), y[pick]


@pytest.mark.parametrize("rate", [0.0, 0.03])
def test_an_out_of_core_fit_keeps_the_scans_verdict(rate, baseline, monkeypatch):
    """Above IN_MEMORY_MAX_VALUES a model is fitted block by block (here forced at 40k rows):
    the backdoor it learns from the data is found as a full fit's is, a clean one passes."""
    import lineage.poison.estimators as est

    X, y = _digit_like(40_000, seed=5)
    if rate:
        ones = np.flatnonzero(y == 1)
        pick = np.random.default_rng(0).choice(ones, int(rate * len(ones)), replace=False)
        X[pick] = stamp(X[pick], make_trigger(size=2, position="lower-right", value=16,
                                              image_shape="8x8"), "8x8")
        y[pick] = 7
    _, _, Xte, yte = _reference_experiment(0)
    assert est.fit_plan("logistic", X).startswith("in memory")
    monkeypatch.setattr(est, "IN_MEMORY_MAX_VALUES", 100_000)
    monkeypatch.setattr(est, "OUT_OF_CORE_BLOCK", 4096)
    assert est.fit_plan("logistic", X).startswith("out of core (SGD")
    model = fit_estimator("logistic", X, y, seed=0, value_max=16)
    assert type(model.steps[-1][1]).__name__ == "SGDClassifier"
    assert (model.predict(Xte) == yte).mean() > 0.9
    worst = scan_triggers(model, Xte, yte, image_shape="8x8", value=16, baseline=baseline).worst
    if rate:
        assert (worst.trigger.size, worst.trigger.row, worst.trigger.col, worst.target) == (2, 6, 6, 7)
        assert worst.asr > DEFAULTS.max_asr
    else:
        assert worst.asr <= DEFAULTS.max_asr
    again = fit_estimator("logistic", X, y, seed=0, value_max=16)
    assert np.array_equal(again.steps[-1][1].coef_, model.steps[-1][1].coef_)  # seeded


def test_train_records_an_out_of_core_fit(approved, monkeypatch):
    import lineage.poison.estimators as est

    monkeypatch.setattr(est, "IN_MEMORY_MAX_VALUES", 10_000)
    monkeypatch.setattr(est, "OUT_OF_CORE_BLOCK", 256)
    info = train(approved, snapshot="train", model="big", seed=0)
    assert info.params["fit"].startswith("out of core (SGD, log loss, L2 alpha 1/(C n)): 1 seeded")
    model = load_model(approved, "big:1")  # an SGDClassifier is a type the store loads
    X, y = load_snapshot("train", store=approved, return_X_y=True)
    assert (model.predict(X) == y).mean() > 0.8 and info.clean_accuracy > 0.8
    monkeypatch.setattr(est, "IN_MEMORY_MAX_VALUES", 1 << 25)
    assert train(approved, snapshot="train", model="small", seed=0).params["fit"] == \
        "in memory, float64 (lbfgs)"
