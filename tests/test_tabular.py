"""Rows that are not images (tabular data: a CSV of measurements, no image shape, no declared
value range) go the whole reviewed path: the trigger scan, the pixel detectors and
inject-trigger treat a row as a 1xN strip, one feature a pixel (``scan_geometry``), and the
scan stamps at the largest value of the rows it measures (``Evaluation.covering``)."""

import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import Cli

from lineage.errors import BadInputError
from lineage.poison.triggers import candidate_triggers
from lineage.review.evaluation import Evaluation
from lineage.store.engine import open_store
from storeutil import state

FEATURES = 30  # breast cancer: 30 measurements on very different scales, 2 classes


def _write_csv(path: Path) -> None:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow([f"m{i}" for i in range(FEATURES)] + ["label"])
        for row, label in zip(data.data, data.target):
            out.writerow([repr(float(v)) for v in row] + [int(label)])


def _tabular_setup(url: str) -> None:
    """The breast-cancer rows ingested from a CSV without an image shape or a value range,
    split, the evaluation snapshot frozen by the reviewer, the default policy's scan sizes."""
    cli = Cli(url)
    path = Path(url.removeprefix("sqlite:///")).parent / "clinic.csv"
    _write_csv(path)
    steps = [
        (("source", "add", "clinic", "--kind", "internal", "--uri", "file://clinic.csv",
          "--license", "CC0-1.0"), "engineer"),
        (("ingest", "csv", str(path), "--source", "clinic"), "engineer"),
        (("source", "review", "clinic", "--approve", "--reason", "ok"), "reviewer"),
        (("transform", "split", "--version", "v1", "--test-size", "0.3", "--seed", "1",
          "--name", "bc", "--reason", "holdout"), "engineer"),
        (("snapshot", "create", "bc-eval", "--version", "bc-test"), "reviewer"),
        # Unscaled measurements: the reference logistic model reaches about 0.87.
        (("policy", "set", "--evaluation-snapshot", "bc-eval", "--min-clean-accuracy", "0.8",
          "--reason", "held out"), "reviewer"),
    ]
    for args, who in steps:
        r = cli(*args, actor=who)
        assert r.exit_code == 0, (args, r.output)


@pytest.fixture
def tabular(tmp_path, stores):
    url, _ = stores.copy("sqlite", tmp_path, build=_tabular_setup)
    yield Cli(url)
    stores.drop(url)


def test_tabular_rows_are_reviewed_scanned_and_trained(tabular):
    cli = tabular
    r = cli("snapshot", "create", "clean", "--version", "bc-train", actor="engineer")
    assert r.exit_code == 0, r.output
    r = cli("snapshot", "approve", "clean", "--reason", "ok", actor="reviewer")
    assert r.exit_code == 0, r.output
    assert "worst trigger ASR" in r.output
    r = cli("train", "--snapshot", "clean", "--model", "clf", actor="engineer")
    assert r.exit_code == 0, r.output
    r = cli("scan", "bc-train", "--json")
    assert r.exit_code == 0, r.output
    assert '"image_shape": "1x30"' in r.output


def test_a_one_feature_trigger_in_tabular_rows_is_refused(tabular):
    """The red team's backdoor on tabular rows: one measurement set to a value on 30% of class
    0, relabelled 1. The gate refuses it; what it found is a trigger on class 0 -> 1."""
    cli = tabular
    r = cli("transform", "inject-trigger", "--version", "bc-train", "--source-class", "0",
            "--target-class", "1", "--rate", "0.3", "--size", "1", "--position", "0,7",
            "--value", "1", "--reason", "red team", "--name", "bad", actor="engineer")
    assert r.exit_code == 0, r.output
    r = cli("snapshot", "create", "badsnap", "--version", "bad", actor="engineer")
    assert r.exit_code == 0, r.output
    store = open_store(cli.url)
    r = cli("snapshot", "approve", "badsnap", "--reason", "ok", actor="reviewer")
    assert r.exit_code == 4, r.output
    assert "class 0 -> 1" in r.output and "ASR 1.0000" in r.output
    r = cli("train", "--snapshot", "badsnap", "--model", "clf", actor="engineer")
    assert r.exit_code == 4, r.output
    store.close()


def test_tabular_triggers_must_fit_the_strip(tabular):
    cli = tabular
    store = open_store(cli.url)
    before = state(store)
    r = cli("transform", "inject-trigger", "--version", "bc-train", "--source-class", "0",
            "--target-class", "1", "--rate", "0.3", "--size", "2", "--value", "1",
            "--reason", "red team", actor="engineer")
    assert r.exit_code == 2 and "does not fit a 1x30 image" in r.output, r.output
    # A policy whose sizes hold no 1 would scan no feature of these rows: refused.
    r = cli("policy", "set", "--scan-sizes", "2,3", "--reason", "bigger", actor="reviewer")
    assert r.exit_code == 2, r.output
    assert "not images" in r.output and "include size 1" in r.output
    assert state(store) == before
    store.close()


def test_no_trigger_size_that_fits_is_an_error_not_an_empty_scan():
    with pytest.raises(BadInputError, match="no trigger size of 2, 3 fits 1x30"):
        candidate_triggers("1x30", value=1.0, sizes=(2, 3))
    assert len(candidate_triggers("1x30", value=1.0, sizes=(1, 2))) == 30


def test_an_undeclared_range_is_stamped_at_the_largest_value_seen():
    X_eval = np.array([[0.5, -2.0], [1.0, 0.0]])
    ev = Evaluation(name="e", row_ids=np.arange(2), X=X_eval, y=np.array([0, 1]),
                    image_shape="1x2", value_max=2.0, declared=False)
    # A trigger value beyond every evaluation row raises the stamp to it.
    assert ev.covering(np.array([[0.1, 7.5]])).value_max == 7.5
    assert ev.covering(np.array([[0.1, 1.5]])).value_max == 2.0
    declared = Evaluation(name="e", row_ids=np.arange(2), X=X_eval, y=np.array([0, 1]),
                          image_shape="1x2", value_max=2.0)
    assert declared.covering(np.array([[0.1, 7.5]])).value_max == 2.0


@pytest.mark.filterwarnings("ignore:lbfgs failed to converge")
def test_an_external_model_of_tabular_rows_is_imported_shown_and_evaluated(tabular, tmp_path):
    import skops.io as sio
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    cli = tabular
    data = load_breast_cancer()
    path = tmp_path / "vendor.skops"
    sio.dump(LogisticRegression(max_iter=2000).fit(data.data, data.target), path)
    r = cli("source", "add", "vendor", "--kind", "third-party", "--uri", "https://v.example",
            "--license", "MIT", actor="engineer")
    assert r.exit_code == 0, r.output
    store = open_store(cli.url)
    before = state(store)
    # The dataset declares no range: a model declaring one is refused in one line, nothing written.
    r = cli("model", "import", str(path), "--name", "vclf", "--source", "vendor",
            "--value-range", "0:16", actor="engineer")
    assert r.exit_code == 2 and "holds values of no declared range" in r.output, r.output
    assert state(store) == before
    r = cli("model", "import", str(path), "--name", "vclf", "--source", "vendor", actor="engineer")
    assert r.exit_code == 0 and "no declared value range" in r.output, r.output
    r = cli("model", "evaluate", "vclf:1", "--json", actor="reviewer")
    assert r.exit_code in (0, 4), r.output
    assert '"clean_accuracy"' in r.output
    store.close()
