"""PostgreSQL schema, as numbered migrations; each applies with its record in one transaction.

The same tables and the same rules as :mod:`chatledger.store.sqlite_schema`, enforced twice:

- triggers refuse UPDATE, DELETE and TRUNCATE on the ledger tables (statement-level, so even
  ``UPDATE ... WHERE false`` is refused). A payload row may be deleted only once an erasure
  record names it; a subject key may only be destroyed (``wrapped`` set to NULL, once);
- roles: an *owner* role owns the tables and runs the migrations; the *application* role
  gets SELECT and INSERT on the ledger tables and nothing else. The two writes that erasure
  needs (destroying subject keys, deleting erased payloads) go through two ``SECURITY
  DEFINER`` functions owned by the owner role, so the application role holds no UPDATE,
  DELETE or TRUNCATE privilege on any ledger table. :func:`setup_roles` sets this up.

Migrations of other domains register here with :func:`register`, in version order, like the
SQLite ones; Alembic runs them, one revision per version (see
:mod:`chatledger.store.migrations`). Concurrent starters are serialised by an advisory lock,
so several API processes may start against a fresh database at once.

Run as a module for operators::

    python -m chatledger.store.postgres_schema setup-roles --admin-url URL --app-role NAME
    python -m chatledger.store.postgres_schema migrate --url URL
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from chatledger.errors import StorageError
from chatledger.store.migrations import up_to_date

LEDGER_TABLES = (
    "ledger_entries",
    "ledger_nodes",
    "ledger_checkpoints",
    "ledger_payloads",
    "ledger_payload_erasures",
    "subject_keys",
)
"""The tables of the record: append-only, never UPDATE, DELETE or TRUNCATE for the app."""

APP_INSERTS = (
    "ledger_entries",
    "ledger_nodes",
    "ledger_checkpoints",
    "ledger_payloads",
    "subject_keys",
)
"""The ledger tables the application role may INSERT into (erasure records are written by
``ledger_record_payload_erasures`` only)."""

VERSION_TABLES = ("schema_migrations", "alembic_version")
"""The migrations' history and Alembic's pointer: the owner's; the app may only read them."""

PARTITION_TABLES = ("ledger_partitions", "ledger_partition_config")
"""The catalogue of the ledger's partitions (migration 14, :mod:`chatledger.store.pg_partitions`)
and its partition size: the owner's; the app may only read them. The partitions themselves
are the owner's and nobody else's: the app reads and appends through the parent tables."""

ERASURE_FUNCTIONS = (
    "ledger_destroy_subject_keys(text, text, bigint)",
    "ledger_record_payload_erasures(bigint[], bigint, text, boolean)",
)

MIGRATION_LOCK = 0x63_6C_6D_69_67_72_61_74  # "clmigrat": serialises concurrent migrators

Conn = psycopg.Connection[Any]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str | Callable[[Conn], None]


