"""The embeddable chat widget for anonymous visitors.

A company's page includes one script tag::

    <script src="https://chat.example.com/widget.js" data-chatbot="pk_..."></script>

``widget.js`` adds a button and an iframe (``/widget/frame``). The frame is served only for a
chatbot whose ``access.public_widget`` is on, to a page whose origin is the server's own or is
listed in ``access.allowed_origins``; its ``frame-ancestors`` policy names exactly those
origins, so the browser refuses any other embedding. The frame gets a signed visitor token
(chatbot, visitor id, embedding origin, expiry); the anonymous chat endpoints under
``/widget/api`` accept only that token, act as a ``widget`` principal that owns only its own
conversations, and charge the visitor's and the IP's rate limits.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from chatledger.api.auth import SESSION_COOKIE, client_ip
from chatledger.chatbots.service import Chatbot
from chatledger.console.chat_pages import with_document_names
from chatledger.console.web import CSP, STATIC_DIR, ConsoleRoute, platform_of, render
from chatledger.errors import ChatLedgerError, Forbidden, NotFound, Unauthenticated
from chatledger.events import Actor, Entity, Event, Outcome
from chatledger.identity.principal import Principal
from chatledger.identity.roles import Role
from chatledger.platform import Platform

API_PREFIX = "/widget/api/"


class WidgetRoute(ConsoleRoute):
    """The frame answers errors as the console does (an HTML page); the anonymous chat
    endpoints under ``/widget/api/`` are an API, so their errors go to the app's error
    handlers (chatledger.api.errors) and come out in the one JSON error shape, with the
    same status codes, ``request_id`` and recorded denials as the rest of the API."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        if self.path.startswith(API_PREFIX):
            return APIRoute.get_route_handler(self)
        return super().get_route_handler()


router = APIRouter(route_class=WidgetRoute, include_in_schema=False)

TOKEN_HEADER = "x-widget-token"  # noqa: S105 (a header name)
TOKEN_SECONDS = 12 * 3600
_KEY_FILE = "console-widget.key"


def widget_secret(platform: Platform) -> bytes:
    """The key that signs visitor tokens: one per data directory, shared by all processes."""
    folder: Path = platform.settings.secrets_dir
    path = folder / _KEY_FILE
    with contextlib.suppress(FileNotFoundError):
        return path.read_bytes()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


def _secret(request: Request) -> bytes:
    state = request.app.state
    key: bytes | None = getattr(state, "console_widget_secret", None)
    if key is None:
        key = widget_secret(platform_of(request))
        state.console_widget_secret = key
    return key


@dataclass(frozen=True)
class VisitorToken:
    chatbot_id: str
    public_key: str
    visitor_id: str
    origin: str
    expires: int

    def encode(self, secret: bytes) -> str:
        body = base64.urlsafe_b64encode(
            orjson.dumps(
                {
                    "b": self.chatbot_id,
                    "k": self.public_key,
                    "v": self.visitor_id,
                    "o": self.origin,
                    "e": self.expires,
                }
            )
        ).rstrip(b"=")
        mac = hmac.new(secret, body, hashlib.sha256).digest()
        return f"{body.decode()}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"

    @classmethod
    def decode(cls, token: str, secret: bytes) -> VisitorToken | None:
        body, _, mac = token.partition(".")
        if not body or not mac or len(token) > 2000:
            return None
        expected = base64.urlsafe_b64encode(
            hmac.new(secret, body.encode(), hashlib.sha256).digest()
        ).rstrip(b"=")
        if not hmac.compare_digest(expected, mac.encode()):
            return None
        try:
            data = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            item = cls(
                str(data["b"]), str(data["k"]), str(data["v"]), str(data["o"]), int(data["e"])
            )
        except (ValueError, KeyError, TypeError):
            return None
        return item if item.expires > time.time() else None


def own_origin(request: Request) -> str:
    url = urlsplit(str(request.base_url))
    return f"{url.scheme}://{url.netloc}"


def origin_allowed(request: Request, bot: Chatbot, origin: str) -> bool:
    return origin == own_origin(request) or origin in bot.config.access.allowed_origins


def frame_csp(request: Request, bot: Chatbot) -> str:
    ancestors = " ".join(["'self'", *bot.config.access.allowed_origins])
    return CSP.replace("frame-ancestors 'none'", f"frame-ancestors {ancestors}")


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def _public_bot(platform: Platform, key: str) -> Chatbot:
    bot = platform.chatbots.by_public_key(key) if key.startswith("pk_") else None
    if bot is None or not bot.config.access.public_widget:
        raise NotFound("this chat widget is not available")
    return bot


# -- the script and the frame -------------------------------------------------------------


@router.get("/widget.js")
def widget_js() -> Response:
    return FileResponse(
        STATIC_DIR / "widget.js",
        media_type="text/javascript",
        headers={
            "Cache-Control": "public, max-age=300",
            "Cross-Origin-Resource-Policy": "cross-origin",
        },
    )


