"""Detectors: the scenario-2 targets (poisoned rows arrive stamped and relabelled, the detectors are
told nothing about the trigger), one contract every detector honours, and the calibrated
combination (Cauchy combination of p-values, Benjamini-Hochberg at the FDR)."""

import numpy as np
import pytest

from lineage.errors import BadInputError
from lineage.lab.experiment import LabSettings, poison, reference_split
from lineage.poison.detectors import (
    DETECTORS,
    DetectorResult,
    combine,
    detect_duplicates,
    detect_pixel_blocks,
    detect_shared_patch,
    scan_rows,
    trigger_visibility,
)
from lineage.poison.metrics import detection

SETTINGS = LabSettings()


def scenario_2(fraction: float, seed: int):
    X, y, _, _ = reference_split(seed=seed)
    return poison(X, y, rate=fraction, trigger=SETTINGS.trigger, source_class=1, target_class=7,
                  seed=seed)


@pytest.fixture(scope="module")
def small():
    """500 rows with 25 poisoned 1->7 rows, 8 relabelled rows and a row copied 5 times with one
    conflicting copy: every detector has something to flag, quickly."""
    X, y, poisoned = scenario_2(0.3, 3)
    rng = np.random.default_rng(0)
    keep = np.union1d(np.flatnonzero(poisoned)[:25],
                      rng.choice(np.flatnonzero(~poisoned), 469, replace=False))
    X, y, poisoned = X[keep], y[keep], poisoned[keep]
    flip = rng.choice(np.flatnonzero(~poisoned & (y == 0)), 8, replace=False)
    y = y.copy()
    y[flip] = 6
    X = np.concatenate([X, np.repeat(X[:1], 6, axis=0)])
    y = np.concatenate([y, np.repeat(y[:1], 5), [(y[0] + 1) % 10]])
    return X, y, np.concatenate([poisoned, np.zeros(6, bool)])


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_detector_contract(name, small):
    X, y, _ = small
    detector = DETECTORS[name]
    first = detector(X, y, image_shape=(8, 8), value=16, random_state=0)
    again = detector(X, y, image_shape=(8, 8), value=16, random_state=0)
    assert isinstance(first, DetectorResult) and first.name == name
    assert first.scores.shape == (len(X),) and np.isfinite(first.scores).all()
    assert first.pvalues.shape == (len(X),) and ((first.pvalues >= 0) & (first.pvalues <= 1)).all()
    assert all(f"p={first.pvalues[i]:.2g}" in first.evidence[int(i)] for i in first.flagged)
    assert first.flagged.dtype == np.int64
    assert np.array_equal(first.flagged, np.unique(first.flagged))  # sorted, no repeats
    assert set(first.flagged) <= set(range(len(X)))
    assert set(first.evidence) == set(int(i) for i in first.flagged)
    assert all(isinstance(t, str) and t for t in first.evidence.values())
    np.testing.assert_array_equal(first.scores, again.scores)
    np.testing.assert_array_equal(first.flagged, again.flagged)
    assert first.evidence == again.evidence
    if name != "trigger_scan":  # its pooled flip share is weak evidence on 500 rows (see doc)
        assert len(first.flagged) > 0, f"{name} flags nothing on rows built to carry its signal"


@pytest.mark.parametrize("fraction,seed", [(0.05, 0), (0.5, 1)])
def test_combined_scan_finds_the_poisoned_rows(fraction, seed):
    X, y, poisoned = scenario_2(fraction, seed)
    report = scan_rows(X, y, image_shape=(8, 8), random_state=seed)
    flagged = np.zeros(len(y), dtype=bool)
    flagged[report.flagged] = True
    assert detection(flagged, poisoned).f1 >= 0.95
    entry = next(e for e in report.entries if e.position == int(np.flatnonzero(poisoned)[0]))
    assert "shared_patch" in entry.detectors
    assert "2x2 patch at (6,6)=16" in entry.evidence["shared_patch"]
    assert "labelled 1" in entry.evidence["shared_patch"]


def test_clean_data_flags_under_one_percent():
    X, y, poisoned = scenario_2(0.0, 2)
    assert not poisoned.any()
    report = scan_rows(X, y, image_shape=(8, 8), random_state=2)
    assert len(report.flagged) < 0.01 * len(y)


