"""``/chatbots``: create, read, change (audited with before/after), delete; config history."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Query, Response

from chatledger.api.auth import CurrentPrincipal, PlatformDep
from chatledger.api.pagination import check_limit, decode_cursor, page
from chatledger.chatbots.config import ChatbotConfig
from chatledger.chatbots.service import MOMENT_HELP

router = APIRouter(tags=["chatbots"])


class ChatbotCreate(ChatbotConfig):
    name: str


@router.post("/chatbots", status_code=201)
def create_chatbot(
    body: ChatbotCreate, principal: CurrentPrincipal, platform: PlatformDep
) -> dict[str, Any]:
    """Create a chatbot with a system prompt and optional settings."""
    settings = body.model_dump(exclude={"name"}, exclude_unset=True)
    return platform.chatbots.create(principal, body.name, settings).to_json()


@router.get("/chatbots")
def list_chatbots(
    principal: CurrentPrincipal,
    platform: PlatformDep,
    cursor: str | None = None,
    limit: int = Query(50),
) -> dict[str, Any]:
    limit = check_limit(limit)
    bots = platform.chatbots.list_chatbots(principal, after=decode_cursor(cursor), limit=limit)
    return page([b.to_json() for b in bots], limit)


@router.get("/chatbots/{chatbot_id}")
def get_chatbot(
    chatbot_id: str, principal: CurrentPrincipal, platform: PlatformDep
) -> dict[str, Any]:
    return platform.chatbots.get(principal, chatbot_id).to_json()


@router.patch("/chatbots/{chatbot_id}")
def update_chatbot(
    chatbot_id: str,
    principal: CurrentPrincipal,
    platform: PlatformDep,
    changes: dict[str, Any] = Body(..., examples=[{"system_prompt": "Answer in French."}]),
) -> dict[str, Any]:
    """Change any settings (nested objects merge); the change is audited with before/after."""
    return platform.chatbots.update(principal, chatbot_id, dict(changes)).to_json()


@router.delete("/chatbots/{chatbot_id}", status_code=204)
def delete_chatbot(chatbot_id: str, principal: CurrentPrincipal, platform: PlatformDep) -> Response:
    platform.chatbots.delete(principal, chatbot_id)
    return Response(status_code=204)


@router.get("/chatbots/{chatbot_id}/config/versions")
def config_versions(
    chatbot_id: str, principal: CurrentPrincipal, platform: PlatformDep
) -> dict[str, Any]:
    return {"items": platform.chatbots.versions(principal, chatbot_id), "next_cursor": None}


@router.get("/chatbots/{chatbot_id}/config")
def config_at(
    chatbot_id: str,
    principal: CurrentPrincipal,
    platform: PlatformDep,
    at: str = Query(..., description=f"The moment: {MOMENT_HELP}."),
) -> dict[str, Any]:
    """The configuration in force at a past moment (ISO 8601 with Z or an offset, e.g.
    2026-11-28T15:00:00Z; without an offset it is UTC). Anything else is refused (422); a
    moment before the chatbot existed is not found (404)."""
    return platform.chatbots.version_at(principal, chatbot_id, at)


@router.get("/chatbots/{chatbot_id}/config/diff")
def config_diff(
    chatbot_id: str,
    principal: CurrentPrincipal,
    platform: PlatformDep,
    from_: int = Query(..., alias="from"),
    to: int = Query(...),
) -> dict[str, Any]:
    return {
        "from": from_,
        "to": to,
        "changes": platform.chatbots.version_diff(principal, chatbot_id, from_, to),
    }
