"""Continuous forwarding of ledger entries to SIEMs, and the audit domain's background jobs.

Destinations are configured in ``settings.json`` under ``forwarders`` (docs/siem.md):
syslog (RFC 5424 over TCP, or TLS per RFC 5425), Splunk HEC, or a JSON webhook.

Delivery is at least once. Each forwarder has a persisted cursor, the last seq its receiver
accepted; it reads the entries after it in bounded batches, sends a batch, and advances the
cursor only once the receiver has accepted it (see audit/forward_senders.py). A failed batch
is sent again after an exponential backoff (with jitter), so nothing is lost across receiver
outages or restarts; a batch may arrive twice. The cursor never moves backwards, even when
two processes forward at once (they would only duplicate). On PostgreSQL the cursors are rows
shared by every server process, and one process at a time forwards a given forwarder (an
advisory lock per forwarder, see audit/pg_cursors.py), so processes do not duplicate.

A slow or dead receiver never slows the chatbot: every forwarder runs in its own thread,
reads the ledger through its own read connection (WAL readers never block the writer) and
writes only its cursor row, on its own connection, in a transaction of one statement.

``start_jobs(platform, stop)`` (called by the server) runs the audit index follower and one
thread per enabled forwarder; ``chatledger audit forward --once`` runs one delivery round.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from chatledger.audit.formats import ExportRecord, FormatContext, get_format
from chatledger.audit.forward_senders import DeliveryError, Sender, make_sender
from chatledger.audit.search import records
from chatledger.audit.textindex import (
    immediate,
    index_for,
    index_supported,
    open_writer,
    sqlite_path,
)
from chatledger.config import SETTINGS_FILE
from chatledger.errors import InvalidInput, StorageError
from chatledger.ledger.entry import utc_timestamp
from chatledger.ledger.service import Ledger

if TYPE_CHECKING:
    from chatledger.audit.pg_cursors import PgCursors
    from chatledger.platform import Platform

log = logging.getLogger(__name__)

TYPES = ("syslog", "splunk_hec", "webhook")
SYSLOG_FORMATS = ("cef", "leef", "jsonl", "ocsf", "ecs")
WEBHOOK_FORMATS = ("jsonl", "ocsf", "ecs", "splunk_hec", "cef", "leef")
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def _secret(data: dict[str, Any], key: str, base: Path) -> str | None:
    """A secret given inline (``key``), by environment variable (``key_env``) or by file
    (``key_file``, relative to the data directory)."""
    if data.get(key):
        return str(data[key])
    env = data.get(f"{key}_env")
    if env:
        value = os.environ.get(str(env))
        if not value:
            raise InvalidInput(f"forwarder {key}_env names {env!r}, which is not set")
        return value
    file = data.get(f"{key}_file")
    if file:
        path = Path(str(file))
        path = path if path.is_absolute() else base / path
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InvalidInput(f"cannot read forwarder {key}_file {path}: {exc}") from exc
    return None


@dataclass(frozen=True)
class ForwarderConfig:
    name: str
    type: str
    format: str
    enabled: bool = True
    batch_size: int = 500
    poll_interval: float = 1.0
    initial_backoff: float = 1.0
    max_backoff: float = 300.0
    timeout: float = 10.0
    start_at: str = "beginning"
    categories: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    action_prefixes: tuple[str, ...] = ()
    outcomes: tuple[str, ...] = ()
    # syslog
    host: str | None = None
    port: int | None = None
    tls: bool = False
    facility: int = 13
    app_name: str = "chatledger"
    hostname: str | None = None
    sd_id: str | None = None
    bom: bool = True
    # TLS (syslog over TLS, HTTPS)
    verify: bool = True
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    server_name: str | None = None
    # HTTP
    url: str | None = None
    token: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    index: str | None = None
    source: str = "chatledger"
    sourcetype: str = "chatledger:audit"

    @classmethod
    def from_json(cls, data: Any, base: Path) -> ForwarderConfig:
        if not isinstance(data, dict):
            raise InvalidInput("each forwarder must be an object")
        name = data.get("name")
        if not isinstance(name, str) or not name or len(name) > 64 or set(name) - _NAME_CHARS:
            raise InvalidInput("a forwarder needs a name of letters, digits, '_', '.', '-'")
        kind = data.get("type")
        if kind not in TYPES:
            raise InvalidInput(f"forwarder {name}: type must be one of {', '.join(TYPES)}")
        default_format = {"syslog": "cef", "splunk_hec": "splunk_hec", "webhook": "jsonl"}[kind]
        fmt = str(data.get("format", default_format))
        allowed = {"syslog": SYSLOG_FORMATS, "splunk_hec": ("splunk_hec",)}.get(
            kind, WEBHOOK_FORMATS
        )
        if fmt not in allowed:
            raise InvalidInput(f"forwarder {name}: format must be one of {', '.join(allowed)}")
        get_format(fmt)

        def number(key: str, default: float, lo: float, hi: float) -> float:
            value = data.get(key, default)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not lo <= value <= hi
            ):
                raise InvalidInput(f"forwarder {name}: {key} must be between {lo:g} and {hi:g}")
            return float(value)

        def strings(key: str) -> tuple[str, ...]:
            value = data.get(key, [])
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InvalidInput(f"forwarder {name}: {key} must be a list of strings")
            return tuple(value)

        actions = strings("actions")
        start_at = data.get("start_at", "beginning")
        if not (start_at in ("beginning", "end") or (isinstance(start_at, int) and start_at >= 0)):
            raise InvalidInput(f"forwarder {name}: start_at must be 'beginning', 'end' or a seq")
        headers = data.get("headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise InvalidInput(f"forwarder {name}: headers must map names to strings")
        config = cls(
            name=name,
            type=kind,
            format=fmt,
            enabled=bool(data.get("enabled", True)),
            batch_size=int(number("batch_size", 500, 1, 5000)),
            poll_interval=number("poll_interval", 1.0, 0.01, 3600),
            initial_backoff=number("initial_backoff", 1.0, 0.01, 3600),
            max_backoff=number("max_backoff", 300.0, 0.01, 86400),
            timeout=number("timeout", 10.0, 0.1, 600),
            start_at=str(start_at),
            categories=strings("categories"),
            actions=tuple(a for a in actions if not a.endswith("*")),
            action_prefixes=tuple(a[:-1] for a in actions if a.endswith("*")),
            outcomes=strings("outcomes"),
            host=data.get("host"),
            port=int(number("port", 6514 if data.get("tls") else 514, 1, 65535))
            if kind == "syslog"
            else None,
            tls=bool(data.get("tls", False)),
            facility=int(number("facility", 13, 0, 23)),
            app_name=str(data.get("app_name", "chatledger")),
            hostname=data.get("hostname"),
            sd_id=data.get("sd_id"),
            bom=bool(data.get("bom", True)),
            verify=bool(data.get("verify", True)),
            ca_file=_path(data.get("ca_file"), base),
            client_cert=_path(data.get("client_cert"), base),
            client_key=_path(data.get("client_key"), base),
            server_name=data.get("server_name"),
            url=data.get("url"),
            token=_secret(data, "token", base),
            secret=_secret(data, "secret", base),
            headers=dict(headers),
            index=data.get("index"),
            source=str(data.get("source", "chatledger")),
            sourcetype=str(data.get("sourcetype", "chatledger:audit")),
        )
        if kind == "syslog" and not isinstance(config.host, str):
            raise InvalidInput(f"forwarder {name}: a syslog forwarder needs a host")
        if kind != "syslog":
            if not isinstance(config.url, str) or not config.url.startswith(
                ("http://", "https://")
            ):
                raise InvalidInput(f"forwarder {name}: needs an http:// or https:// url")
            if kind == "splunk_hec" and not config.token:
                raise InvalidInput(f"forwarder {name}: Splunk HEC needs a token")
        return config

    def matches(self, entry: dict[str, Any]) -> bool:
        if self.categories and entry.get("category") not in self.categories:
            return False
        if self.outcomes and entry.get("outcome") not in self.outcomes:
            return False
        if self.actions or self.action_prefixes:
            action = str(entry.get("action", ""))
            if action not in self.actions and not any(
                action.startswith(p) for p in self.action_prefixes
            ):
                return False
        return True

    def context(self, origin: str) -> FormatContext:
        return FormatContext(
            origin=origin,
            host=self.hostname or socket.gethostname(),
            source=self.source,
            sourcetype=self.sourcetype,
            index=self.index,
        )


def _path(value: Any, base: Path) -> str | None:
    if not value:
        return None
    path = Path(str(value))
    return str(path if path.is_absolute() else base / path)


def load_forwarders(data_dir: Path) -> list[ForwarderConfig]:
    """The ``forwarders`` of ``settings.json`` (an empty list when there are none)."""
    path = data_dir / SETTINGS_FILE
    if not path.exists():
        return []
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}") from exc
    raw = stored.get("forwarders", []) if isinstance(stored, dict) else []
    if not isinstance(raw, list):
        raise InvalidInput("settings.json: forwarders must be a list")
    configs = [ForwarderConfig.from_json(item, data_dir) for item in raw]
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise InvalidInput("settings.json: forwarder names must be unique")
    return configs


# -- cursors -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CursorRow:
    name: str
    last_seq: int
    delivered: int
    updated_at: str
    failures: int = 0
    last_error: str | None = None
    last_error_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "last_seq": self.last_seq,
            "delivered": self.delivered,
            "updated_at": self.updated_at,
            "failures": self.failures,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
        }


_CURSOR_COLUMNS = "name, last_seq, delivered, updated_at, failures, last_error, last_error_at"


class CursorStore:
    """Forwarder cursors: the ``audit_forwarder_cursors`` table on SQLite (own connection)
    and on PostgreSQL (own connection, shared by every process; see audit/pg_cursors.py),
    JSON files under ``<data dir>/forwarders/`` on other stores."""

    def __init__(self, ledger: Ledger, fallback_dir: Path | None = None) -> None:
        self.path = sqlite_path(ledger)
        self.fallback_dir = fallback_dir
        self._conn: sqlite3.Connection | None = None
        self._pg: PgCursors | None = None
        self._lock = threading.Lock()
        if getattr(ledger.store, "dialect", "") == "postgresql":
            from chatledger.audit.pg_cursors import PgCursors

            self._pg = PgCursors(ledger, fallback_dir)
        if self.path is None and self._pg is None and fallback_dir is None:
            raise InvalidInput("forwarder cursors need a database store or a data directory")

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            assert self.path is not None
            self._conn = open_writer(self.path, synchronous="FULL")
        return self._conn

    def _file(self, name: str) -> Path:
        assert self.fallback_dir is not None
        return self.fallback_dir / "forwarders" / f"{name}.cursor.json"

    @contextmanager
    def hold(self, name: str) -> Iterator[bool]:
        """While a batch of forwarder ``name`` is read, sent and acknowledged: True if this
        process may forward it now. On PostgreSQL, False while another process does (an
        advisory lock); elsewhere always True (two processes would only duplicate)."""
        if self._pg is None:
            yield True
            return
        with self._lock:
            mine = self._pg.try_hold(name)
        try:
            yield mine
        finally:
            if mine:
                with self._lock:
                    self._pg.release(name)

    def get(self, name: str) -> CursorRow | None:
        with self._lock:
            if self._pg is not None:
                found = self._pg.get(name)
                return CursorRow(*found) if found else None
            if self.path is not None:
                row = (
                    self._db()
                    .execute(
                        f"SELECT {_CURSOR_COLUMNS} FROM audit_forwarder_cursors WHERE name = ?",
                        (name,),
                    )
                    .fetchone()
                )
                return CursorRow(*row) if row else None
            path = self._file(name)
            if not path.exists():
                return None
            return CursorRow(**orjson.loads(path.read_bytes()))

    def all(self) -> list[CursorRow]:
        with self._lock:
            if self._pg is not None:
                return [CursorRow(*row) for row in self._pg.all()]
            if self.path is not None:
                rows = (
                    self._db()
                    .execute(f"SELECT {_CURSOR_COLUMNS} FROM audit_forwarder_cursors ORDER BY name")
                    .fetchall()
                )
                return [CursorRow(*row) for row in rows]
        assert self.fallback_dir is not None
        folder = self.fallback_dir / "forwarders"
        names = sorted(p.name.removesuffix(".cursor.json") for p in folder.glob("*.cursor.json"))
        return [row for name in names if (row := self.get(name)) is not None]

    def advance(self, name: str, last_seq: int, delivered: int) -> None:
        """Record that the receiver accepted everything up to ``last_seq`` (never backwards)."""
        now = utc_timestamp()
        with self._lock:
            if self._pg is not None:
                self._pg.advance(name, last_seq, delivered, now)
                return
            if self.path is not None:
                with immediate(self._db()) as conn:
                    conn.execute(
                        "INSERT INTO audit_forwarder_cursors "
                        "(name, last_seq, delivered, updated_at) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (name) DO UPDATE SET "
                        "last_seq = MAX(last_seq, excluded.last_seq), "
                        "delivered = delivered + excluded.delivered, "
                        "updated_at = excluded.updated_at, failures = 0",
                        (name, last_seq, delivered, now),
                    )
                return
            current = self._read_file(name)
            row = CursorRow(
                name,
                max(last_seq, current.last_seq if current else -1),
                (current.delivered if current else 0) + delivered,
                now,
                0,
                current.last_error if current else None,
                current.last_error_at if current else None,
            )
            self._write_file(row)

    def failed(self, name: str, error: str) -> None:
        now = utc_timestamp()
        with self._lock:
            if self._pg is not None:
                self._pg.failed(name, error[:500], now)
                return
            if self.path is not None:
                with immediate(self._db()) as conn:
                    conn.execute(
                        "INSERT INTO audit_forwarder_cursors "
                        "(name, last_seq, delivered, updated_at, failures, last_error, "
                        "last_error_at) VALUES (?, -1, 0, ?, 1, ?, ?) "
                        "ON CONFLICT (name) DO UPDATE SET "
                        "failures = failures + 1, last_error = excluded.last_error, "
                        "last_error_at = excluded.last_error_at",
                        (name, now, error[:500], now),
                    )
                return
            current = self._read_file(name) or CursorRow(name, -1, 0, now)
            self._write_file(
                CursorRow(
                    name,
                    current.last_seq,
                    current.delivered,
                    current.updated_at,
                    current.failures + 1,
                    error[:500],
                    now,
                )
            )

    def _read_file(self, name: str) -> CursorRow | None:
        path = self._file(name)
        return CursorRow(**orjson.loads(path.read_bytes())) if path.exists() else None

    def _write_file(self, row: CursorRow) -> None:
        path = self._file(row.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(orjson.dumps(row.to_json()))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()
            if self._pg is not None:
                self._pg.close()


# -- the forwarder ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    scanned: int
    delivered: int
    last_seq: int


@dataclass
class RoundReport:
    name: str
    delivered: int = 0
    scanned: int = 0
    last_seq: int = -1
    lag: int = 0
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "delivered": self.delivered,
            "scanned": self.scanned,
            "last_seq": self.last_seq,
            "lag": self.lag,
            "ok": self.error is None,
            "error": self.error,
        }


class Forwarder:
    """Delivers the entries after its cursor to one destination, at least once."""

    def __init__(
        self,
        ledger: Ledger,
        config: ForwarderConfig,
        cursors: CursorStore,
        *,
        sender: Sender | None = None,
    ) -> None:
        self.ledger = ledger
        self.config = config
        self.cursors = cursors
        self.context = config.context(ledger.origin)
        self.sender = sender or make_sender(config, self.context)

    def position(self) -> int:
        """The last seq delivered (-1: nothing yet). A new forwarder's cursor is created at
        once where ``start_at`` says (``beginning``, ``end`` or a seq), so it stays put."""
        row = self.cursors.get(self.config.name)
        if row is not None:
            return row.last_seq
        start = self.config.start_at
        if start == "end":
            initial = self.ledger.size() - 1
        elif start.isdigit():
            initial = int(start) - 1
        else:
            initial = -1
        self.cursors.advance(self.config.name, initial, 0)
        return initial

    def lag(self) -> int:
        return max(0, self.ledger.size() - 1 - self.position())

    def _batch(self, after: int) -> list[ExportRecord]:
        rows = self.ledger.store.query(
            "SELECT seq, body FROM ledger_entries WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, self.config.batch_size),
        )
        return records(self.ledger, [(int(s), bytes(b)) for s, b in rows])

    def step(self) -> Step:
        """Send the next batch; the cursor advances only when the receiver accepted it.
        Nothing is done while another process forwards this forwarder (PostgreSQL)."""
        with self.cursors.hold(self.config.name) as mine:
            after = self.position()
            if not mine:
                return Step(0, 0, after)
            batch = self._batch(after)
            if not batch:
                return Step(0, 0, after)
            selected = [r for r in batch if self.config.matches(r.entry)]
            if selected:
                self.sender.send(selected)
            last = batch[-1].seq
            self.cursors.advance(self.config.name, last, len(selected))
            return Step(len(batch), len(selected), last)

    def _failed(self, exc: Exception) -> str:
        message = str(exc) or type(exc).__name__
        log.warning("forwarder %s: %s", self.config.name, message)
        try:
            self.cursors.failed(self.config.name, message)
        except (sqlite3.Error, OSError, StorageError):
            log.exception("forwarder %s: cannot record the failure", self.config.name)
        return message

    def run_once(
        self, *, attempts: int = 3, stop: threading.Event | None = None, max_batches: int = 0
    ) -> RoundReport:
        """Deliver everything pending now (retrying a failed batch ``attempts`` times with
        backoff); the report names the error if the receiver kept refusing."""
        report = RoundReport(self.config.name)
        stop = stop or threading.Event()
        backoff = self.config.initial_backoff
        failures = 0
        batches = 0
        while not stop.is_set():
            try:
                step = self.step()
            except (DeliveryError, OSError, sqlite3.Error, StorageError) as exc:
                failures += 1
                report.error = self._failed(exc)
                if failures >= attempts:
                    break
                stop.wait(_jitter(backoff))
                backoff = min(backoff * 2, self.config.max_backoff)
                continue
            failures = 0
            report.error = None
            report.scanned += step.scanned
            report.delivered += step.delivered
            report.last_seq = step.last_seq
            batches += 1
            if step.scanned == 0 or (max_batches and batches >= max_batches):
                break
        report.lag = self.lag()
        return report

    def run(self, stop: threading.Event) -> None:
        """Forward until ``stop`` is set (the server's thread)."""
        backoff = self.config.initial_backoff
        try:
            while not stop.is_set():
                try:
                    step = self.step()
                except DeliveryError as exc:
                    self._failed(exc)
                    stop.wait(_jitter(backoff))
                    backoff = min(backoff * 2, self.config.max_backoff)
                    continue
                except Exception as exc:  # the store closed at shutdown, or a bug: keep going
                    if stop.is_set():
                        break
                    log.exception("forwarder %s failed", self.config.name)
                    self._failed(exc)
                    stop.wait(_jitter(backoff))
                    backoff = min(backoff * 2, self.config.max_backoff)
                    continue
                backoff = self.config.initial_backoff
                if step.scanned == 0:
                    stop.wait(self.config.poll_interval)
        finally:
            self.close()

    def close(self) -> None:
        self.sender.close()


def _jitter(delay: float) -> float:
    return delay * random.uniform(0.8, 1.2)


# -- background jobs --------------------------------------------------------------------------


def index_loop(ledger: Ledger, stop: threading.Event, interval: float = 1.0) -> None:
    """Keep the audit index (text, facets, erasures) following the ledger."""
    index = index_for(ledger)
    while not stop.is_set():
        worked = 0
        try:
            worked = index.catch_up(max_entries=20_000)
            if index.compact_pending():
                index.compact(max_steps=20)
        except Exception:
            if stop.is_set():
                return
            log.exception("audit index: catch-up failed")
        if not worked:
            stop.wait(interval)


@dataclass
class Jobs:
    threads: list[threading.Thread] = field(default_factory=list)
    forwarders: list[Forwarder] = field(default_factory=list)

    def join(self, timeout: float | None = None) -> None:
        for thread in self.threads:
            thread.join(timeout)


def start_forwarders(
    ledger: Ledger,
    configs: Sequence[ForwarderConfig],
    stop: threading.Event,
    *,
    fallback_dir: Path | None = None,
) -> Jobs:
    jobs = Jobs()
    for config in configs:
        if not config.enabled:
            continue
        try:
            forwarder = Forwarder(ledger, config, CursorStore(ledger, fallback_dir))
        except Exception:
            log.exception("forwarder %s: cannot start", config.name)
            continue

        def run(f: Forwarder = forwarder) -> None:
            try:
                f.run(stop)
            finally:
                f.cursors.close()

        thread = threading.Thread(target=run, name=f"audit-forward-{config.name}", daemon=True)
        thread.start()
        jobs.threads.append(thread)
        jobs.forwarders.append(forwarder)
    return jobs


def start_jobs(platform: Platform, stop: threading.Event) -> Jobs:
    """The audit domain's background work while serving: the index follower and the
    forwarders configured in settings.json (a broken forwarder is logged, never fatal)."""
    ledger = platform.ledger
    jobs = Jobs()
    if index_supported(ledger):
        thread = threading.Thread(
            target=index_loop, args=(ledger, stop), name="audit-index", daemon=True
        )
        thread.start()
        jobs.threads.append(thread)
    try:
        configs = load_forwarders(platform.settings.data_dir)
    except InvalidInput as exc:
        log.error("SIEM forwarding is off: %s", exc.message)
        return jobs
    started = start_forwarders(ledger, configs, stop, fallback_dir=platform.settings.data_dir)
    jobs.threads += started.threads
    jobs.forwarders += started.forwarders
    return jobs


def forward_once(
    ledger: Ledger,
    configs: Sequence[ForwarderConfig],
    *,
    fallback_dir: Path | None = None,
    attempts: int = 3,
) -> list[RoundReport]:
    """One delivery round for each enabled forwarder (``chatledger audit forward --once``)."""
    reports: list[RoundReport] = []
    cursors = CursorStore(ledger, fallback_dir)
    try:
        for config in configs:
            if not config.enabled:
                continue
            forwarder = Forwarder(ledger, config, cursors)
            try:
                reports.append(forwarder.run_once(attempts=attempts))
            finally:
                forwarder.close()
    finally:
        cursors.close()
    return reports


def forwarder_status(
    ledger: Ledger, configs: Sequence[ForwarderConfig], *, fallback_dir: Path | None = None
) -> list[dict[str, Any]]:
    with closing(CursorStore(ledger, fallback_dir)) as cursors:
        rows = {row.name: row for row in cursors.all()}
    size = ledger.size()
    out: list[dict[str, Any]] = []
    for config in configs:
        row = rows.get(config.name)
        last = row.last_seq if row else -1
        out.append(
            {
                "name": config.name,
                "type": config.type,
                "format": config.format,
                "enabled": config.enabled,
                "last_seq": last,
                "lag": max(0, size - 1 - last),
                "delivered": row.delivered if row else 0,
                "failures": row.failures if row else 0,
                "last_error": row.last_error if row else None,
                "last_error_at": row.last_error_at if row else None,
                "updated_at": row.updated_at if row else None,
            }
        )
    return out
