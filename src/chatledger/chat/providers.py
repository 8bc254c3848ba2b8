"""Model providers for a chatbot's settings, reused across requests (one HTTP pool each)."""

from __future__ import annotations

import threading

from chatledger.chatbots.config import ModelSettings
from chatledger.rag.offline import OfflineResponder
from chatledger.rag.openai_compat import OpenAICompatibleProvider
from chatledger.rag.providers import Provider


class ProviderRegistry:
    def __init__(self) -> None:
        self._cache: dict[str, Provider] = {}
        self._lock = threading.Lock()

    def for_settings(self, settings: ModelSettings, min_score: float) -> Provider:
        key = settings.model_dump_json() + f"|{min_score}"
        with self._lock:
            provider = self._cache.get(key)
            if provider is None:
                provider = self._build(settings, min_score)
                self._cache[key] = provider
            return provider

    @staticmethod
    def _build(settings: ModelSettings, min_score: float) -> Provider:
        if settings.provider == "offline":
            return OfflineResponder(min_score=min_score, model=settings.model)
        if not settings.base_url:
            from chatledger.errors import InvalidInput

            raise InvalidInput("the chatbot's model provider needs a base_url")
        return OpenAICompatibleProvider(
            base_url=settings.base_url,
            model=settings.model,
            api_key=settings.api_key,
            timeout=settings.timeout_seconds,
            max_retries=settings.max_retries,
        )

    def close(self) -> None:
        with self._lock:
            for provider in self._cache.values():
                provider.close()
            self._cache.clear()
