"""Hostile uploads and malformed requests: each refused with a clear error in the one JSON
shape, each recorded in the ledger, and the ledger still verifies afterwards."""

from __future__ import annotations

import io
import json
import socket
import zipfile
from typing import Any

import httpx
import pytest
from pypdf import PdfWriter

from chatledger.identity.principal import system_principal
from chatledger.ledger.service import Record
from tests.api.server import LiveServer


def assert_error_shape(
    response: httpx.Response, status: int, code: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in response.text
    if code is not None:
        assert error["code"] == code, error
    return dict(error)


def records(server: LiveServer) -> list[Record]:
    ledger = server.platform.ledger
    return list(ledger.records(0, ledger.size()))


def zip_bomb() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("word/document.xml", b"\0" * (300 * 1024 * 1024))
    return buf.getvalue()


def billion_laughs_docx() -> bytes:
    entities = "".join(
        f'<!ENTITY lol{i} "{"&lol" + str(i - 1) + ";" * 1}' + f"&lol{i - 1};" * 9 + '">'
        for i in range(1, 10)
    )
    xml = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "lol">' + entities + "]>"
        '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        "<w:body><w:p><w:r><w:t>&lol9;</w:t></w:r></w:p></w:body></w:document>"
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>',
        )
        zf.writestr("word/document.xml", xml)
    return buf.getvalue()


def encrypted_pdf() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.encrypt("secret")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


HOSTILE = [
    ("bomb.docx", zip_bomb, "zip_bomb"),
    ("laughs.docx", billion_laughs_docx, None),
    ("locked.pdf", encrypted_pdf, "encrypted_pdf"),
    ("program.pdf", lambda: b"MZ\x90\x00" + b"\x00" * 500, None),
    ("empty.txt", lambda: b"", "empty"),
    ("garbage.pdf", lambda: b"%PDF-1.7\n" + b"\xff\xfe garbage" * 50, None),
    ("latin1.txt", lambda: "caf\xe9 cr\xe8me".encode("latin-1") * 3 + b"\x00\x00\x81", None),
]


