"""review23: a new user's and a hostile tester's bad inputs on the command line. Each xfail test
is a defect found by hand: a traceback, a wrong exit code, a store changed by a bad command, or a
message or help text that misleads. The promise under test (DESIGN.md invariant 5): bad input
gets one clear line and a documented exit code, and the store is left exactly as it was."""

import json
import sqlite3

import numpy as np
import pytest
from typer.testing import CliRunner

from lineage.cli.main import app
from lineage.store.engine import open_store
from storeutil import state

runner = CliRunner()


def _run(url, *args, actor=None):
    """`lineage ARGS --db URL [--as ACTOR]`, exceptions caught (a traceback is a failure here,
    not an error of the test)."""
    argv = [str(a) for a in args] + ["--db", url]
    if actor:
        argv += ["--as", actor]
    return runner.invoke(app, argv)


def _one_line(result, code):
    """The promise: exit ``code``, no exception, exactly one line starting with 'Error: '."""
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"unhandled {type(result.exception).__name__}: {result.exception}"
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def _build(url: str) -> None:
    """digits (v1) split into digits-train (v2) / digits-test (v3), relabel -> digits-fixed (v4),
    inject-trigger -> digits-poisoned (v5); a policy in force set by reviewer."""
    for args, actor in [
        (("ingest", "digits"), "ingester"),
        (("transform", "split", "--version", "v1", "--test-size", "0.3", "--seed", "0",
          "--name", "digits", "--reason", "holdout"), "engineer"),
        (("transform", "relabel", "--version", "digits-train", "--rows", "17", "--to", "7",
          "--name", "digits-fixed", "--reason", "fix"), "engineer"),
        (("transform", "inject-trigger", "--version", "digits-fixed", "--source-class", "1",
          "--target-class", "7", "--rate", "0.1", "--seed", "0", "--name", "digits-poisoned",
          "--reason", "red team"), "red-team"),
        (("policy", "set", "--max-asr", "0.3", "--reason", "baseline"), "reviewer"),
    ]:
        result = runner.invoke(app, [*args, "--db", url, "--as", actor], catch_exceptions=False)
        assert result.exit_code == 0, (args, result.output)


pytestmark = pytest.mark.store_setup.with_args(_build)


@pytest.fixture
def unchanged(db_url):
    """Call it after a refused command: the store's counts and verified head are as before."""
    store = open_store(db_url, actor="tester")
    before = state(store)
    store.close()

    def check():
        s = open_store(db_url, actor="tester")
        try:
            assert state(s) == before, "a refused command changed the store"
        finally:
            s.close()

    return check


# --- store changed by a command that promises not to touch it ---------------------------------

def test_demo_pointed_at_a_user_store_leaves_it_alone(db_url, tmp_path, monkeypatch):
    if not db_url.startswith("sqlite"):
        pytest.skip("the demo runs on SQLite here (test_lab's choice)")
    monkeypatch.chdir(tmp_path)
    before = json.loads(_run(db_url, "policy", "show", "--json").output)
    result = _run(db_url, "demo", "--quick")
    after = json.loads(_run(db_url, "policy", "show", "--json").output)
    # Either the demo refuses a store that is not its own (exit 2), or it leaves the user's
    # policy and verification alone ("your store, keys and policy are never touched").
    assert result.exit_code == 2 or after == before
    assert _run(db_url, "verify", "--fast").exit_code == 0


# --- tracebacks -------------------------------------------------------------------------------

@pytest.mark.parametrize("value_range", ["0:inf", "-inf:inf", "0:1e400"])
def test_infinite_value_range_is_one_line_exit_2(db_url, tmp_path, value_range):
    path = tmp_path / "rows.csv"
    path.write_text("f0,f1,label\n1,2,3\n4,5,6\n")
    assert _run(db_url, "source", "add", "crowd", "--kind", "crowdsourced").exit_code == 0
    store = open_store(db_url, actor="tester")
    before = state(store)
    store.close()
    result = _run(db_url, "ingest", "csv", path, "--source", "crowd", "--dataset", "new",
                  "--value-range", value_range)
    _one_line(result, 2)
    store = open_store(db_url, actor="tester")
    assert state(store) == before
    store.close()


