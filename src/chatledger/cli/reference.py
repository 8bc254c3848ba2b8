"""Renders docs/cli.md from the commands themselves, so the reference cannot rot.

    python -m chatledger.cli.reference > docs/cli.md

A test fails when docs/cli.md differs from what this renders.
"""

from __future__ import annotations

from typing import Any

import typer

from chatledger.cli.main import app

HEADER = """# Command-line reference

Generated from the code by `python -m chatledger.cli.reference > docs/cli.md`; a test keeps it
current. The commands that work on a deployment take `--data-dir DIR` (environment
`CHATLEDGER_DATA_DIR`, default `./chatledger-data`) and `--database URL` (environment
`CHATLEDGER_DATABASE_URL`) to use PostgreSQL instead of the embedded SQLite file; the options
of each command are listed below. A folder that holds no ChatLedger data (no
`settings.json`) is refused, so that a mistyped path never reads as a new, empty ledger; only
`serve`, `demo` and `db upgrade` set one up, and `ledger append` and `users create` may add
the first records to a new one. Exit status is 0 on success, non-zero with a one-line reason
on standard error otherwise (2: invalid input, 3: verification failed, 1: anything else).
`chatledger --version` prints the version.
"""


def _walk(command: Any, path: list[str]) -> list[tuple[list[str], Any]]:
    # Typer ships its own copy of click, so commands are recognised by shape, not by class.
    found: list[tuple[list[str], Any]] = []
    commands = getattr(command, "commands", None)
    if commands is not None:
        for name in sorted(commands):
            found += _walk(commands[name], [*path, name])
    else:
        found.append((path, command))
    return found


def _option_line(param: Any) -> str:
    if param.param_type_name == "argument":
        help_text = f": {param.help}" if getattr(param, "help", None) else ""
        return f"- `{(param.name or '').upper()}` (argument){help_text}"
    names = ", ".join(f"`{n}`" for n in param.opts)
    text = f"- {names}"
    if param.help:
        text += f": {param.help}"
    if param.envvar:
        text += f" (environment `{param.envvar}`)"
    if param.default not in (None, False, (), "") and not param.required and not param.is_flag:
        text += f" (default: `{param.default}`)"
    if param.required:
        text += " (required)"
    return text


def render_cli_reference() -> str:
    root = typer.main.get_command(app)
    lines = [HEADER]
    for path, command in _walk(root, []):
        lines.append(f"## `chatledger {' '.join(path)}`\n")
        lines.append((command.help or "").strip().split("\n\n")[0] + "\n")
        params = [p for p in command.params if p.name not in {"help"}]
        if params:
            lines.extend(_option_line(p) for p in params)
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(render_cli_reference(), end="")
