"""Hostile uploads and malformed requests: each refused with a clear error in the one JSON
shape, each recorded in the ledger, and the ledger still verifies afterwards."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import httpx
import pytest
from pypdf import PdfWriter

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