LEDGER_V1_TABLES = """
CREATE TABLE ledger_entries (
    seq bigint PRIMARY KEY,
    ts text NOT NULL,
    category text NOT NULL,
    action text NOT NULL,
    actor_id text NOT NULL,
    entity_type text NOT NULL,
    entity_id text NOT NULL,
    outcome text NOT NULL,
    subject text,
    chatbot_id text,
    conversation_id text,
    body bytea NOT NULL,
    leaf_hash bytea NOT NULL,
    mac bytea NOT NULL
);
CREATE INDEX ledger_entries_entity ON ledger_entries (entity_type, entity_id);
CREATE INDEX ledger_entries_subject ON ledger_entries (subject) WHERE subject IS NOT NULL;
CREATE INDEX ledger_entries_conversation ON ledger_entries (conversation_id)
    WHERE conversation_id IS NOT NULL;
CREATE INDEX ledger_entries_chatbot ON ledger_entries (chatbot_id, seq)
    WHERE chatbot_id IS NOT NULL;
CREATE TABLE ledger_nodes (
    level integer NOT NULL,
    idx bigint NOT NULL,
    hash bytea NOT NULL,
    PRIMARY KEY (level, idx)
);
CREATE TABLE ledger_checkpoints (
    size bigint PRIMARY KEY,
    ts text NOT NULL,
    note text NOT NULL
);
CREATE TABLE ledger_payloads (
    seq bigint PRIMARY KEY,
    key_ref text NOT NULL,
    nonce bytea NOT NULL,
    ciphertext bytea NOT NULL
);
CREATE INDEX ledger_payloads_key ON ledger_payloads (key_ref);
CREATE TABLE ledger_payload_erasures (
    seq bigint PRIMARY KEY,
    erasure_seq bigint NOT NULL,
    reason text NOT NULL
);
CREATE TABLE subject_keys (
    key_ref text PRIMARY KEY,
    subject_ref text NOT NULL,
    wrapped bytea,
    created_at text NOT NULL,
    erased_at text,
    erasure_seq bigint
);
CREATE INDEX subject_keys_subject ON subject_keys (subject_ref);
CREATE INDEX subject_keys_erased ON subject_keys (erasure_seq) WHERE erasure_seq IS NOT NULL;

CREATE FUNCTION ledger_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_NARGS > 0 THEN
        RAISE EXCEPTION '%', TG_ARGV[0];
    END IF;
    RAISE EXCEPTION 'ledger tables are append-only: % on % refused', TG_OP, TG_TABLE_NAME;
END $$;

CREATE FUNCTION ledger_payload_delete_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ledger_payload_erasures e WHERE e.seq = OLD.seq) THEN
        RAISE EXCEPTION 'a payload may be deleted only by a recorded erasure (seq %)', OLD.seq;
    END IF;
    RETURN OLD;
END $$;

CREATE FUNCTION subject_key_destroy_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.wrapped IS NULL OR NEW.wrapped IS NOT NULL
       OR NEW.key_ref IS DISTINCT FROM OLD.key_ref
       OR NEW.subject_ref IS DISTINCT FROM OLD.subject_ref
       OR NEW.created_at IS DISTINCT FROM OLD.created_at
       OR NEW.erased_at IS NULL OR NEW.erasure_seq IS NULL THEN
        RAISE EXCEPTION 'a subject key can only be destroyed, once';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER ledger_entries_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse();
CREATE TRIGGER ledger_nodes_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON ledger_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse();
CREATE TRIGGER ledger_checkpoints_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON ledger_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse();
CREATE TRIGGER ledger_payload_erasures_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON ledger_payload_erasures
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse();
CREATE TRIGGER ledger_payloads_append_only
    BEFORE UPDATE OR TRUNCATE ON ledger_payloads
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse();
CREATE TRIGGER ledger_payloads_delete_only_erased
    BEFORE DELETE ON ledger_payloads
    FOR EACH ROW EXECUTE FUNCTION ledger_payload_delete_check();
CREATE TRIGGER subject_keys_destroy_only
    BEFORE UPDATE ON subject_keys
    FOR EACH ROW EXECUTE FUNCTION subject_key_destroy_check();
CREATE TRIGGER subject_keys_no_delete
    BEFORE DELETE OR TRUNCATE ON subject_keys
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse('subject keys are destroyed, not deleted');
"""

# The two writes erasure needs, run with the owner's rights; the app role may only EXECUTE
# them. search_path is pinned to the schema the tables live in (then pg_temp), as the
# PostgreSQL manual advises for SECURITY DEFINER functions.
LEDGER_V1_FUNCTIONS = """
CREATE FUNCTION ledger_destroy_subject_keys(
    p_subject_ref text, p_erased_at text, p_erasure_seq bigint
) RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = {schema}, pg_temp AS $$
DECLARE
    n integer;
BEGIN
    UPDATE subject_keys SET wrapped = NULL, erased_at = p_erased_at, erasure_seq = p_erasure_seq
     WHERE subject_ref = p_subject_ref AND wrapped IS NOT NULL;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

CREATE FUNCTION ledger_record_payload_erasures(
    p_seqs bigint[], p_erasure_seq bigint, p_reason text, p_delete boolean
) RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = {schema}, pg_temp AS $$
DECLARE
    n integer := 0;
BEGIN
    INSERT INTO ledger_payload_erasures (seq, erasure_seq, reason)
    SELECT s, p_erasure_seq, p_reason FROM unnest(p_seqs) AS s
    ON CONFLICT (seq) DO NOTHING;
    IF p_delete THEN
        DELETE FROM ledger_payloads WHERE seq = ANY (p_seqs);
        GET DIAGNOSTICS n = ROW_COUNT;
    END IF;
    RETURN n;
END $$;

REVOKE ALL ON FUNCTION ledger_destroy_subject_keys(text, text, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION ledger_record_payload_erasures(bigint[], bigint, text, boolean)
    FROM PUBLIC;
"""


