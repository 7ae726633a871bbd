"""What every command shares: the --db/--as/--json options, one table from exception class to
exit code, and output as rich tables or JSON.

Start-up stays cheap (`lineage --help` must not load SQLAlchemy, numpy or scikit-learn): command
modules import library functions inside the command bodies, and this module imports nothing of
the database layer at the top."""

import dataclasses
import functools
import json
import sys
from contextlib import contextmanager
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, Callable, Iterator, Optional, Sequence

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperCommand, TyperGroup

from lineage.errors import LineageError

if TYPE_CHECKING:
    from lineage.store.engine import Store

DbOpt = Annotated[Optional[str], typer.Option(
    "--db", help="Database URL [default: $LINEAGE_DB or sqlite:///lineage.db].", show_default=False)]
ActorOpt = Annotated[Optional[str], typer.Option(
    "--as", help="Who is acting [default: $LINEAGE_ACTOR or the OS login name].", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines instead of a table.")]

out = Console(soft_wrap=True)
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


class OneLineErrors(TyperGroup):
    """The top-level group: a usage error is one `Error: ...` line and exit 2, like every other
    error (Typer's default is a multi-line panel)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
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
                message = " ".join(exc.format_message().split())
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


@contextmanager
def opened(db: Optional[str], actor: Optional[str] = None, *,
           create: bool = False) -> Iterator["Store"]:
    """The store a command works on. Only the commands that can start a store (ingest, source
    add, policy set; train, so that its bad options are reported first) pass ``create=True``;
    for every other a mistyped --db is "no store at ...", exit 3, and no empty store is made."""
    from lineage.store.engine import open_store

    store = open_store(db, actor=actor, create=create)
    try:
        yield store
    finally:
        store.close()


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


CLIPPED_COLUMNS = {"file", "sha256", "digest", "uri", "file sha256", "content digest"}


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for name in columns:
        # Headers never break mid-word; long values fold, except paths and digests, which are
        # cut to one line (--json has them whole).
        if name in CLIPPED_COLUMNS:
            table.add_column(name, overflow="ellipsis", no_wrap=True, max_width=14)
        else:
            longest = max([len(name)] + [len(word) for row in rows
                                         for word in cell(row[len(table.columns)]).split()])
            table.add_column(name, overflow="fold", min_width=min(longest, 16))
    for row in rows:
        table.add_row(*(cell(v) for v in row))
    out.print(table)


@contextmanager
def progress_bar(description: str) -> Iterator[Optional[Callable[[int, int], None]]]:
    """A rich progress bar on stderr when it is a terminal; otherwise no callback at all."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import Progress

    with Progress(console=err, transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
