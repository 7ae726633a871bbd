"""The calibrated scan on attacks it was not tuned on (blended, label flips, non-square), on
unpoisoned rows, at another image shape, and the triggers it finds measured per class.
Heavier measurements (every family, several seeds, cleanlab side by side) are in
bench/bench_detect.py."""

import numpy as np
import pytest

from lineage.errors import BadInputError
from lineage.lab.experiment import LabSettings, poison, reference_split
from lineage.poison.blame import blame_sources
from lineage.poison.candidates import candidate_patterns
from lineage.poison.detectors import scan_rows
from lineage.poison.estimators import fit_estimator
from lineage.poison.metrics import detection
from lineage.poison.trigger_scan import class_baseline_rates, scan_attacks
from lineage.poison.triggers import Pattern, image_geometry_for, parse_image_geometry, stamp


def _flags(report, n):
    mask = np.zeros(n, dtype=bool)
    mask[report.flagged] = True
    return mask


def _dirty(apply, fraction=0.15, seed=0, source=1, target=7):
    X, y, Xe, ye = reference_split(seed=seed)
    rng = np.random.default_rng(100 + seed)
    chosen = rng.choice(np.flatnonzero(y == source), int(round(fraction * (y == source).sum())),
                        replace=False)
    X = X.copy()
    y = y.copy()
    X[chosen] = apply(X[chosen])
    y[chosen] = target
    poisoned = np.zeros(len(y), bool)
    poisoned[chosen] = True
    return X, y, poisoned, Xe, ye


@pytest.fixture(scope="module")
def blended():
    pattern = np.random.default_rng(7).uniform(0, 16, 64)
    return _dirty(lambda rows: 0.8 * rows + 0.2 * pattern[None, :]), pattern


def test_a_blended_low_amplitude_pattern_is_found(blended):
    (X, y, poisoned, _, _), _ = blended
    report = scan_rows(X, y, image_shape="8x8")
    d = detection(_flags(report, len(y)), poisoned)
    assert d.f1 >= 0.9, d
    entry = next(e for e in report.entries if e.position == int(np.flatnonzero(poisoned)[0]))
    assert entry.pvalue < 0.01 and set(entry.pvalues) == set(report.results)
    assert any("look like 1" in text for text in entry.evidence.values())


def test_the_triggers_found_in_the_data_are_measured_per_class(blended):
    (X, y, poisoned, Xe, ye), pattern = blended
    report = scan_rows(X, y, image_shape="8x8")
    found = candidate_patterns(report, X, y)
    assert found and all(isinstance(p, Pattern) for p in found)

    def fit(A, b, n_equivalent=None):
        return fit_estimator("logistic", A, b, seed=0, value_max=16, n_equivalent=n_equivalent)

    base = class_baseline_rates(lambda A, b: fit(A, b, len(X)), Xe, ye, found, image_shape="8x8",
                                classes=range(10))
    poisoned_model = scan_attacks(fit(X, y), Xe, ye, found, image_shape="8x8", classes=range(10),
                                  baseline=base)
    assert poisoned_model[0].asr > 0.5 and poisoned_model[0].target == 7
    Xc, yc, _, _ = reference_split(seed=0)
    clean_model = scan_attacks(fit(Xc, yc), Xe, ye, found, image_shape="8x8", classes=range(10),
                               baseline=base)
    # the pattern is a backdoor only where it was planted: far weaker on an unpoisoned model
    assert clean_model[0].asr < poisoned_model[0].asr - 0.3, (clean_model[0], poisoned_model[0])
    truth = 0.8 * Xe[ye == 1] + 0.2 * pattern[None, :]
    assert (fit(X, y).predict(truth) == 7).mean() > 0.5  # the attack works


def test_label_flips_without_a_trigger():
    X, y, _, _ = reference_split(seed=0)
    rng = np.random.default_rng(3)
    ones, sevens = np.flatnonzero(y == 1), np.flatnonzero(y == 7)
    a = rng.choice(ones, 25, replace=False)
    b = rng.choice(sevens, 25, replace=False)
    y = y.copy()
    y[a], y[b] = 7, 1
    poisoned = np.isin(np.arange(len(y)), np.concatenate([a, b]))
    report = scan_rows(X, y, image_shape="8x8", detectors=["label_disagreement", "pixel_blocks",
                                                            "spectral"])
    d = detection(_flags(report, len(y)), poisoned)
    assert d.precision >= 0.85 and d.recall >= 0.7, d
    assert len(report.results["label_disagreement"].flagged) >= 10


def test_unpoisoned_rows_are_rarely_flagged():
    X, y, _, _ = reference_split(seed=1)
    report = scan_rows(X, y, image_shape="8x8")
    assert len(report.flagged) < 0.01 * len(y)
    assert report.params["fdr_q"] == 0.01