def _ledger_v1(conn: Conn) -> None:
    conn.execute(LEDGER_V1_TABLES)
    schema = current_schema(conn)
    conn.execute(sql.SQL(LEDGER_V1_FUNCTIONS).format(schema=sql.Identifier(schema)))


def portable(ddl: str) -> str:
    """SQL written for both databases, with SQLite's two storage types mapped: ``BLOB`` to
    ``bytea`` and ``INTEGER`` to ``bigint`` (SQLite integers are 64-bit)."""
    return re.sub(r"\bINTEGER\b", "bigint", re.sub(r"\bBLOB\b", "bytea", ddl))


def _platform_v1(conn: Conn) -> None:
    from chatledger.store.platform_schema import PLATFORM_V1

    conn.execute(portable(PLATFORM_V1).encode())


def _domain(module: str) -> Callable[[Conn], None]:
    """A migration whose statements (the common subset of SQLite and PostgreSQL) live in
    ``chatledger.store.<module>.SQLITE_SCHEMA``, as sqlite_schema.py applies them."""

    def apply(conn: Conn) -> None:
        import importlib

        script: str = importlib.import_module(f"chatledger.store.{module}").SQLITE_SCHEMA
        conn.execute(portable(script).encode())

    return apply


def _retrieval_index(conn: Conn) -> None:
    """Chunks and their tsvector (GIN): :data:`chatledger.rag.pg_index.SCHEMA`. The app role
    gets its DML on ``retrieval_chunks`` from :func:`grant_app_privileges` (an owner's table
    that is not a ledger table); its identity column needs no sequence grant."""
    from chatledger.rag.pg_index import PostgresIndex

    PostgresIndex().create_schema(conn)


def _audit_index(conn: Conn) -> None:
    """The audit search index: :mod:`chatledger.store.pg_schema_audit` (tsvector, facets,
    index state, forwarder cursors)."""
    from chatledger.store import pg_schema_audit

    pg_schema_audit.apply(conn)


# The same numbers as sqlite_schema.py; PostgreSQL's own: 14, partitioning (SQLite has none).
def _lean_payloads(conn: Conn) -> None:
    """Drop the index on payloads' random key_ref (see sqlite_schema.LEAN_PAYLOADS)."""
    conn.execute("DROP INDEX IF EXISTS ledger_payloads_key")


def _partitions(conn: Conn) -> None:
    """``ledger_entries`` and ``ledger_payloads`` range-partitioned by seq, without rewriting
    them (see :mod:`chatledger.store.pg_partitions`). PostgreSQL only: SQLite has no 14."""
    from chatledger.store.pg_partitions import migrate

    migrate(conn)


MIGRATIONS: list[Migration] = [
    Migration(1, "ledger", _ledger_v1),
    Migration(2, "platform", _platform_v1),
    Migration(3, "retrieval index", _retrieval_index),
    Migration(10, "audit", _audit_index),
    Migration(11, "privacy", _domain("schema_privacy")),
    Migration(12, "integrations", _domain("schema_integrations")),
    Migration(13, "lean payload index", _lean_payloads),
    Migration(14, "partitions", _partitions),
]


def register(migration: Migration) -> None:
    """Add a migration of another domain (chatbots, identity, ...) in version order."""
    if any(m.version == migration.version for m in MIGRATIONS):
        raise ValueError(f"migration {migration.version} is already registered")
    MIGRATIONS.append(migration)
    MIGRATIONS.sort(key=lambda m: m.version)


def current_schema(conn: Conn) -> str:
    row = conn.execute("SELECT current_schema()").fetchone()
    if row is None or row[0] is None:
        raise StorageError("no schema to create the ledger in: check search_path")
    return str(row[0])


def _has_migrations_table(conn: Conn) -> bool:
    # A plain catalog query, not to_regclass(): that one reads the catalog cache, which may
    # not yet know of a table another session created while we waited for the lock.
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relname = 'schema_migrations' AND n.nspname = current_schema())"
    ).fetchone()
    return bool(row and row[0])


