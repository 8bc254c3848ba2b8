"""PostgreSQL: the ledger's unbounded tables partitioned by seq (migration 14), and their upkeep.

``ledger_entries`` and ``ledger_payloads`` are ``PARTITION BY RANGE (seq)``. Timestamps never
decrease along the log, so a seq range is a time range; ``seq`` is the primary key, which a
partitioned table's unique keys must contain. The parents keep their names, columns, primary
keys, indexes, triggers and grants: the writer's ``INSERT`` and ``COPY`` and every read go to
the parents as before.

- **Partition size.** A power of two of entries, fixed when migration 14 runs (the
  ``CHATLEDGER_PARTITION_SIZE`` environment variable, default ``2**22``) and kept in
  ``ledger_partition_config``. Partitions start at multiples of it, so each is one perfect
  subtree (or a run of them) of the Merkle tree, whose hash is one row of ``ledger_nodes``:
  once a range is detached, every proof about the live entries still finds what it needs
  (no leaf of a detached range is ever a sibling of a live leaf's path).
- **Conversion** (migration 14) rewrites no data: the existing table is renamed to the first
  partition (``ledger_entries_p000000``, covering ``[0, B)``, ``B`` the head rounded up to
  the partition size), a partitioned parent with the same columns, constraints, indexes (by
  their names), triggers and grants is created under the old name, and the old table is
  attached to it (its indexes are adopted as the parent's; attaching reads the table once to
  check the bound). Then the partitions ahead are created.
- **Partitions ahead, and the overflow partition.** :func:`ensure_partitions` (run by the
  migration, ``chatledger db upgrade``, ``setup-roles`` and the ``chatledger db partitions``
  maintenance command, as the owner) keeps ``ahead`` empty partitions after the one the head
  is in. Past the last of them a catch-all range partition, ``ledger_entries_overflow``
  ``FROM (end) TO (MAXVALUE)``, takes any row: an append never fails for want of a partition.
  When the job finds rows there (it was late), it turns the overflow table into an ordinary
  partition by detaching it and attaching it again with a bounded range (no row moves), and
  makes a new, empty overflow. A range partition rather than a ``DEFAULT`` one, because a
  default partition would break ordered scans of the partitions (the head lookup, ``ORDER BY
  seq DESC LIMIT 1``, would visit every partition), would be scanned on every attach, and
  rules out ``DETACH PARTITION ... CONCURRENTLY``.
- **Protection.** Row triggers of a partitioned table reach its partitions; statement-level
  triggers (the append-only ones, TRUNCATE included) fire only for statements naming the
  parent. So every partition gets the same append-only statement triggers as its parent
  (a statement naming a partition is refused too, for every role), the application role gets
  no privilege at all on any partition (it reads and appends through the parents), and a
  detached payload table gets back the row trigger that allows a delete only under a
  recorded erasure (the clone of the parent's leaves with the detach).
- **The catalogue** ``ledger_partitions``: each range (``first_seq``, exclusive ``end_seq``),
  its two tables, ``state`` (attached/detached), the highest seq stored and the first and
  last ``ts``, and ``checkpoint_size``: the smallest stored checkpoint covering the whole
  range (its note is in ``ledger_checkpoints``, which is never partitioned or detached).
- **Archiving** (:func:`detach_partition`): the oldest attached partition, once full and
  covered by a stored checkpoint, is detached (both tables, one transaction) and marked
  detached; the operator then dumps the two tables to archive storage and may drop them.
  :func:`attach_partition` puts a restored archive back. See docs/operations.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from chatledger.errors import InvalidInput, NotFound, StorageError
from chatledger.store.postgres_schema import PARTITION_TABLES, current_schema

Conn = psycopg.Connection[Any]

VERSION = 14

SIZE_ENV = "CHATLEDGER_PARTITION_SIZE"
DEFAULT_SIZE = 1 << 22
"""Entries per partition unless ``CHATLEDGER_PARTITION_SIZE`` says otherwise when migration
14 runs: 4,194,304 entries (a few GB with payloads), so a log of a billion entries has about
240 partitions, well within what the planner handles for the queries that cannot prune."""

DEFAULT_AHEAD = 2
"""Empty partitions kept after the one that holds the head."""

PARENTS = ("ledger_entries", "ledger_payloads")
"""The partitioned tables (the ledger's two tables that grow with every entry)."""

CATALOGUE, CONFIG = PARTITION_TABLES
"""The catalogue of partitions and the partition size: the owner's; the application role
may read them."""

OVERFLOW = "overflow"

_MAX_IDENT = 63

# The triggers every partition carries (the parents' statement-level triggers, which do not
# fire for a statement naming a partition): name, timing and events, level, function.
_PARTITION_TRIGGERS: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "ledger_entries": (
        (
            "ledger_entries_append_only",
            "BEFORE UPDATE OR DELETE OR TRUNCATE",
            "STATEMENT",
            "ledger_refuse",
        ),
    ),
    "ledger_payloads": (
        ("ledger_payloads_append_only", "BEFORE UPDATE OR TRUNCATE", "STATEMENT", "ledger_refuse"),
    ),
}
# ... and what a detached one gets back: the parent's row trigger, whose clone the detach drops.
_DETACHED_TRIGGERS: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "ledger_entries": (),
    "ledger_payloads": (
        (
            "ledger_payloads_delete_only_erased",
            "BEFORE DELETE",
            "ROW",
            "ledger_payload_delete_check",
        ),
    ),
}

