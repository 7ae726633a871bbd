"""The command line as a whole: help and examples everywhere, --json on listings, the actor
precedence, and one-line errors with their exit codes for usage and connection mistakes."""

import json
import os
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from lineage.cli.main import app
from lineage.store.log import list_events

runner = CliRunner()


def _walk(command, path=("lineage",)):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _walk(sub, path + (name,))


COMMANDS = list(_walk(typer.main.get_command(app)))


@pytest.mark.parametrize("path,command", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_has_help_and_an_example(path, command):
    assert (command.help or "").strip(), f"{' '.join(path)} has no help text"
    if hasattr(command, "commands"):
        return  # a group: its help is its description
    last = command.help.strip().splitlines()[-1].strip()
    assert last.startswith(f"Example: {' '.join(path)}"), f"{' '.join(path)}: help ends with {last!r}"
    for param in command.params:
        if param.name != "help" and getattr(param, "param_type_name", "") == "option":
            assert (param.help or "").strip(), f"{' '.join(path)} {param.opts[0]} has no help"


def test_help_runs_for_every_command():
    for path, _ in COMMANDS:
        result = runner.invoke(app, [*path[1:], "--help"])
        assert result.exit_code == 0, f"{' '.join(path)} --help: {result.output}"
        assert "Usage:" in result.output


def test_json_on_every_listing(cli):
    assert cli("ingest", "digits").exit_code == 0
    assert cli("source", "add", "crowd", "--kind", "crowdsourced", "--license", "CC-BY-4.0").exit_code == 0

    sources = json.loads(cli("source", "list", "--json").output)
    assert [(s["name"], s["kind"], s["status"]) for s in sources] == [
        ("sklearn-digits", "internal", "unreviewed"), ("crowd", "crowdsourced", "quarantined")]
    assert set(sources[0]) == {"id", "name", "kind", "uri", "license", "owner", "status", "actor",
                               "created_at", "reviewed_by", "review_reason"}

    ingests = json.loads(cli("ingest", "list", "--json").output)
    assert [(i["id"], i["n_rows"], i["first_row_id"], i["last_row_id"]) for i in ingests] == [(1, 1797, 1, 1797)]

    events = json.loads(cli("log", "--json").output)
    assert [(e["id"], e["kind"]) for e in events] == [(3, "source.add"), (2, "ingest"), (1, "source.add")]
    assert set(events[0]) == {"id", "kind", "actor", "created_at", "summary", "digest", "details"}
    assert len(events[0]["digest"]) == 64
    assert [e["id"] for e in json.loads(cli("log", "--json", "--limit", "1").output)] == [3]
    assert [e["id"] for e in json.loads(cli("log", "--json", "--kind", "ingest").output)] == [2]
    table = cli("log", "--limit", "1").output
    assert "source.add" in table and "ingest" not in table
    assert table.splitlines()[-1] == "2 more events (--limit 0 shows all; --json lists them)"

    report = json.loads(cli("verify", "--json").output)
    timing = {k: report.pop(k) for k in ("seconds", "rate_bytes_per_s")}
    assert report == {"ok": True, "events": 3, "records": 6, "head_digest": events[0]["digest"],
                      "fast": False, "chunk_rows": 1797, "chunk_bytes": 1797 * (64 + 8),
                      "versions": 1, "signatures": {"signed": 0, "legacy": 0}, "checkpoints": 0,
                      "trust_file": os.environ["LINEAGE_TRUST"]}
    assert timing["seconds"] > 0 and timing["rate_bytes_per_s"] > 0


def test_actor_precedence(store, cli, monkeypatch):
    monkeypatch.setenv("LOGNAME", "os-login")  # getpass.getuser() reads LOGNAME first
    monkeypatch.setenv("USER", "os-login")
    monkeypatch.delenv("LINEAGE_ACTOR", raising=False)
    assert cli("source", "add", "a").exit_code == 0
    monkeypatch.setenv("LINEAGE_ACTOR", "env-actor")
    assert cli("source", "add", "b").exit_code == 0
    assert cli("source", "add", "c", actor="flag-actor").exit_code == 0
    assert cli("ingest", "digits", actor="ingester").exit_code == 0
    events = list_events(store)
    assert [(e.kind, e.actor) for e in reversed(events)] == [
        ("source.add", "os-login"), ("source.add", "env-actor"), ("source.add", "flag-actor"),
        ("source.add", "ingester"), ("ingest", "ingester")]
    sources = json.loads(cli("source", "list", "--json").output)
    assert [s["actor"] for s in sources] == ["os-login", "env-actor", "flag-actor", "ingester"]
    assert json.loads(cli("ingest", "list", "--json").output)[0]["actor"] == "ingester"


@pytest.mark.parametrize("url,message", [
    ("not a url", "not a database URL: 'not a url' (expected sqlite:///FILE or "
                  "postgresql+psycopg://USER@HOST:PORT/DB)"),
    ("mysql://me@localhost/db", "unsupported database 'mysql' in 'mysql://me@localhost/db': use "
                                "sqlite or postgresql"),
    ("sqlite://", "an in-memory SQLite store would vanish on exit: give a file, e.g. sqlite:///lineage.db"),
])
def test_bad_db_url_is_one_line_exit_2(url, message):
    result = runner.invoke(app, ["source", "list", "--db", url])
    assert (result.exit_code, result.output) == (2, f"Error: {message}\n")


@pytest.mark.parametrize("argv", [["verify"], ["db", "upgrade"], ["ingest", "digits"]])
def test_unreachable_postgresql_is_one_line_exit_1(argv):
    url = "postgresql+psycopg://postgres@127.0.0.1:1/test"
    result = runner.invoke(app, argv + ["--db", url])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert lines[0].startswith(f"Error: cannot open database {url}: ")
    assert "Connection refused" in lines[0] or "connection failed" in lines[0]


def test_a_command_without_handle_errors_still_gets_one_line():
    from lineage.cli.common import OneLineErrors
    from lineage.errors import NotFoundError

    demo = typer.Typer(cls=OneLineErrors)

    @demo.command()
    def boom():
        raise NotFoundError("no row with id 5\n  (a second line)")

    @demo.command()
    def fine():
        pass

    result = CliRunner().invoke(demo, ["boom"])
    assert (result.exit_code, result.output) == (3, "Error: no row with id 5 (a second line)\n")
    assert CliRunner().invoke(demo, ["fine"]).exit_code == 0


def test_not_a_database_file_is_one_line(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    result = runner.invoke(app, ["verify", "--db", f"sqlite:///{junk}"])
    assert (result.exit_code, result.output) == (
        1, f"Error: cannot open database sqlite:///{junk}: file is not a database\n")


@pytest.mark.parametrize("argv,message", [
    (["nosuch"], "No such command 'nosuch'. (see `lineage --help`)"),
    (["source", "add", "x", "--kind", "vendor"],
     "--kind 'vendor': use one of internal, external, crowdsourced, scraped, third-party "
     "(see `lineage source add --help`)"),
    (["source", "add", "x", "--kind=vendor"],
     "--kind 'vendor': use one of internal, external, crowdsourced, scraped, third-party "
     "(see `lineage source add --help`)"),
    (["train", "--snapshot", "s", "--model", "m", "--estimator", "svm"],
     "--estimator 'svm': use one of logistic, mlp (see `lineage train --help`)"),
    (["ingest", "csv"], "Missing argument 'path'. (see `lineage ingest csv --help`)"),
    (["ingest", "csv", "x.csv"], "Missing option '--source'. (see `lineage ingest csv --help`)"),
    (["log", "--limit", "many"], "--limit 'many' is not a whole number (see `lineage log --help`)"),
    (["scan", "v1", "--limit", "-1"],
     "--limit -1 is negative: give the number of rows to show (0 for all)"),
    (["transform", "split", "--version", "v1", "--test-size", "a third"],
     "--test-size 'a third' is not a number (see `lineage transform split --help`)"),
    (["source", "review", "x"], "give exactly one of --approve, --reject, --revoke"),
])
def test_usage_errors_are_one_line_exit_2(argv, message, tmp_path):
    result = runner.invoke(app, argv + ["--db", f"sqlite:///{tmp_path / 'l.db'}"])
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    if message:
        assert lines[0] == f"Error: {message}"


def test_review_needs_a_reason_to_reject(cli):
    cli("source", "add", "crowd", "--kind", "crowdsourced")
    result = cli("source", "review", "crowd", "--reject")
    assert (result.exit_code, result.output) == (2, "Error: --reason is required to reject a source\n")
    result = cli("source", "review", "crowd", "--approve", "--reason", "ok", "--json", actor="rev")
    assert result.exit_code == 0
    info = json.loads(result.output)
    assert (info["status"], info["reviewed_by"], info["review_reason"]) == ("approved", "rev", "ok")


def test_no_arguments_prints_help():
    result = runner.invoke(app, [])
    assert result.exit_code == 2
    assert "Usage:" in result.output and "Error" not in result.output


def test_importing_the_cli_loads_no_database_or_numeric_stack():
    # `lineage --help` stays fast only while start-up imports none of these: command modules
    # import the library inside their bodies.
    code = ("import sys, lineage.cli.main; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'numpy', 'sklearn'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_version_option_prints_the_version():
    from lineage import __version__

    result = runner.invoke(app, ["--version"])
    assert (result.exit_code, result.output) == (0, f"lineage {__version__}\n")


def test_help_names_values_kept_out_of_start_up():
    from lineage.lab.experiment import DEFAULT_RATES
    from lineage.poison.detectors import DETECTORS

    # The scan's --detector help and the demo's --rates default are filled in when help is shown.
    scan = runner.invoke(app, ["scan", "--help"])
    assert scan.exit_code == 0 and "{detectors}" not in scan.output
    assert all(name in scan.output for name in DETECTORS)
    demo = runner.invoke(app, ["demo", "--help"])
    assert demo.exit_code == 0 and "{default_rates}" not in demo.output
    assert ",".join(f"{r:g}" for r in DEFAULT_RATES) in demo.output


def test_short_help_everywhere_and_python_m_lineage():
    for argv in (["-h"], ["source", "-h"], ["source", "add", "-h"], ["demo", "-h"]):
        result = runner.invoke(app, argv)
        assert result.exit_code == 0 and "Usage:" in result.output, argv
    done = subprocess.run([sys.executable, "-m", "lineage", "--version"], capture_output=True,
                          text=True)
    assert (done.returncode, done.stdout.split()[0]) == (0, "lineage")


def test_help_lists_commands_in_flow_order(monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    text = runner.invoke(app, ["--help"]).output
    names = [line.split()[1] for line in text.splitlines()
             if line.startswith("│ ") and len(line.split()) > 2 and line[2] != " "]
    flow = ["ingest", "version", "transform", "snapshot", "train", "model", "trace", "scan",
            "audit", "demo"]
    assert [n for n in names if n in flow] == flow
    assert names.index("key") < names.index("snapshot") < names.index("verify")


def test_help_shows_choices_not_types_of_flags():
    for path, _ in COMMANDS:
        output = runner.invoke(app, [*path[1:], "--help"]).output
        assert "<bool>" not in output, " ".join(path)
    kinds = runner.invoke(app, ["source", "add", "--help"]).output
    words = kinds.replace(",", " ").replace(".", " ").split()
    assert all(k in words for k in ("internal", "external", "crowdsourced", "scraped",
                                    "third-party"))
    assert "logistic|mlp" in runner.invoke(app, ["train", "--help"]).output


def test_estimator_choices_are_the_estimators():
    from lineage.cli.common import Estimator
    from lineage.poison.estimators import ESTIMATORS

    assert tuple(e.value for e in Estimator) == ESTIMATORS


def test_progress_bars_only_on_a_terminal(monkeypatch):
    from lineage.cli.common import progress_bar

    with progress_bar("working") as update:
        assert update is None  # not a terminal: no bar, and the library gets no callback
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with progress_bar("working") as update:
        update(1, 4)
        update(4, 4, "done")