def test_the_same_detectors_on_28x28x3_images():
    X, y, _, _ = reference_split(seed=0)
    X, y, poisoned = poison(X, y, rate=0.1, trigger=LabSettings().trigger, source_class=1,
                            target_class=7, seed=0)
    big = np.pad(np.kron(X.reshape(-1, 8, 8), np.ones((1, 3, 3))), ((0, 0), (2, 2), (2, 2)))
    rgb = (big[..., None] * np.array([1.0, 0.8, 0.6])).reshape(len(X), -1)
    assert image_geometry_for("28x28x3", rgb.shape[1]) == (28, 28, 3)
    report = scan_rows(rgb, y, image_shape="28x28x3",
                       detectors=["pixel_blocks", "shared_patch", "spectral"])
    assert detection(_flags(report, len(y)), poisoned).f1 >= 0.9
    assert report.results["pixel_blocks"].params["sizes"] == [4, 8, 12]


def test_image_geometry():
    assert parse_image_geometry("8x8") == (8, 8, 1)
    assert parse_image_geometry("28X28x3") == (28, 28, 3)
    with pytest.raises(BadInputError, match="holds 2352 values, rows have 784"):
        image_geometry_for("28x28x3", 784)
    with pytest.raises(BadInputError, match="write it as HxW or HxWxC"):
        parse_image_geometry("28x28x3x2")
    X = np.zeros((2, 2 * 2 * 3))
    out = stamp(X, LabSettings(size=1, position=(1, 1)).trigger, "2x2x3")
    assert out.reshape(2, 2, 2, 3)[:, 1, 1].tolist() == [[16.0] * 3] * 2


def test_blame_names_the_poisoned_source_and_not_the_clean_one():
    X, y, Xe, ye = reference_split(seed=0)
    X, y, poisoned = poison(X, y, rate=0.1, trigger=LabSettings().trigger, source_class=1,
                            target_class=7, seed=0)
    rng = np.random.default_rng(0)
    sources = np.where(poisoned | (rng.random(len(y)) < 0.3), "crowd", "base")
    blame = blame_sources(X, y, sources, Xe, ye, image_shape="8x8", value_max=16.0)
    assert blame.suspects == ["crowd"]
    crowd = next(s for s in blame.sources if s.source == "crowd")
    assert blame.attack_asr > 0.5 and crowd.attack_asr_without < 0.1
    assert "falls from" in crowd.why


def test_the_label_model_does_not_depend_on_the_image_size():
    from lineage.poison.detectors import out_of_fold_probabilities

    X, y, _, _ = reference_split(seed=0)
    X, y = X[:600], y[:600]
    big = np.pad(np.kron(X.reshape(-1, 8, 8), np.ones((1, 3, 3))), ((0, 0), (2, 2), (2, 2)))
    P8, _ = out_of_fold_probabilities(X, y, folds=3)
    P28, _ = out_of_fold_probabilities(big.reshape(len(X), -1), y, folds=3)
    # each pixel repeated 9 times: the same model once rows are scaled by their RMS norm (up
    # to the optimizer's tolerance)
    assert np.abs(P8 - P28).mean() < 0.005
    assert (P8.argmax(axis=1) == P28.argmax(axis=1)).mean() >= 0.99


def test_the_trigger_search_follows_the_image_grid():
    from lineage.poison.triggers import candidate_triggers

    assert len(candidate_triggers("8x8", value=16, sizes=(2,))) == 49
    big = candidate_triggers("28x28", value=16, sizes=(8,), stride=4)
    assert sorted({t.row for t in big}) == [0, 4, 8, 12, 16, 20]  # the last place, 20, kept
    assert len(big) == 36


def test_the_shadow_sample_is_stratified_and_seeded():
    from lineage.review.evaluation import shadow_sample

    y = np.repeat([0, 1, 2], [500, 30, 200])
    s = shadow_sample(y, rows_per_class=100, seed=3)
    assert np.bincount(y[s]).tolist() == [100, 30, 100]  # a small class is kept whole
    assert np.array_equal(s, shadow_sample(y, rows_per_class=100, seed=3))
    assert not np.array_equal(s, shadow_sample(y, rows_per_class=100, seed=4))
    assert np.array_equal(shadow_sample(y, rows_per_class=500), np.arange(len(y)))
    assert np.all(np.diff(s) > 0)
    with pytest.raises(BadInputError, match="rows_per_class must be at least 1"):
        shadow_sample(y, rows_per_class=0)


def test_the_sampled_shadow_gate_refuses_the_poisoned_snapshot_and_passes_the_clean_one():
    from lineage.review.evaluation import Evaluation, shadow_gate
    from lineage.review.policy import PolicyInfo

    X, y, Xe, ye = reference_split(seed=0)
    ev = Evaluation(name="eval", row_ids=np.arange(len(ye)) + 10**6, X=Xe, y=ye,
                    image_shape="8x8", value_max=16.0)
    clean = shadow_gate(X, y, np.arange(len(y)), ev, PolicyInfo(version=0), rows_per_class=90)
    assert clean["passed"], clean["message"]
    assert clean["sample"]["rows"] < len(y) and "stratified sample" in clean["message"]
    Xp, yp, _ = poison(X, y, rate=0.1, trigger=LabSettings().trigger, source_class=1,
                       target_class=7, seed=0)
    bad = shadow_gate(Xp, yp, np.arange(len(yp)), ev, PolicyInfo(version=0), rows_per_class=90)
    assert not bad["passed"]
    assert "ASR" in bad["message"] and "stratified sample" in bad["message"]