_CATALOGUE_DDL = """
CREATE TABLE {config} (
    partition_size bigint PRIMARY KEY
        CHECK (partition_size >= 2 AND (partition_size & (partition_size - 1)) = 0)
);
CREATE TABLE {catalogue} (
    first_seq bigint PRIMARY KEY,
    end_seq bigint NOT NULL,
    entries_table text NOT NULL UNIQUE,
    payloads_table text NOT NULL UNIQUE,
    state text NOT NULL DEFAULT 'attached' CHECK (state IN ('attached', 'detached')),
    last_seq bigint,
    first_ts text,
    last_ts text,
    checkpoint_size bigint,
    created_at text NOT NULL,
    detached_at text,
    CHECK (first_seq >= 0 AND end_seq > first_seq)
);
"""

_COLUMNS = (
    "first_seq, end_seq, entries_table, payloads_table, state, last_seq, first_ts, last_ts, "
    "checkpoint_size, created_at, detached_at"
)


@dataclass(frozen=True)
class Partition:
    """One row of ``ledger_partitions``: the seq range ``[first_seq, end_seq)``."""

    first_seq: int
    end_seq: int
    entries_table: str
    payloads_table: str
    state: str
    last_seq: int | None
    first_ts: str | None
    last_ts: str | None
    checkpoint_size: int | None
    created_at: str
    detached_at: str | None

    @property
    def full(self) -> bool:
        return self.last_seq is not None and self.last_seq >= self.end_seq - 1

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "full": self.full}


@dataclass
class PartitionReport:
    """What :func:`ensure_partitions` found and did."""

    partitioned: bool
    partition_size: int | None = None
    head: int = 0
    created: list[str] = field(default_factory=list)
    promoted: list[str] = field(default_factory=list)
    overflow_first_seq: int | None = None
    partitions: list[Partition] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "partitioned": self.partitioned,
            "partition_size": self.partition_size,
            "head": self.head,
            "created": self.created,
            "promoted": self.promoted,
            "overflow_first_seq": self.overflow_first_seq,
            "partitions": [p.to_json() for p in self.partitions],
        }


def partition_size_from_env() -> int:
    """The partition size for migration 14: ``CHATLEDGER_PARTITION_SIZE`` or the default."""
    raw = os.environ.get(SIZE_ENV, "").strip()
    if not raw:
        return DEFAULT_SIZE
    try:
        size = int(raw, 0)
    except ValueError:
        raise InvalidInput(f"{SIZE_ENV} must be a number of entries, not {raw!r}") from None
    if size < 2 or size & (size - 1):
        raise InvalidInput(f"{SIZE_ENV} must be a power of two of at least 2, not {size}")
    return size


def partition_name(parent: str, first_seq: int, size: int) -> str:
    """``ledger_entries_p000003``: the partition starting at ``first_seq``, numbered in
    partition sizes."""
    return f"{parent}_p{first_seq // size:06d}"


