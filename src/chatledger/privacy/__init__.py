"""Personal data: payload encryption under per-subject keys, redaction, erasure."""
