"""OTLP/HTTP traces: ``POST /v1/traces`` (binary protobuf or OTLP JSON, optionally gzipped).

Authentication: an API key as ``Authorization: Bearer <key>`` or ``x-api-key: <key>``; the key
needs the ``chat`` permission (roles agent, editor, admin, owner). Answers follow the OTLP/HTTP
specification: 200 with an ``ExportTraceServiceResponse`` (``partial_success`` naming the
rejected spans) once the whole request is durable in the ledger; 400 for bad data, 401/403,
413 for a body or batch over the limits, 415 for an unknown media type or encoding, 429 and
503 with ``Retry-After``. Error bodies are a ``google.rpc.Status`` in the request's encoding
(the JSON one also carries ChatLedger's ``error`` object). Every refusal is recorded.
"""

from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from chatledger.api.auth import client_ip
from chatledger.errors import (
    ChatLedgerError,
    Forbidden,
    InvalidInput,
    RateLimited,
    StorageError,
    Unauthenticated,
)
from chatledger.events import Actor, Outcome
from chatledger.identity.principal import Principal
from chatledger.identity.roles import Permission
from chatledger.integrations.otlp import (
    OtlpDecodeError,
    decode_json,
    decode_protobuf,
    export_response,
    map_spans,
    status_body,
)
from chatledger.integrations.service import IntegrationService
from chatledger.platform import Platform

router = APIRouter(tags=["integrations"])

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
CHATBOT_HEADER = "x-chatledger-chatbot-id"

# gRPC status codes for google.rpc.Status.code (OTLP clients do not act on them).
_GRPC = {400: 3, 401: 16, 403: 7, 413: 8, 415: 3, 429: 8, 503: 14, 500: 13}
_SERVICE_LOCK = threading.Lock()


@dataclass
class OtlpLimits:
    max_body_bytes: int = 16 * 1024 * 1024
    """Largest request body, before and after gzip decompression (OTLP recommends 20 MiB)."""
    max_spans: int = 10_000
    """Most spans in one request (the whole request is one ledger transaction)."""


LIMITS = OtlpLimits()


def integration_service(request: Request) -> IntegrationService:
    """The app's ingest service (built once per app, over the app's platform)."""
    state = request.app.state
    service: IntegrationService | None = getattr(state, "integrations", None)
    if service is None:
        with _SERVICE_LOCK:
            service = getattr(state, "integrations", None)
            if service is None:
                platform: Platform = state.platform
                service = IntegrationService(platform.ledger, platform.chatbots)
                state.integrations = service
    return service