@pytest.mark.parametrize(("name", "make", "reason"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_uploads_are_refused_and_recorded(
    server: LiveServer, api: httpx.Client, name: str, make: Any, reason: str | None
) -> None:
    bot = api.post("/chatbots", json={"name": "Target"}).json()
    response = api.post(f"/chatbots/{bot['id']}/documents", files={"file": (name, make())})
    error = assert_error_shape(response, 422, "document_rejected")
    if reason is not None:
        assert error["details"]["reason"] == reason
    rejected = [r for r in records(server) if r.entry.action == "document.reject"]
    assert len(rejected) == 1
    assert rejected[0].entry.attributes["name"] == name
    assert rejected[0].entry.attributes["reason"] == error["details"]["reason"]
    assert api.get(f"/chatbots/{bot['id']}/documents").json()["items"] == []
    assert server.platform.ledger.verify().ok


def test_oversized_upload(server: LiveServer, api: httpx.Client) -> None:
    import dataclasses

    docs = server.platform.documents
    docs.limits = dataclasses.replace(docs.limits, max_bytes=10_000)
    bot = api.post("/chatbots", json={"name": "Small"}).json()
    response = api.post(
        f"/chatbots/{bot['id']}/documents", files={"file": ("big.txt", b"a " * 20_000)}
    )
    assert_error_shape(response, 413, "payload_too_large")
    assert any(r.entry.action == "request.rejected" for r in records(server))


def test_path_in_file_name_is_stripped(server: LiveServer, api: httpx.Client) -> None:
    bot = api.post("/chatbots", json={"name": "Paths"}).json()
    response = api.post(
        f"/chatbots/{bot['id']}/documents",
        files={"file": ("../../etc/passwd.txt", b"A harmless text about passwords.")},
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "passwd.txt"


MALFORMED = [
    (
        "post",
        "/chatbots",
        {"content": b"{not json", "headers": {"content-type": "application/json"}},
        422,
    ),
    ("post", "/chatbots", {"json": {"name": "x", "unknown_field": 1}}, 422),
    ("post", "/chatbots", {"json": {"name": "x", "retrieval": {"top_k": 0}}}, 422),
    ("post", "/chatbots", {"json": {"name": "x", "model": {"provider": "teleport"}}}, 422),
    ("patch", "/chatbots/{bot}", {"json": {"retrieval": {"min_score": 7}}}, 422),
    ("patch", "/chatbots/{bot}", {"json": {"access": {"allowed_origins": ["javascript:x"]}}}, 422),
    ("get", "/chatbots/bot_doesnotexist", {}, 404),
    ("post", "/conversations/{conv}/messages", {"json": {"text": ""}}, 422),
    ("post", "/conversations/{conv}/messages", {"json": {"text": "x" * 5000}}, 422),
    ("post", "/conversations/{conv}/messages", {"json": {"txt": "typo"}}, 422),
    ("post", "/conversations/conv_nope/messages", {"json": {"text": "hi"}}, 404),
    ("post", "/messages/msg_nope/feedback", {"json": {"rating": "positive"}}, 404),
    ("post", "/messages/ans_x/feedback", {"json": {"rating": "meh"}}, 422),
    ("patch", "/conversations/{conv}", {"json": {"resolution": "deleted"}}, 422),
    ("patch", "/conversations/{conv}", {"json": {"outcome_tags": "not-a-list"}}, 422),
    ("get", "/chatbots?limit=100000", {}, 422),
    ("get", "/chatbots?cursor=%%%", {}, 422),
    ("get", "/audit/proof/999999", {}, 404),
    ("get", "/no/such/route", {}, 404),
    ("delete", "/audit/proof/1", {}, 405),
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    MALFORMED,
    ids=[f"{m} {p} {s}" for m, p, _, s in MALFORMED],
)
def test_malformed_requests_get_the_one_error_shape(
    server: LiveServer,
    api: httpx.Client,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
) -> None:
    bot = api.post("/chatbots", json={"name": "Shapes"}).json()
    conv = api.post(f"/chatbots/{bot['id']}/conversations", json={}).json()
    before = server.platform.ledger.size()
    response = api.request(method, path.format(bot=bot["id"], conv=conv["id"]), **kwargs)
    assert_error_shape(response, status)
    if status == 422:
        after = records(server)[before:]
        assert any(r.entry.action == "request.rejected" for r in after), [
            r.entry.action for r in after
        ]
    assert server.platform.ledger.verify().ok


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing_credentials"),
        ("Basic dXNlcjpwYXNz", "malformed_authorization"),
        ("Bearer clk_0123456789abcdef_forgedsecretvalue", "unknown_key"),
        ("Bearer not-a-key", "malformed"),
    ],
)
def test_bad_credentials_are_refused_and_recorded(
    server: LiveServer, header: str | None, reason: str
) -> None:
    headers = {"authorization": header} if header else {}
    response = httpx.get(f"{server.url}/api/v1/chatbots", headers=headers)
    assert_error_shape(response, 401, "unauthenticated")
    failures = [r for r in records(server) if r.entry.action == "auth.login_failed"]
    assert failures and failures[-1].entry.attributes["reason"] == reason
    assert failures[-1].payload is not None and failures[-1].payload["ip"] == "127.0.0.1"


# -- rejections that used to escape the error handlers ------------------------------------------


def _rejected_since(server: LiveServer, start: int) -> list[Record]:
    return [r for r in records(server)[start:] if r.entry.action == "request.rejected"]


def assert_request_id(response: httpx.Response, error: dict[str, Any]) -> None:
    assert error["request_id"]
    assert response.headers.get("x-request-id") == error["request_id"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/chatbots", b'{"name": "\\udfff", "system_prompt": "x"}'),
        ("post", "/chatbots", b'{"name": "ok \\ud800 then"}'),
        ("patch", "/chatbots/{bot}", b'{"name": "\\udfff"}'),
    ],
    ids=["create", "create-high-surrogate", "update"],
)
def test_a_lone_surrogate_in_a_name_is_invalid_input(
    server: LiveServer, api: httpx.Client, method: str, path: str, body: bytes
) -> None:
    bot = api.post("/chatbots", json={"name": "Surrogates"}).json()
    start = server.platform.ledger.size()
    response = api.request(
        method,
        path.format(bot=bot["id"]),
        content=body,
        headers={"content-type": "application/json"},
    )
    error = assert_error_shape(response, 422, "invalid_input")
    assert "surrogate" in error["message"] and error["details"]["field"] == "name"
    assert_request_id(response, error)
    rejected = _rejected_since(server, start)
    assert [r.entry.attributes["reason"] for r in rejected] == ["invalid_input"]
    assert api.get(f"/chatbots/{bot['id']}").json()["name"] == "Surrogates"
    assert [b["name"] for b in api.get("/chatbots").json()["items"]] == ["Surrogates"]


