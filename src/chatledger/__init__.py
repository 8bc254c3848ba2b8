"""ChatLedger: a self-hosted RAG chatbot platform with a tamper-evident audit ledger."""

__version__ = "0.1.0"
