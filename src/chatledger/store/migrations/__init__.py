"""The schema's Alembic environment, shipped in the package and configured in code.

- ``versions/``: one revision per numbered migration (``0001_ledger.py`` ... revision ids are
  the versions, zero-padded). Each revision's ``upgrade()`` applies that version's SQL for the
  current backend, taken from ``sqlite_schema.MIGRATIONS`` or ``postgres_schema.MIGRATIONS``
  (which stay the source of truth, and which other domains extend with ``register()``), and
  records it in ``schema_migrations``; where a backend has no such version it does nothing.
- ``env.py``: runs every revision in its own transaction (``transaction_per_migration``), so a
  migration, its ``schema_migrations`` row and the move of ``alembic_version`` commit together
  or not at all. SQLite's DDL is made transactional by emitting ``BEGIN IMMEDIATE`` ourselves
  (SQLAlchemy's documented pysqlite recipe).
- ``runner.py``: builds the Alembic configuration (no ``alembic.ini``) around a connection the
  caller already holds (its role, search_path and pragmas stay as they are).

``schema_migrations`` (version, name, applied_at) stays the history of what ran and when;
``alembic_version`` is Alembic's pointer. Before upgrading, the runner sets the pointer to the
highest revision whose versions are all recorded: that adopts a database the old runner
migrated (no ``alembic_version`` yet) with one stamp, and a backend version added later to a
revision that was a no-op for that backend is applied rather than skipped. Revisions skip a
version already recorded, so nothing ever runs twice.

Importing this module imports neither Alembic nor SQLAlchemy: opening a store whose schema is
current asks the database one question (:func:`up_to_date`) and involves nothing else.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent
VERSIONS = HERE / "versions"

_REVISION_FILE = re.compile(r"^(\d{4,})_\w+\.py$")


def revision_id(version: int) -> str:
    """The Alembic revision of a numbered migration: ``10`` is ``"0010"``."""
    return f"{version:04d}"


def parse_revision(revision: str) -> int | None:
    """The migration number of a revision id, or None for one this code did not write."""
    return int(revision) if revision.isascii() and revision.isdigit() else None


@functools.cache
def file_versions() -> tuple[int, ...]:
    """The versions that have a revision file, in order."""
    found = (_REVISION_FILE.match(p.name) for p in VERSIONS.iterdir())
    return tuple(sorted(int(m.group(1)) for m in found if m))


def head_version(versions: Iterable[int]) -> int:
    """The last revision: of the files, or of a backend's migrations registered after them."""
    return max((*file_versions(), *versions))


def up_to_date(revisions: Iterable[str], recorded: Iterable[int], versions: Iterable[int]) -> bool:
    """Nothing to do: ``alembic_version`` (``revisions``) is at the head or past it (a newer
    release migrated the database) and every version of this backend is in
    ``schema_migrations`` (``recorded``)."""
    known = set(versions)
    if not known <= set(recorded):
        return False
    numbers = [parse_revision(r) for r in revisions]
    if not numbers or None in numbers:
        return False
    return max(n for n in numbers if n is not None) >= head_version(known)
