"""Detectors: the scenario-2 targets (poisoned rows arrive stamped and relabelled, the detectors are
told nothing about the trigger) and one contract every detector honours."""

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
    """500 rows with 25 poisoned 1->7 rows and two conflicting duplicates: every detector has
    something to flag, quickly."""
    X, y, poisoned = scenario_2(0.3, 3)
    rng = np.random.default_rng(0)
    keep = np.union1d(np.flatnonzero(poisoned)[:25],
                      rng.choice(np.flatnonzero(~poisoned), 473, replace=False))
    X, y, poisoned = X[keep], y[keep], poisoned[keep]
    X = np.concatenate([X, X[:2]])
    y = np.concatenate([y, (y[:2] + 1) % 10])
    return X, y, np.concatenate([poisoned, [False, False]])


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_detector_contract(name, small):
    X, y, _ = small
    detector = DETECTORS[name]
    first = detector(X, y, image_shape=(8, 8), value=16, random_state=0)
    again = detector(X, y, image_shape=(8, 8), value=16, random_state=0)
    assert isinstance(first, DetectorResult) and first.name == name
    assert first.scores.shape == (len(X),) and np.isfinite(first.scores).all()
    assert first.flagged.dtype == np.int64
    assert np.array_equal(first.flagged, np.unique(first.flagged))  # sorted, no repeats
    assert set(first.flagged) <= set(range(len(X)))
    assert set(first.evidence) == set(int(i) for i in first.flagged)
    assert all(isinstance(t, str) and t for t in first.evidence.values())
    np.testing.assert_array_equal(first.scores, again.scores)
    np.testing.assert_array_equal(first.flagged, again.flagged)
    assert first.evidence == again.evidence
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


def test_combine_needs_two_general_detectors_or_one_confirmed():
    n = 5
    weak = DetectorResult("pixel_blocks", np.zeros(n), np.array([0, 1]), {0: "a", 1: "b"})
    other = DetectorResult("label_disagreement", np.zeros(n), np.array([1]), {1: "c"})
    strong = DetectorResult("shared_patch", np.zeros(n), np.array([3]), {3: "d"})
    report = combine([weak, other, strong], n)
    assert report.flagged.tolist() == [1, 3]
    by_row = {e.position: e for e in report.entries}
    assert by_row[1].detectors == ("label_disagreement", "pixel_blocks")
    assert by_row[1].evidence == {"label_disagreement": "c", "pixel_blocks": "b"}
    assert by_row[0].score == 0.5 and 0 not in report.flagged


def test_duplicates_flag_the_minority_label():
    X = np.array([[0, 1], [0, 1], [0, 1], [5, 5]], dtype=float)
    y = np.array([1, 1, 7, 7])
    result = detect_duplicates(X, y)
    assert result.flagged.tolist() == [2]
    assert "exact duplicate" in result.evidence[2]


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
