"""``/audit``: checkpoints, proofs, verification."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from chatledger.api.auth import CurrentPrincipal, PlatformDep
from chatledger.events import Entity, Event, Outcome
from chatledger.identity.roles import Permission
from chatledger.identity.service import require

router = APIRouter(tags=["audit"])


@router.get("/audit/checkpoint")
def checkpoint(
    principal: CurrentPrincipal,
    platform: PlatformDep,
    format: str = Query("json", pattern="^(json|note)$", description="json or note."),
) -> Any:
    """The latest signed checkpoint (C2SP tlog-checkpoint); ``?format=note`` for the raw note."""
    require(principal, Permission.AUDIT_READ, "ledger", "checkpoint")
    row = platform.ledger.checkpoint()
    if format == "note":
        return PlainTextResponse(row.note)
    return {
        "size": row.size,
        "ts": row.ts,
        "note": row.note,
        "origin": platform.ledger.origin,
        "verifier_key": str(platform.ledger.verifier),
    }


@router.get("/audit/proof/{seq}")
def proof(seq: int, principal: CurrentPrincipal, platform: PlatformDep) -> dict[str, Any]:
    require(principal, Permission.AUDIT_READ, "ledger", str(seq))
    return platform.ledger.prove(seq).to_json()


@router.get("/audit/verify")
def verify(
    principal: CurrentPrincipal, platform: PlatformDep, live: bool = False
) -> dict[str, Any]:
    """Verify the whole ledger now; the result is itself recorded. With ``live=true``, from
    where the partitions still attached begin (after the oldest were archived; see
    ``chatledger ledger verify --live``)."""
    require(principal, Permission.AUDIT_READ, "ledger", "verify")
    start = platform.ledger.first_live_seq() if live else 0
    report = platform.ledger.verify(start=start)
    result = report.to_json()
    platform.ledger.append(
        Event(
            "ledger.verify" if report.ok else "ledger.tamper_detected",
            principal.actor,
            Entity("ledger", platform.ledger.origin),
            Outcome.SUCCESS if report.ok else Outcome.FAILURE,
            attributes={
                "ok": report.ok,
                "tree_size": report.size,
                "first_bad_seq": result["first_bad_seq"],
                "reason": result["reason"],
                "from_seq": start,
            },
        )
    )
    return result