def test_the_gate_fits_each_reference_fold_once_and_decides_as_if_it_fitted_twice(monkeypatch):
    """The trigger scan's and the attack scan's baselines cross-fit the same folds of the
    evaluation rows: the gate shares the fits (two, not four) and its report is the one two
    separate fitters give."""
    import lineage.review.evaluation as evaluation_module
    from lineage.review.evaluation import Evaluation, shadow_gate
    from lineage.review.policy import PolicyInfo

    X, y, Xe, ye = reference_split(seed=0)
    ev = Evaluation(name="eval", row_ids=np.arange(len(ye)) + 10**6, X=Xe, y=ye,
                    image_shape="8x8", value_max=16.0)
    Xp, yp, _ = poison(X, y, rate=0.1, trigger=LabSettings().trigger, source_class=1,
                       target_class=7, seed=0)
    fits = []
    real_fit = evaluation_module.fit_estimator

    def counting(*args, n_equivalent=None, **kwargs):
        if n_equivalent is not None:  # a reference model's fit
            fits.append(len(args[1]))
        return real_fit(*args, n_equivalent=n_equivalent, **kwargs)

    monkeypatch.setattr(evaluation_module, "fit_estimator", counting)
    shared = shadow_gate(Xp, yp, np.arange(len(yp)), ev, PolicyInfo(version=0))
    assert shared["found_triggers"], "the attack scan must have run for its baseline to count"
    assert len(fits) == 2 and sum(fits) == len(ye)  # one model per fold of the evaluation rows
    real_fitter = evaluation_module.reference_fitter

    def unshared(*args, **kwargs):  # every fit through a new fitter: nothing kept
        return lambda Xr, yr: real_fitter(*args, **kwargs)(Xr, yr)

    monkeypatch.setattr(evaluation_module, "reference_fitter", unshared)
    fits.clear()
    separate = shadow_gate(Xp, yp, np.arange(len(yp)), ev, PolicyInfo(version=0))
    assert len(fits) == 4 and separate == shared and not shared["passed"]


def test_the_label_rule_measures_flags_against_the_evaluation_rows_own_noise():
    """1% of the labels wrong on both sides is the data's natural noise, not an attack (an
    absolute count of flags refused it); 25 + 25 swapped 1/7 labels on top are refused."""
    from lineage.review.evaluation import LABEL_MIN_FLAGS, Evaluation, shadow_gate
    from lineage.review.policy import PolicyInfo

    X, y, Xe, ye = reference_split(seed=0)
    rng = np.random.default_rng(0)

    def noisy(labels):
        labels = labels.copy()
        rows = rng.choice(len(labels), len(labels) // 100, replace=False)
        labels[rows] = (labels[rows] + rng.integers(1, 10, len(rows))) % 10
        return labels

    y, ye = noisy(y), noisy(ye)
    ev = Evaluation(name="eval", row_ids=np.arange(len(ye)) + 10**6, X=Xe, y=ye,
                    image_shape="8x8", value_max=16.0)
    clean = shadow_gate(X, y, np.arange(len(y)), ev, PolicyInfo(version=0))
    scan = clean["scan"]
    assert clean["passed"], clean["message"]
    assert scan["label_flags"] >= LABEL_MIN_FLAGS and scan["label_reference"]["flagged"] >= 1
    assert scan["label_reference"]["rows"] == len(ye) and scan["label_excess_p"] > 0.05
    ones, sevens = np.flatnonzero(y == 1), np.flatnonzero(y == 7)
    y = y.copy()
    y[rng.choice(ones, 25, replace=False)], y[rng.choice(sevens, 25, replace=False)] = 7, 1
    bad = shadow_gate(X, y, np.arange(len(y)), ev, PolicyInfo(version=0))
    assert not bad["passed"] and bad["scan"]["label_excess_p"] < 0.01
    assert "label detector flags" in bad["message"] and "evaluation rows" in bad["message"]


def test_the_label_detector_keeps_the_reference_rows_values_whatever_the_dtypes():
    """uint8 rows beside float evaluation rows: the evaluation rows are not cast down."""
    from lineage.poison.detectors import detect_label_disagreement

    X, y, Xe, ye = reference_split(seed=0)
    X8 = X.astype(np.uint8)
    Xe = Xe + np.random.default_rng(0).uniform(0, 0.9, Xe.shape)  # fractions a uint8 cast drops
    mixed = detect_label_disagreement(X8, y, reference=(Xe, ye))
    floats = detect_label_disagreement(X8.astype(np.float64), y, reference=(Xe, ye))
    assert np.array_equal(mixed.p, floats.p)
    assert mixed.params["reference"] == floats.params["reference"]
    assert mixed.params["reference"]["rows"] == len(ye) and len(mixed.p) == len(y)