def applied_versions(conn: Conn) -> set[int]:
    """Versions recorded in ``schema_migrations`` (empty before the first migration)."""
    if not _has_migrations_table(conn):
        return set()
    return {int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations")}


def pending(conn: Conn) -> list[Migration]:
    """Migrations not yet applied (not recorded in ``schema_migrations``)."""
    try:
        done = applied_versions(conn)
    finally:
        conn.rollback()
    return [m for m in MIGRATIONS if m.version not in done]


def apply_migrations(conn: Conn) -> list[int]:
    """Bring the schema to Alembic's head; return the versions applied.

    Each migration applies with its ``schema_migrations`` row and the move of
    ``alembic_version`` in one transaction (see :mod:`chatledger.store.migrations`). When
    nothing is due this costs one query. ``conn`` must not be in autocommit mode and must be
    idle; its role and search_path are the ones migrating. A session advisory lock held
    around the upgrade makes concurrent starters migrate once.
    """
    if conn.autocommit:
        raise ValueError("apply_migrations needs a connection outside autocommit mode")
    if _up_to_date(conn):
        return []
    todo = pending(conn)
    if not todo and not _may_migrate(conn):
        # Only alembic_version is missing or behind (a database the previous runner migrated):
        # nothing to apply, and the owner's next migration adopts it.
        return []
    _check_may_migrate(conn, todo)
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    conn.commit()
    try:
        from chatledger.store.migrations.runner import upgrade

        return upgrade(conn, "postgresql")
    except psycopg.errors.InsufficientPrivilege as exc:
        raise StorageError(
            f"migrating needs the owner role: {exc}; run `python -m "
            "chatledger.store.postgres_schema migrate` (or setup-roles) as the owner first"
        ) from exc
    finally:
        if not conn.closed and not conn.broken:
            conn.rollback()
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
            conn.commit()


def _up_to_date(conn: Conn) -> bool:
    try:
        row = conn.execute(
            "SELECT ARRAY(SELECT version_num::text FROM alembic_version), "
            "ARRAY(SELECT version FROM schema_migrations)"
        ).fetchone()
    except (psycopg.errors.UndefinedTable, psycopg.errors.InsufficientPrivilege):
        return False  # fresh, migrated by the previous runner, or alembic_version not granted
    finally:
        conn.rollback()
    assert row is not None
    return up_to_date(row[0], row[1], (m.version for m in MIGRATIONS))


def apply_one(conn: Conn, migration: Migration) -> None:
    """Apply one migration and record it, in the caller's transaction (a revision's)."""
    try:
        if callable(migration.sql):
            migration.sql(conn)
        else:
            conn.execute(migration.sql.encode())
        if not _has_migrations_table(conn):
            conn.execute(
                "CREATE TABLE schema_migrations (version integer PRIMARY KEY, "
                "name text NOT NULL, applied_at text NOT NULL)"
            )
        conn.execute(
            "INSERT INTO schema_migrations VALUES (%s, %s, %s)",
            (migration.version, migration.name, _now()),
        )
    except psycopg.errors.InsufficientPrivilege as exc:
        raise StorageError(
            f"migration {migration.version} ({migration.name}) needs the owner role: "
            f"{exc}; run `python -m chatledger.store.postgres_schema migrate` (or "
            "setup-roles) as the owner first"
        ) from exc


def _may_migrate(conn: Conn) -> bool:
    """Whether this role owns ``ledger_entries`` (or it does not exist yet)."""
    try:
        row = conn.execute(
            "SELECT pg_has_role(current_user, c.relowner, 'USAGE') "
            "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relname = 'ledger_entries' AND n.nspname = current_schema()"
        ).fetchone()
    finally:
        conn.rollback()
    return row is None or bool(row[0])


def _check_may_migrate(conn: Conn, todo: Sequence[Migration]) -> None:
    """Whoever owns the ledger migrates it: a role that does not own ``ledger_entries`` (the
    application role) must not create tables it would then own."""
    if _may_migrate(conn):
        return
    row = conn.execute("SELECT current_user").fetchone()
    conn.rollback()
    names = ", ".join(f"{m.version} ({m.name})" for m in todo)
    raise StorageError(
        f"migrations {names} are pending and need the owner role, not "
        f"{row[0] if row else '?'}: run "
        "`python -m chatledger.store.postgres_schema setup-roles` (or `migrate`) as the owner"
    )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- roles ---------------------------------------------------------------------------------


def setup_roles(
    admin_url: str,
    app_role: str,
    app_password: str,
    *,
    owner_role: str = "chatledger_owner",
    schema: str = "public",
) -> None:
    """Create the owner and application roles, migrate as the owner, grant the app its rights.

    ``admin_url`` names the target database and a role that may create roles and grant on
    the schema (a superuser, or on managed services the admin role). Idempotent: run it again
    after every upgrade so new tables get their grants. The owner role cannot log in (the
    admin acts as it with ``SET ROLE``); the application role logs in with ``app_password``.
    An existing role is refused as the application role if it is a superuser, may create
    roles or bypass row security, or is a member of the owner role (it would inherit the
    owner's rights over the ledger tables).
    """
    if app_role == owner_role:
        raise ValueError("the application role must differ from the owner role")
    with psycopg.connect(admin_url, autocommit=False) as conn:
        _ensure_role(conn, owner_role, login=False, password=None)
        _ensure_role(conn, app_role, login=True, password=app_password)
        _check_app_role(conn, app_role, owner_role)
        row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        if not (row and row[0]):  # a managed service's admin: it must be able to SET ROLE
            conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(owner_role)))
        conn.commit()
        prepare_schema(conn, app_role, owner_role=owner_role, schema=schema)


