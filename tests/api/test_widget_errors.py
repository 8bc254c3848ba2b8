"""The widget's chat endpoints answer errors in the API's one JSON error shape
(``{"error": {"code", "message", "details", "request_id"}}``) with the API's status codes;
the frame, a page, still answers with an HTML page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatledger.identity.principal import system_principal
from tests.api.server import GENEROUS_LIMITS, LiveServer, live_server

SHAPE = {"code", "message", "details", "request_id"}


def public_bot(server: LiveServer) -> str:
    bot = server.platform.chatbots.create(
        system_principal(server.workspace_id),
        "Widget bot",
        {"system_prompt": "Help.", "access": {"public_widget": True}},
    )
    return bot.public_key


def visitor_token(client: httpx.Client, public_key: str, origin: str) -> str:
    frame = client.get("/widget/frame", params={"key": public_key, "origin": origin})
    assert frame.status_code == 200, frame.text
    found = re.search(r'data-token="([^"]+)"', frame.text)
    assert found is not None
    return found.group(1)


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == SHAPE, error
    assert error["code"] == code
    assert error["message"] and isinstance(error["details"], dict)
    assert error["request_id"] == response.headers["x-request-id"]
    return error


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with live_server(tmp_path / "data") as live:
        yield live


def test_widget_errors_use_the_api_error_shape(server: LiveServer) -> None:
    key = public_bot(server)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        token = visitor_token(client, key, server.url)
        other = visitor_token(client, key, server.url)
        # no token, a forged token: 401
        error_of(client.post("/widget/api/conversations"), 401, "unauthenticated")
        error_of(
            client.post("/widget/api/conversations", headers={"x-widget-token": "x.y"}),
            401,
            "unauthenticated",
        )
        # a cross-site request: 401
        error_of(
            client.post(
                "/widget/api/conversations",
                headers={"x-widget-token": token, "origin": "https://evil.example"},
            ),
            401,
            "unauthenticated",
        )
        started = client.post("/widget/api/conversations", headers={"x-widget-token": token})
        assert started.status_code == 201, started.text
        conversation = started.json()["conversation_id"]
        # a malformed body: 422 with the problems, as the API gives them
        invalid = error_of(
            client.post(
                f"/widget/api/conversations/{conversation}/messages",
                headers={"x-widget-token": token},
                json={"text": ""},
            ),
            422,
            "invalid_input",
        )
        assert invalid["details"]["problems"][0]["field"] == "text"
        # another visitor's conversation: refused
        stolen = client.post(
            f"/widget/api/conversations/{conversation}/messages",
            headers={"x-widget-token": other},
            json={"text": "hello"},
        )
        assert stolen.status_code in (403, 404)
        error_of(
            stolen, stolen.status_code, {403: "forbidden", 404: "not_found"}[stolen.status_code]
        )
        # a message that does not exist: 404
        error_of(
            client.post(
                "/widget/api/messages/msg_nope/feedback",
                headers={"x-widget-token": token},
                json={"rating": "positive"},
            ),
            404,
            "not_found",
        )
        # the caller's request id is echoed, as on the API
        echoed = client.post("/widget/api/conversations", headers={"x-request-id": "rid-widget-1"})
        assert error_of(echoed, 401, "unauthenticated")["request_id"] == "rid-widget-1"
        # the frame is a page: its errors stay HTML
        missing = client.get("/widget/frame", params={"key": "pk_unknown"})
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("text/html")


def test_widget_rate_limit_uses_the_api_error_shape(tmp_path: Path) -> None:
    limits = {**GENEROUS_LIMITS, "visitor": [1, 60]}
    with live_server(tmp_path / "data", rate_limits=limits) as server:
        key = public_bot(server)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            token = visitor_token(client, key, server.url)
            headers = {"x-widget-token": token}
            assert client.post("/widget/api/conversations", headers=headers).status_code == 201
            limited = client.post("/widget/api/conversations", headers=headers)
            error_of(limited, 429, "rate_limited")
            assert int(limited.headers["retry-after"]) >= 1
