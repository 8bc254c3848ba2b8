"""Transports of the SIEM forwarders: syslog (RFC 5424 over TCP with octet counting, RFC 6587,
or over TLS, RFC 5425), Splunk HTTP Event Collector, and a JSON webhook.

``send`` returns once the receiver has accepted the whole batch and raises
:class:`DeliveryError` otherwise; the forwarder then keeps its cursor and retries later.

Syslog has no application-level acknowledgement. We get as close as TCP allows: a batch
counts as delivered once the receiving host's TCP stack has acknowledged every byte (the
socket's send queue is empty, ``TIOCOUTQ`` on Linux), so a receiver that vanished or stalled
fails the batch instead of losing it. A receiver process that crashes after its kernel
acknowledged the bytes but before it read them can still lose them: use Splunk HEC or the
webhook where that matters.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import select
import socket
import ssl
import struct
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import orjson

from chatledger.audit.formats import ExportRecord, FormatContext, get_format, severity_of

if TYPE_CHECKING:
    from chatledger.audit.forward import ForwarderConfig

BOM = b"\xef\xbb\xbf"
SYSLOG_SEVERITY = {"info": 6, "low": 5, "medium": 4, "high": 3, "critical": 2}
"""RFC 5424 severities: informational, notice, warning, error, critical."""


class DeliveryError(Exception):
    """The receiver did not accept a batch (it will be sent again)."""


class Sender(Protocol):
    def send(self, records: Sequence[ExportRecord]) -> None: ...

    def close(self) -> None: ...


def _printusascii(value: str, limit: int) -> str:
    """An RFC 5424 header field: printable US-ASCII (33-126), at most ``limit`` chars."""
    cleaned = "".join(ch for ch in value if 33 <= ord(ch) <= 126)[:limit]
    return cleaned or "-"


def _sd_value(value: str) -> str:
    """RFC 5424 PARAM-VALUE: '"', '\\' and ']' are escaped with a backslash."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def syslog_message(
    record: ExportRecord,
    ctx: FormatContext,
    *,
    render: Callable[[ExportRecord, FormatContext], str],
    facility: int = 13,
    app_name: str = "chatledger",
    hostname: str | None = None,
    sd_id: str | None = None,
    bom: bool = True,
) -> bytes:
    """One RFC 5424 message: ``<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG``."""
    entry = record.entry
    pri = facility * 8 + SYSLOG_SEVERITY[severity_of(entry)]
    # Ledger timestamps are RFC 3339 UTC with 6 fractional digits, as TIMESTAMP allows.
    timestamp = str(entry.get("ts", "")) or "-"
    host = _printusascii(hostname or ctx.host, 255)
    app = _printusascii(app_name, 48)
    msgid = _printusascii(str(entry.get("action", "")), 32)
    if sd_id:
        params = [("seq", str(record.seq)), ("id", str(entry.get("id", "")))]
        if ctx.origin:
            params.append(("origin", ctx.origin))
        sd = (
            "["
            + _printusascii(sd_id, 32)
            + "".join(f' {k}="{_sd_value(v)}"' for k, v in params)
            + "]"
        )
    else:
        sd = "-"
    head = f"<{pri}>1 {timestamp} {host} {app} - {msgid} {sd} ".encode()
    return head + (BOM if bom else b"") + render(record, ctx).encode()


def octet_frame(message: bytes) -> bytes:
    """RFC 6587 / RFC 5425 framing: ``MSG-LEN SP SYSLOG-MSG``."""
    return str(len(message)).encode() + b" " + message


def _unacknowledged(sock: socket.socket) -> int | None:
    """Bytes sent but not yet acknowledged by the peer (Linux), or None when unknown."""
    try:
        import fcntl
        import termios

        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
        value: int = struct.unpack("i", raw)[0]
        return value
    except (ImportError, OSError, AttributeError, ValueError):
        return None


def tls_context(
    *,
    verify: bool = True,
    ca_file: str | None = None,
    client_cert: str | None = None,
    client_key: str | None = None,
) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if client_cert:
        context.load_cert_chain(client_cert, client_key)
    return context


