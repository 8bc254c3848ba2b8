"""SQLite tables of this domain, applied as one numbered migration (see sqlite_schema.py).

Write statements in the common subset of SQLite and PostgreSQL where you can.
"""

from __future__ import annotations

SQLITE_SCHEMA = ""
