"""``chatledger serve`` and ``chatledger demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from chatledger.cli.common import DatabaseUrl, DataDir, handle_errors, settings_from
from chatledger.platform import Platform

Host = Annotated[str, typer.Option(help="Interface to listen on.")]
Port = Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)]


def run_server(platform: Platform, host: str, port: int) -> None:
    from chatledger.api.app import create_app

    app = create_app(platform)
    platform.start_background_jobs()
    try:
        uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
    finally:
        platform.close()


@handle_errors
def serve(
    host: Host = "127.0.0.1",
    port: Port = 8080,
    data_dir: DataDir = None,
    database: DatabaseUrl = None,
) -> None:
    """Serve the API and the console."""
    platform = Platform.open(settings_from(data_dir, database))
    data = platform.settings.data_dir
    typer.echo(f"ChatLedger on http://{host}:{port}  (data: {data})", err=True)
    run_server(platform, host, port)


@handle_errors
def demo(
    host: Host = "127.0.0.1",
    port: Port = 8080,
    data_dir: DataDir = None,
    database: DatabaseUrl = None,
) -> None:
    """Create (once) a demo workspace with a sample chatbot and documents, then serve."""
    from chatledger.demo import ensure_demo

    settings = settings_from(data_dir or Path("./chatledger-demo"), database)
    platform = Platform.open(settings)
    info = ensure_demo(platform)
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
    run_server(platform, host, port)
