"""Verification of an evidence bundle (``evidence.Bundle``), offline, as numbered steps with a verdict each.

1. ``bundle``      — the bundle is well-formed (``evidence.parse_bundle``);
2. ``canonical``   — ``document`` is RFC 8785 canonical JSON of the passport it names;
3. ``contentHash`` — SHA-256 of ``document`` is what the log leaf commits to (``sha256`` for the full version,
   ``publicSha256`` for the public view), and the leaf names this passport version;
4. ``signature``   — the full version's JWS verifies with the key its ``kid`` names, that key is the one the
   leaf commits to, and it was the repository's signing key at the version's time (public view: not
   applicable — the public view is authenticated through steps 5 and 6);
5. ``inclusion``   — the leaf is in the checkpoint's tree (RFC 9162 inclusion proof);
6. ``checkpoint``  — the checkpoint note is signed by a repository key for the bundle's origin;
7. ``keys``        — the keys used are ones the verifier trusts independently (pinned, or fetched from the
   repository's ``/api/v1/log/keys``, which also gives each key's signing period); without such keys: ``warn``
   (the bundle vouches for itself);
8. ``consistency`` — the checkpoint is consistent with one the verifier already trusts (same root at the same
   size, or a consistency proof between the two sizes); without one: ``skipped``.

Every step runs (so a report names every problem), a step whose inputs failed says ``not-reached``. A bundle is
*consistent* if no step says ``fail``, and *valid* only if it is consistent and its keys passed step 7: anyone can
make a self-consistent bundle with a key of their own (``verdict``: ``valid``, ``unauthenticated``, ``invalid``).
Messages say what was expected and what was found. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from dbp.errors import ProofError, VerificationError
from dbp.integrity import log, merkle, signing
from dbp.integrity.canonical import CanonicalizationError, canonical_bytes
from dbp.integrity.checkpoint import (
    Checkpoint,
    VerifierKey,
    parse_checkpoint,
    parse_note,
    verify_checkpoint,
)
from dbp.integrity.evidence import Bundle, jwk_key, parse_bundle

PASS, FAIL, WARN, SKIPPED, NOT_REACHED, NOT_APPLICABLE = "pass", "fail", "warn", "skipped", "not-reached", "n/a"
STEPS = ("bundle", "canonical", "contentHash", "signature", "inclusion", "checkpoint", "keys", "consistency")


@dataclass(frozen=True)
class Step:
    number: int
    name: str
    verdict: str
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"step": self.number, "name": self.name, "verdict": self.verdict, "detail": self.detail}


@dataclass
class Report:
    steps: list[Step] = field(default_factory=list)
    dpp_id: str | None = None
    version: int | None = None
    view: str | None = None

    @property
    def consistent(self) -> bool:
        """No step failed: the bundle agrees with itself (and with whatever the verifier trusts)."""
        return len(self.steps) == len(STEPS) and all(s.verdict != FAIL for s in self.steps)

    @property
    def valid(self) -> bool:
        """Consistent AND the keys were ones the verifier trusts independently: a bundle that only vouches for
        itself (anyone can make one with their own key) is never valid."""
        return self.consistent and self.steps[STEPS.index("keys")].verdict == PASS

    @property
    def verdict(self) -> str:
        return "valid" if self.valid else "unauthenticated" if self.consistent else "invalid"

    @property
    def first_failure(self) -> Step | None:
        return next((s for s in self.steps if s.verdict == FAIL), None)

    def as_json(self) -> dict[str, Any]:
        failed = self.first_failure
        return {"valid": self.valid, "verdict": self.verdict, "dppId": self.dpp_id, "version": self.version,
                "view": self.view, "failedStep": None if failed is None else failed.name,
                "steps": [s.as_json() for s in self.steps]}

    def add(self, verdict: str, detail: str) -> None:
        n = len(self.steps)
        self.steps.append(Step(n + 1, STEPS[n], verdict, detail))


@dataclass(frozen=True)
class Trusted:
    """What the verifier trusts independently of the bundle: repository keys (raw Ed25519, by kid; None: none
    pinned), and a signed checkpoint note it saw before with the consistency proof between its size and the
    bundle's (either direction; empty when the sizes are equal)."""

    keys: dict[str, bytes] | None = None
    checkpoint: str | None = None
    consistency_proof: Sequence[bytes] = ()
    # kid -> (createdAt, retiredAt or None): when each trusted key signed. Without it the bundle's own periods
    # are used, and a bundle can then claim any period for a key (the keys step says so).
    periods: dict[str, tuple[str, str | None]] | None = None


def _run(report: Report, check: Callable[[], tuple[str, str]]) -> bool:
    """Run one step; any refusal is that step's failure (fail closed). True if it did not fail."""
    try:
        verdict, detail = check()
    except (VerificationError, ValueError) as exc:
        verdict, detail = FAIL, str(exc)
    report.add(verdict, detail)
    return verdict != FAIL


