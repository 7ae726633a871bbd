"""The poisoning lab: the quick demo end to end through the CLI (the lesson holds, the audit of
scenario 1 is exact), the in-memory experiment, and bad input."""

import csv
import json

import pytest
from conftest import _drop_pg_schema, pg_url_or_skip
from typer.testing import CliRunner

from lineage.cli.main import app
from lineage.errors import BadInputError
from lineage.lab.demo import demo_folder
from lineage.lab.experiment import LabSettings, check_settings, parse_rates, run_arrays
from lineage.lab.output import CSV_COLUMNS, check_output, write_plot
from lineage.store.engine import open_store
from lineage.trace import version_diff

REQUIRED = ["poison_rate", "source_fraction", "poisoned_rows", "clean_accuracy",
            "trigger_attack_success_rate", "provenance_coverage", "trigger_visibility"]


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


# The quick demo on the embedded default only: the same library calls run on PostgreSQL in
# test_gates' reviewed path, test_audit, test_report and test_openlineage, and a second demo
# run was the suite's largest single cost after the README tour.
@pytest.fixture(scope="module", params=["sqlite"])
def quick_demo(request, tmp_path_factory):
    """`lineage demo --quick --out ...` on SQLite."""
    tmp = tmp_path_factory.mktemp("demo")
    url = f"sqlite:///{tmp / 'lineage.db'}" if request.param == "sqlite" else pg_url_or_skip()
    out = tmp / "results" / "poisoning-results.csv"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COLUMNS", "80")
        result = run("demo", "--quick", "--out", out, "--db", url)
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    yield url, result, rows
    if request.param == "postgresql":
        _drop_pg_schema(url)


def test_quick_demo_tells_the_lesson(quick_demo):
    _, result, rows = quick_demo
    assert result.exit_code == 0, result.output
    assert set(REQUIRED) <= set(rows[0])
    assert list(rows[0]) == CSV_COLUMNS
    assert any(c.endswith("_precision") for c in rows[0]) and any(c.endswith("_recall") for c in rows[0])
    clean, poisoned = rows
    assert float(clean["source_fraction"]) == 0.0 and float(poisoned["source_fraction"]) == 0.1
    assert int(poisoned["poisoned_rows"]) == 13 and int(poisoned["training_rows"]) == 1257
    assert abs(float(poisoned["poison_rate"]) - 13 / 1257) < 1e-6
    # Clean accuracy within a few points; ASR far above its unpoisoned baseline.
    assert abs(float(poisoned["clean_accuracy"]) - float(clean["clean_accuracy"])) <= 0.03
    assert float(poisoned["trigger_attack_success_rate"]) >= float(clean["trigger_attack_success_rate"]) + 0.4
    assert clean["gate"] == "approved" and poisoned["gate"] == "refused"
    assert float(poisoned["provenance_coverage"]) == 1.0
    assert float(poisoned["trigger_visibility"]) == 1.0
    # every poisoned row found; at FDR 1% the 13 discoveries lower the Benjamini-Hochberg cut
    # enough that one clean row a detector doubts (a 4 the label model does not believe) can
    # join them: 13 of 14
    assert float(poisoned["combined_recall"]) == 1.0
    assert float(poisoned["combined_precision"]) >= 0.9
    text = " ".join(result.output.split())
    assert "Clean accuracy stays at 0.9" in text  # one poisoned rate: no "between a and a"
    assert "The approval gate refused 1 of 1 poisoned snapshots" in text
    too_wide = [line for line in result.output.splitlines() if len(line) > 80]
    assert too_wide == []


def test_quick_demo_audit_of_scenario_1_is_exact(quick_demo):
    url, _, rows = quick_demo
    model = rows[1]["model"]
    result = run("audit", "poisoned", "--model", model, "--no-scan", "--json", "--db", url)
    assert result.exit_code == 0, result.output
    audit = json.loads(result.output)
    tag = model.split("-")[0]
    with open_store(url) as store:
        diff = version_diff(store, f"{tag}-digits-train", rows[1]["snapshot"])
    truth = sorted(diff.modified_child.tolist())
    assert len(truth) == 13
    assert audit["from_records"] == truth  # precision and recall 1.0
    assert all("trigger injected" in r["records"][0] for r in audit["rows"])


