"""The running platform: settings, the ledger, and every domain service over it.

One object per process, built once at start-up and passed explicitly (to the API app
factory, to the CLI); nothing lives at module level.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from chatledger.chat.providers import ProviderRegistry
from chatledger.chat.service import ChatService
from chatledger.chatbots.service import ChatbotService
from chatledger.config import Settings
from chatledger.documents.service import DocumentService
from chatledger.identity.service import IdentityService
from chatledger.ledger.service import Ledger
from chatledger.runtime import open_ledger


@dataclass
class Platform:
    settings: Settings
    ledger: Ledger
    identity: IdentityService
    chatbots: ChatbotService
    documents: DocumentService
    chat: ChatService
    providers: ProviderRegistry
    guard: Any = None
    abuse: Any = None
    _stop: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def open(cls, settings: Settings) -> Platform:
        ledger = open_ledger(settings)
        chatbots = ChatbotService(ledger)
        providers = ProviderRegistry()
        platform = cls(
            settings=settings,
            ledger=ledger,
            identity=IdentityService(ledger),
            chatbots=chatbots,
            documents=DocumentService(ledger, chatbots),
            chat=ChatService(ledger, chatbots, providers, turn_slots=settings.chat_turn_slots),
            providers=providers,
        )
        from chatledger.api.abuse import AbuseControl, limits_from_settings
        from chatledger.chat.erasure import install_on_ledger as install_erasure
        from chatledger.chat.guard_adapter import install_guard
        from chatledger.guard.anomaly import AnomalyDetector
        from chatledger.guard.shared_anomaly import SharedAnomalyCounters
        from chatledger.guard.shared_limits import shared_limiter
        from chatledger.guard.shared_state import shared_db
        from chatledger.privacy.holds import install as install_holds

        # Rate limits and anomaly counts are the deployment's, shared by every process.
        guard_state = shared_db(ledger.store)
        anomalies = AnomalyDetector(
            shared=SharedAnomalyCounters(guard_state), pseudonym=ledger.subject_ref
        )
        adapter = install_guard(platform, anomalies)
        install_holds(platform)
        install_erasure(ledger)
        platform.abuse = AbuseControl(
            ledger,
            shared_limiter(
                ledger.store,
                limits_from_settings(settings.rate_limits),
                ledger.subject_ref,
                db=guard_state,
            ),
            adapter.anomalies,
        )
        return platform

    def start_background_jobs(self, every: float = 60.0) -> None:
        """Housekeeping while serving: abandon idle conversations, and the jobs of other
        domains (each module's ``start_jobs(platform, stop)`` runs its own threads)."""
        import importlib

        for module in ("chatledger.audit.forward", "chatledger.privacy.retention"):
            try:
                jobs = importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name != module:
                    raise
                continue
            start = getattr(jobs, "start_jobs", None)
            if start is not None:
                start(self, self._stop)

        def loop() -> None:
            while not self._stop.wait(every):
                try:
                    self.chat.abandon_idle()
                except Exception:  # keep the job alive; the next round retries
                    import logging

                    logging.getLogger(__name__).exception("idle-conversation job failed")

        threading.Thread(target=loop, name="housekeeping", daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self.providers.close()
        if self.abuse is not None:
            self.abuse.limiter.close()
            self.abuse.anomalies.close()
        self.ledger.close()
