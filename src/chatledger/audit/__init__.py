"""Investigation: search, exports and SIEM forwarding, evidence packs, analytics."""