def overflow_name(parent: str) -> str:
    return f"{parent}_{OVERFLOW}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _round_up(value: int, size: int) -> int:
    return -(-value // size) * size


def _schema(conn: Conn) -> str:
    return current_schema(conn)


def _q(schema: str, name: str) -> sql.Identifier:
    return sql.Identifier(schema, name)


def ident(name: str) -> sql.Identifier:
    return sql.Identifier(name)


def _oid(conn: Conn, schema: str, name: str) -> int | None:
    row = conn.execute(
        "SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
        (schema, name),
    ).fetchone()
    return None if row is None else int(row[0])


def _relkind(conn: Conn, schema: str, name: str) -> str | None:
    row = conn.execute(
        "SELECT c.relkind FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
        (schema, name),
    ).fetchone()
    return None if row is None else str(row[0])


def _owner(conn: Conn, oid: int) -> str:
    row = conn.execute(
        "SELECT pg_get_userbyid(relowner) FROM pg_catalog.pg_class WHERE oid = %s", (oid,)
    ).fetchone()
    assert row is not None
    return str(row[0])


def is_partitioned(conn: Conn, schema: str | None = None) -> bool:
    """Whether migration 14 has made ``ledger_entries`` a partitioned table here."""
    schema = schema or _schema(conn)
    return _relkind(conn, schema, "ledger_entries") == "p" and (
        _oid(conn, schema, CATALOGUE) is not None
    )


def may_maintain(conn: Conn) -> bool:
    """Whether this session's role may create and detach partitions: it owns (or acts as the
    owner of) ``ledger_entries``. Leaves the connection idle."""
    try:
        row = conn.execute(
            "SELECT pg_has_role(current_user, c.relowner, 'USAGE') FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relname = 'ledger_entries' AND n.nspname = current_schema()"
        ).fetchone()
    finally:
        conn.rollback()
    return bool(row and row[0])


def attached(conn: Conn, schema: str, parent: str) -> list[tuple[str, str]]:
    """The partitions attached to ``parent`` now: (name, bound expression), in no order."""
    rows = conn.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_catalog.pg_inherits i "
        "JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_catalog.pg_class p ON p.oid = i.inhparent "
        "JOIN pg_catalog.pg_namespace n ON n.oid = p.relnamespace "
        "WHERE n.nspname = %s AND p.relname = %s",
        (schema, parent),
    ).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def partition_tables(conn: Conn, schema: str) -> list[str]:
    """Every table that is or was a partition of the ledger's partitioned tables in
    ``schema``: the attached ones and the catalogued ones still present (detached). The
    application role gets no privilege on any of them."""
    names: set[str] = set()
    for parent in PARENTS:
        if _relkind(conn, schema, parent) == "p":
            names.update(name for name, _ in attached(conn, schema, parent))
    if _oid(conn, schema, CATALOGUE) is not None:
        rows = conn.execute(
            sql.SQL("SELECT entries_table, payloads_table FROM {}").format(_q(schema, CATALOGUE))
        ).fetchall()
        for row in rows:
            names.update(str(name) for name in row if _oid(conn, schema, str(name)) is not None)
    return sorted(names)


# -- migration 14 ------------------------------------------------------------------------------


def migrate(conn: Conn) -> None:
    """Migration 14: make ``ledger_entries`` and ``ledger_payloads`` range-partitioned by
    seq, in the caller's transaction, without rewriting a row."""
    schema = _schema(conn)
    if is_partitioned(conn, schema):
        return
    size = partition_size_from_env()
    for parent in PARENTS:
        if _relkind(conn, schema, parent) != "r":
            raise StorageError(f"cannot partition {schema}.{parent}: it is not a plain table")
        _refuse_dependents(conn, schema, parent)
    conn.execute(
        sql.SQL("LOCK TABLE {}, {} IN ACCESS EXCLUSIVE MODE").format(
            *(_q(schema, parent) for parent in PARENTS)
        )
    )
    entries_oid = _oid(conn, schema, "ledger_entries")
    assert entries_oid is not None
    owner = _owner(conn, entries_oid)
    conn.execute(
        sql.SQL(_CATALOGUE_DDL).format(config=_q(schema, CONFIG), catalogue=_q(schema, CATALOGUE))
    )
    conn.execute(sql.SQL("INSERT INTO {} VALUES (%s)").format(_q(schema, CONFIG)), (size,))
    for table in PARTITION_TABLES:
        _give_to(conn, schema, table, owner)
    head = _head(conn, schema)
    end = max(size, _round_up(head, size))
    names = [partition_name(parent, 0, size) for parent in PARENTS]
    for parent, child in zip(PARENTS, names, strict=True):
        _convert(conn, schema, parent, child, end)
    _record(conn, schema, 0, end, names)
    _extend(conn, schema, size, head, DEFAULT_AHEAD, PartitionReport(True, size, head))
    _refresh(conn, schema, head)