def verify_bundle(data: bytes | str | dict[str, Any] | Bundle, *, trusted: Trusted | None = None) -> Report:
    """Check a bundle step by step (module doc); never raises for a bad bundle — the report says why."""
    trusted = trusted or Trusted()
    report = Report()
    bundle: Bundle | None = None

    def parse() -> tuple[str, str]:
        nonlocal bundle
        bundle = data if isinstance(data, Bundle) else parse_bundle(data)
        report.dpp_id, report.version, report.view = bundle.dpp_id, bundle.version, bundle.view
        return PASS, f"{bundle.view} view of version {bundle.version} of {bundle.dpp_id}, {len(bundle.keys)} key(s)"

    if not _run(report, parse) or bundle is None:
        for _ in STEPS[1:]:
            report.add(NOT_REACHED, "the bundle could not be read")
        return report
    b: Bundle = bundle
    leaf: log.Leaf | None = None
    cp: Checkpoint | None = None

    def canonical() -> tuple[str, str]:
        try:
            parsed = orjson.loads(b.document)
            again = canonical_bytes(parsed)
        except (orjson.JSONDecodeError, CanonicalizationError) as exc:
            raise VerificationError(f"document: expected JSON, got {exc}") from None
        if again != b.document:
            raise VerificationError(f"document: expected its RFC 8785 canonical form ({len(again)} bytes), got "
                                    f"{len(b.document)} bytes that differ")
        named = parsed.get("dppId") if isinstance(parsed, dict) else None
        if named != b.dpp_id:
            raise VerificationError(f"document dppId: expected {b.dpp_id!r}, got {named!r:.80}")
        return PASS, f"{len(b.document)} bytes of RFC 8785 canonical JSON"

    def content_hash() -> tuple[str, str]:
        nonlocal leaf
        f = b.leaf
        try:
            leaf = log.Leaf(f.get("dppId", ""), f.get("version", 0), f.get("sha256", ""), f.get("at", ""),
                            f.get("kind", ""), f.get("kid"), f.get("publicSha256"))
        except ValueError as exc:
            raise VerificationError(f"leaf: expected a passport version leaf, got {exc}") from None
        if leaf.as_json() != f:
            raise VerificationError(f"leaf: expected only the members of a passport version leaf, got {sorted(f)}")
        if (leaf.dpp_id, leaf.version) != (b.dpp_id, b.version):
            raise VerificationError(f"leaf: expected version {b.version} of {b.dpp_id}, got version "
                                    f"{leaf.version} of {leaf.dpp_id}")
        got = hashlib.sha256(b.document).hexdigest()
        expected = leaf.sha256 if b.view == "full" else leaf.public_sha256
        if expected is None:
            raise VerificationError("leaf: expected publicSha256 (the hash of the public view), got none — this "
                                    "version was logged before public views were; ask for the full view")
        if got != expected:
            raise VerificationError(f"content hash: expected {expected} (the leaf's "
                                    f"{'sha256' if b.view == 'full' else 'publicSha256'}), got {got}")
        return PASS, f"SHA-256 {got} is what leaf {b.leaf_index} commits to"

    def signature() -> tuple[str, str]:
        if leaf is None:
            return NOT_REACHED, "no well-formed leaf to compare with"
        if b.view == "public":
            return NOT_APPLICABLE, ("the public view is not signed on its own: the leaf commits to its hash and the "
                                    "checkpoint signature covers the leaf (steps 5 and 6)")
        assert b.signature is not None
        periods = {k.kid: k for k in b.keys}
        keys = trusted.keys if trusted.keys is not None else {k: p.public_key for k, p in periods.items()}
        kid = signing.verify_version(b.signature, b.document, keys)
        if leaf.kid is not None and leaf.kid != kid:
            raise VerificationError(f"signing key: expected {leaf.kid} (the key the leaf commits to), got {kid}")
        if trusted.periods is not None:
            if kid not in trusted.periods:
                raise VerificationError(f"signing key {kid}: expected a trusted key with a known signing period")
            created, retired = trusted.periods[kid]
        elif kid in periods:
            created, retired = periods[kid].created_at, periods[kid].retired_at
        else:
            raise VerificationError(f"signing key {kid}: expected the bundle to say when it signed, got nothing")
        if leaf.at < created or (retired is not None and leaf.at >= retired):
            raise VerificationError(f"signing key {kid}: expected it to be the signing key at {leaf.at}, got one "
                                    f"that signed from {created} to {retired or 'now'}")
        source = "trusted" if trusted.periods is not None else "the bundle's"
        return PASS, f"EdDSA signature by {kid}, the repository's signing key at {leaf.at} ({source} key periods)"

    def checkpoint_body() -> Checkpoint:
        nonlocal cp
        if cp is None:
            cp = parse_checkpoint(parse_note(b.checkpoint.encode("utf-8")).text)
        return cp

    def inclusion() -> tuple[str, str]:
        if leaf is None:
            return NOT_REACHED, "no well-formed leaf"
        body = checkpoint_body()
        if body.size != b.tree_size:
            raise VerificationError(f"tree size: expected the checkpoint's {body.size}, got {b.tree_size}")
        merkle.verify_inclusion(leaf_hash=leaf.leaf_hash(), index=b.leaf_index, size=b.tree_size,
                                proof=list(b.inclusion_proof), root=body.root_hash)
        return PASS, f"leaf {b.leaf_index} is in the tree of {b.tree_size} leaves"

    def checkpoint() -> tuple[str, str]:
        keys = trusted.keys if trusted.keys is not None else {k.kid: k.public_key for k in b.keys}
        verifiers = [VerifierKey(b.origin, public) for public in keys.values()]
        opened = verify_checkpoint(b.checkpoint.encode("utf-8"), origin=b.origin, verifiers=verifiers)
        signer = next(k for k, v in keys.items() if v in {x.public_key for x in opened.verified_by})
        return PASS, (f"signed by {signer} for {b.origin}"
                      + (" (a pinned key)" if trusted.keys is not None else " (a key from the bundle)"))

    def keys_step() -> tuple[str, str]:
        if trusted.keys is None:
            return WARN, ("the keys came with the bundle: it is consistent, but only keys obtained another way "
                          "(dbp verify --url, --key) show it is the operator's")
        used = {k.kid: k.public_key for k in b.keys}
        wrong = [kid for kid, public in used.items() if trusted.keys.get(kid) not in (None, public)]
        if wrong:
            raise VerificationError(f"keys: expected the published keys, got other key material for {wrong}")
        periods = "" if trusted.periods is not None else "; their signing periods are the bundle's own claims"
        return PASS, f"the bundle's keys match the {len(trusted.keys)} trusted key(s){periods}"

    def consistency() -> tuple[str, str]:
        if trusted.checkpoint is None:
            return SKIPPED, "no trusted checkpoint given (dbp verify --trusted-checkpoint, or a witness's)"
        keys = trusted.keys if trusted.keys is not None else {k.kid: k.public_key for k in b.keys}
        old = verify_checkpoint(trusted.checkpoint.encode("utf-8"), origin=b.origin,
                                verifiers=[VerifierKey(b.origin, p) for p in keys.values()]).checkpoint
        new = checkpoint_body()
        small, large = (old, new) if old.size <= new.size else (new, old)
        merkle.verify_consistency(size1=small.size, size2=large.size, root1=small.root_hash, root2=large.root_hash,
                                  proof=list(trusted.consistency_proof))
        return PASS, f"the tree of {new.size} leaves extends the trusted tree of {old.size}" if old.size <= new.size \
            else f"the trusted tree of {old.size} leaves extends this tree of {new.size}"

    for step in (canonical, content_hash, signature, inclusion, checkpoint, keys_step, consistency):
        _run(report, step)
    return report


