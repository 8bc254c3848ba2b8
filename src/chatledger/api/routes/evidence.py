"""``POST /audit/evidence``: an evidence pack (zip) for a conversation, a data subject or a
time range; the export is recorded (``audit.evidence``) before the pack is built."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from chatledger.api.auth import CurrentPrincipal, PlatformDep
from chatledger.api.errors import request_id
from chatledger.audit.evidence import Custodian, EntryFilter, EvidenceScope, build_evidence_pack
from chatledger.identity.principal import Principal
from chatledger.identity.roles import Permission
from chatledger.identity.service import require
from chatledger.platform import Platform

router = APIRouter(tags=["audit"])


class EvidenceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    conversation_id: str | None = Field(default=None, max_length=200)
    subject: str | None = Field(
        default=None, max_length=200, description="A user or visitor id: everything about them."
    )
    from_: str | None = Field(
        default=None, alias="from", max_length=40, description="ISO 8601 date or time (UTC)."
    )
    to: str | None = Field(default=None, max_length=40, description="Inclusive end of the range.")
    reason: str = Field(default="", max_length=2000, description="Kept in the custody record.")


def workspace_filter(platform: Platform, principal: Principal) -> EntryFilter:
    """Entries of this workspace's chatbots, and entries of no chatbot that name no other
    workspace."""
    bots = {
        str(r[0])
        for r in platform.ledger.store.query(
            "SELECT id FROM chatbots WHERE workspace_id = ?", (principal.workspace_id,)
        )
    }

    def allowed(chatbot_id: str | None, attributes: dict[str, Any]) -> bool:
        if chatbot_id is not None:
            return chatbot_id in bots
        workspace = attributes.get("workspace_id")
        return workspace is None or workspace == principal.workspace_id

    return allowed


@router.post(
    "/audit/evidence",
    response_class=FileResponse,
    responses={200: {"content": {"application/zip": {}}, "description": "The evidence pack."}},
)
def evidence(
    body: EvidenceRequest, request: Request, principal: CurrentPrincipal, platform: PlatformDep
) -> FileResponse:
    """Build an evidence pack: the replay as JSON and HTML, the ledger entries with inclusion
    proofs to a signed checkpoint, the verifier key, payload salts and bytes, a chain-of-custody
    record and a signed manifest. Needs the audit.export permission."""
    target = body.conversation_id or body.subject or "range"
    require(principal, Permission.AUDIT_EXPORT, "evidence", target)
    if body.conversation_id:
        platform.chat.get(principal, body.conversation_id)  # exists, and in this workspace
    scope = EvidenceScope(body.conversation_id, body.subject, body.from_, body.to)
    scope.normalized()
    custodian = Custodian(principal.actor, "api", body.reason, {"request_id": request_id(request)})
    folder = Path(tempfile.mkdtemp(prefix="chatledger-evidence-"))
    try:
        out = folder / "evidence.zip"
        result = build_evidence_pack(
            platform.ledger,
            scope,
            custodian,
            out,
            entry_filter=workspace_filter(platform, principal),
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return FileResponse(
        out,
        media_type="application/zip",
        filename=f"evidence-{result.pack_id}.zip",
        headers={"X-Evidence-Pack": result.pack_id, "X-Ledger-Seq": str(result.event_seq)},
        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
    )
