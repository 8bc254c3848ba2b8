"""Integrity: the latest signed checkpoint, tree size, verifier key, where checkpoints are
published, the last verification, and "verify now" running in a thread with its progress
polled by the page."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

from chatledger.console.web import ConsoleRoute, Ctx, console_ctx, redirect, render
from chatledger.errors import ChatLedgerError, Conflict
from chatledger.events import Entity, Event, Outcome
from chatledger.identity.principal import Principal
from chatledger.identity.roles import Permission
from chatledger.identity.service import require
from chatledger.ledger.service import Ledger

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
CtxDep = Annotated[Ctx, Depends(console_ctx)]


@dataclass
class VerifyJob:
    started_by: str
    started_at: float = field(default_factory=time.time)
    done: int = 0
    total: int = 0
    finished: bool = False
    result: dict[str, Any] | None = None
    error: str = ""

    @property
    def percent(self) -> int:
        if self.finished:
            return 100
        return int(self.done * 100 / self.total) if self.total else 0


class Verifier:
    """At most one verification at a time per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.job: VerifyJob | None = None

    def start(self, ledger: Ledger, principal: Principal) -> VerifyJob:
        with self._lock:
            if self.job is not None and not self.job.finished:
                raise Conflict("a verification is already running")
            job = VerifyJob(principal.actor.id, total=ledger.size())
            self.job = job
        threading.Thread(
            target=self._run, args=(ledger, principal, job), name="console-verify", daemon=True
        ).start()
        return job

    @staticmethod
    def _run(ledger: Ledger, principal: Principal, job: VerifyJob) -> None:
        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        try:
            report = ledger.verify(progress=progress)
            result = report.to_json()
            job.result = result
            ledger.append(
                Event(
                    "ledger.verify" if report.ok else "ledger.tamper_detected",
                    principal.actor,
                    Entity("ledger", ledger.origin),
                    Outcome.SUCCESS if report.ok else Outcome.FAILURE,
                    attributes={
                        "ok": report.ok,
                        "tree_size": report.size,
                        "first_bad_seq": result["first_bad_seq"],
                        "reason": result["reason"],
                        "via": "console",
                    },
                )
            )
        except ChatLedgerError as exc:
            job.error = exc.message
        except Exception as exc:  # shown on the page; the thread must not die silently
            job.error = f"verification failed: {type(exc).__name__}"
        finally:
            job.finished = True


def verifier_of(ctx: Ctx) -> Verifier:
    state = ctx.request.app.state
    found: Verifier | None = getattr(state, "console_verifier", None)
    if found is None:
        found = Verifier()
        state.console_verifier = found
    return found


def last_verification(ledger: Ledger) -> dict[str, Any] | None:
    rows = ledger.store.query(
        "SELECT seq FROM ledger_entries WHERE action IN ('ledger.verify', "
        "'ledger.tamper_detected') ORDER BY seq DESC LIMIT 1"
    )
    if not rows:
        return None
    entry = ledger.entry(int(rows[0][0]))
    return {"seq": entry.seq, "ts": entry.ts, "actor": entry.actor, **entry.attributes}


@router.get("/console/integrity")
def integrity(ctx: CtxDep) -> Response:
    require(ctx.principal, Permission.AUDIT_READ, "ledger", "integrity")
    ledger = ctx.platform.ledger
    settings = ctx.platform.settings
    context = {
        "checkpoint": ledger.latest_checkpoint(),
        "size": ledger.size(),
        "origin": ledger.origin,
        "verifier_key": str(ledger.verifier),
        "publish_dirs": settings.publish_dirs,
        "publish_urls": settings.publish_urls,
        "checkpoint_every": settings.checkpoint_every,
        "checkpoint_interval": settings.checkpoint_interval,
        "last": last_verification(ledger),
        "job": verifier_of(ctx).job,
    }
    return render(ctx.request, "integrity.html", context, ctx=ctx)


@router.post("/console/integrity/verify")
def verify_now(ctx: CtxDep) -> Response:
    require(ctx.principal, Permission.AUDIT_READ, "ledger", "verify")
    job = verifier_of(ctx).start(ctx.platform.ledger, ctx.principal)
    if not ctx.htmx:
        return redirect(ctx.request, "/console/integrity")
    return render(ctx.request, "_verify.html", {"job": job}, ctx=ctx)


@router.get("/console/integrity/verify")
def verify_status(ctx: CtxDep) -> Response:
    require(ctx.principal, Permission.AUDIT_READ, "ledger", "verify")
    return render(ctx.request, "_verify.html", {"job": verifier_of(ctx).job}, ctx=ctx)