@pytest.mark.parametrize("kind", ["folder", "binary"])
def test_verify_checkpoint_that_is_not_a_text_file(db_url, tmp_path, kind):
    path = tmp_path / "witness.jsonl"
    if kind == "folder":
        path.mkdir()
    else:
        path.write_bytes(bytes(range(128, 256)) * 20)
    _one_line(_run(db_url, "verify", "--fast", "--checkpoint", path), 2)


def test_key_trust_public_key_folder_is_one_line(tmp_path):
    result = runner.invoke(app, ["key", "trust", "someone", "--public-key", str(tmp_path),
                                 "--trust", str(tmp_path / "trust.json")])
    _one_line(result, 2)
    assert not (tmp_path / "trust.json").exists()


def test_train_param_too_large_is_one_line(db_url, unchanged):
    # Refused before the snapshot is looked up: the parameter is checked first.
    result = _run(db_url, "train", "--snapshot", "nosuch", "--model", "m", "--param",
                  "max_iter=99999999999999999999", actor="engineer")
    line = _one_line(result, 2)
    assert "max_iter" in line
    unchanged()


def test_two_schema_versions_is_one_line(tmp_path):
    path = tmp_path / "lineage.db"
    url = f"sqlite:///{path}"
    open_store(url, actor="tester").close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO alembic_version VALUES ('0009_other')")
    conn.commit()
    conn.close()
    result = _run(url, "source", "list")
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert result.exit_code in (1, 5, 6) and len(result.output.splitlines()) == 1


# --- wrong or misleading messages and outputs -------------------------------------------------

@pytest.mark.parametrize("argv,option", [
    (["transform", "relabel", "--version", "v1", "--rows", "1", "--reason", "r"], "--to"),
    (["transform", "split", "--version", "v1"], "--test-size"),
    (["transform", "inject-trigger", "--version", "v1", "--target-class", "7", "--rate", "0.1",
      "--reason", "r"], "--source-class"),
])
def test_missing_number_option_says_missing(argv, option, tmp_path):
    result = runner.invoke(app, argv + ["--db", f"sqlite:///{tmp_path / 'l.db'}"])
    line = _one_line(result, 2)
    assert line.startswith(f"Error: Missing option '{option}'"), line


def test_empty_actor_is_refused(db_url, unchanged):
    line = _one_line(_run(db_url, "source", "add", "x", "--as", ""), 2)
    assert "actor" in line
    unchanged()


def test_empty_db_url_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LINEAGE_DB", raising=False)
    result = runner.invoke(app, ["source", "add", "x", "--db", ""])
    _one_line(result, 2)
    assert not (tmp_path / "lineage.db").exists()


@pytest.mark.parametrize("name", ["", " "])
def test_split_with_empty_name_is_refused(db_url, unchanged, name):
    result = _run(db_url, "transform", "split", "--version", "v1", "--test-size", "0.3",
                  "--name", name, "--reason", "r")
    _one_line(result, 2)
    unchanged()


def test_version_show_agrees_with_diff_on_a_trigger_version(db_url):
    shown = json.loads(_run(db_url, "version", "show", "digits-poisoned", "--json").output)
    diff = json.loads(_run(db_url, "version", "diff", "digits-fixed", "digits-poisoned",
                           "--json").output)
    assert len(diff["modified"]) > 0
    assert (shown["n_removed"], shown["n_added"]) == (len(diff["removed"]), len(diff["added"]))


