"""The authorization matrix: every route against every role, against no credentials, and
against expired, revoked, forged and other-workspace keys. Each denial is answered 401 or 403
and recorded; no route, for any role, edits or deletes audit data."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from chatledger.events import Actor
from chatledger.identity.principal import system_principal
from chatledger.identity.roles import Permission, Role, can
from tests.api.server import LiveServer


@dataclass
class Fixtures:
    bot: str
    doc: str
    conv: str
    answer: str
    hold: str


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    permission: Permission | tuple[Permission, ...]
    body: Callable[[Fixtures], dict[str, Any]] | None = None

    def allowed(self, role: Role) -> bool:
        perms = self.permission if isinstance(self.permission, tuple) else (self.permission,)
        return any(can(role, p) for p in perms)


P = Permission
ROUTES = [
    Route("POST", "/chatbots", P.CHATBOT_WRITE, lambda f: {"json": {"name": "new"}}),
    Route("GET", "/chatbots", P.CHATBOT_READ),
    Route("GET", "/chatbots/{bot}", P.CHATBOT_READ),
    Route(
        "PATCH",
        "/chatbots/{bot}",
        P.CHATBOT_WRITE,
        lambda f: {"json": {"system_prompt": "changed"}},
    ),
    Route("DELETE", "/chatbots/{bot}", P.CHATBOT_WRITE),
    Route("GET", "/chatbots/{bot}/config/versions", P.CHATBOT_READ),
    Route("GET", "/chatbots/{bot}/config?at=2999-01-01T00:00:00Z", P.CHATBOT_READ),
    Route("GET", "/chatbots/{bot}/config/diff?from=1&to=1", P.CHATBOT_READ),
    Route(
        "POST",
        "/chatbots/{bot}/documents",
        P.DOCUMENT_WRITE,
        lambda f: {"files": {"file": ("note.txt", b"Opening hours are 9 to 5.")}},
    ),
    Route("GET", "/chatbots/{bot}/documents", P.DOCUMENT_READ),
    Route("DELETE", "/documents/{doc}", P.DOCUMENT_WRITE),
    Route("POST", "/chatbots/{bot}/conversations", P.CHAT, lambda f: {"json": {}}),
    Route("GET", "/conversations/{conv}", (P.CONVERSATION_READ, P.CHAT)),
    Route(
        "POST",
        "/conversations/{conv}/messages",
        P.CHAT,
        lambda f: {"json": {"text": "When are you open?"}},
    ),
    Route(
        "POST", "/messages/{answer}/feedback", P.CHAT, lambda f: {"json": {"rating": "positive"}}
    ),
    Route(
        "PATCH",
        "/conversations/{conv}",
        P.CONVERSATION_MANAGE,
        lambda f: {"json": {"outcome_tags": ["deflection"]}},
    ),
    Route("GET", "/conversations/{conv}/replay", P.CONVERSATION_READ),
    Route("GET", "/audit/checkpoint", P.AUDIT_READ),
    Route("GET", "/audit/proof/0", P.AUDIT_READ),
    Route("GET", "/audit/verify", P.AUDIT_READ),
    Route("GET", "/audit/events?action=message.user", P.AUDIT_READ),
    Route("GET", "/audit/export?format=jsonl", P.AUDIT_EXPORT),
    Route(
        "POST",
        "/audit/evidence",
        P.AUDIT_EXPORT,
        lambda f: {"json": {"conversation_id": f.conv, "reason": "matrix"}},
    ),
    Route("GET", "/analytics", P.ANALYTICS_READ),
    Route("GET", "/analytics/outcomes", P.ANALYTICS_READ),
    Route("GET", "/privacy/retention", P.PRIVACY_MANAGE),
    Route(
        "PUT",
        "/privacy/retention/message",
        P.PRIVACY_MANAGE,
        lambda f: {"json": {"days": 400, "chatbot_id": f.bot}},
    ),
    Route("DELETE", "/privacy/retention/message?chatbot_id={bot}", P.PRIVACY_MANAGE),
    Route("POST", "/privacy/retention/run", P.PRIVACY_MANAGE, lambda f: {"json": {}}),
    Route(
        "POST",
        "/privacy/holds",
        P.PRIVACY_MANAGE,
        lambda f: {"json": {"conversation_id": f.conv, "reason": "litigation"}},
    ),
    Route("GET", "/privacy/holds", P.PRIVACY_MANAGE),
    Route("GET", "/privacy/holds/{hold}", P.PRIVACY_MANAGE),
    Route(
        "POST",
        "/privacy/holds/{hold}/release",
        P.PRIVACY_MANAGE,
        lambda f: {"json": {"reason": "case closed"}},
    ),
    Route(
        "POST",
        "/privacy/erasures",
        P.PRIVACY_MANAGE,
        lambda f: {"json": {"subject": "someone-never-seen"}},
    ),
    Route("POST", "/ingest/events", P.CHAT, lambda f: {"json": {"records": []}}),
]
# Workspace-wide or deployment-wide routes: a key of another workspace sees only its own.
WORKSPACE_WIDE = {
    "/chatbots",
    "/audit/checkpoint",
    "/audit/verify",
    "/audit/proof/0",
    "/audit/events?action=message.user",
    "/audit/export?format=jsonl",
    "/analytics",
    "/analytics/outcomes",
    "/privacy/retention",
    "/privacy/retention/run",
    "/privacy/holds",
    "/privacy/erasures",
    "/ingest/events",
}
# Routes any authenticated caller may use, or that authenticate by other means.
UNGUARDED = {("POST", "/api/v1/auth/login"), ("POST", "/api/v1/auth/logout")}


def make_fixtures(server: LiveServer) -> Fixtures:
    with server.client() as api:
        bot = api.post("/chatbots", json={"name": "Matrix"}).json()["id"]
        doc = api.post(
            f"/chatbots/{bot}/documents",
            files={"file": ("hours.txt", b"We are open from 9 to 5 on weekdays.")},
        ).json()["id"]
        conv = api.post(f"/chatbots/{bot}/conversations", json={}).json()["id"]
        answer = api.post(
            f"/conversations/{conv}/messages", json={"text": "When are you open?"}
        ).json()["answer"]["id"]
        hold = api.post("/privacy/holds", json={"chatbot_id": bot, "reason": "fixture"}).json()
    return Fixtures(bot, doc, conv, answer, hold["id"])


def call(server: LiveServer, route: Route, fixtures: Fixtures, key: str | None) -> httpx.Response:
    path = route.path.format(**fixtures.__dict__)
    headers = {"authorization": f"Bearer {key}"} if key else {}
    kwargs = route.body(fixtures) if route.body else {}
    return httpx.request(
        route.method, f"{server.url}/api/v1{path}", headers=headers, timeout=30, **kwargs
    )


def denials(server: LiveServer, since: int) -> list[str]:
    ledger = server.platform.ledger
    return [e.action for e in ledger.entries(since, ledger.size())]


def api_routes(server: LiveServer) -> set[tuple[str, str]]:
    from chatledger.api.app import create_app

    spec = create_app(server.platform).openapi()
    return {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}


def test_every_route_is_in_the_matrix(server: LiveServer) -> None:
    app_routes = {(m, p) for m, p in api_routes(server) if p.startswith("/api/v1/")}
    covered = {
        (
            r.method,
            "/api/v1"
            + r.path.split("?")[0]
            .replace("{bot}", "{chatbot_id}")
            .replace("{doc}", "{document_id}")
            .replace("{conv}", "{conversation_id}")
            .replace("{answer}", "{message_id}")
            .replace("/proof/0", "/proof/{seq}")
            .replace("{hold}", "{hold_id}")
            .replace("/retention/message", "/retention/{rule}")
            .replace("/analytics/outcomes", "/analytics/{report}"),
        )
        for r in ROUTES
    }
    missing = sorted(app_routes - covered - UNGUARDED)
    assert not missing, f"routes without an authorization test: {missing}"


@pytest.mark.parametrize("role", list(Role))
def test_each_role_gets_exactly_its_permissions(server: LiveServer, role: Role) -> None:
    key = server.key(role.value)
    fixtures = make_fixtures(server)
    for route in ROUTES:
        before = server.platform.ledger.size()
        response = call(server, route, fixtures, key)
        if route.method == "DELETE" and response.status_code < 400:
            fixtures = make_fixtures(server)  # the next routes need things that still exist
        if route.allowed(role):
            assert response.status_code not in (401, 403), (role, route, response.text)
            assert response.status_code < 400, (role, route, response.text)
        else:
            assert response.status_code == 403, (role, route, response.text)
            assert response.json()["error"]["code"] == "forbidden"
            assert "access.denied" in denials(server, before), (role, route)


@pytest.fixture
def bad_keys(server: LiveServer) -> dict[str, str]:
    identity = server.platform.identity
    operator = system_principal(server.workspace_id)
    expired, info = identity.create_api_key(operator, role="admin", expires_in_days=1)
    server.platform.ledger.transact(
        lambda ctx: (
            ctx.txn.execute(
                "UPDATE api_keys SET expires_at = '2000-01-01T00:00:00.000000Z' WHERE id = ?",
                (info.id,),
            ),
            [],
        )
    )
    revoked, info2 = identity.create_api_key(operator, role="admin")
    identity.revoke_api_key(operator, info2.id)
    good, _info3 = identity.create_api_key(operator, role="admin")
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    other_ws = identity.create_workspace("Other", Actor("system", "tests"))
    other, _ = identity.create_api_key(system_principal(other_ws), role="owner")
    return {
        "expired": expired,
        "revoked": revoked,
        "forged": forged,
        "none": "",
        "other_workspace": other,
        "garbage": "clk_" + hashlib.sha256(b"x").hexdigest(),
    }


@pytest.mark.parametrize(
    "kind", ["none", "expired", "revoked", "forged", "garbage", "other_workspace"]
)
def test_bad_credentials_on_every_route(
    server: LiveServer, bad_keys: dict[str, str], kind: str
) -> None:
    fixtures = make_fixtures(server)
    for route in ROUTES:
        before = server.platform.ledger.size()
        response = call(server, route, fixtures, bad_keys[kind] or None)
        recorded = denials(server, before)
        if kind == "other_workspace":
            if route.path in WORKSPACE_WIDE:
                continue  # workspace-wide or ledger-wide: nothing of the other workspace
            assert response.status_code == 403, (route, response.text)
            assert "access.denied" in recorded, route
        else:
            assert response.status_code == 401, (kind, route, response.text)
            assert response.json()["error"]["code"] == "unauthenticated"
            assert "auth.login_failed" in recorded, (kind, route)


def test_no_route_edits_or_deletes_audit_data(server: LiveServer) -> None:
    for method, path in api_routes(server):
        if path.startswith(("/api/v1/audit", "/api/v1/ledger")):
            assert method not in {"PUT", "PATCH", "DELETE"}, (method, path)
    owner = server.key("owner")
    for method in ("PUT", "PATCH", "DELETE"):
        for path in (
            "/audit/events",
            "/audit/events/0",
            "/audit/proof/0",
            "/audit/checkpoint",
            "/ledger/entries/0",
            "/audit/verify",
        ):
            response = httpx.request(
                method,
                f"{server.url}/api/v1{path}",
                headers={"authorization": f"Bearer {owner}"},
                json={},
            )
            assert response.status_code in (404, 405), (method, path, response.status_code)