def _refuse_dependents(conn: Conn, schema: str, table: str) -> None:
    """Views and foreign keys bind to the table itself, which becomes the first partition:
    refuse rather than leave them looking at part of the log."""
    rows = conn.execute(
        "SELECT DISTINCT pg_describe_object(d.classid, d.objid, d.objsubid) "
        "FROM pg_catalog.pg_depend d "
        "JOIN pg_catalog.pg_class t ON t.oid = d.refobjid "
        "JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace "
        "LEFT JOIN pg_catalog.pg_rewrite r ON d.classid = 'pg_rewrite'::regclass "
        "    AND r.oid = d.objid "
        "LEFT JOIN pg_catalog.pg_constraint k ON d.classid = 'pg_constraint'::regclass "
        "    AND k.oid = d.objid "
        "WHERE d.refclassid = 'pg_class'::regclass AND n.nspname = %s AND t.relname = %s "
        "  AND ((r.oid IS NOT NULL AND r.ev_class <> t.oid) "
        "       OR (k.oid IS NOT NULL AND k.contype = 'f'))",
        (schema, table),
    ).fetchall()
    if rows:
        found = ", ".join(str(r[0]) for r in rows)
        raise StorageError(
            f"cannot partition {schema}.{table}: {found} depend(s) on it; drop them, migrate, "
            "and create them again on the partitioned table"
        )


def _head(conn: Conn, schema: str) -> int:
    row = conn.execute(
        sql.SQL("SELECT greatest((SELECT max(seq) FROM {}), (SELECT max(seq) FROM {}))").format(
            *(_q(schema, parent) for parent in PARENTS)
        )
    ).fetchone()
    return 0 if row is None or row[0] is None else int(row[0]) + 1


def _convert(conn: Conn, schema: str, parent: str, child: str, end: int) -> None:
    """Rename ``parent`` to ``child``, create the partitioned ``parent`` in its image and
    attach ``child`` as ``[0, end)``."""
    oid = _oid(conn, schema, parent)
    assert oid is not None
    owner = _owner(conn, oid)
    grants = conn.execute(
        "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, "
        "a.privilege_type, a.is_grantable "
        "FROM pg_catalog.pg_class c, aclexplode(c.relacl) a "
        "WHERE c.oid = %s AND a.grantee <> c.relowner",
        (oid,),
    ).fetchall()
    # Definitions name the table schema-qualified: run after the rename, they apply to the
    # new parent. The primary key comes with the parent's CREATE TABLE.
    indexes = conn.execute(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_catalog.pg_index i "
        "WHERE i.indrelid = %s AND NOT i.indisprimary AND i.indisvalid ORDER BY i.indexrelid",
        (oid,),
    ).fetchall()
    triggers = conn.execute(
        "SELECT t.tgname, pg_get_triggerdef(t.oid) FROM pg_catalog.pg_trigger t "
        "WHERE t.tgrelid = %s AND NOT t.tgisinternal ORDER BY t.tgname",
        (oid,),
    ).fetchall()
    conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(_q(schema, parent), ident(child)))
    _rename_indexes(conn, schema, oid, parent, child)
    for name, _ in triggers:  # the parent's row triggers are cloned back onto it on attach
        conn.execute(sql.SQL("DROP TRIGGER {} ON {}").format(ident(name), _q(schema, child)))
    conn.execute(
        sql.SQL(
            "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
            "INCLUDING GENERATED INCLUDING IDENTITY INCLUDING STORAGE INCLUDING COMMENTS, "
            "PRIMARY KEY (seq)) PARTITION BY RANGE (seq)"
        ).format(_q(schema, parent), _q(schema, child))
    )
    _give_to(conn, schema, parent, owner)
    for (definition,) in indexes:
        conn.execute(str(definition).encode())
    for _, definition in triggers:
        conn.execute(str(definition).encode())
    conn.execute(
        sql.SQL("ALTER TABLE {} ATTACH PARTITION {} {}").format(
            _q(schema, parent), _q(schema, child), _bounds(0, end)
        )
    )
    for grantee, privilege, grantable in grants:
        who = sql.SQL("PUBLIC") if grantee == "PUBLIC" else ident(grantee)
        conn.execute(
            sql.SQL("GRANT {} ON {} TO {}{}").format(
                sql.SQL(privilege),
                _q(schema, parent),
                who,
                sql.SQL(" WITH GRANT OPTION" if grantable else ""),
            )
        )
    _protect(conn, schema, parent, child, _PARTITION_TRIGGERS)  # takes the grants off