def test_quick_demo_recorded_everything(quick_demo):
    url, _, rows = quick_demo
    result = run("log", "--json", "--limit", "0", "--db", url)
    kinds = [e["kind"] for e in json.loads(result.output)]
    for kind in ("ingest", "transform.split", "transform.inject_trigger", "snapshot.create",
                 "snapshot.approve-failed", "snapshot.approve", "policy.set", "model.train",
                 "snapshot.revoke", "scan"):
        assert kind in kinds, kind
    assert kinds.count("scan") == len(rows)
    # The demo signs with its own keys: verified against its own trust file.
    trust = demo_folder(url) / "lineage-trust.json"
    assert run("verify", "--db", url, "--trust", trust).exit_code == 0


@pytest.fixture(scope="module")
def reference_rows():
    """The in-memory reference experiment, clean and at 10%, once for the module's readers."""
    return run_arrays(LabSettings(rates=(0.0, 0.1)))


def test_run_arrays_reference_experiment(reference_rows):
    clean, poisoned = reference_rows
    assert (clean.poisoned_rows, poisoned.poisoned_rows, poisoned.training_rows) == (0, 13, 1257)
    assert abs(poisoned.clean_accuracy - clean.clean_accuracy) <= 0.03
    assert poisoned.trigger_attack_success_rate > 0.5 > clean.trigger_attack_success_rate
    assert poisoned.trigger_visibility == 1.0 and clean.trigger_visibility is None
    assert poisoned.detection["combined"].f1 == 1.0
    assert clean.detection["combined"].n_flagged < 0.01 * clean.training_rows


def test_write_plot(tmp_path, reference_rows, monkeypatch):
    import matplotlib.pyplot as plt

    figures = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig: (figures.append(fig), close(fig)))
    path = write_plot(tmp_path / "sweep.png", reference_rows, LabSettings())
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (ax,) = figures[0].axes
    assert ax.get_xlabel() == "poison rate (poisoned rows / all training rows)"
    assert ax.get_ylabel() == "clean accuracy and ASR (0 to 1)"


def test_demo_keeps_to_its_own_store(tmp_path, monkeypatch):
    import lineage.lab.demo as demo
    from lineage.errors import LineageError

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LINEAGE_DB", f"sqlite:///{tmp_path / 'mine.db'}")
    opened = []

    def open_store(url, **kwargs):
        opened.append(url)
        raise LineageError("stop here")

    monkeypatch.setattr(demo, "open_store", open_store)
    with pytest.raises(LineageError, match="stop here"):
        demo.run_demo(None, LabSettings(rates=(0.0,)), quick=True)
    assert opened == ["sqlite:///lineage-demo.db"]  # never $LINEAGE_DB
    assert demo_folder(None) == tmp_path / "lineage-demo"
    assert demo_folder(f"sqlite:///{tmp_path / 'lab' / 'x.db'}") == tmp_path / "lab" / "lineage-demo"
    assert not (tmp_path / "mine.db").exists()


@pytest.mark.parametrize("args,message", [
    (["--rates", "0,1.0"], "--rates: 1 is outside [0, 1)"),
    (["--rates", "-0.1"], "--rates: -0.1 is outside [0, 1)"),
    (["--rates", "0,x"], "--rates: 'x' is not a number"),
    (["--estimator", "svm"], "--estimator 'svm': use one of logistic, mlp"),
    (["--target-class", "1"], "source and target class are both 1"),
    (["--size", "9"], "a 9x9 trigger does not fit a 8x8 image"),
    (["--out", "{file}/x.csv"], "is a file, not a folder"),
    (["--out", "{tmp}"], "is a folder; give a file name"),
])
def test_demo_bad_input(tmp_path, args, message):
    (tmp_path / "afile").write_text("x")
    args = [a.format(file=tmp_path / "afile", tmp=tmp_path) for a in args]
    db = tmp_path / "lineage.db"
    result = run("demo", "--quick", *args, "--db", f"sqlite:///{db}")
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.output
    assert not db.exists()  # nothing written, not even an empty store
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_settings_and_output_checks(tmp_path):
    assert parse_rates("0, 0.05,0.1") == (0.0, 0.05, 0.1)
    assert check_settings(LabSettings(rates=(0.1, 0.0, 0.1))).rates == (0.0, 0.1)
    with pytest.raises(BadInputError, match="unknown estimator 'svm'"):
        check_settings(LabSettings(estimator="svm"))
    target = tmp_path / "a" / "b" / "out.csv"
    assert check_output(target) == target
    assert not (tmp_path / "a").exists()  # the probe cleans up after itself
