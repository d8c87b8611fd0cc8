"""Integrity: canonical JSON (RFC 8785) and content hashes (``canonical``), the RFC 9162 Merkle tree and its proofs
(``merkle``), C2SP signed-note checkpoints (``checkpoint``), and the repository's transparency log stored in the
database and served over HTTP (``log``, ``models``, ``routes``). Imports no other domain."""
