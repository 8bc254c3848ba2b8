"""The security guard: prompt-injection detection, guard policies, rate limits, anomalies.

Pure Python, no I/O: callers record verdicts, decisions and findings in the ledger.

    from chatledger.guard import default_detector, decide, GuardPolicy
    verdict = default_detector.scan(message, source="user")
    decision = decide(verdict, GuardPolicy.BLOCK)
"""

from chatledger.guard.anomaly import (
    AnomalyDetector,
    AnomalyThresholds,
    Finding,
    FindingKind,
    Ladder,
    Severity,
)
from chatledger.guard.detector import (
    DEFAULT_THRESHOLD,
    DETECTOR_NAME,
    RULESET_VERSION,
    InjectionDetector,
    default_detector,
    scan,
)
from chatledger.guard.embeddings import EmbeddingLayer, Encoder, load_default_layer
from chatledger.guard.policy import (
    SAFE_REPLY,
    ChunkFilterResult,
    GuardAction,
    GuardDecision,
    GuardPolicy,
    decide,
    filter_chunks,
    parse_policy,
)
from chatledger.guard.ratelimit import (
    DEFAULT_LIMITS,
    LIMIT_KINDS,
    LimitKind,
    RateLimit,
    RateLimiter,
)
from chatledger.guard.verdict import Layer, Match, Source, Verdict

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_THRESHOLD",
    "DETECTOR_NAME",
    "LIMIT_KINDS",
    "RULESET_VERSION",
    "SAFE_REPLY",
    "AnomalyDetector",
    "AnomalyThresholds",
    "ChunkFilterResult",
    "EmbeddingLayer",
    "Encoder",
    "Finding",
    "FindingKind",
    "GuardAction",
    "GuardDecision",
    "GuardPolicy",
    "InjectionDetector",
    "Ladder",
    "Layer",
    "LimitKind",
    "Match",
    "RateLimit",
    "RateLimiter",
    "Severity",
    "Source",
    "Verdict",
    "decide",
    "default_detector",
    "filter_chunks",
    "load_default_layer",
    "parse_policy",
    "scan",
]
