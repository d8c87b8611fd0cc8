"""The append-only access log: who read or wrote which passport data, when, why and with what outcome."""
