"""What every command shares: the data-directory options, error handling, output."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from chatledger.config import Settings
from chatledger.errors import ChatLedgerError, InvalidInput
from chatledger.ledger.service import Ledger

P = ParamSpec("P")
R = TypeVar("R")

err_console = Console(stderr=True, highlight=False)

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="CHATLEDGER_DATA_DIR",
        help="Folder with the embedded database, signing keys and settings.",
        show_default="./chatledger-data",
    ),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database",
        envvar="CHATLEDGER_DATABASE_URL",
        help="postgresql:// URL to use instead of the embedded SQLite file.",
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def settings_from(data_dir: Path | None, database: str | None, *, create: bool = False) -> Settings:
    """The settings of an existing data directory. Only the commands that set one up
    (``serve``, ``demo``, ``db upgrade``) or add the first records to it (``ledger append``,
    ``users create``) pass ``create``: any other command on a mistyped folder must fail, not
    report on a new, empty ledger."""
    return Settings.from_env(data_dir, database, create=create)


@contextmanager
def opened_ledger(
    data_dir: Path | None, database: str | None, *, create: bool = False
) -> Iterator[Ledger]:
    from chatledger.runtime import open_ledger

    ledger = open_ledger(settings_from(data_dir, database, create=create))
    try:
        yield ledger
    finally:
        ledger.close()


def verifier_key_argument(key: str | None) -> str | None:
    """``--key``: a signed-note verifier key (``name+keyid+base64key``, never without a
    ``+``) or a file holding one. A value that is neither is the caller's mistake (exit 2),
    not a failed verification."""
    if key is None:
        return None
    path = Path(key)
    if path.is_file():
        try:
            return path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read the key file {key}: {exc}") from None
    if "+" not in key:
        raise InvalidInput(f"--key {key}: no such file, and not a verifier key (name+id+key)")
    return key


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a one-line reason on standard error and return the exit to raise."""
    err_console.print(f"error: {message}", markup=False, soft_wrap=True)
    return typer.Exit(code)


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Library errors become one line on stderr and a non-zero exit, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ChatLedgerError as exc:
            raise fail(exc.diagnostics(), exc.exit_code) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except BrokenPipeError:
            raise typer.Exit(1) from None
        except OSError as exc:
            # A file named on the command line that is not there (or not a file) is the
            # caller's mistake, like any other invalid input.
            mistaken = isinstance(exc, FileNotFoundError | IsADirectoryError | NotADirectoryError)
            raise fail(
                f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), 2 if mistaken else 1
            ) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:  # a bug: still one line, with the traceback on request
            if os.environ.get("CHATLEDGER_DEBUG"):
                raise
            raise fail(
                f"internal error ({type(exc).__name__}: {exc}); "
                "set CHATLEDGER_DEBUG=1 for the traceback",
                70,
            ) from None

    return wrapper


def shown(value: object) -> str:
    """A value for text output: a dash for a missing one, never ``None``."""
    return "-" if value is None or value == "" else str(value)


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode() + "\n")
    sys.stdout.flush()


@contextmanager
def progress_bar(description: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A Rich progress bar on stderr; yields a ``(done, total)`` callback."""
    if not enabled or not err_console.is_terminal:
        yield lambda done, total: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update
