"""What every command shares: the --db/--as/--json options, one table from exception class to
exit code, and output as rich tables or JSON.

Start-up stays cheap (`lineage --help` must not load SQLAlchemy, numpy or scikit-learn): command
modules import library functions inside the command bodies, and this module imports nothing of
the database layer at the top."""

import dataclasses
import functools
import json
import os
import sys
from contextlib import contextmanager
from datetime import datetime
from enum import Enum
from pathlib import Path
from types import UnionType
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    Callable,
    Iterator,
    Optional,
    Sequence,
    Union,
    get_args,
    get_origin,
)

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from typer.core import TyperCommand, TyperGroup

from lineage.errors import BadInputError, LineageError

if TYPE_CHECKING:
    from lineage.store.engine import Store

DbOpt = Annotated[Optional[str], typer.Option(
    "--db", help="Database URL [default: $LINEAGE_DB or sqlite:///lineage.db].", show_default=False)]
ActorOpt = Annotated[Optional[str], typer.Option(
    "--as", help="Who is acting [default: $LINEAGE_ACTOR or the OS login name].", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines instead of a table.")]


class Estimator(str, Enum):
    """The estimators lineage trains (``lineage.poison.estimators.ESTIMATORS``; a test keeps
    the two lists equal), as a choice the command line can offer without importing them."""

    logistic = "logistic"
    mlp = "mlp"


class _Output(Console):
    """stdout: on a terminal (or with COLUMNS set) prose wraps to the width; into a pipe or a
    file each line stays whole, for grep. Tables fit the width either way (80 in a pipe)."""

    def print(self, *objects, soft_wrap: Optional[bool] = None, **kwargs) -> None:
        if soft_wrap is None:
            soft_wrap = not (self.is_terminal or os.environ.get("COLUMNS", "").isdigit())
        super().print(*objects, soft_wrap=soft_wrap, **kwargs)


out = _Output()
# Errors and warnings stay one line each, whatever the width, so that scripts can match them.
err = Console(stderr=True, soft_wrap=True)

EXIT_CODES_HELP = ("Exit codes: 0 ok; 1 other error; 2 bad input or usage; 3 not found; "
                   "4 refused; 5 integrity failure; 6 schema out of date.")


def one_line(exc: BaseException) -> str:
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def is_operational_error(exc: BaseException) -> bool:
    """Whether `exc` is SQLAlchemy's OperationalError, without importing SQLAlchemy: if nothing
    has imported it, no database was opened and nothing can have raised it."""
    sa_exc = sys.modules.get("sqlalchemy.exc")
    return sa_exc is not None and isinstance(exc, sa_exc.OperationalError)


def handle_errors(fn: Callable) -> Callable:
    """Turn library exceptions into one `Error: ...` line and the class's exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LineageError as exc:
            err.print(f"Error: {one_line(exc)}", markup=False, highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except Exception as exc:
            if not is_operational_error(exc):
                raise
            # The database went away or stayed locked mid-command: not a bug, and the open
            # transaction was rolled back, so nothing partial is left.
            reason = str(exc.orig or exc).strip().splitlines()[0]
            err.print(f"Error: database error: {reason}", markup=False, highlight=False)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("Interrupted: nothing was written by the unfinished step.")
            raise typer.Exit(130) from None

    return wrapper


# click's ClickException, whether Typer vendors click (>= 0.2x) or depends on it (older).
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


# `lineage --help` lists commands in the order data flows, in panels; a command not named here
# (a new one) comes last in the order it was mounted.
FLOW = {
    "Store and data": ["db", "source", "ingest", "version", "transform", "coverage"],
    "Review and train": ["key", "policy", "snapshot", "train", "model"],
    "Trace and verify": ["trace", "log", "verify", "checkpoint", "prove"],
    "Poisoning lab": ["scan", "audit", "demo", "report", "graph", "export"],
}
_PANEL = {name: panel for panel, names in FLOW.items() for name in names}
_ORDER = [name for names in FLOW.values() for name in names]


def _given(args: Sequence[str], param) -> Optional[str]:
    """The value typed for ``param`` in ``args`` (``--opt VALUE`` or ``--opt=VALUE``)."""
    for i, arg in enumerate(args):
        for opt in getattr(param, "opts", ()):
            if arg == opt and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(opt + "="):
                return arg[len(opt) + 1:]
    return None


def _choice_names(param) -> list[str]:
    descriptor = getattr(param, "type_descriptor", None)
    choices = getattr(descriptor, "choices", None) or ()
    return [str(getattr(c, "value", c)) for c in choices]


def _bad_value(exc: BaseException, args: Sequence[str]) -> Optional[str]:
    """A bad option value in our words (click's and pydantic's are not), or None."""
    param = getattr(exc, "param", None)
    if param is None or getattr(param, "param_type_name", "") != "option" or \
            type(exc).__name__ == "MissingParameter":  # click says "Missing option '--to'"
        return None
    name = next((o for o in param.opts if o.startswith("--")), param.opts[0])
    value = _given(args, param)
    shown = name if value is None else f"{name} {value!r}"
    choices = _choice_names(param)
    if choices:
        return f"{shown}: use one of {', '.join(choices)}"
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if get_origin(annotation) in (Union, UnionType):  # Optional[int] and int | None
        annotation = next((a for a in get_args(annotation) if a is not type(None)), None)
    if annotation is int:
        return f"{shown} is not a whole number"
    if annotation is float:
        return f"{shown} is not a number"
    return None


def _tidy_help(group) -> None:
    """Help shows a flag without a type and long choices in the help text (short ones, such as
    logistic|mlp, stay in the type column), and lists commands in flow order, in panels."""
    _tidy_params(group)
    for name, command in group.commands.items():
        if name in _PANEL and getattr(group, "_is_top", False):
            command.rich_help_panel = _PANEL[name]
        if hasattr(command, "commands"):
            _tidy_help(command)
        else:
            _tidy_params(command)


def _tidy_params(command) -> None:
    for param in command.params:
        if getattr(param, "is_flag", False):
            param.metavar = ""
        choices = _choice_names(param)
        if choices and param.metavar is None:
            listed = "|".join(choices)
            if len(listed) <= 24:
                param.metavar = listed
            else:
                param.metavar = param.name.upper()
                param.help = f"{param.help or ''} One of: {', '.join(choices)}.".strip()
    made = command.get_help_option  # click makes the help option anew for each help

    def help_option(ctx):
        option = made(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = help_option


def _given_twice(group, argv: Sequence[str]) -> Optional[tuple[str, str]]:
    """(the command's path, an option) when ``argv`` gives a single-valued option of its
    command twice: click keeps the last value without a word (``filter --label 3 --label 4``
    removed only the 4s)."""
    command, path, i = group, ["lineage"], 0
    while hasattr(command, "commands") and i < len(argv) and argv[i] in command.commands:
        command, i = command.commands[argv[i]], i + 1
        path.append(argv[i - 1])
    if hasattr(command, "commands"):
        return None
    single = {opt: p for p in command.params if getattr(p, "param_type_name", "") == "option"
              and not p.multiple and not p.count for opt in p.opts + p.secondary_opts}
    seen, args, j = set(), argv[i:], 0
    while j < len(args) and args[j] != "--":
        key = args[j].split("=", 1)[0]
        param = single.get(key) if key.startswith("-") else None
        if param is not None:
            if param.name in seen:
                return " ".join(path), key
            seen.add(param.name)
            if not param.is_flag and "=" not in args[j]:
                j += 1  # its value, whatever it looks like
        j += 1
    return None


class OneLineErrors(TyperGroup):
    """The top-level group: a usage error is one `Error: ...` line and exit 2, like every other
    error (Typer's default is a multi-line panel); commands listed in flow order."""

    _is_top = True
    _tidied = False

    def list_commands(self, ctx) -> list[str]:
        names = super().list_commands(ctx)
        return ([n for n in _ORDER if n in names] + [n for n in names if n not in _PANEL])

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not self._tidied:
            _tidy_help(self)
            self._tidied = True
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        argv = list(sys.argv[1:] if args is None else args)
        twice = _given_twice(self, argv)
        if twice is not None:
            err.print(f"Error: {twice[1]} is given twice: give it once (see `{twice[0]} --help`)",
                      markup=False, highlight=False)
            sys.exit(2)
        try:
            rv = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            err.print("Aborted.", markup=False, highlight=False)
            sys.exit(1)
        except LineageError as exc:  # a command without @handle_errors still gets one line
            err.print(f"Error: {one_line(exc)}", markup=False, highlight=False)
            sys.exit(exc.exit_code)
        except _ClickException as exc:  # usage errors
            if type(exc).__name__ == "NoArgsIsHelpError":
                if exc.format_message():  # rich already printed the help while building it
                    exc.show()
            else:
                message = _bad_value(exc, argv) or " ".join(exc.format_message().split())
                ctx = getattr(exc, "ctx", None)
                hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
                err.print(f"Error: {message}{hint}", markup=False, highlight=False)
            sys.exit(exc.exit_code)
        # Non-standalone mode returns an explicit typer.Exit's code; commands return None.
        sys.exit(rv if isinstance(rv, int) else 0)


def deferred_help(**fills: Callable[[], str]) -> type[TyperCommand]:
    """A command class whose option help may name values that live in heavy modules (the detector
    names, the demo's default rates): each `{name}` in a help text is replaced by `fills[name]()`
    only when the help is shown, so start-up never imports those modules."""

    class DeferredHelpCommand(TyperCommand):
        def format_help(self, ctx, formatter):
            values = {f"{{{name}}}": fill() for name, fill in fills.items()}
            for param in self.params:
                for placeholder, value in values.items():
                    if param.help and placeholder in param.help:
                        param.help = param.help.replace(placeholder, value)
            return super().format_help(ctx, formatter)

    return DeferredHelpCommand


TrustOpt = Annotated[Optional[str], typer.Option(
    "--trust", help="The trust file [default: $LINEAGE_TRUST or ./lineage-trust.json].",
    show_default=False)]


@contextmanager
def opened(db: Optional[str], actor: Optional[str] = None, *,
           create: bool = False, trust: Optional[str] = None) -> Iterator["Store"]:
    """The store a command works on. Only the commands that can start a store (ingest, source
    add, policy set; train, so that its bad options are reported first) pass ``create=True``;
    for every other a mistyped --db is "no store at ...", exit 3, and no empty store is made."""
    from lineage.store.engine import open_store

    fresh = _new_sqlite_file(db) if create else None
    store = open_store(db, actor=actor, create=create, trust=trust)
    try:
        yield store
    except BaseException:
        store.close()
        if fresh is not None:  # a failed first command leaves no store behind, as it found none
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(str(fresh) + suffix).unlink(missing_ok=True)
        raise
    else:
        store.close()


def _new_sqlite_file(db: Optional[str]) -> Optional[Path]:
    """The SQLite file a command would create (None: it exists already, or not SQLite)."""
    from sqlalchemy.engine import make_url

    from lineage.store.engine import resolve_db

    url = make_url(resolve_db(db))
    if not url.drivername.startswith("sqlite") or url.database in (None, "", ":memory:"):
        return None
    path = Path(url.database)
    return None if path.exists() else path.resolve()


def plain(value: Any) -> Any:
    """Dataclasses, enums, datetimes, numpy scalars and ranges as JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, range)):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds") + "Z"
    if isinstance(value, Enum):
        return value.value
    if hasattr(value, "item") and hasattr(value, "dtype"):  # numpy scalar
        return value.item()
    if hasattr(value, "tolist"):  # numpy array
        return value.tolist()
    return value


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(plain(value), indent=2, sort_keys=False) + "\n")


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# Paths, URIs and digests: one line, cut with "…" (--json has them whole).
CLIPPED_COLUMNS = {"file", "sha256", "digest", "uri", "file sha256", "content digest", "artifact"}


def _needs(name: str, values: list[str]) -> tuple[int, str]:
    """(the narrowest width a column can take without cutting a word, its kind)."""
    words = [w for v in values for w in v.split()] or [""]
    header = max(len(w) for w in name.split())
    if name in CLIPPED_COLUMNS:
        return min(max(len(v) for v in values + [name]), 14), "clipped"
    if all(len(v.split()) <= 1 for v in values):  # its header stays on one line too
        return max([len(name)] + [len(v) for v in values]), "atom"
    return max(header, min(max(len(w) for w in words), 24), min(max(map(len, values)), 12)), "prose"


def _prose_widths(keep: list[str], needs: dict, values: list[list[str]]) -> dict[str, int]:
    """When prose does not fit on one line, share the room among the prose columns: each its
    narrowest width without cutting a word, the rest by how much more each would take. (rich
    alone narrows the widest column first, which can fold a long name in it mid-word while a
    short column keeps room it does not need.)"""
    natural = {c: max([len(c)] + [len(v) for v in vals]) for c, vals in zip(keep, values)}
    prose = [c for c in keep if needs[c][1] == "prose"]
    fixed = sum(needs[c][0] for c in keep if c not in prose) + 2 * (len(keep) - 1)
    room = out.width - fixed
    if not prose or fixed + sum(natural[c] for c in prose) <= out.width:
        return {}
    widths = {c: needs[c][0] for c in prose}
    spare = room - sum(widths.values())
    if spare < 0:
        return {}  # nothing fits: rich squeezes
    wants = {c: natural[c] - widths[c] for c in prose}
    total = sum(wants.values()) or 1
    for c in prose:
        widths[c] += spare * wants[c] // total
    return widths


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                drop: Sequence[str] = ()) -> None:
    """A table that rich fits to the terminal: prose wraps at spaces, a column of single words
    (names, ids, numbers) is never folded mid-word, paths and digests stay on one line,
    shortened. When even that is too wide, the columns in ``drop`` go first, in that order
    (a note says which; --json has every field)."""
    cells = [[cell(v) for v in row] for row in rows]
    needs = {name: _needs(name, [row[i] for row in cells]) for i, name in enumerate(columns)}
    keep = list(columns)

    def width() -> int:
        return sum(needs[c][0] for c in keep) + 2 * (len(keep) - 1)

    hidden = []
    for name in drop:
        if width() <= out.width:
            break
        if name in keep:
            keep.remove(name)
            hidden.append(name)
    widths = _prose_widths(keep, needs, [[row[columns.index(c)] for row in cells] for c in keep])
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True,
                  header_style="bold")
    for name in keep:
        kind = needs[name][1]
        if kind == "prose":
            table.add_column(name, overflow="fold", width=widths.get(name))
        else:
            table.add_column(name, overflow="ellipsis", no_wrap=True,
                             max_width=14 if kind == "clipped" else None)
    at = [columns.index(name) for name in keep]
    for row in cells:
        table.add_row(*(row[i] for i in at))
    _print_trimmed(title, table)
    if hidden:
        out.print(f"(not shown at this width: {', '.join(hidden)}; --json has every field)",
                  style="dim", markup=False, highlight=False)


def print_record(title: str, fields: Sequence[tuple[str, Any]]) -> None:
    """One record as a two-column table, field by field (fits any width; values wrap)."""
    table = Table(box=None, pad_edge=False, show_header=False)
    table.add_column("field", no_wrap=True, style="bold")
    table.add_column("value", overflow="fold")
    for name, value in fields:
        table.add_row(name, cell(value))
    _print_trimmed(title, table)


def _print_trimmed(title: str, table: Table) -> None:
    """The title (wrapped like any line), then the table without the blanks rich pads its lines
    with."""
    out.print(title, markup=False, highlight=False)
    with out.capture() as captured:
        out.print(table, soft_wrap=False)
    out.file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
    out.file.flush()


def check_limit(value: int) -> int:
    """--limit's check, before the command does anything."""
    if value < 0:
        raise BadInputError(f"--limit {value} is negative: give the number of rows to show "
                            "(0 for all)")
    return value


LimitOpt = Annotated[int, typer.Option(
    "--limit", callback=check_limit,
    help="Show at most N rows in the table (0: all; --json lists all).")]


def shown(rows: Sequence[Any], limit: int) -> list:
    """The first ``limit`` rows (all when 0), for a table; `more` says how many were left out."""
    return list(rows if not limit else rows[:limit])


def more(n_total: int, limit: int, what: str = "rows") -> None:
    """Say how many rows a table cut at --limit left out."""
    if limit and n_total > limit:
        out.print(f"{n_total - limit} more {what} (--limit 0 shows all; --json lists them)",
                  markup=False, highlight=False)


def shorten(text: str, width: int = 80) -> str:
    """Long evidence cut for a table cell (whole in --json)."""
    return text if len(text) <= width else text[:width - 1].rstrip() + "…"


@contextmanager
def progress_bar(description: str) -> Iterator[Optional[Callable[..., None]]]:
    """A rich progress bar on stderr when it is a terminal, gone when the work is done. It
    pulses until the callback ``update(done, total, what=None)`` moves it (``what``: a new
    description); steps that report nothing leave it pulsing. Not on a terminal: no bar and no
    callback."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                  TimeElapsedColumn(), console=err, transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int, what: Optional[str] = None) -> None:
            bar.update(task, completed=done, total=total,
                       **({"description": what} if what else {}))

        yield update
