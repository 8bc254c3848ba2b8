"""The Alembic environment of ChatLedger's schema (see this package's docstring).

Run by :func:`chatledger.store.migrations.runner.upgrade`, which puts the SQLAlchemy
connection to migrate in ``config.attributes["connection"]``; there is no ``alembic.ini`` and
no offline (``--sql``) mode. Operators run ``chatledger db upgrade``.
"""

from __future__ import annotations

from alembic import context

from chatledger.errors import StorageError
from chatledger.store.migrations.runner import reconcile

connection = context.config.attributes.get("connection")
if connection is None:
    raise StorageError("run the migrations with `chatledger db upgrade`, not the alembic command")

context.configure(
    connection=connection,
    # One transaction per revision: its DDL, its schema_migrations row and the move of
    # alembic_version commit together. SQLite's DDL is transactional too, once pysqlite's own
    # transaction handling is off (the runner's engine does that and emits the BEGIN).
    transaction_per_migration=True,
    transactional_ddl=True,
)
reconcile(context.get_context(), context.script)
context.run_migrations()