def _rename_indexes(conn: Conn, schema: str, table_oid: int, old: str, new: str) -> None:
    """Name a (new) partition's indexes after it: ``old...`` becomes ``new...``, anything
    else ``new_<name>``, freeing the names for the parent's own indexes."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c "
        "ON c.oid = i.indexrelid WHERE i.indrelid = %s ORDER BY c.relname",
        (table_oid,),
    ).fetchall()
    for number, (name,) in enumerate(rows):
        name = str(name)
        wanted = new + name[len(old) :] if name.startswith(old) else f"{new}_{name}"
        if len(wanted) > _MAX_IDENT or _oid(conn, schema, wanted) is not None:
            wanted = f"{new}_index{number}"
        if wanted != name:
            conn.execute(
                sql.SQL("ALTER INDEX {} RENAME TO {}").format(_q(schema, name), ident(wanted))
            )


def _give_to(conn: Conn, schema: str, table: str, owner: str) -> None:
    """Make ``owner`` (the ledger's owner) own ``table``, whoever created it."""
    oid = _oid(conn, schema, table)
    assert oid is not None
    if _owner(conn, oid) != owner:
        conn.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(_q(schema, table), ident(owner)))


def _protect(
    conn: Conn,
    schema: str,
    parent: str,
    child: str,
    specs: dict[str, tuple[tuple[str, str, str, str], ...]],
) -> None:
    """Give ``child`` the triggers ``specs`` names for its parent (those it lacks) and take
    every privilege on it from everyone but its owner."""
    oid = _oid(conn, schema, child)
    assert oid is not None
    for name, events, level, function in specs[parent]:
        found = conn.execute(
            "SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = %s AND tgname = %s",
            (oid, name),
        ).fetchone()
        if found is None:
            conn.execute(
                sql.SQL("CREATE TRIGGER {} {} ON {} FOR EACH {} EXECUTE FUNCTION {}()").format(
                    ident(name),
                    sql.SQL(events),
                    _q(schema, child),
                    sql.SQL(level),
                    _q(schema, function),
                )
            )
    grantees = conn.execute(
        "SELECT DISTINCT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END "
        "FROM pg_catalog.pg_class c, aclexplode(c.relacl) a "
        "WHERE c.oid = %s AND a.grantee <> c.relowner",
        (oid,),
    ).fetchall()
    for (role,) in grantees:
        who = sql.SQL("PUBLIC") if role is None else ident(str(role))
        conn.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(_q(schema, child), who))


def _record(conn: Conn, schema: str, first: int, end: int, names: Sequence[str]) -> None:
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (first_seq, end_seq, entries_table, payloads_table, created_at) "
            "VALUES (%s, %s, %s, %s, %s)"
        ).format(_q(schema, CATALOGUE)),
        (first, end, names[0], names[1], _now()),
    )


# -- partitions ahead ----------------------------------------------------------------------------


def _config_size(conn: Conn, schema: str) -> int:
    row = conn.execute(
        sql.SQL("SELECT partition_size FROM {}").format(_q(schema, CONFIG))
    ).fetchone()
    if row is None:
        raise StorageError(f"{schema}.{CONFIG} is empty: the partition size is unknown")
    return int(row[0])


def _catalogue_end(conn: Conn, schema: str) -> int:
    row = conn.execute(sql.SQL("SELECT max(end_seq) FROM {}").format(_q(schema, CATALOGUE)))
    found = row.fetchone()
    return 0 if found is None or found[0] is None else int(found[0])


