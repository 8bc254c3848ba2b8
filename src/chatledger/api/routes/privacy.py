"""``/privacy``: retention policies and expiry runs, legal holds, data-subject erasure.
Everything here needs the privacy.manage permission, and every change is a ledger event."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from chatledger.api.auth import CurrentPrincipal, PlatformDep
from chatledger.api.pagination import check_limit, decode_cursor, encode_cursor
from chatledger.errors import InvalidInput, NotFound
from chatledger.identity.principal import Principal
from chatledger.identity.roles import Permission
from chatledger.identity.service import require, same_workspace
from chatledger.platform import Platform
from chatledger.privacy import holds as holds_mod
from chatledger.privacy import retention

router = APIRouter(tags=["privacy"])


def _manager(principal: Principal, platform: Platform, entity: str, entity_id: str) -> None:
    require(principal, Permission.PRIVACY_MANAGE, entity, entity_id)
    holds_mod.install(platform)  # idempotent: erasure refuses subjects under hold


def _chatbot_in_workspace(platform: Platform, principal: Principal, chatbot_id: str) -> None:
    bot = platform.chatbots.find(chatbot_id, include_deleted=True)
    if bot is None:
        raise NotFound(f"no chatbot {chatbot_id}")
    same_workspace(principal, bot.workspace_id, "chatbot", chatbot_id)


# -- retention ---------------------------------------------------------------------------------


class RetentionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    days: int | None = Field(
        description="Days to keep after the event; null keeps forever.", ge=1, le=36_500
    )
    chatbot_id: str | None = Field(default=None, max_length=200)


class RetentionRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # strict: a real run is destructive, so "no", "false", 0 or "off" are refused, never
    # read as false
    dry_run: StrictBool = True
    limit: int = Field(default=1000, ge=0, le=100_000)


@router.get("/privacy/retention")
def get_retention(
    principal: CurrentPrincipal, platform: PlatformDep, chatbot_id: str | None = None
) -> dict[str, Any]:
    """The policy in force for every rule (for one chatbot, or for all the workspace's
    chatbots), the built-in defaults, and the workspace's chatbots' own policies."""
    _manager(principal, platform, "retention_policy", chatbot_id or "*")
    if chatbot_id:
        _chatbot_in_workspace(platform, principal, chatbot_id)
    found = retention.policies(platform.ledger)
    workspace = principal.workspace_id
    return {
        "chatbot_id": chatbot_id,
        "workspace_id": workspace,
        "policies": [
            p.to_json() | {"applies_to": retention.RULES[p.rule]}
            for p in found.effective(chatbot_id, workspace)
        ],
        "defaults": retention.DEFAULT_DAYS,
        "chatbot_overrides": [p.to_json() for p in found.chatbot_overrides(workspace)],
    }


@router.put("/privacy/retention/{rule}")
def put_retention(
    rule: str, body: RetentionIn, principal: CurrentPrincipal, platform: PlatformDep
) -> dict[str, Any]:
    """Set a policy (``rule``: a category such as ``message`` or ``security``, or ``ip``) for
    one chatbot, or (no ``chatbot_id``) for all the workspace's chatbots. Recorded as
    ``retention.update`` with the policy before and after."""
    _manager(principal, platform, "retention_policy", rule)
    if body.chatbot_id:
        _chatbot_in_workspace(platform, principal, body.chatbot_id)
    return retention.set_policy(
        platform.ledger,
        principal.actor,
        rule,
        body.days,
        chatbot_id=body.chatbot_id,
        workspace_id=None if body.chatbot_id else principal.workspace_id,
    )


@router.delete("/privacy/retention/{rule}")
def delete_retention(
    rule: str, principal: CurrentPrincipal, platform: PlatformDep, chatbot_id: str | None = None
) -> dict[str, Any]:
    """Remove a policy: a chatbot's falls back to the workspace's, the workspace's to the
    deployment's, then to the built-in default."""
    _manager(principal, platform, "retention_policy", rule)
    if chatbot_id:
        _chatbot_in_workspace(platform, principal, chatbot_id)
    return retention.set_policy(
        platform.ledger,
        principal.actor,
        rule,
        None,
        chatbot_id=chatbot_id,
        workspace_id=None if chatbot_id else principal.workspace_id,
        reset=True,
    )


@router.post("/privacy/retention/run")
def run_retention(
    principal: CurrentPrincipal, platform: PlatformDep, body: RetentionRunIn | None = None
) -> dict[str, Any]:
    """Run expiry now for the workspace's chatbots (``dry_run`` defaults to true: list what
    would be erased). A real run erases payloads, never entries, and is recorded as
    ``privacy.retention_expired``. The server's own job covers the whole deployment."""
    body = body or RetentionRunIn()
    _manager(principal, platform, "retention_run", "now")
    report = retention.run_expiry(
        platform.ledger,
        principal.actor,
        dry_run=body.dry_run,
        workspace_id=principal.workspace_id,
    )
    return report.to_json(limit=body.limit)


# -- legal holds -------------------------------------------------------------------------------


class HoldIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    conversation_id: str | None = Field(default=None, max_length=200)
    subject: str | None = Field(default=None, max_length=200, description="User or visitor id.")
    chatbot_id: str | None = Field(default=None, max_length=200)
    reason: str = Field(min_length=1, max_length=2000)
    reference: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _one_target(self) -> HoldIn:
        given = [v for v in (self.conversation_id, self.subject, self.chatbot_id) if v]
        if len(given) != 1:
            raise ValueError("give exactly one of conversation_id, subject, chatbot_id")
        return self


class ReleaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)


def _hold_json(platform: Platform, hold: holds_mod.Hold) -> dict[str, Any]:
    out = hold.to_json()
    if hold.scope_type == "subject":
        out["subject"] = holds_mod.hold_subject(platform.ledger, hold)
    return out


def _visible(principal: Principal, hold: holds_mod.Hold) -> None:
    if hold.workspace_id is not None:
        same_workspace(principal, hold.workspace_id, "legal_hold", hold.id)


@router.post("/privacy/holds", status_code=201)
def place_hold(body: HoldIn, principal: CurrentPrincipal, platform: PlatformDep) -> dict[str, Any]:
    """Place a legal hold on a conversation, a user or visitor, or a chatbot: expiry and
    erasure of what it covers stop until it is released (``privacy.hold_placed``)."""
    if body.conversation_id:
        scope_type, target = "conversation", body.conversation_id
    elif body.subject:
        scope_type, target = "subject", body.subject
    else:
        scope_type, target = "chatbot", str(body.chatbot_id)
    _manager(principal, platform, "legal_hold", target)
    if scope_type == "conversation":
        platform.chat.get(principal, target)
    elif scope_type == "chatbot":
        _chatbot_in_workspace(platform, principal, target)
    hold = holds_mod.place_hold(
        platform.ledger,
        principal.actor,
        scope_type=scope_type,
        target=target,
        reason=body.reason,
        reference=body.reference,
        workspace_id=principal.workspace_id,
    )
    return _hold_json(platform, hold)


@router.get("/privacy/holds")
def list_holds(
    principal: CurrentPrincipal,
    platform: PlatformDep,
    status: str = "active",
    cursor: str | None = None,
    limit: int = Query(50),
) -> dict[str, Any]:
    """Legal holds by placement time (``status``: active, released or all)."""
    _manager(principal, platform, "legal_hold", "list")
    limit = check_limit(limit)
    found = holds_mod.list_holds(
        platform.ledger,
        status=status,
        workspace_id=principal.workspace_id,
        after=decode_cursor(cursor),
        limit=limit,
    )
    return {
        "items": [_hold_json(platform, h) for h in found],
        "next_cursor": encode_cursor(found[-1].id) if len(found) == limit else None,
    }


@router.get("/privacy/holds/{hold_id}")
def get_hold(hold_id: str, principal: CurrentPrincipal, platform: PlatformDep) -> dict[str, Any]:
    _manager(principal, platform, "legal_hold", hold_id)
    hold = holds_mod.get_hold(platform.ledger, hold_id)
    _visible(principal, hold)
    return _hold_json(platform, hold)


@router.post("/privacy/holds/{hold_id}/release")
def release_hold(
    hold_id: str, body: ReleaseIn, principal: CurrentPrincipal, platform: PlatformDep
) -> dict[str, Any]:
    """Release a legal hold (``privacy.hold_released``)."""
    _manager(principal, platform, "legal_hold", hold_id)
    _visible(principal, holds_mod.get_hold(platform.ledger, hold_id))
    hold = holds_mod.release_hold(platform.ledger, principal.actor, hold_id, body.reason)
    return _hold_json(platform, hold)


# -- erasure -----------------------------------------------------------------------------------


class ErasureIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: str = Field(min_length=1, max_length=200, description="User or visitor id.")
    reason: str = Field(default="", max_length=2000, description="E.g. the request reference.")


def _subject_in_workspace(platform: Platform, principal: Principal, subject: str) -> None:
    """Refuse erasing a subject who talked to another workspace's chatbots."""
    ref = platform.ledger.subject_ref(subject)
    rows = platform.ledger.store.query(
        "SELECT DISTINCT c.workspace_id FROM ledger_entries e JOIN chatbots c "
        "ON c.id = e.chatbot_id WHERE e.subject = ?",
        (ref,),
    )
    for (workspace_id,) in rows:
        same_workspace(principal, str(workspace_id), "subject", ref)


@router.post("/privacy/erasures", status_code=201)
def erase_subject(
    body: ErasureIn, principal: CurrentPrincipal, platform: PlatformDep
) -> dict[str, Any]:
    """Erase a data subject's personal content (GDPR art. 17): their keys are destroyed and
    their payloads deleted; entries stay, so the ledger still verifies. Refused with 409
    ``legal_hold`` while a hold covers the subject, one of their conversations, or a chatbot
    they talked to."""
    _manager(principal, platform, "subject", "erasure")
    if not body.subject.strip():
        raise InvalidInput("subject must not be blank")
    _subject_in_workspace(platform, principal, body.subject)
    receipt = platform.ledger.erase_subject(body.subject, principal.actor, reason=body.reason)
    attrs = platform.ledger.read(receipt.seq).entry.attributes
    return {
        "seq": receipt.seq,
        "ts": receipt.ts,
        "subject": attrs["subject"],
        "payloads_erased": attrs["payloads_erased"],
        "keys_destroyed": attrs["keys_destroyed"],
    }