def prepare_schema(
    conn: Conn, app_role: str, *, owner_role: str = "chatledger_owner", schema: str = "public"
) -> None:
    """With both roles in place: the schema (owned by the owner), its migrations (applied as
    the owner), and the application role's grants. ``conn`` is an admin's, outside autocommit;
    its search_path and role are restored afterwards."""
    ident = sql.Identifier
    conn.execute(
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(
            ident(schema), ident(owner_role)
        )
    )
    conn.execute(
        sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(ident(schema), ident(owner_role))
    )
    conn.execute(
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            ident(_current_database(conn)), ident(app_role)
        )
    )
    # The app may create and change the platform's own tables (projections rebuilt from the
    # ledger), never the ledger's: those belong to the owner.
    conn.execute(
        sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(ident(schema), ident(app_role))
    )
    _adopt_ledger_objects(conn, schema, owner_role)
    conn.execute(sql.SQL("SET search_path = {}").format(ident(schema)))
    conn.execute(sql.SQL("SET ROLE {}").format(ident(owner_role)))
    conn.commit()
    try:
        apply_migrations(conn)
        from chatledger.store.pg_partitions import ensure_partitions

        ensure_partitions(conn)
        conn.execute("RESET ROLE")
        grant_app_privileges(conn, app_role, owner_role=owner_role, schema=schema)
        conn.commit()
    finally:
        if not conn.broken:
            conn.rollback()
            conn.execute("RESET ROLE")
            conn.execute("RESET search_path")
            conn.commit()


def grant_app_privileges(
    conn: Conn, app_role: str, *, owner_role: str = "chatledger_owner", schema: str = "public"
) -> None:
    """SELECT and INSERT on the ledger tables, EXECUTE on the erasure functions, DML on the
    owner's other tables (the platform's projections); nothing else on the ledger, and
    nothing at all on the ledger tables' partitions (attached or detached)."""
    from chatledger.store.pg_partitions import partition_tables

    ident = sql.Identifier
    app = ident(app_role)
    for table in LEDGER_TABLES:
        target = sql.SQL("{}.{}").format(ident(schema), ident(table))
        conn.execute(sql.SQL("REVOKE ALL ON {} FROM PUBLIC, {}").format(target, app))
        privileges = "SELECT, INSERT" if table in APP_INSERTS else "SELECT"
        conn.execute(sql.SQL(f"GRANT {privileges} ON {{}} TO {{}}").format(target, app))
    present = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = ANY (%s)",
        (schema, [*VERSION_TABLES, *PARTITION_TABLES]),
    ).fetchall()
    for (table,) in present:  # the app reads them to know whether a migration is due
        target = sql.SQL("{}.{}").format(ident(schema), ident(table))
        conn.execute(sql.SQL("REVOKE ALL ON {} FROM PUBLIC, {}").format(target, app))
        conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(target, app))
    partitions = partition_tables(conn, schema)
    for table in partitions:
        target = sql.SQL("{}.{}").format(ident(schema), ident(table))
        conn.execute(sql.SQL("REVOKE ALL ON {} FROM PUBLIC, {}").format(target, app))
    for function in ERASURE_FUNCTIONS:
        name, args = function.split("(", 1)
        conn.execute(
            sql.SQL("GRANT EXECUTE ON FUNCTION {}.{}(" + args + " TO {}").format(
                ident(schema), ident(name), app
            )
        )
    others = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND pg_get_userbyid(c.relowner) = %s",
        (schema, owner_role),
    ).fetchall()
    reserved = {*LEDGER_TABLES, *VERSION_TABLES, *PARTITION_TABLES, *partitions}
    for (table,) in others:
        if table in reserved:
            continue
        conn.execute(
            sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {}.{} TO {}").format(
                ident(schema), ident(table), app
            )
        )