def _extend(
    conn: Conn, schema: str, size: int, head: int, ahead: int, report: PartitionReport
) -> None:
    """Promote rows found in the overflow partition to a range partition, create partitions
    up to ``ahead`` after the head's, and put the overflow partition after them."""
    if ahead < 0:
        raise InvalidInput("ahead must be 0 or more")
    end = _catalogue_end(conn, schema)
    overflow_attached = {
        parent: any(name == overflow_name(parent) for name, _ in attached(conn, schema, parent))
        for parent in PARENTS
    }
    if head > end:  # the job was late: rows went to the overflow partition
        upper = max(end + size, _round_up(head, size))
        names = [partition_name(parent, end, size) for parent in PARENTS]
        for parent, child in zip(PARENTS, names, strict=True):
            _promote(conn, schema, parent, child, end, upper)
            overflow_attached[parent] = False
        _record(conn, schema, end, upper, names)
        report.promoted.append(names[0])
        end = upper
    target = (head // size + 1 + ahead) * size
    if end < target:
        for parent in PARENTS:
            if overflow_attached[parent]:
                _detach(conn, schema, parent, overflow_name(parent))
                overflow_attached[parent] = False
        while end < target:
            names = [partition_name(parent, end, size) for parent in PARENTS]
            for parent, child in zip(PARENTS, names, strict=True):
                _create(conn, schema, parent, child, end, end + size)
            _record(conn, schema, end, end + size, names)
            report.created.append(names[0])
            end += size
    for parent in PARENTS:
        if not overflow_attached[parent]:
            _place_overflow(conn, schema, parent, end)
    report.overflow_first_seq = end


def _create(conn: Conn, schema: str, parent: str, child: str, first: int, end: int) -> None:
    conn.execute(
        sql.SQL("CREATE TABLE {} PARTITION OF {} {}").format(
            _q(schema, child), _q(schema, parent), _bounds(first, end)
        )
    )
    _adopted(conn, schema, parent, child)


def _adopted(conn: Conn, schema: str, parent: str, child: str) -> None:
    parent_oid = _oid(conn, schema, parent)
    assert parent_oid is not None
    _give_to(conn, schema, child, _owner(conn, parent_oid))
    _protect(conn, schema, parent, child, _PARTITION_TRIGGERS)


def _detach(conn: Conn, schema: str, parent: str, child: str) -> None:
    conn.execute(
        sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(_q(schema, parent), _q(schema, child))
    )


def _bounds(first: int, end: int | None) -> sql.Composed:
    """The partition bound of ``[first, end)``. The first partition takes every seq below
    its end and the overflow partition every seq from its start, so that the partitioned
    table accepts any row the plain one did (a forged or shifted seq is for verification to
    find, not for the partitioning to reject)."""
    lower = sql.SQL("MINVALUE") if first == 0 else sql.Literal(first)
    upper = sql.SQL("MAXVALUE") if end is None else sql.Literal(end)
    return sql.SQL("FOR VALUES FROM ({}) TO ({})").format(lower, upper)


def _attach(conn: Conn, schema: str, parent: str, child: str, first: int, end: int | None) -> None:
    # The detached table's own row triggers would clash with the parent's clones.
    for name, _, _, _ in _DETACHED_TRIGGERS[parent]:
        conn.execute(
            sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(ident(name), _q(schema, child))
        )
    conn.execute(
        sql.SQL("ALTER TABLE {} ATTACH PARTITION {} {}").format(
            _q(schema, parent), _q(schema, child), _bounds(first, end)
        )
    )


def _promote(conn: Conn, schema: str, parent: str, child: str, first: int, end: int) -> None:
    """The overflow partition, holding ``[first, head)``, becomes the partition
    ``[first, end)`` under the name ``child``: detached, renamed and attached again."""
    name = overflow_name(parent)
    _detach(conn, schema, parent, name)
    conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(_q(schema, name), ident(child)))
    oid = _oid(conn, schema, child)
    assert oid is not None
    _rename_indexes(conn, schema, oid, name, child)
    _attach(conn, schema, parent, child, first, end)
    _protect(conn, schema, parent, child, _PARTITION_TRIGGERS)


def _place_overflow(conn: Conn, schema: str, parent: str, first: int) -> None:
    """Attach the overflow partition as ``[first, MAXVALUE)``: the detached one, or a new one."""
    name = overflow_name(parent)
    if _oid(conn, schema, name) is None:
        conn.execute(
            sql.SQL("CREATE TABLE {} PARTITION OF {} {}").format(
                _q(schema, name), _q(schema, parent), _bounds(first, None)
            )
        )
    else:
        _attach(conn, schema, parent, name, first, None)
    _adopted(conn, schema, parent, name)


# -- the catalogue -------------------------------------------------------------------------------


def _refresh(conn: Conn, schema: str, head: int) -> None:
    """Bring the catalogue up to date: states (a partition an operator detached by hand,
    e.g. ``CONCURRENTLY``, is marked detached and protected as one), the highest seq and the
    first and last ts of each attached partition not yet settled, and the checkpoint that
    covers each full one."""
    live = {name for parent in PARENTS for name, _ in attached(conn, schema, parent)}
    for part in _rows(conn, schema, "state = 'attached'"):
        if part.entries_table not in live or part.payloads_table not in live:
            for parent, child in zip(
                PARENTS, (part.entries_table, part.payloads_table), strict=True
            ):
                if child in live:
                    _detach(conn, schema, parent, child)
                if _oid(conn, schema, child) is not None:
                    _protect(conn, schema, parent, child, _DETACHED_TRIGGERS)
                    _protect(conn, schema, parent, child, _PARTITION_TRIGGERS)
            _set(conn, schema, part.first_seq, state="detached", detached_at=_now())
            continue
        if part.first_seq >= head or (part.full and part.checkpoint_size is not None):
            continue
        table = _q(schema, part.entries_table)
        row = conn.execute(
            sql.SQL(
                "SELECT (SELECT max(seq) FROM {t}), "
                "(SELECT ts FROM {t} ORDER BY seq LIMIT 1), "
                "(SELECT ts FROM {t} ORDER BY seq DESC LIMIT 1)"
            ).format(t=table)
        ).fetchone()
        assert row is not None
        checkpoint = None
        if head >= part.end_seq:
            found = conn.execute(
                sql.SQL("SELECT min(size) FROM {} WHERE size >= %s").format(
                    _q(schema, "ledger_checkpoints")
                ),
                (part.end_seq,),
            ).fetchone()
            checkpoint = None if found is None or found[0] is None else int(found[0])
        _set(
            conn,
            schema,
            part.first_seq,
            last_seq=row[0],
            first_ts=row[1],
            last_ts=row[2],
            checkpoint_size=checkpoint,
        )