def test_model_export_help_does_not_promise_a_pickle(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    text = runner.invoke(app, ["model", "export", "--help"]).output
    assert "pickle" not in text.lower() and ".pkl" not in text


def test_model_import_folder_says_folder(db_url, tmp_path, unchanged):
    line = _one_line(_run(db_url, "model", "import", tmp_path, "--name", "x", "--source",
                          "sklearn-digits", actor="engineer"), 2)
    assert "no such file" not in line and "folder" in line, line
    unchanged()


def test_missing_row_id_column_is_named(db_url, tmp_path):
    out = tmp_path / "edited.csv"
    assert _run(db_url, "version", "export", "digits-fixed", "--out", out).exit_code == 0
    store = open_store(db_url, actor="tester")
    before = state(store)
    store.close()
    line = _one_line(_run(db_url, "ingest", "csv", out, "--as-version-of", "digits-fixed",
                          "--source", "sklearn-digits", "--row-id-column", "nosuch"), 2)
    assert "nosuch" in line, line
    store = open_store(db_url, actor="tester")
    assert state(store) == before
    store.close()


@pytest.mark.parametrize("kind", ["csv", "npy"])
def test_ingest_npz_of_another_format_says_not_npz(db_url, tmp_path, unchanged, kind):
    if kind == "csv":
        path = tmp_path / "rows.npz"
        path.write_text("f0,f1,label\n1,2,3\n")
    else:
        path = tmp_path / "rows.npy"
        np.save(path, np.ones((2, 64)))
    line = _one_line(_run(db_url, "ingest", "npz", path, "--source", "sklearn-digits"), 2)
    assert "object arrays" not in line and "context manager" not in line, line
    assert "npz" in line
    unchanged()


def test_verify_empty_checkpoint_file_is_not_a_silent_pass(db_url, tmp_path):
    path = tmp_path / "witness.jsonl"
    path.write_text("\n")
    result = _run(db_url, "verify", "--fast", "--checkpoint", path)
    assert result.exit_code != 0 or "checkpoint" in result.output, result.output


def test_sqlite_url_of_a_folder_says_folder(tmp_path):
    result = runner.invoke(app, ["source", "list", "--db", f"sqlite:///{tmp_path}"])
    line = _one_line(result, 2)
    assert "folder" in line or "directory" in line, line


def test_filter_label_given_twice_is_not_silently_halved(db_url):
    result = _run(db_url, "transform", "filter", "--version", "v1", "--label", "3", "--label",
                  "4", "--reason", "r", "--json")
    if result.exit_code == 2:
        return  # refusing the repeated option is fine
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["n_removed"] == 183 + 181  # digits: 183 threes and 181 fours


def test_log_unknown_kind_is_bad_input(db_url):
    _one_line(_run(db_url, "log", "--kind", "ingests"), 2)


def test_report_out_folder_suggests_an_html_file(db_url, tmp_path):
    line = _one_line(_run(db_url, "report", "--snapshot", "nosuch", "--out", tmp_path), 2)
    assert "sweep.csv" not in line, line


# --- promises that hold (no xfail): kept so they stay true ------------------------------------

@pytest.mark.parametrize("args,code", [
    (["ingest", "csv", "{empty}", "--source", "sklearn-digits"], 2),
    (["ingest", "npz", "{empty}", "--source", "sklearn-digits"], 2),
    (["ingest", "csv", "{dir}", "--source", "sklearn-digits"], 2),
    (["transform", "relabel", "--version", "v1", "--rows", "1-100000000", "--to", "3",
      "--reason", "r"], 2),
    (["transform", "inject-trigger", "--version", "digits-fixed", "--source-class", "1",
      "--target-class", "7", "--rate", "0.1", "--size", "99999999999999999999", "--reason", "r"],
     2),
    (["trace", "row", "99999999999999999999"], 2),
    (["model", "show", "digits-clf:abc"], 2),
    (["version", "show", "v999"], 3),
])
def test_bad_inputs_that_hold(db_url, tmp_path, unchanged, args, code):
    (tmp_path / "empty").write_bytes(b"")
    args = [a.format(empty=tmp_path / "empty", dir=tmp_path) for a in args]
    _one_line(_run(db_url, *args), code)
    unchanged()