def test_a_non_ascii_csrf_token_is_an_ordinary_csrf_refusal(server: LiveServer) -> None:
    server.platform.identity.create_user(
        system_principal(server.workspace_id),
        email="eve@example.com",
        password="correct horse battery staple",
        role="editor",
    )
    with server.client() as api:
        bot = api.post("/chatbots", json={"name": "Csrf"}).json()
    with httpx.Client(base_url=f"{server.url}/api/v1") as browser:
        login = browser.post(
            "/auth/login",
            json={"email": "eve@example.com", "password": "correct horse battery staple"},
        )
        assert login.status_code == 200, login.text
        for sent in ("ééééé".encode(), b"wrong-ascii-token"):
            start = server.platform.ledger.size()
            response = browser.patch(
                f"/chatbots/{bot['id']}", json={"name": "x"}, headers={"x-csrf-token": sent}
            )
            error = assert_error_shape(response, 403, "forbidden")
            assert error["details"]["reason"] == "csrf"
            assert_request_id(response, error)
            denied = [r for r in records(server)[start:] if r.entry.action == "access.denied"]
            assert len(denied) == 1 and denied[0].entry.attributes["reason"] == "csrf"
        # the session still works with the right token
        csrf = login.json()["csrf_token"]
        ok = browser.patch(
            f"/chatbots/{bot['id']}", json={"name": "Renamed"}, headers={"x-csrf-token": csrf}
        )
        assert ok.status_code == 200, ok.text