@router.get("/widget/frame")
def frame(request: Request, key: str = "", origin: str = "") -> Response:
    platform = platform_of(request)
    ip = client_ip(request)
    platform.abuse.charge("ip", ip or "unknown", None, request.url.path, ip)
    bot = _public_bot(platform, key[:200])
    referer = _origin_of(request.headers.get("referer", ""))
    claimed = origin[:300] or referer
    if not claimed or (referer and referer != claimed) or not origin_allowed(request, bot, claimed):
        raise Forbidden(
            "this site may not embed the chat widget",
            details={
                "reason": "widget_origin",
                "chatbot_id": bot.id,
                "origin": (claimed or "unknown")[:300],
            },
        )
    visitor = f"v_{secrets.token_hex(10)}"
    token = VisitorToken(bot.id, bot.public_key, visitor, claimed, int(time.time()) + TOKEN_SECONDS)
    response = render(
        request,
        "widget_frame.html",
        {"bot": bot, "token": token.encode(_secret(request))},
    )
    response.headers["Content-Security-Policy"] = frame_csp(request, bot)
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@router.get("/widget/demo")
def demo(request: Request, key: str = "") -> Response:
    """A page of a fictional company that embeds the widget with one script tag."""
    platform = platform_of(request)
    bots: list[Chatbot] = []
    token = request.cookies.get(SESSION_COOKIE)
    if not key and token:
        with contextlib.suppress(ChatLedgerError):
            session = platform.identity.authenticate_session(token, ip=client_ip(request))
            bots = [
                b
                for b in platform.chatbots.list_chatbots(session.principal, limit=200)
                if b.config.access.public_widget
            ]
    return render(request, "widget_demo.html", {"key": key[:200], "bots": bots})


# -- the anonymous chat endpoints ---------------------------------------------------------


@dataclass
class Visitor:
    principal: Principal
    bot: Chatbot
    token: VisitorToken


def _refuse(platform: Platform, request: Request, reason: str) -> Unauthenticated:
    ip = client_ip(request)
    with contextlib.suppress(ChatLedgerError):
        platform.ledger.append(
            Event(
                "auth.login_failed",
                Actor("anonymous", ip or "unknown"),
                Entity("http_request", f"{request.method} {request.url.path}"[:200]),
                Outcome.DENIED,
                attributes={"method": "widget_token", "reason": reason},
                payload={"ip": ip} if ip else None,
            )
        )
    return Unauthenticated("the chat session is not valid: reload the page")


def visitor(request: Request) -> Visitor:
    platform = platform_of(request)
    ip = client_ip(request)
    path = request.url.path
    platform.abuse.charge("ip", ip or "unknown", None, path, ip)
    sent_origin = request.headers.get("origin")
    if sent_origin and sent_origin != own_origin(request):
        raise _refuse(platform, request, "cross_origin_request")
    token = VisitorToken.decode(request.headers.get(TOKEN_HEADER, ""), _secret(request))
    if token is None:
        raise _refuse(platform, request, "bad_token")
    bot = platform.chatbots.find(token.chatbot_id)
    if (
        bot is None
        or bot.public_key != token.public_key
        or not bot.config.access.public_widget
        or not origin_allowed(request, bot, token.origin)
    ):
        raise _refuse(platform, request, "widget_disabled")
    actor = Actor("anonymous", token.visitor_id)
    principal = Principal(actor, bot.workspace_id, Role.VIEWER, "widget", token.visitor_id, ip)
    request.state.principal = principal
    platform.abuse.charge("visitor", token.visitor_id, actor, path, ip)
    platform.abuse.observe_request(principal, path)
    return Visitor(principal, bot, token)


VisitorDep = Annotated[Visitor, Depends(visitor)]


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=100_000)


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rating: Literal["positive", "negative"]
    comment: str | None = Field(default=None, max_length=2000)


@router.post("/widget/api/conversations", status_code=201)
async def start(request: Request, who: VisitorDep) -> dict[str, Any]:
    platform = platform_of(request)
    conv = await run_in_threadpool(
        lambda: platform.chat.start(
            who.principal,
            who.bot.id,
            visitor_id=who.token.visitor_id,
            channel="widget",
            user_agent=request.headers.get("user-agent"),
        )
    )
    return {"conversation_id": conv.id}


@router.post("/widget/api/conversations/{conversation_id}/messages")
async def message(
    conversation_id: str, body: MessageIn, request: Request, who: VisitorDep
) -> dict[str, Any]:
    platform = platform_of(request)
    result = await run_in_threadpool(platform.chat.send, who.principal, conversation_id, body.text)
    answer = with_document_names(platform.ledger, result.answer)
    return {
        "conversation_id": result.conversation_id,
        "message_id": answer["id"],
        "text": answer["text"],
        "unanswered": answer["unanswered"],
        "groundedness": answer["groundedness"],
        "sources": [
            {
                "document": s["document_name"],
                "heading": s["heading"],
                "score": s["score"],
            }
            for s in answer["sources"]
            if s["cited"]
        ],
    }


@router.post("/widget/api/messages/{message_id}/feedback", status_code=201)
async def feedback(
    message_id: str, body: FeedbackIn, request: Request, who: VisitorDep
) -> dict[str, Any]:
    platform = platform_of(request)
    result = await run_in_threadpool(
        platform.chat.feedback, who.principal, message_id, body.rating, body.comment
    )
    return {"message_id": message_id, "rating": result["rating"]}
