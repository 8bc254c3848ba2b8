"""Real receivers on loopback for the forwarding tests: a syslog listener (TCP, or TLS with a
self-signed certificate made here) that parses RFC 6587 octet-counted frames strictly, and an
HTTP receiver (Splunk HEC or webhook) that can fail N times, stall, or accept."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A certificate for localhost / 127.0.0.1 and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "receiver.crt", folder / "receiver.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class FramingError(Exception):
    pass


def read_frames(buffer: bytearray) -> list[bytes]:
    """Take the complete ``MSG-LEN SP SYSLOG-MSG`` frames off the front of ``buffer``."""
    frames: list[bytes] = []
    while True:
        space = buffer.find(b" ")
        if space < 0:
            if len(buffer) > 10 or (buffer and not buffer.isdigit()):
                raise FramingError(f"bad frame start {bytes(buffer[:20])!r}")
            return frames
        digits = bytes(buffer[:space])
        if not digits.isdigit() or digits.startswith(b"0") or len(digits) > 10:
            raise FramingError(f"bad MSG-LEN {digits[:20]!r}")
        length = int(digits)
        if len(buffer) < space + 1 + length:
            return frames
        frames.append(bytes(buffer[space + 1 : space + 1 + length]))
        del buffer[: space + 1 + length]


@dataclass
class SyslogReceiver:
    """Collects syslog messages; ``tls`` makes it an RFC 5425 listener."""

    tls: ssl.SSLContext | None = None
    stall: bool = False
    """Accept connections but never read (a dead receiver whose buffers fill up)."""
    messages: list[bytes] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port: int = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _handle(self, conn: socket.socket) -> None:
        sock: socket.socket = conn
        try:
            if self.tls is not None:
                conn.settimeout(5)
                sock = self.tls.wrap_socket(conn, server_side=True)
            sock.settimeout(0.2)
            with self._lock:
                self._conns.append(sock)
            buffer = bytearray()
            while not self._stop.is_set():
                if self.stall:
                    time.sleep(0.05)
                    continue
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue
                except (OSError, ssl.SSLError):
                    return
                if not data:
                    return
                buffer += data
                try:
                    frames = read_frames(buffer)
                except FramingError as exc:
                    self.errors.append(str(exc))
                    return
                with self._lock:
                    self.messages.extend(frames)
        except (OSError, ssl.SSLError) as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            sock.close()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.02)
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        self._accept.join(5)
        with self._lock:
            conns = list(self._conns)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.close()
        for thread in self._threads:
            thread.join(5)


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpReceiver:
    """Accepts POSTs; the first ``fail_first`` requests get ``fail_status``; ``delay`` slows
    every answer; ``token`` (if set) must come as ``Authorization: Splunk <token>``."""

    fail_first: int = 0
    fail_status: int = 503
    delay: float = 0.0
    token: str | None = None
    hec: bool = True
    accepted: list[Request] = field(default_factory=list)
    refused: list[Request] = field(default_factory=list)
    on_request: Callable[[Request], None] | None = None

    def __post_init__(self) -> None:
        receiver = self
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                request = Request(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                if receiver.on_request is not None:
                    receiver.on_request(request)
                if receiver.delay:
                    time.sleep(receiver.delay)
                with receiver._lock:
                    failing = len(receiver.refused) < receiver.fail_first
                    if failing:
                        receiver.refused.append(request)
                if failing:
                    self._answer(receiver.fail_status, {"text": "Server is busy", "code": 9})
                    return
                if (
                    receiver.token is not None
                    and request.headers.get("authorization") != f"Splunk {receiver.token}"
                ):
                    with receiver._lock:
                        receiver.refused.append(request)
                    self._answer(403, {"text": "Invalid token", "code": 4})
                    return
                with receiver._lock:
                    receiver.accepted.append(request)
                self._answer(200, {"text": "Success", "code": 0})

            def _answer(self, status: int, payload: dict[str, Any]) -> None:
                import json

                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that timed out and left (the tests provoke it)

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port: int = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
