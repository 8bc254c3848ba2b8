"""What to do with a verdict: each chatbot's guard policy turns detections into actions.

``log``: record the verdict, change nothing. ``warn``: let the message through but mark it
(the console and the ledger show the mark). ``block``: refuse flagged messages with a safe
reply, and keep flagged document chunks out of the answer. Unflagged verdicts are allowed
under every policy; every verdict is recorded under every policy (that is the caller's job:
the decision carries the verdict so the ledger event can quote it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

from chatledger.errors import InvalidInput
from chatledger.guard.verdict import Verdict

SAFE_REPLY = "Sorry, I can't help with that request."
"""The reply to a blocked message unless the chatbot sets its own (``blocked_reply``)."""

T = TypeVar("T")


class GuardPolicy(StrEnum):
    LOG = "log"
    WARN = "warn"
    BLOCK = "block"


class GuardAction(StrEnum):
    ALLOW = "allow"  # not flagged, or flagged under ``log``
    WARN = "warn"  # flagged under ``warn``: allowed and marked
    BLOCK = "block"  # flagged under ``block``: refused


@dataclass(frozen=True, slots=True)
class GuardDecision:
    """The action for one verdict under one policy."""

    action: GuardAction
    policy: GuardPolicy
    verdict: Verdict
    reply: str | None = None  # the safe reply to send instead, when blocked

    @property
    def allowed(self) -> bool:
        return self.action is not GuardAction.BLOCK

    @property
    def marked(self) -> bool:
        """True when the text goes through but is shown as suspicious (``warn``)."""
        return self.action is GuardAction.WARN

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action.value,
            "policy": self.policy.value,
            "allowed": self.allowed,
            "marked": self.marked,
            "verdict": self.verdict.to_dict(),
        }


def parse_policy(value: str | GuardPolicy) -> GuardPolicy:
    """Parse a stored or user-supplied policy name; raises :class:`InvalidInput`."""
    try:
        return GuardPolicy(value)
    except ValueError:
        raise InvalidInput(
            "unknown guard policy",
            details={"policy": value, "allowed": [p.value for p in GuardPolicy]},
        ) from None


def decide(
    verdict: Verdict, policy: GuardPolicy | str, *, reply: str = SAFE_REPLY
) -> GuardDecision:
    """Decide what happens to the scanned text under ``policy``."""
    policy = parse_policy(policy)
    if not verdict.flagged or policy is GuardPolicy.LOG:
        return GuardDecision(GuardAction.ALLOW, policy, verdict)
    if policy is GuardPolicy.WARN:
        return GuardDecision(GuardAction.WARN, policy, verdict)
    return GuardDecision(GuardAction.BLOCK, policy, verdict, reply=reply)


@dataclass(frozen=True, slots=True)
class ChunkFilterResult(Generic[T]):
    """Chunks to use in the answer, and the decisions for the ones kept out."""

    kept: tuple[T, ...]
    excluded: tuple[tuple[T, GuardDecision], ...]
    decisions: tuple[GuardDecision, ...]  # one per input chunk, in input order


def filter_chunks(
    chunks: Sequence[T], verdicts: Sequence[Verdict], policy: GuardPolicy | str
) -> ChunkFilterResult[T]:
    """Drop flagged document chunks under ``block``; keep everything under log/warn.

    ``verdicts[i]`` is the verdict for ``chunks[i]`` (scanned with ``source="document"``).
    """
    if len(chunks) != len(verdicts):
        raise InvalidInput(
            "one verdict per chunk is required",
            details={"chunks": len(chunks), "verdicts": len(verdicts)},
        )
    kept: list[T] = []
    excluded: list[tuple[T, GuardDecision]] = []
    decisions: list[GuardDecision] = []
    for chunk, verdict in zip(chunks, verdicts, strict=True):
        decision = decide(verdict, policy)
        decisions.append(decision)
        if decision.allowed:
            kept.append(chunk)
        else:
            excluded.append((chunk, decision))
    return ChunkFilterResult(tuple(kept), tuple(excluded), tuple(decisions))
