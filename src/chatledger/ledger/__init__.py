"""The tamper-evident audit ledger: canonical entries, an RFC 9162 tree, signed checkpoints."""