def _set(conn: Conn, schema: str, first_seq: int, **values: Any) -> None:
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(ident(k), sql.Placeholder()) for k in values
    )
    conn.execute(
        sql.SQL("UPDATE {} SET {} WHERE first_seq = %s").format(_q(schema, CATALOGUE), assignments),
        (*values.values(), first_seq),
    )


def _rows(conn: Conn, schema: str, where: str = "true") -> list[Partition]:
    rows = conn.execute(
        sql.SQL("SELECT " + _COLUMNS + " FROM {} WHERE " + where + " ORDER BY first_seq").format(
            _q(schema, CATALOGUE)
        )
    ).fetchall()
    return [Partition(*row) for row in rows]


def catalogue(conn: Conn) -> list[Partition]:
    """The rows of ``ledger_partitions`` (empty before migration 14), oldest first."""
    schema = _schema(conn)
    if not is_partitioned(conn, schema):
        return []
    return _rows(conn, schema)


# -- maintenance -------------------------------------------------------------------------------


@contextmanager
def _maintenance(conn: Conn, lock_timeout: float | None) -> Iterator[str]:
    """One transaction holding the log's append lock (appends wait; reads go on), committed
    at the end or rolled back on any error."""
    from chatledger.store.postgres import lock_key

    if conn.autocommit:
        raise ValueError("partition maintenance needs a connection outside autocommit mode")
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise ValueError("partition maintenance needs an idle connection (no open transaction)")
    try:
        schema = _schema(conn)
        if lock_timeout is not None:
            conn.execute(
                sql.SQL("SET LOCAL lock_timeout = {}").format(
                    sql.Literal(f"{int(lock_timeout * 1000)}ms")
                )
            )
        row = conn.execute(
            "SELECT current_user, pg_has_role(current_user, c.relowner, 'USAGE') "
            "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = 'ledger_entries'",
            (schema,),
        ).fetchone()
        if row is not None and not row[1]:
            raise StorageError(
                f"partition maintenance needs the owner role, not {row[0]}: run it with the "
                "owner's URL"
            )
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(schema),))
        yield schema
        conn.commit()
    except psycopg.errors.InsufficientPrivilege as exc:
        conn.rollback()
        raise StorageError(
            f"partition maintenance needs the owner role: {exc}; run it with the owner's URL"
        ) from exc
    except psycopg.errors.LockNotAvailable as exc:
        conn.rollback()
        raise StorageError(
            f"partition maintenance could not lock the ledger tables in time ({exc}); a long "
            "query holds them: run it again"
        ) from exc
    except BaseException:
        if not conn.closed and not conn.broken:
            conn.rollback()
        raise


def ensure_partitions(
    conn: Conn, ahead: int = DEFAULT_AHEAD, *, lock_timeout: float | None = None
) -> PartitionReport:
    """Keep ``ahead`` empty partitions after the head's, promote rows found in the overflow
    partition, and bring the catalogue up to date; in one transaction, as the owner.

    Nothing happens (and ``partitioned`` is False) where migration 14 has not run. DDL on
    the parents waits for running statements on them: ``lock_timeout`` (seconds) makes it
    give up instead of making appends queue behind it.
    """
    with _maintenance(conn, lock_timeout) as schema:
        if not is_partitioned(conn, schema):
            return PartitionReport(False)
        size = _config_size(conn, schema)
        head = _head(conn, schema)
        report = PartitionReport(True, size, head)
        _extend(conn, schema, size, head, ahead, report)
        _refresh(conn, schema, head)
        report.partitions = _rows(conn, schema)
    return report


def _find(conn: Conn, schema: str, name: str) -> Partition:
    found = [
        p
        for p in _rows(conn, schema)
        if name in (p.entries_table, p.payloads_table, str(p.first_seq))
    ]
    if not found:
        raise NotFound(
            f"no partition named {name} in {schema}.{CATALOGUE}", details={"partition": name}
        )
    return found[0]