def test_trigger_visibility_of_the_reference_trigger():
    X, y, poisoned = scenario_2(0.1, 0)
    assert trigger_visibility(X, y, poisoned, image_shape=(8, 8)) == 1.0
    assert np.isnan(trigger_visibility(X, y, np.zeros(len(y), bool), image_shape=(8, 8)))


def test_a_trigger_elsewhere_is_found_without_being_told(small):
    settings = LabSettings(size=3, position="upper-left", source_class=3, target_class=8)
    X, y, _, _ = reference_split(seed=0)
    X, y, poisoned = poison(X, y, rate=0.2, trigger=settings.trigger, source_class=3,
                            target_class=8, seed=0)
    result = detect_shared_patch(X, y, image_shape=(8, 8))
    assert detection(result.flag_mask, poisoned).f1 >= 0.95
    assert result.params["patterns"][0]["looks_like"] == "3"


def test_combine_is_calibrated_one_strong_detector_flags_alone():
    n = 1000
    ones = np.ones(n)
    strong = ones.copy()
    strong[3] = 1e-9  # far beyond what 1000 rows at FDR 1% need
    weak_a, weak_b = ones.copy(), ones.copy()
    weak_a[[0, 1]] = [3e-5, 1e-5]
    weak_b[1] = 1e-5  # two detectors agree on row 1
    results = [DetectorResult("pixel_blocks", -np.log10(weak_a), np.array([0, 1]),
                              {0: "a", 1: "b"}, pvalues=weak_a),
               DetectorResult("label_disagreement", -np.log10(weak_b), np.array([1]), {1: "c"},
                              pvalues=weak_b),
               DetectorResult("shared_patch", -np.log10(strong), np.array([3]), {3: "d"},
                              pvalues=strong)]
    report = combine(results, n)
    assert report.params["fdr_q"] == 0.01 and report.params["combination"] == "cauchy"
    assert 3 in report.flagged and 1 in report.flagged  # alone, and by agreement
    assert 0 not in report.flagged  # one weak detector is not enough
    by_row = {e.position: e for e in report.entries}
    assert by_row[1].detectors == ("label_disagreement", "pixel_blocks")
    assert by_row[1].evidence == {"label_disagreement": "c", "pixel_blocks": "b"}
    assert by_row[3].pvalues["shared_patch"] == 1e-9 and by_row[3].pvalue < 1e-8
    assert by_row[0].pvalue > by_row[1].pvalue  # agreement strengthens


def test_benjamini_hochberg_and_cauchy():
    from lineage.poison.calibration import benjamini_hochberg, cauchy_combine

    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    assert benjamini_hochberg(p, 0.05).tolist() == [True, True] + [False] * 8
    rng = np.random.default_rng(0)
    null = cauchy_combine(rng.random((20000, 4)))
    assert abs((null < 0.01).mean() - 0.01) < 0.004  # valid at the level the scan uses
    assert cauchy_combine(np.array([[1e-12, 0.9, 0.9]]))[0] < 1e-11


def test_duplicates_flag_the_minority_label():
    X = np.array([[0, 1]] * 6 + [[5, 5], [9, 9]], dtype=float)
    y = np.array([1, 1, 1, 1, 1, 7, 7, 2])
    result = detect_duplicates(X, y, q=0.05)
    assert result.flagged.tolist() == [5]
    assert result.pvalues[5] == pytest.approx((1 / 3) ** 5)
    assert "exact duplicate" in result.evidence[5]


def test_pixel_blocks_names_the_block():
    X, y, poisoned = scenario_2(0.1, 0)
    result = detect_pixel_blocks(X, y, image_shape=(8, 8))
    i = int(np.flatnonzero(poisoned)[0])
    assert i in result.flagged
    assert "block at" in result.evidence[i] and "label 7's typical rows" in result.evidence[i]


def test_bad_input():
    with pytest.raises(BadInputError, match="unknown detector 'nope'"):
        scan_rows(np.zeros((4, 64)), np.zeros(4), detectors=["nope"])
    with pytest.raises(BadInputError, match="not square images"):
        detect_pixel_blocks(np.zeros((4, 10)), np.zeros(4))
    with pytest.raises(BadInputError, match=r"y must have shape \(4,\)"):
        detect_pixel_blocks(np.zeros((4, 64)), np.zeros(3))