def _ensure_role(conn: Conn, role: str, *, login: bool, password: str | None) -> None:
    found = conn.execute(
        "SELECT rolsuper OR rolcreaterole OR rolbypassrls FROM pg_roles WHERE rolname = %s",
        (role,),
    ).fetchone()
    ident = sql.Identifier(role)
    if found is None:
        options = "LOGIN" if login else "NOLOGIN"
        conn.execute(
            sql.SQL(
                "CREATE ROLE {} " + options + " NOSUPERUSER NOCREATEDB NOCREATEROLE "
                "NOREPLICATION NOBYPASSRLS"
            ).format(ident)
        )
    elif found[0]:
        raise StorageError(
            f"the role {role} is a superuser or may create roles or bypass row security: "
            "choose a plain role for the ledger"
        )
    if password is not None:
        conn.execute(
            sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(ident, sql.Literal(password))
        )


def _check_app_role(conn: Conn, app_role: str, owner_role: str) -> None:
    row = conn.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", (app_role, owner_role)).fetchone()
    if row is not None and row[0]:
        raise StorageError(
            f"the application role {app_role} is a member of the owner role {owner_role}: "
            "it would inherit the right to alter the ledger tables; revoke that membership"
        )


def _current_database(conn: Conn) -> str:
    row = conn.execute("SELECT current_database()").fetchone()
    assert row is not None
    return str(row[0])


def _adopt_ledger_objects(conn: Conn, schema: str, owner_role: str) -> None:
    """Hand ledger tables created earlier by another role (a first run as the app) to the
    owner, so that the application role does not own, and so cannot alter, the record.
    Partitions too: changing a partitioned table's owner leaves its partitions' alone."""
    from chatledger.store.pg_partitions import partition_tables

    ident = sql.Identifier
    tables = (*LEDGER_TABLES, *VERSION_TABLES, *PARTITION_TABLES)
    for table in (*tables, *partition_tables(conn, schema)):
        found = conn.execute(
            "SELECT pg_get_userbyid(c.relowner) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
            (schema, table),
        ).fetchone()
        if found is not None and found[0] != owner_role:
            conn.execute(
                sql.SQL("ALTER TABLE {}.{} OWNER TO {}").format(
                    ident(schema), ident(table), ident(owner_role)
                )
            )
    for function in (
        *ERASURE_FUNCTIONS,
        "ledger_refuse()",
        "ledger_payload_delete_check()",
        "subject_key_destroy_check()",
    ):
        name, args = function.split("(", 1)
        row = conn.execute(
            "SELECT pg_get_userbyid(p.proowner) FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %s AND p.proname = %s",
            (schema, name),
        ).fetchone()
        if row is not None and row[0] != owner_role:
            conn.execute(
                sql.SQL("ALTER FUNCTION {}.{}(" + args + " OWNER TO {}").format(
                    ident(schema), ident(name), ident(owner_role)
                )
            )


# -- command line -----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chatledger.store.postgres_schema",
        description="Set up the ChatLedger schema and roles on PostgreSQL.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    roles = commands.add_parser("setup-roles", help="create roles, migrate as owner, grant")
    roles.add_argument("--admin-url", required=True, help="URL of a superuser/admin role")
    roles.add_argument("--app-role", required=True)
    roles.add_argument(
        "--app-password-env",
        default="CHATLEDGER_APP_PASSWORD",
        help="environment variable holding the app role's password (else it is asked)",
    )
    roles.add_argument("--owner-role", default="chatledger_owner")
    roles.add_argument("--schema", default="public")
    migrate = commands.add_parser("migrate", help="apply pending migrations")
    migrate.add_argument("--url", required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "setup-roles":
            password = os.environ.get(args.app_password_env) or getpass.getpass(
                f"password for {args.app_role}: "
            )
            setup_roles(
                args.admin_url,
                args.app_role,
                password,
                owner_role=args.owner_role,
                schema=args.schema,
            )
            print(f"roles ready: owner {args.owner_role}, application {args.app_role}")
        else:
            from chatledger.store.pg_partitions import ensure_partitions

            with psycopg.connect(args.url) as conn:
                done = apply_migrations(conn)
                if _may_migrate(conn):
                    ensure_partitions(conn)
            print(f"applied migrations: {done or 'none pending'}")
    except (psycopg.Error, StorageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
