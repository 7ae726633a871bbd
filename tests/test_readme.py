"""The README's Tour runs as written, top to bottom, in an empty folder.

Every ```sh and ```python block of the Tour runs in order in a fresh temporary folder, with a
fresh config folder (so fresh keys) and no LINEAGE_* variables: the tour must make every file it
uses. A `lineage ...` command runs in this process through typer's CliRunner (a process per
command would pay Python's start-up forty times over); any other command and every ```python
block runs as a process of its own. The shell the blocks may use is small and checked: `#`
comments, `\\` continuations, `;` and `&&` between commands, and `a || b` to show a refusal
(`a` must fail and `b` succeed: the story says the gate refuses, so it must); a pipe,
redirection, variable or glob fails the test, so the tour stays plain and this runner honest. Then the main listings
run against the store the tour made: every line of every step and listing fits 80 columns
(COLUMNS=80), output for machines (JSON, Mermaid/DOT) aside.
"""

import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lineage.cli.main import app

README = Path(__file__).resolve().parent.parent / "README.md"
SHELL_ONLY = set("<>$`*?(){}")


def tour_blocks(text: str) -> list[tuple[str, str]]:
    """(language, text) of every ```sh and ```python block of the Tour section, in order."""
    tour = text.split("\n## Tour\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```(sh|python)\n(.*?)^```", tour, flags=re.S | re.M)


def _unquoted(line: str) -> str:
    """The line without its quoted parts and its comment: what a shell would interpret."""
    kept, quote = [], None
    for ch in line:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (not kept or kept[-1] in " \t"):
            break
        else:
            kept.append(ch)
    return "".join(kept)


def shell_commands(block: str) -> list[tuple[list[str], bool]]:
    """(argv, must fail) of every command of a shell block, in order: `a || b` gives a, which
    must fail, then b."""
    commands: list[tuple[list[str], bool]] = []
    for line in block.replace("\\\n", " ").splitlines():
        special = set(_unquoted(line)) & SHELL_ONLY
        assert not special, f"too much shell for the README runner ({''.join(special)}): {line}"
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        current: list[str] = []
        for token in lexer:
            if token in (";", "&&", "||"):  # every command must succeed: ; and && mean "then"
                assert current, f"an empty command in: {line}"
                commands.append((current, token == "||"))
                current = []
            else:
                assert set(token) - set(";&|"), f"unsupported {token!r} in: {line}"
                current.append(token)
        if current:
            commands.append((current, False))
    assert all(argv for argv, _ in commands), f"an empty command in: {block}"
    return commands


def test_the_runner_reads_shell_as_a_shell_would():
    assert shell_commands('a b "c d" # note\ne \\\n  f; g && h \'i # j\'\nk || l "m"\n') == [
        (["a", "b", "c d"], False), (["e", "f"], False), (["g"], False), (["h", "i # j"], False),
        (["k"], True), (["l", "m"], False)]
    with pytest.raises(AssertionError, match="unsupported"):
        shell_commands("lineage log | head\n")
    with pytest.raises(AssertionError, match="too much shell"):
        shell_commands("lineage log > log.txt\n")


# Listings the tour's store ends up with plenty of rows for: their tables must fit 80 columns.
LISTINGS = [["source", "list"], ["ingest", "list"], ["log"], ["log", "--limit", "0"],
            ["version", "list"], ["snapshot", "list"], ["model", "list"], ["policy", "show"],
            ["policy", "show", "--all"], ["key", "list"], ["trace", "row", "1234"],
            ["trace", "model", "digits-clf:1"], ["version", "show", "digits-poisoned"],
            ["snapshot", "show", "redteam-2026w48"], ["model", "show", "digits-redteam:1"],
            ["audit", "poisoned", "--model", "digits-redteam:1", "--no-scan", "--limit", "2"],
            ["coverage", "digits-edited"], ["--help"], ["source", "add", "--help"],
            ["snapshot", "list", "--db", "sqlite:///lineage-demo.db"]]


@pytest.fixture(scope="module")
def tour(tmp_path_factory):
    """Every step of the tour, run in order in an empty folder: (step, exit code, output)."""
    home = tmp_path_factory.mktemp("readme")
    work = home / "tour"
    work.mkdir()
    runner = CliRunner()
    steps = []
    with pytest.MonkeyPatch.context() as mp:
        for name in ("LINEAGE_DB", "LINEAGE_ACTOR", "LINEAGE_TRUST", "LINEAGE_KEY",
                     "LINEAGE_WITNESS"):
            mp.delenv(name, raising=False)
        mp.setenv("XDG_CONFIG_HOME", str(home / "config"))
        mp.setenv("COLUMNS", "80")
        mp.chdir(work)
        started = time.perf_counter()
        for language, block in tour_blocks(README.read_text(encoding="utf-8")):
            commands = ([([sys.executable, "-c", block], False)] if language == "python"
                        else shell_commands(block))
            for argv, must_fail in commands:
                if argv[0] == "lineage":
                    result = runner.invoke(app, argv[1:], catch_exceptions=False)
                    code, output = result.exit_code, result.output
                else:
                    if argv[0] in ("python", "python3"):  # the interpreter running the tests
                        argv = [sys.executable, *argv[1:]]
                    done = subprocess.run(argv, capture_output=True, text=True)
                    code, output = done.returncode, done.stdout + done.stderr
                shown = block if language == "python" else " ".join(argv)
                if must_fail:  # the refusal the tour shows: it is the step that fails if it passes
                    shown, code = f"{shown} (the tour says it fails)", 0 if code else 1
                steps.append((shown, code, output))
                if code != 0:
                    break
            if steps and steps[-1][1] != 0:
                break
        seconds = time.perf_counter() - started
        listings = [(" ".join(["lineage", *argv]), runner.invoke(app, argv)) for argv in LISTINGS]
    yield steps, seconds, listings


def test_readme_tour_runs_as_written(tour):
    steps, seconds, _ = tour
    assert steps, "README.md has no Tour blocks"
    shown, code, output = steps[-1]
    assert code == 0, f"README tour step failed (exit {code}):\n{shown}\n{output}"
    print(f"the README tour took {seconds:.0f} s")  # small inputs: about 30 s on 2 cores


def _too_wide(shown: str, output: str) -> list[tuple[str, str]]:
    """Lines over 80 columns, except in output for machines (JSON, Mermaid/DOT), an error
    (one line, whatever its length, so that scripts can match it) and a line that names a file
    written (kept whole so that it can be copied)."""
    if "--json" in shown or shown.startswith("lineage graph "):
        return []
    return [(shown, line) for line in output.splitlines()
            if len(line) > 80 and not line.startswith(("Error: ", "wrote ", "posted "))]


def test_tour_output_fits_80_columns(tour):
    steps, _, listings = tour
    too_wide = [wide for shown, _, output in steps for wide in _too_wide(shown, output)]
    for shown, result in listings:
        assert result.exit_code == 0, f"{shown}: {result.output}"
        too_wide += _too_wide(shown, result.output)
    assert too_wide == []