def trusted_periods(doc: object) -> dict[str, tuple[str, str | None]] | None:
    """The signing periods of a keys document (``GET /api/v1/log/keys``: ``{"keys": [{jwk, createdAt,
    retiredAt}]}``); None for a plain JWK Set, which has none. ``ProofError`` for a malformed one."""
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list) or len(doc["keys"]) > 100:
        raise ProofError("keys: expected {\"keys\": [at most 100 keys]}", reason="malformed-jwks")
    if not all(isinstance(k, dict) and "jwk" in k for k in doc["keys"]):
        return None
    out: dict[str, tuple[str, str | None]] = {}
    for i, entry in enumerate(doc["keys"]):
        created, retired = entry.get("createdAt"), entry.get("retiredAt")
        if not isinstance(created, str) or not (retired is None or isinstance(retired, str)):
            raise ProofError(f"keys[{i}]: expected createdAt and retiredAt (or null)", reason="malformed-jwks")
        out[jwk_key(entry["jwk"], f"keys[{i}].jwk")[0]] = (created, retired)
    return out


def trusted_keys(jwks: object) -> dict[str, bytes]:
    """The Ed25519 keys of a JWK Set (``/.well-known/jwks.json``), by kid. ``ProofError`` for anything else."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or len(jwks["keys"]) > 100:
        raise ProofError("JWK Set: expected {\"keys\": [at most 100 keys]}", reason="malformed-jwks")
    entries = [k["jwk"] if isinstance(k, dict) and "jwk" in k else k for k in jwks["keys"]]  # or a keys document
    return dict(jwk_key(jwk, f"JWK Set keys[{i}]") for i, jwk in enumerate(entries))
