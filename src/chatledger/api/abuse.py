"""Rate limits and anomaly detection on the API, each finding and refusal a security event."""

from __future__ import annotations

import logging
from typing import Any

from chatledger.errors import ChatLedgerError, InvalidInput, RateLimited
from chatledger.events import SYSTEM, Actor, Entity, Event, Outcome
from chatledger.guard import AnomalyDetector, Finding, RateLimit, RateLimiter
from chatledger.guard.ratelimit import LIMIT_KINDS, LimitKind
from chatledger.identity.principal import Principal
from chatledger.ledger.service import Ledger

log = logging.getLogger(__name__)


def limits_from_settings(raw: dict[str, list[float]]) -> dict[LimitKind, RateLimit]:
    out: dict[LimitKind, RateLimit] = {}
    for kind in LIMIT_KINDS:
        if kind in raw:
            value = raw[kind]
            if not isinstance(value, list) or len(value) != 2:
                raise InvalidInput(f"rate_limits.{kind} must be [requests, per_seconds]")
            out[kind] = RateLimit(int(value[0]), float(value[1]))
    unknown = set(raw) - set(LIMIT_KINDS)
    if unknown:
        raise InvalidInput(f"unknown rate limit kind {sorted(unknown)[0]!r}")
    return out


class AbuseControl:
    def __init__(self, ledger: Ledger, limiter: RateLimiter, anomalies: AnomalyDetector) -> None:
        self.ledger = ledger
        self.limiter = limiter
        self.anomalies = anomalies

    def _record(self, events: list[Event]) -> None:
        if not events:
            return
        try:
            self.ledger.append_many(events)
        except ChatLedgerError:
            log.exception("could not record a security event")

    def charge(
        self, kind: LimitKind, key: str, actor: Actor | None, path: str, ip: str | None
    ) -> None:
        """Take one request from (kind, key); a refusal is recorded and raised as 429."""
        try:
            self.limiter.check(kind, key)
        except RateLimited as exc:
            named = self._named(kind, key)
            self._record(
                [
                    Event(
                        "guard.rate_limited",
                        actor or self.ledger.anonymous_actor(ip),
                        Entity("rate_limit", f"{kind}:{named}"[:200]),
                        Outcome.BLOCKED,
                        attributes={
                            "kind": kind,
                            "key": named,
                            "retry_after": exc.retry_after,
                            "path": path[:300],
                            "limit": exc.details.get("limit"),
                            "per_seconds": exc.details.get("per_seconds"),
                        },
                        payload={"ip": ip} if ip else None,
                    )
                ]
            )
            raise

    def observe_request(self, principal: Principal, path: str) -> None:
        key = principal.credential_id or principal.actor.id
        self._findings(self.anomalies.record_request(key), principal, {"path": path[:300]})

    def observe_access(self, principal: Principal, resource: str, resource_id: str) -> None:
        key = principal.credential_id or principal.actor.id
        found = self.anomalies.record_access(key, resource, resource_id)  # type: ignore[arg-type]
        self._findings(found, principal, {"resource": resource})

    def observe_failed_login(self, ip: str | None) -> None:
        found = self.anomalies.record_failed_login(ip or "unknown")
        self._findings(found, None, {}, address=ip or "unknown")

    def _named(self, kind: str, key: str) -> str:
        """How the record names a limited or observed key: an address only by its keyed
        pseudonym (the ledger cannot be edited, so personal data goes only in payloads,
        where erasure and retention reach it)."""
        return self.ledger.anonymous_actor(key).id if kind == "ip" else key

    def _findings(
        self,
        findings: list[Finding],
        principal: Principal | None,
        extra: dict[str, Any],
        *,
        address: str | None = None,
    ) -> None:
        events = []
        for f in findings:
            key = self._named("ip", f.key) if address is not None else f.key
            events.append(
                Event(
                    "guard.anomaly",
                    principal.actor if principal else SYSTEM,
                    Entity("anomaly", f"{f.kind.value}:{key}"[:200]),
                    Outcome.FLAGGED,
                    attributes={
                        **extra,
                        "kind": f.kind.value,
                        "severity": f.severity.value,
                        "key": key,
                        "details": f.details,
                    },
                    payload={"ip": address} if address not in (None, "unknown") else None,
                )
            )
        self._record(events)
