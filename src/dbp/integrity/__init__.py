"""Integrity primitives: canonical JSON (RFC 8785) and content hashes. Imports no other domain."""
