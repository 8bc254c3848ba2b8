"""Wires the guard (pure detection, in chatledger.guard) into the chat path and ingestion:
scans, applies each chatbot's policy, and turns verdicts and anomaly findings into events."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from chatledger.chat.guarding import Screening
from chatledger.chatbots.service import Chatbot
from chatledger.events import SYSTEM, Entity, Event, Outcome
from chatledger.guard import AnomalyDetector, Finding, InjectionDetector, Verdict, decide
from chatledger.identity.principal import Principal
from chatledger.rag.chunking import Chunk
from chatledger.rag.retrieval import Hit

if TYPE_CHECKING:
    from chatledger.platform import Platform

_CACHE = 20_000


def _verdict_attrs(verdict: Verdict, threshold: float, policy: str, action: str) -> dict[str, Any]:
    return {
        "detector": verdict.detector,
        "detector_version": verdict.version,
        "score": round(verdict.score, 6),
        "threshold": threshold,
        "flagged": verdict.score >= threshold,
        "source": verdict.source,
        "policy": policy,
        "action": action,
        "rules": [
            {"rule": m.rule_id, "layer": m.layer, "weight": m.weight} for m in verdict.matches
        ],
    }


def finding_event(finding: Finding, principal: Principal | None, extra: dict[str, Any]) -> Event:
    actor = principal.actor if principal is not None else SYSTEM
    return Event(
        "guard.anomaly",
        actor,
        Entity("anomaly", f"{finding.kind.value}:{finding.key}"[:200]),
        Outcome.FLAGGED,
        attributes={
            **extra,
            "kind": finding.kind.value,
            "severity": finding.severity.value,
            "key": finding.key,
            "details": finding.details,
        },
    )


class GuardAdapter:
    def __init__(self, detector: InjectionDetector, anomalies: AnomalyDetector) -> None:
        self.detector = detector
        self.anomalies = anomalies
        self._chunk_verdicts: OrderedDict[str, Verdict] = OrderedDict()
        self._lock = threading.Lock()

    def _decision(self, bot: Chatbot, verdict: Verdict) -> tuple[bool, str]:
        guard = bot.config.guardrails
        flagged = verdict.score >= guard.injection_threshold
        if not flagged:
            return False, "allow"
        decision = decide(_reflag(verdict, True), guard.injection_policy, reply=guard.blocked_reply)
        return True, decision.action.value

    def screen_message(
        self, principal: Principal, bot: Chatbot, conversation_id: str, subject: str, text: str
    ) -> Screening:
        verdict = self.detector.scan(text, source="user")
        guard = bot.config.guardrails
        flagged, action = self._decision(bot, verdict)
        attrs = _verdict_attrs(verdict, guard.injection_threshold, guard.injection_policy, action)
        screening = Screening(verdict=attrs)
        if not flagged:
            return screening
        common = {"chatbot_id": bot.id, "conversation_id": conversation_id}
        excerpts = [m.excerpt for m in verdict.matches]
        screening.events.append(
            Event(
                "guard.injection_detected",
                principal.actor,
                Entity("conversation", conversation_id),
                Outcome.BLOCKED if action == "block" else Outcome.FLAGGED,
                subject=subject,
                attributes={**common, **attrs},
                payload={"excerpts": excerpts},
            )
        )
        if action == "block":
            screening.blocked = True
            screening.events.append(
                Event(
                    "guard.request_blocked",
                    principal.actor,
                    Entity("conversation", conversation_id),
                    Outcome.BLOCKED,
                    subject=subject,
                    attributes={
                        **common,
                        "reason": "prompt_injection",
                        "score": attrs["score"],
                        "policy": guard.injection_policy,
                    },
                )
            )
        elif action == "warn":
            screening.warned = True
        for finding in self.anomalies.record_injection(conversation_id, _reflag(verdict, True)):
            screening.events.append(finding_event(finding, principal, common))
        return screening

    def _scan_chunk(self, sha256: str, text: str) -> Verdict:
        with self._lock:
            cached = self._chunk_verdicts.get(sha256)
            if cached is not None:
                self._chunk_verdicts.move_to_end(sha256)
                return cached
        verdict = self.detector.scan(text, source="document")
        with self._lock:
            self._chunk_verdicts[sha256] = verdict
            while len(self._chunk_verdicts) > _CACHE:
                self._chunk_verdicts.popitem(last=False)
        return verdict

    def screen_hits(
        self, principal: Principal, bot: Chatbot, conversation_id: str, hits: list[Hit]
    ) -> tuple[list[Hit], list[Event]]:
        kept: list[Hit] = []
        events: list[Event] = []
        guard = bot.config.guardrails
        for hit in hits:
            verdict = self._scan_chunk(hit.sha256, hit.text)
            flagged, action = self._decision(bot, verdict)
            if flagged:
                attrs = _verdict_attrs(
                    verdict, guard.injection_threshold, guard.injection_policy, action
                )
                events.append(
                    Event(
                        "guard.injection_detected",
                        SYSTEM,
                        Entity("chunk", hit.chunk_id),
                        Outcome.BLOCKED if action == "block" else Outcome.FLAGGED,
                        attributes={
                            "chatbot_id": bot.id,
                            "conversation_id": conversation_id,
                            "document_id": hit.document_id,
                            "document_version": hit.document_version,
                            "chunk_id": hit.chunk_id,
                            "chunk_sha256": hit.sha256,
                            "stage": "retrieval",
                            **attrs,
                        },
                    )
                )
            if action != "block":
                kept.append(hit)
        return kept, events

    def screen_chunks(
        self, principal: Principal, bot: Chatbot, chunks: list[Chunk]
    ) -> tuple[set[int], list[Event]]:
        """At ingestion: chunks kept out of retrieval under ``block``, and their events."""
        excluded: set[int] = set()
        events: list[Event] = []
        guard = bot.config.guardrails
        for chunk in chunks:
            verdict = self._scan_chunk(chunk.sha256, chunk.text)
            flagged, action = self._decision(bot, verdict)
            if not flagged:
                continue
            attrs = _verdict_attrs(
                verdict, guard.injection_threshold, guard.injection_policy, action
            )
            events.append(
                Event(
                    "guard.injection_detected",
                    principal.actor,
                    Entity("chunk", chunk.sha256),
                    Outcome.BLOCKED if action == "block" else Outcome.FLAGGED,
                    attributes={
                        "chatbot_id": bot.id,
                        "chunk_index": chunk.index,
                        "chunk_sha256": chunk.sha256,
                        "stage": "ingestion",
                        **attrs,
                    },
                )
            )
            if action == "block":
                excluded.add(chunk.index)
        return excluded, events


def _reflag(verdict: Verdict, flagged: bool) -> Verdict:
    import dataclasses

    return dataclasses.replace(verdict, flagged=flagged)


def install_guard(platform: Platform, anomalies: AnomalyDetector | None = None) -> GuardAdapter:
    # The similarity layer joins the rules when the embeddings extra is installed (loaded from
    # disk on first use; CHATLEDGER_GUARD_EMBEDDINGS=off leaves it out).
    adapter = GuardAdapter(InjectionDetector(embeddings="auto"), anomalies or AnomalyDetector())
    platform.chat.guard = adapter

    def chunk_screen(principal: Principal, chatbot_id: str, chunks: list[Chunk]) -> set[int]:
        bot = platform.chatbots.get(principal, chatbot_id)
        excluded, events = adapter.screen_chunks(principal, bot, chunks)
        if events:
            platform.ledger.append_many(events)
        return excluded

    platform.documents.chunk_screen = chunk_screen
    platform.guard = adapter
    return adapter