def _raw_exchange(sock: socket.socket, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request and its response (Content-Length framed) on an open socket."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed by the server after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    return int(status_line.split()[1]), headers, body


def test_an_unexpected_failure_is_a_500_in_the_one_shape_and_keeps_the_connection(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(server.platform.chatbots, "list_chatbots", broken)
    host, port = server.url.removeprefix("http://").split(":")
    auth = f"Authorization: Bearer {server.admin_key}\r\n"
    failing = f"GET /api/v1/chatbots HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n".encode()
    health = f"GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    with (
        caplog.at_level("ERROR", logger="chatledger.api.errors"),
        socket.create_connection((host, int(port)), timeout=10) as sock,
    ):
        status, headers, body = _raw_exchange(sock, failing)
        assert status == 500
        error = json.loads(body)["error"]
        assert set(error) == {"code", "message", "details", "request_id"}
        assert error["code"] == "internal_error" and "simulated" not in body.decode()
        assert headers.get("x-request-id") == error["request_id"]
        assert headers.get("connection", "").lower() != "close"
        # the same keep-alive connection serves the next request
        status, _, body = _raw_exchange(sock, health)
        assert status == 200 and json.loads(body)["status"] == "ok"
    # the traceback stays in the server's log
    assert any(r.exc_info and "simulated failure" in str(r.exc_info[1]) for r in caplog.records)
    monkeypatch.undo()
    with server.client() as api:  # and httpx on keep-alive sees the same
        assert api.get("/chatbots").status_code == 200


def _deep_json(depth: int) -> bytes:
    return b'{"name": ' + b"[" * depth + b"]" * depth + b"}"


def test_starlette_400s_are_recorded_as_rejections(server: LiveServer, api: httpx.Client) -> None:
    bot = api.post("/chatbots", json={"name": "Parsers"}).json()
    cases: list[tuple[str, str, dict[str, Any]]] = [
        (
            "post",
            f"/chatbots/{bot['id']}/documents",
            {"files": {"file": ("a" * 5000 + ".txt", b"some text")}},
        ),
        (
            "post",
            f"/chatbots/{bot['id']}/documents",
            {
                "content": b"notmultipart",
                "headers": {"content-type": "multipart/form-data; boundary=zzz"},
            },
        ),
        (
            "post",
            "/chatbots",
            {"content": _deep_json(100_000), "headers": {"content-type": "application/json"}},
        ),
    ]
    for method, path, kwargs in cases:
        start = server.platform.ledger.size()
        response = api.request(method, path, **kwargs)
        error = assert_error_shape(response, 400)
        assert_request_id(response, error)
        rejected = _rejected_since(server, start)
        assert len(rejected) == 1, (path, [r.entry.action for r in records(server)[start:]])
        attributes = rejected[0].entry.attributes
        assert attributes["reason"] == "malformed"
        assert attributes["request_id"] == error["request_id"]
        assert attributes["method"] == "POST" and attributes["path"] == f"/api/v1{path}"
    assert api.get(f"/chatbots/{bot['id']}/documents").json()["items"] == []
    assert server.platform.ledger.verify().ok


def test_a_malformed_body_is_recorded_with_the_key_that_sent_it(
    server: LiveServer, api: httpx.Client
) -> None:
    key_id = server.admin_key.split("_")[1]
    anonymous = httpx.Client(base_url=f"{server.url}/api/v1")
    forged = httpx.Client(
        base_url=f"{server.url}/api/v1",
        headers={"authorization": "Bearer clk_0123456789abcdef_forgedsecretvalue"},
    )
    expected = [
        (api, "api_key", key_id),
        (anonymous, "anonymous", None),
        (forged, "anonymous", None),
    ]
    for client, actor_type, actor_id in expected:
        start = server.platform.ledger.size()
        response = client.post(
            "/chatbots", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert_error_shape(response, 422, "invalid_input")
        rejected = _rejected_since(server, start)
        assert len(rejected) == 1
        assert rejected[0].entry.actor["type"] == actor_type
        if actor_id is not None:
            assert rejected[0].entry.actor["id"] == actor_id
        # nothing else was recorded: no token use, no failed login for the forged key
        assert [r.entry.action for r in records(server)[start:]] == ["request.rejected"]
    anonymous.close()
    forged.close()


@pytest.mark.parametrize("value", ["no", "false", "yes", 0, 1, "0", None, []])
def test_retention_run_needs_a_json_boolean(
    server: LiveServer, api: httpx.Client, monkeypatch: pytest.MonkeyPatch, value: Any
) -> None:
    from chatledger.privacy import retention

    runs: list[Any] = []
    monkeypatch.setattr(retention, "run_expiry", lambda *a, **k: runs.append(k))
    start = server.platform.ledger.size()
    response = api.post("/privacy/retention/run", json={"dry_run": value})
    error = assert_error_shape(response, 422, "invalid_input")
    assert "dry_run" in error["message"]
    actions = [r.entry.action for r in records(server)[start:]]
    assert "request.rejected" in actions
    assert not [a for a in actions if a.startswith("privacy.")], actions
    assert runs == []  # nothing ran, not even a dry run


def test_retention_run_with_a_real_boolean(server: LiveServer, api: httpx.Client) -> None:
    response = api.post("/privacy/retention/run", json={"dry_run": True})
    assert response.status_code == 200, response.text
    assert api.post("/privacy/retention/run", json={}).status_code == 200
