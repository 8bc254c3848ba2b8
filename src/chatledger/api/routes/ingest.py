"""The SDK's ingest endpoint: ``POST /api/v1/ingest/events`` (records from chatbots built
elsewhere, each with an idempotency key; see :mod:`chatledger.integrations.records`)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from chatledger.api.auth import CurrentPrincipal
from chatledger.api.routes.otlp import integration_service
from chatledger.errors import InvalidInput, PayloadTooLarge
from chatledger.integrations.records import parse_sdk_record

router = APIRouter(tags=["integrations"])

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_RECORDS = 1000


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLarge(
            f"the body is larger than {MAX_BODY_BYTES} bytes", details={"limit": MAX_BODY_BYTES}
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise PayloadTooLarge(
                f"the body is larger than {MAX_BODY_BYTES} bytes",
                details={"limit": MAX_BODY_BYTES},
            )
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/ingest/events")
async def ingest_events(request: Request, principal: CurrentPrincipal) -> dict[str, Any]:
    """Record a batch of SDK records (conversation start and end, user messages, retrievals,
    model calls, answers, feedback, resolution, outcomes) in one ledger transaction.

    Body: ``{"records": [{"key", "type", "chatbot_id", "conversation_id", "occurred_at",
    "data"}]}`` (at most 1000 records, 8 MiB). Answered once durable, with one result per
    record in order: ``created`` or ``duplicate`` (the key was seen before: the original seq)
    with its ``seq``, or ``rejected`` with an ``error``. Needs the chat permission.
    """
    body = await _body(request)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("records"), list):
        raise InvalidInput('the body must be an object {"records": [...]}')
    raw = data["records"]
    if len(raw) > MAX_RECORDS:
        raise PayloadTooLarge(
            f"at most {MAX_RECORDS} records per request", details={"limit": MAX_RECORDS}
        )
    records = [parse_sdk_record(item, i) for i, item in enumerate(raw)]
    service = integration_service(request)
    results = await run_in_threadpool(
        service.ingest,
        principal,
        records,
        source="sdk",
        request_id=getattr(request.state, "request_id", None),
    )
    return {
        "results": [r.to_json() for r in results],
        "created": sum(r.status == "created" for r in results),
        "duplicates": sum(r.status == "duplicate" for r in results),
        "rejected": sum(r.status == "rejected" for r in results),
    }