def detach_partition(conn: Conn, name: str, *, lock_timeout: float | None = None) -> Partition:
    """Detach the oldest attached partition (both its tables), for archiving.

    ``name`` is its entries or payloads table, or its first seq. Refused unless it is the
    oldest attached partition, it is full, and a stored checkpoint covers it (the one that
    proves the live log's prefix): the live log stays one range ``[first_seq, head)`` whose
    proofs need nothing from the detached tables. The tables stay in the schema, owned by
    the owner, append-only, readable by nobody else: dump them to archive storage, then drop
    them (see docs/operations.md).
    """
    with _maintenance(conn, lock_timeout) as schema:
        if not is_partitioned(conn, schema):
            raise StorageError("the ledger tables are not partitioned (migration 14)")
        _refresh(conn, schema, _head(conn, schema))
        part = _find(conn, schema, name)
        if part.state != "attached":
            raise InvalidInput(f"partition {part.entries_table} is already detached")
        oldest = _rows(conn, schema, "state = 'attached'")[0]
        if oldest.first_seq != part.first_seq:
            raise InvalidInput(
                f"detach the oldest attached partition first ({oldest.entries_table})",
                details={"partition": part.entries_table},
            )
        if not part.full:
            raise InvalidInput(
                f"partition {part.entries_table} is not full yet (it ends at seq "
                f"{part.end_seq - 1}; the last stored is {part.last_seq})"
            )
        if part.checkpoint_size is None:
            raise InvalidInput(
                f"no stored checkpoint covers partition {part.entries_table} yet (size >= "
                f"{part.end_seq}): sign one (`chatledger ledger checkpoint`) and publish it "
                "first"
            )
        for parent, child in zip(PARENTS, (part.entries_table, part.payloads_table), strict=True):
            _detach(conn, schema, parent, child)
            _protect(conn, schema, parent, child, _DETACHED_TRIGGERS)
        _set(conn, schema, part.first_seq, state="detached", detached_at=_now())
        return _find(conn, schema, part.entries_table)


def attach_partition(conn: Conn, name: str, *, lock_timeout: float | None = None) -> Partition:
    """Attach a detached partition again (an archive restored into the schema with its two
    tables' original names), so that the whole log verifies from seq 0 again.

    The bound is checked first as a CHECK constraint while the tables are still detached
    (a scan that does not hold up appends), so the attach itself reads nothing.
    """
    schema = _schema(conn)
    if not is_partitioned(conn, schema):
        raise StorageError("the ledger tables are not partitioned (migration 14)")
    part = _find(conn, schema, name)
    conn.rollback()
    if part.state != "detached":
        raise InvalidInput(f"partition {part.entries_table} is attached already")
    tables = (part.entries_table, part.payloads_table)
    missing = [t for t in tables if _oid(conn, schema, t) is None]
    conn.rollback()
    if missing:
        raise NotFound(
            f"restore {', '.join(missing)} from the archive first (pg_restore into {schema})"
        )
    bound = "ledger_partition_bound"
    try:
        for table in tables:
            conn.execute(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(
                    _q(schema, table), ident(bound)
                )
            )
            conn.execute(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK (seq >= {} AND seq < {})").format(
                    _q(schema, table),
                    ident(bound),
                    sql.Literal(part.first_seq),
                    sql.Literal(part.end_seq),
                )
            )
        conn.commit()
    except psycopg.errors.CheckViolation as exc:
        conn.rollback()
        raise StorageError(
            f"the restored tables hold rows outside [{part.first_seq}, {part.end_seq}): {exc}"
        ) from exc
    except psycopg.Error:
        conn.rollback()
        raise
    with _maintenance(conn, lock_timeout):
        for parent, child in zip(PARENTS, tables, strict=True):
            _attach(conn, schema, parent, child, part.first_seq, part.end_seq)
            conn.execute(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(_q(schema, child), ident(bound))
            )
            _protect(conn, schema, parent, child, _PARTITION_TRIGGERS)
        _set(conn, schema, part.first_seq, state="attached", detached_at=None)
        return _find(conn, schema, part.entries_table)


def describe(partitions: Iterable[Partition]) -> list[str]:
    """The catalogue as lines of text, for the command line."""
    lines = []
    for p in partitions:
        stored = "empty" if p.last_seq is None else f"{p.first_seq}..{p.last_seq}"
        times = f"{p.first_ts} .. {p.last_ts}" if p.first_ts else "-"
        checkpoint = f"checkpoint {p.checkpoint_size}" if p.checkpoint_size else "no checkpoint"
        lines.append(
            f"{p.entries_table}  [{p.first_seq}, {p.end_seq})  {p.state}  {stored}  {times}  "
            f"{checkpoint}"
        )
    return lines
