"""Ingest for chatbots built elsewhere: records sent by the Python SDK and OpenTelemetry spans
(OTLP/HTTP) mapped to the same ledger events the platform's own chatbots write."""