class SyslogSender:
    """RFC 5424 messages over one persistent TCP (or TLS) connection, octet-counted."""

    def __init__(self, config: ForwarderConfig, ctx: FormatContext) -> None:
        self.config = config
        self.ctx = ctx
        self.render = get_format(config.format).render
        self._sock: socket.socket | None = None
        self._tls = (
            tls_context(
                verify=config.verify,
                ca_file=config.ca_file,
                client_cert=config.client_cert,
                client_key=config.client_key,
            )
            if config.tls
            else None
        )

    def _connect(self) -> socket.socket:
        cfg = self.config
        assert cfg.host is not None
        assert cfg.port is not None
        try:
            raw = socket.create_connection((cfg.host, cfg.port), timeout=cfg.timeout)
        except OSError as exc:
            raise DeliveryError(f"cannot connect to {cfg.host}:{cfg.port}: {exc}") from exc
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is None:
                return raw
            return self._tls.wrap_socket(raw, server_hostname=cfg.server_name or cfg.host)
        except (OSError, ssl.SSLError) as exc:
            raw.close()
            raise DeliveryError(f"TLS handshake with {cfg.host}:{cfg.port} failed: {exc}") from exc

    def _usable(self, sock: socket.socket) -> bool:
        """Whether the connection is still open. A syslog receiver sends no data, so a
        readable socket means it was closed (or, over TLS 1.3, that session tickets arrived,
        which reading consumes)."""
        try:
            readable, _, errored = select.select([sock], [], [sock], 0)
        except (OSError, ValueError):
            return False
        if errored:
            return False
        if not readable:
            return True
        try:
            sock.setblocking(False)
            try:
                data = sock.recv(4096)
            finally:
                sock.settimeout(self.config.timeout)
        except (ssl.SSLWantReadError, BlockingIOError):
            return True
        except (OSError, ssl.SSLError):
            return False
        return data != b""

    def send(self, records: Sequence[ExportRecord]) -> None:
        cfg = self.config
        data = b"".join(
            octet_frame(
                syslog_message(
                    r,
                    self.ctx,
                    render=self.render,
                    facility=cfg.facility,
                    app_name=cfg.app_name,
                    hostname=cfg.hostname,
                    sd_id=cfg.sd_id,
                    bom=cfg.bom,
                )
            )
            for r in records
        )
        if self._sock is not None and not self._usable(self._sock):
            self.close()
        if self._sock is None:
            self._sock = self._connect()
        sock = self._sock
        try:
            sock.sendall(data)
            self._wait_acknowledged(sock)
        except (OSError, ssl.SSLError, DeliveryError) as exc:
            self.close()
            if isinstance(exc, DeliveryError):
                raise
            raise DeliveryError(f"sending to {cfg.host}:{cfg.port} failed: {exc}") from exc

    def _wait_acknowledged(self, sock: socket.socket) -> None:
        deadline = time.monotonic() + self.config.timeout
        delay = 0.001
        while True:
            pending = _unacknowledged(sock)
            if pending is None or pending == 0:
                return
            if time.monotonic() >= deadline:
                raise DeliveryError(
                    f"the receiver did not acknowledge {pending} bytes within "
                    f"{self.config.timeout:g}s"
                )
            if not self._usable(sock):
                raise DeliveryError("the receiver closed the connection")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()


class _HttpSender:
    def __init__(self, config: ForwarderConfig, ctx: FormatContext) -> None:
        self.config = config
        self.ctx = ctx
        verify: ssl.SSLContext | bool = True
        if config.url is not None and config.url.startswith("https:"):
            verify = tls_context(
                verify=config.verify,
                ca_file=config.ca_file,
                client_cert=config.client_cert,
                client_key=config.client_key,
            )
        self._client = httpx.Client(timeout=config.timeout, verify=verify)

    def _post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        assert self.config.url is not None
        try:
            return self._client.post(self.config.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"POST {self.config.url} failed: {exc}") from exc

    def close(self) -> None:
        self._client.close()


class HecSender(_HttpSender):
    """Splunk HEC: events concatenated in one POST, ``Authorization: Splunk <token>``; the
    batch is accepted when HEC answers 200 with ``"code": 0``."""

    def send(self, records: Sequence[ExportRecord]) -> None:
        render = get_format("splunk_hec").render
        body = b"\n".join(render(r, self.ctx).encode() for r in records)
        headers = {"Content-Type": "application/json", **self.config.headers}
        if self.config.token:
            headers["Authorization"] = f"Splunk {self.config.token}"
        response = self._post(body, headers)
        code: Any = None
        try:
            code = response.json().get("code")
        except (ValueError, AttributeError):
            code = None
        if response.status_code != 200 or code not in (0, None):
            raise DeliveryError(
                f"HEC answered {response.status_code}: {response.text[:200].strip()}"
            )


def _event_builder(name: str) -> Callable[[ExportRecord, FormatContext], Any]:
    from chatledger.audit.formats import ecs, ocsf, splunk

    def plain(record: ExportRecord, ctx: FormatContext) -> dict[str, Any]:
        out: dict[str, Any] = {
            "seq": record.seq,
            "entry": record.entry,
            "payload_status": record.payload_status,
        }
        if record.erasure_seq is not None:
            out["erasure_seq"] = record.erasure_seq
        return out

    builders: dict[str, Callable[[ExportRecord, FormatContext], Any]] = {
        "jsonl": plain,
        "ocsf": ocsf.event,
        "ecs": ecs.document,
        "splunk_hec": splunk.event,
    }
    if name in builders:
        return builders[name]
    render = get_format(name).render
    return render


class WebhookSender(_HttpSender):
    """A JSON batch per POST: ``{"source", "origin", "format", "count", "first_seq",
    "last_seq", "events": [...]}``; any 2xx accepts it. With a secret, the body's HMAC-SHA256
    is sent as ``X-ChatLedger-Signature: sha256=<hex>``; ``X-ChatLedger-Delivery`` names the
    batch (forwarder and seq range), so a receiver can drop a batch it already has."""

    def send(self, records: Sequence[ExportRecord]) -> None:
        build = _event_builder(self.config.format)
        first, last = records[0].seq, records[-1].seq
        body = orjson.dumps(
            {
                "source": "chatledger",
                "origin": self.ctx.origin,
                "format": self.config.format,
                "count": len(records),
                "first_seq": first,
                "last_seq": last,
                "events": [build(r, self.ctx) for r in records],
            }
        )
        headers = {
            "Content-Type": "application/json",
            "X-ChatLedger-Delivery": f"{self.config.name}:{first}-{last}",
            **self.config.headers,
        }
        if self.config.secret:
            digest = hmac.new(self.config.secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-ChatLedger-Signature"] = f"sha256={digest}"
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        response = self._post(body, headers)
        if not 200 <= response.status_code < 300:
            raise DeliveryError(
                f"webhook answered {response.status_code}: {response.text[:200].strip()}"
            )


def make_sender(config: ForwarderConfig, ctx: FormatContext) -> Sender:
    if config.type == "syslog":
        return SyslogSender(config, ctx)
    if config.type == "splunk_hec":
        return HecSender(config, ctx)
    return WebhookSender(config, ctx)
