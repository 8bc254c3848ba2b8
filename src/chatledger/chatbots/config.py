"""A chatbot's configuration: validated models, flattening and diffs between versions."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chatledger.guard.policy import SAFE_REPLY

_STRICT = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSettings(BaseModel):
    model_config = _STRICT

    provider: Literal["offline", "openai"] = "offline"
    model: str = Field(default="offline-extractive-1", min_length=1, max_length=200)
    base_url: str | None = Field(default=None, max_length=2000)
    api_key: str | None = Field(default=None, max_length=500)
    temperature: float = Field(default=0.2, ge=0.0, le=2.0)
    max_tokens: int = Field(default=512, ge=1, le=32_000)
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    max_retries: int = Field(default=2, ge=0, le=10)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http:// or https:// URL")
        return value


class RetrievalSettings(BaseModel):
    model_config = _STRICT

    top_k: int = Field(default=4, ge=1, le=20)
    min_score: float = Field(default=0.15, ge=0.0, le=1.0)
    chunk_size: int = Field(default=900, ge=100, le=8000)
    chunk_overlap: int = Field(default=150, ge=0, le=4000)


class GuardrailSettings(BaseModel):
    model_config = _STRICT

    injection_policy: Literal["log", "warn", "block"] = "block"
    injection_threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    max_message_chars: int = Field(default=4000, ge=1, le=100_000)
    blocked_reply: str = Field(default=SAFE_REPLY, min_length=1, max_length=1000)


class AccessSettings(BaseModel):
    model_config = _STRICT

    public_widget: bool = False
    allowed_origins: list[str] = Field(default_factory=list, max_length=50)

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if not origin.startswith(("http://", "https://")) or origin.count("/") > 2:
                raise ValueError(f"{origin!r} is not an origin like https://example.com")
        return value


class ChatbotConfig(BaseModel):
    model_config = _STRICT

    system_prompt: str = Field(
        default="You are a helpful assistant. Answer only from the provided sources.",
        max_length=20_000,
    )
    model: ModelSettings = Field(default_factory=ModelSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    guardrails: GuardrailSettings = Field(default_factory=GuardrailSettings)
    access: AccessSettings = Field(default_factory=AccessSettings)
    idle_timeout_minutes: int = Field(default=30, ge=1, le=7 * 24 * 60)

    def public_view(self) -> dict[str, Any]:
        """The configuration as shown to users and written to the ledger: no secrets."""
        data = self.model_dump(mode="json")
        if data["model"].get("api_key"):
            data["model"]["api_key"] = "[set]"
        return data


def flatten(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        path = f"{prefix}{key}"
        if isinstance(item, dict):
            out.update(flatten(item, f"{path}."))
        else:
            out[path] = item
    return out


def diff(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """Changed leaves as ``{"path", "before", "after"}``, sorted by path."""
    a, b = flatten(before), flatten(after)
    return [
        {"path": path, "before": a.get(path), "after": b.get(path)}
        for path in sorted(a.keys() | b.keys())
        if a.get(path) != b.get(path)
    ]


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """JSON merge of a partial update into a full configuration (objects merge, rest replace)."""
    out = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