class _Refusal(Exception):
    def __init__(
        self, status: int, code: str, message: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


def _error(request: Request, refusal: _Refusal, as_json: bool) -> Response:
    headers: dict[str, str] = {}
    if refusal.retry_after is not None:
        headers["Retry-After"] = str(max(1, int(refusal.retry_after + 0.999)))
    grpc = _GRPC.get(refusal.status, 2)
    if as_json:
        body = orjson.dumps(
            {
                "code": grpc,
                "message": refusal.message,
                "details": [],
                "error": {
                    "code": refusal.code,
                    "message": refusal.message,
                    "details": {},
                    "request_id": getattr(request.state, "request_id", None),
                },
            }
        )
        return Response(body, refusal.status, headers, media_type=JSON)
    return Response(status_body(grpc, refusal.message), refusal.status, headers, PROTOBUF)


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return ""
    key = request.headers.get("x-api-key", "").strip()
    return key or None


def _authenticate(request: Request, platform: Platform, service: IntegrationService) -> Principal:
    ip = client_ip(request)
    path = request.url.path
    try:
        platform.abuse.charge("ip", ip or "unknown", None, path, ip)
        token = _token(request)
        if not token:
            reason = "missing_credentials" if token is None else "malformed_authorization"
            service.record_refusal(
                "auth.login_failed",
                Actor("anonymous", ip or "unknown"),
                path,
                {"method": "none", "reason": reason},
                ip,
            )
            raise _Refusal(
                401,
                "unauthenticated",
                "authentication required: send 'Authorization: Bearer <api key>' "
                "or 'x-api-key: <api key>'",
            )
        principal = platform.identity.authenticate_key(token, ip=ip)  # records a failure
        request.state.principal = principal
        platform.abuse.charge(
            "api_key", principal.credential_id or principal.actor.id, principal.actor, path, ip
        )
        platform.abuse.observe_request(principal, path)
    except Unauthenticated as exc:
        raise _Refusal(401, "unauthenticated", f"{exc.message}") from exc
    except RateLimited as exc:
        raise _Refusal(429, "rate_limited", exc.message, retry_after=exc.retry_after) from exc
    if not principal.can(Permission.CHAT):
        service.record_refusal(
            "access.denied",
            principal.actor,
            path,
            {
                "reason": f"the {principal.role.value} role may not send traces",
                "permission": Permission.CHAT.value,
            },
            ip,
        )
        raise _Refusal(
            403, "forbidden", f"the {principal.role.value} role may not send traces (needs chat)"
        )
    return principal


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _Refusal(413, "payload_too_large", f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _Refusal(413, "payload_too_large", f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _gunzip(body: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
        if len(out) > limit or inflater.unconsumed_tail:
            raise _Refusal(
                413, "payload_too_large", f"the decompressed body is larger than {limit} bytes"
            )
        out += inflater.flush()
    except zlib.error as exc:
        raise _Refusal(400, "invalid_input", f"the body is not valid gzip: {exc}") from exc
    if not inflater.eof:
        raise _Refusal(400, "invalid_input", "the gzip body is truncated")
    if len(out) > limit:
        raise _Refusal(413, "payload_too_large", f"the decompressed body is larger than {limit}")
    return out


def _ingest(
    request: Request,
    service: IntegrationService,
    principal: Principal,
    body: bytes,
    as_json: bool,
) -> tuple[int, str, int]:
    try:
        spans = decode_json(body) if as_json else decode_protobuf(body)
    except OtlpDecodeError as exc:
        raise _Refusal(400, "invalid_input", str(exc)) from exc
    if len(spans) > LIMITS.max_spans:
        raise _Refusal(
            413,
            "payload_too_large",
            f"the request has {len(spans)} spans, more than {LIMITS.max_spans}: "
            "send smaller batches",
        )
    if not spans:
        return 0, "", 0
    header_bot = request.headers.get(CHATBOT_HEADER) or None
    named = {str(s.attributes.get(a) or s.resource.get(a) or "") for s in spans for a in _BOT_ATTRS}
    named.discard("")
    if header_bot:
        named.add(header_bot)
    known = service.chatbots_of(principal, named)
    records = list(map_spans(spans, known.__contains__, header_bot))
    results = service.ingest(
        principal, records, source="otlp", request_id=getattr(request.state, "request_id", None)
    )
    bad: dict[int, str] = {}
    for record, result in zip(records, results, strict=True):
        if result.status == "rejected" and record.span is not None:
            bad.setdefault(record.span.index, f"{result.code}: {result.message}")
    message = ""
    if bad:
        shown = "; ".join(f"span {i}: {why}" for i, why in list(bad.items())[:5])
        message = f"{len(bad)} of {len(spans)} spans were rejected ({shown})"
    return len(bad), message, len(spans)


_BOT_ATTRS = ("chatledger.chatbot.id", "chatledger.chatbot_id")


def _refusal_of(exc: ChatLedgerError) -> _Refusal:
    if isinstance(exc, RateLimited):
        return _Refusal(429, exc.code, exc.message, retry_after=exc.retry_after)
    if isinstance(exc, StorageError):
        return _Refusal(503, exc.code, exc.message, retry_after=1.0)
    if isinstance(exc, Forbidden):
        return _Refusal(403, exc.code, exc.message)
    if isinstance(exc, InvalidInput):
        return _Refusal(400, exc.code, exc.message)
    return _Refusal(exc.status if 400 <= exc.status < 600 else 500, exc.code, exc.message)


@router.post(
    "/v1/traces",
    summary="OTLP/HTTP trace export (protobuf or JSON): GenAI spans become ledger events",
    response_class=Response,
    responses={
        200: {
            "description": "ExportTraceServiceResponse, once the batch is durable",
            "content": {PROTOBUF: {}, JSON: {}},
        },
        400: {"description": "bad data (google.rpc.Status)"},
        401: {"description": "missing or wrong API key"},
        403: {"description": "the key's role lacks the chat permission"},
        413: {"description": "body or batch over the limits"},
        415: {"description": "unsupported Content-Type or Content-Encoding"},
        429: {"description": "rate limited (Retry-After)"},
        503: {"description": "the ledger cannot write now (Retry-After)"},
    },
)
async def export_traces(request: Request) -> Response:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    as_json = media == JSON
    platform: Platform = request.app.state.platform
    service = integration_service(request)
    principal: Principal | None = None
    try:
        principal = await run_in_threadpool(_authenticate, request, platform, service)
        if media not in (JSON, PROTOBUF):
            raise _Refusal(
                415,
                "unsupported_media_type",
                f"Content-Type must be {PROTOBUF} or {JSON}, not {media or 'missing'!r}",
            )
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("gzip", "identity", ""):
            raise _Refusal(
                415, "unsupported_media_type", f"Content-Encoding must be gzip, not {encoding!r}"
            )
        body = await _read_body(request, LIMITS.max_body_bytes)
        if encoding == "gzip":
            body = await run_in_threadpool(_gunzip, body, LIMITS.max_body_bytes)
        rejected, message, total = await run_in_threadpool(
            _ingest, request, service, principal, body, as_json
        )
    except _Refusal as refusal:
        await run_in_threadpool(_record_refusal, request, service, principal, refusal)
        return _error(request, refusal, as_json)
    except ChatLedgerError as exc:
        mapped = _refusal_of(exc)
        if mapped.status in (400, 413):
            await run_in_threadpool(_record_refusal, request, service, principal, mapped)
        return _error(request, mapped, as_json)
    response = Response(
        export_response(rejected, message, json=as_json),
        200,
        media_type=JSON if as_json else PROTOBUF,
    )
    response.headers["X-ChatLedger-Spans"] = f"{total - rejected}/{total}"
    return response


def _record_refusal(
    request: Request,
    service: IntegrationService,
    principal: Principal | None,
    refusal: _Refusal,
) -> None:
    if refusal.status in (401, 429) or (refusal.status == 403 and principal is not None):
        return  # recorded where it was decided (identity, rate limiter, access check)
    ip = client_ip(request)
    actor = principal.actor if principal is not None else Actor("anonymous", ip or "unknown")
    attributes: dict[str, Any] = {
        "reason": refusal.code,
        "status": refusal.status,
        "message": refusal.message[:300],
        "source": "otlp",
        "content_type": request.headers.get("content-type", "")[:100],
        "content_encoding": request.headers.get("content-encoding", "")[:50],
        "content_length": request.headers.get("content-length"),
        "request_id": getattr(request.state, "request_id", None),
    }
    service.record_refusal(
        "request.rejected", actor, request.url.path, attributes, ip, Outcome.DENIED
    )
