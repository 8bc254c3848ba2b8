"""``chatledger serve`` and ``chatledger demo``."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from chatledger.cli.common import DatabaseUrl, DataDir, handle_errors, settings_from
from chatledger.config import Settings
from chatledger.errors import InvalidInput
from chatledger.platform import Platform

Host = Annotated[str, typer.Option(help="Interface to listen on.")]
Port = Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)]
Workers = Annotated[
    int,
    typer.Option(
        help="Server processes sharing the port (one per CPU core is a good start); "
        "they append to one ledger.",
        min=1,
        max=64,
    ),
]


def listening_socket(host: str, port: int) -> socket.socket:
    """The server's socket, bound before anything starts, so that a port in use is a
    one-line error. Bound with ``IPPROTO_TCP``: asyncio then sets TCP_NODELAY on accepted
    connections, and keep-alive responses do not wait ~40 ms for a delayed ACK (uvicorn
    binds its own without it: uvicorn issue #3149)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def run_server(platform: Platform, sock: socket.socket) -> None:
    from chatledger.api.app import create_app

    app = create_app(platform)
    platform.start_background_jobs()
    try:
        config = uvicorn.Config(app, log_level="info", access_log=False)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        platform.close()


def _open_platform(settings: Settings, sock: socket.socket) -> Platform:
    try:
        return Platform.open(settings)  # also brings the schema up to date, once
    except BaseException:
        sock.close()
        raise


@handle_errors
def serve(
    host: Host = "127.0.0.1",
    port: Port = 8080,
    data_dir: DataDir = None,
    database: DatabaseUrl = None,
    workers: Workers = 1,
) -> None:
    """Serve the API and the console."""
    settings = settings_from(data_dir, database, create=True)
    sock = listening_socket(host, port)
    platform = _open_platform(settings, sock)
    data = platform.settings.data_dir
    typer.echo(f"ChatLedger on http://{host}:{port}  (data: {data})", err=True)
    if workers == 1:
        run_server(platform, sock)
        return
    platform.close()
    typer.echo(f"{workers} worker processes", err=True)
    os.environ["CHATLEDGER_DATA_DIR"] = str(settings.data_dir)
    if settings.database_url:
        os.environ["CHATLEDGER_DATABASE_URL"] = settings.database_url
    run_workers(sock, host, port, workers)


def run_workers(sock: socket.socket, host: str, port: int, workers: int) -> None:
    """uvicorn's multi-process supervisor over the listening socket bound here."""
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        "chatledger.api.worker:create_worker_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # A worker opens its platform before it answers the supervisor's pings; on a busy
        # machine that takes longer than uvicorn's 5 s default, which would kill it.
        timeout_worker_healthcheck=60,
        log_level="info",
        access_log=False,
    )
    sock.set_inheritable(True)
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()


@handle_errors
def demo(
    host: Host = "127.0.0.1",
    port: Port = 8080,
    data_dir: DataDir = None,
    database: DatabaseUrl = None,
) -> None:
    """Create (once) a demo workspace with a sample chatbot and documents, then serve."""
    from chatledger.demo import ensure_demo

    settings = settings_from(data_dir or Path("./chatledger-demo"), database, create=True)
    sock = listening_socket(host, port)
    platform = _open_platform(settings, sock)
    try:
        info = ensure_demo(platform)
    except BaseException:
        sock.close()
        platform.close()
        raise
    base = f"http://{host}:{port}"
    typer.echo(
        "\n".join(
            [
                "",
                "ChatLedger demo",
                f"  console:   {base}/console",
                f"  API:       {base}/api/v1   (OpenAPI: {base}/docs)",
                f"  login:     {info.email} / {info.password}",
                f"  API key:   {info.api_key}",
                f"  chatbot:   {info.chatbot_id}  ({info.documents} documents)",
                f"  data:      {settings.data_dir}",
                "",
                "Try:",
                f"  curl -s -X POST {base}/api/v1/chatbots/{info.chatbot_id}/conversations \\",
                f'       -H "Authorization: Bearer {info.api_key}" \\',
                '       -H "content-type: application/json" -d "{}"',
                "",
            ]
        )
    )
    run_server(platform, sock)
