"""Verifiable credentials: a passport version as a W3C VC 2.0 secured with VC-JOSE (``application/vc+jwt``), and
the verification of such credentials, ours or a supplier's.

**Securing** (W3C "Securing Verifiable Credentials using JOSE and COSE", Recommendation 2025, §3.1.1): the
credential JSON itself is the JWS payload (no ``vc`` claim, no JWT wrapper); the compact JWS (RFC 7515 §7.1) has
the protected header ``{"alg":"EdDSA","cty":"vc","kid":"<did>#<log key id>","typ":"vc+jwt"}``. ``typ`` is
``vc+jwt`` — the value of the final Recommendation and of the IANA registration of ``application/vc+jwt``; drafts
of 2023 wrote ``vc-ld+jwt`` (and earlier ``vc+ld+json+jwt``), which this verifier does not accept. RFC 7515 §4.1.9
lets ``typ`` omit the ``application/`` prefix, so ``application/vc+jwt`` is accepted as the same value.

**Issuing** (``passport_credential`` + ``sign_credential``): issuer is the repository's ``did:web``
(``signing.did_of``), the key is the repository's active Ed25519 key (the one in ``log_keys`` that signs versions
and checkpoints; its DID URL is ``<did>#<kid>``, as in ``/.well-known/did.json``), ``validFrom`` the version's
``createdAt``, no ``validUntil`` (what version n said stays what it said). The subject is the passport view the
caller may read, with the identifiers that tie it to the transparency log::

    {"id": "<dppId>", "type": "BatteryPassport", "passportUrl": "<base>/api/v1/dpps/<dppId>/versions/<n>",
     "version": n, "versionCreatedAt": "...", "versionSha256": "<hash of the full version, as logged>",
     "accessGroups": [...], "viewSha256": "<SHA-256 of RFC 8785 bytes of passport>", "passport": {...}}

The credential's ``id`` is ``urn:uuid:`` + UUIDv5 of (dppId, version, viewSha256): the same view of the same
version always gets the same id (and, Ed25519 being deterministic, the same token).

**Verifying** (``examine`` / ``verify_credential``) runs numbered checks and fails closed at the first failure
with an "expected X, got Y" reason; every check after it is reported ``skipped``:

1. compact JWS — at most ``max_bytes``, three unpadded base64url parts (RFC 7515 §7.1), none empty;
2. protected header — a JSON object without duplicate members (RFC 7515 §5.2), ``alg`` EdDSA (RFC 8037) or
   ES256 (never ``none``), ``typ`` ``vc+jwt``, ``cty`` absent or ``vc``, no ``crit`` (RFC 7515 §4.1.11: we
   understand no extension), ``kid`` a DID URL ``did:web:…#fragment``;
3. credential — the payload is a VC 2.0 JSON object (I-JSON, RFC 7493): ``@context`` starting with
   https://www.w3.org/ns/credentials/v2, ``type`` containing VerifiableCredential, ``issuer`` a DID (or an object
   whose ``id`` is one), ``credentialSubject`` one or more objects, no ``vc`` / ``vp`` claim (VC-JOSE-COSE
   §3.1.1), an ``iss`` claim if any equal to the issuer, ``validFrom`` / ``validUntil`` XML Schema
   dateTimeStamps (with a time zone);
4. issuer and key id — the DID of ``kid`` is the issuer;
5. DID document — ``resolve(did)`` returns the issuer's DID document, whose ``id`` is the DID;
6. verification key — the method ``kid`` names is in ``verificationMethod`` (absolute or relative id), is
   referenced by ``assertionMethod`` (the proof purpose of a credential; retired repository keys are not), its
   controller is the issuer, and its ``publicKeyJwk`` is a public Ed25519 / P-256 key matching ``alg``;
7. signature — over ASCII(header "." payload) (RFC 7515 §5.2 step 8);
8. validity period — ``validFrom`` <= now < ``validUntil`` (VC DM 2.0 §4.9), 60 s of clock skew allowed.

**Resolving** ``did:web`` (``did_web_url``, ``DidWebResolver``): ``did:web:<host>[%3A<port>][:<path>…]`` is
``https://<host>[:<port>]/.well-known/did.json`` (or ``/<path>/did.json``). Plain ``http`` only for the hosts in
``http_hosts`` (DBP_DID_WEB_HTTP_HOSTS: loopback tests, development); other hosts must resolve to public
addresses only (no loopback, private, link-local: this server must not be made to fetch from its own network).
Redirects are followed only within the same origin (at most 3), the body is capped at ``max_bytes`` and the
request at ``timeout`` seconds. Known limit: the address check and the connection each resolve the name, so a
DNS answer that changes in between (rebinding) is not caught. ``StaticResolver`` is the in-memory resolver.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from dbp import netguard
from dbp.errors import VerificationError
from dbp.integrity.canonical import DuplicateMember, canonical_bytes, sha256_hex, unique_members
from dbp.integrity.signing import b64url

MEDIA_TYPE = "application/vc+jwt"
TYP = "vc+jwt"
CTY = "vc"
CONTEXT_V2 = "https://www.w3.org/ns/credentials/v2"
ALGORITHMS = ("EdDSA", "ES256")
CREDENTIAL_TYPE = "BatteryPassportCredential"
SUBJECT_TYPE = "BatteryPassport"
#: Largest compact token ``examine`` reads by default (a credential of a full 1 MiB passport fits).
MAX_TOKEN_BYTES = 2 * 1024 * 1024
MAX_HEADER_BYTES = 4096
MAX_KID = 1024
#: Largest DID document ``DidWebResolver`` reads.
MAX_DID_DOCUMENT_BYTES = 64 * 1024
CLOCK_SKEW = timedelta(seconds=60)
_ID_NAMESPACE = uuid.UUID("3b0f5c2e-8f0a-5d1e-9a53-6c1f3f1d2b7a")  # UUIDv5 namespace of passport credentials

_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_DATETIME = re.compile(r"-?\d{4,}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
_DID_WEB = re.compile(r"did:web:[A-Za-z0-9.%_~:-]+")
_HOST = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")


#: A DID resolver: the DID document of a DID, or ``VerificationError`` saying why there is none.
Resolve = Callable[[str], Mapping[str, Any]]


def _unb64url(text: str, what: str) -> bytes:
    """RFC 7515 §2 base64url without padding, or ``VerificationError``."""
    if not text or not _B64URL.fullmatch(text):
        raise VerificationError(f"{what}: expected unpadded base64url, got {text!r:.40}")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise VerificationError(f"{what}: expected unpadded base64url, got {text!r:.40}") from None


# --- issuing ---------------------------------------------------------------------------------------------------


def subject_id(dpp_id: str, passport_url: str) -> str:
    """The credential subject's id: the passport identifier when it is a URI (urn:uuid:…), else its URL."""
    return dpp_id if _URI.fullmatch(dpp_id) else passport_url


def passport_credential(*, base_url: str, issuer: str, dpp_id: str, version: int, created_at: str,
                        version_sha256: str, view: bytes, access_groups: list[str]) -> dict[str, Any]:
    """The VC 2.0 credential of ``view`` (the canonical bytes of the passport version as the caller may read
    it) of version ``version`` of passport ``dpp_id``. Pure; raises ValueError if ``view`` is not a JSON object."""
    passport = json.loads(view)
    if not isinstance(passport, dict):
        raise ValueError("a passport view is a JSON object")
    base = base_url.rstrip("/")
    url = f"{base}/api/v1/dpps/{quote(dpp_id, safe=':')}"
    view_sha = sha256_hex(canonical_bytes(passport))
    return {
        "@context": [CONTEXT_V2],
        "id": f"urn:uuid:{uuid.uuid5(_ID_NAMESPACE, f'{dpp_id} {version} {view_sha}')}",
        "type": ["VerifiableCredential", CREDENTIAL_TYPE],
        "issuer": issuer,
        "validFrom": created_at,
        "credentialSubject": {
            "id": subject_id(dpp_id, url),
            "type": SUBJECT_TYPE,
            "passportUrl": f"{url}/versions/{version}",
            "version": version,
            "versionCreatedAt": created_at,
            "versionSha256": version_sha256,
            "accessGroups": sorted(access_groups),
            "viewSha256": view_sha,
            "passport": passport,
        },
    }


def credential_header(kid_url: str, alg: str = "EdDSA") -> dict[str, str]:
    return {"alg": alg, "cty": CTY, "kid": kid_url, "typ": TYP}


def sign_credential(credential: Mapping[str, Any], *, kid_url: str, private_key: Ed25519PrivateKey) -> str:
    """The compact JWS (``application/vc+jwt``) of ``credential``: header and payload RFC 8785 canonical JSON."""
    header = b64url(canonical_bytes(credential_header(kid_url)))
    payload = b64url(canonical_bytes(dict(credential)))
    signature = private_key.sign(f"{header}.{payload}".encode("ascii"))
    return f"{header}.{payload}.{b64url(signature)}"


# --- did:web -------------------------------------------------------------------------------------------------


def split_did_url(value: str) -> tuple[str, str]:
    """``did:web:…#fragment`` → (DID, fragment); ``VerificationError`` for anything else."""
    did, sep, fragment = value.partition("#")
    if not sep or not fragment or not _DID_WEB.fullmatch(did) or any(c in fragment for c in "#?/ "):
        raise VerificationError(f"kid: expected a DID URL did:web:<host>#<key>, got {value!r:.120}")
    return did, fragment


def did_web_url(did: str, *, http_hosts: frozenset[str] = frozenset()) -> str:
    """The HTTPS URL of the DID document of a ``did:web`` DID (did:web method §3.2.1); http for ``http_hosts``
    (a host, or host:port). ``VerificationError`` for a DID that is not a well-formed did:web."""
    if len(did) > 512 or not _DID_WEB.fullmatch(did):
        raise VerificationError(f"issuer: expected a did:web DID, got {did!r:.120}")
    host_part, *path = did[len("did:web:"):].split(":")
    host, _, port = unquote(host_part).lower().partition(":")
    if not _HOST.fullmatch(host) or (port and (not port.isdigit() or not 0 < int(port) < 65536)) or "%" in host:
        raise VerificationError(f"issuer: expected did:web:<host>[%3A<port>], got {did!r:.120}")
    segments = [unquote(p) for p in path]
    if any(not _SEGMENT.fullmatch(s) or s in (".", "..") for s in segments):
        raise VerificationError(f"issuer: expected did:web path segments of letters, digits and ._~-, got {did!r:.120}")
    netloc = f"{host}:{port}" if port else host
    scheme = "http" if host in http_hosts or netloc in http_hosts else "https"
    tail = "/" + "/".join(segments) + "/did.json" if segments else "/.well-known/did.json"
    return f"{scheme}://{netloc}{tail}"


def _public_host(host: str) -> None:
    """Refuse a host that is, or resolves to, anything but public addresses (``dbp.netguard``: numeric IPv4
    forms refused, embedded IPv4 judged too; the details are logged, the reason is generic)."""
    try:
        netguard.check_resolved(host)
    except netguard.AddressRefused:
        raise VerificationError(f"DID document: expected a host on public addresses, got {host!r}: "
                                f"{netguard.NOT_ALLOWED} (add it to DBP_DID_WEB_HTTP_HOSTS to allow it)") from None


class DidWebResolver:
    """Resolves ``did:web`` DIDs over HTTPS (see the module docstring); an ``httpx`` transport may be injected."""

    def __init__(self, *, http_hosts: frozenset[str] | list[str] = frozenset(), timeout: float = 5.0,
                 max_bytes: int = MAX_DID_DOCUMENT_BYTES, transport: httpx.BaseTransport | None = None,
                 check_addresses: bool = True) -> None:
        self.http_hosts = frozenset(h.strip().lower() for h in http_hosts if h.strip())
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.transport = transport
        self.check_addresses = check_addresses

    def __call__(self, did: str) -> Mapping[str, Any]:
        url = did_web_url(did, http_hosts=self.http_hosts)
        parts = urlsplit(url)
        host = netguard.connect_host(url)  # the host httpx connects to (IDNA 2008 A-label or IP literal)
        if self.check_addresses and (parts.hostname or "") not in self.http_hosts and \
                parts.netloc not in self.http_hosts:
            _public_host(host)
        deadline = time.monotonic() + 2 * self.timeout  # httpx's timeout is per read: a trickle never ends
        with httpx.Client(timeout=self.timeout, follow_redirects=False, transport=self.transport,
                          headers={"Accept": "application/did+json, application/json"}) as http:
            for _ in range(4):
                body, status, location = self._get(http, url, deadline)
                if location is None:
                    break
                target = urlsplit(str(httpx.URL(url).join(location)))
                if (target.scheme, target.netloc) != (parts.scheme, parts.netloc):
                    raise VerificationError(f"DID document of {did}: expected no redirect to another origin, got "
                                            f"{status} to {target.scheme}://{target.netloc}")
                url = target.geturl()
            else:
                raise VerificationError(f"DID document of {did}: expected at most 3 redirects, got more")
        if status != 200:
            raise VerificationError(f"DID document of {did}: expected HTTP 200 from {url}, got {status}")
        doc = _json_object(body, f"DID document of {did}")
        return doc

    def _get(self, http: httpx.Client, url: str, deadline: float) -> tuple[bytes, int, str | None]:
        try:
            with http.stream("GET", url) as response:
                if response.status_code in (301, 302, 303, 307, 308):
                    return b"", response.status_code, response.headers.get("location") or ""
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                    raise VerificationError(f"DID document at {url}: expected at most {self.max_bytes} bytes, got "
                                            f"{declared}")
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if time.monotonic() > deadline:
                        raise VerificationError(f"DID document at {url}: expected it within "
                                                f"{2 * self.timeout:g} s, got a slower answer")
                    if size > self.max_bytes:
                        raise VerificationError(f"DID document at {url}: expected at most {self.max_bytes} bytes, "
                                                "got more")
                    chunks.append(chunk)
                return b"".join(chunks), response.status_code, None
        except httpx.HTTPError as exc:
            raise VerificationError(f"DID document at {url}: expected an answer, got {type(exc).__name__}: "
                                    f"{exc}") from None


@dataclass
class StaticResolver:
    """In-memory DID documents (tests, and this repository's own DID without a network round trip)."""

    documents: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    fallback: Resolve | None = None

    def __call__(self, did: str) -> Mapping[str, Any]:
        doc = self.documents.get(did)
        if doc is not None:
            return doc
        if self.fallback is not None:
            return self.fallback(did)
        raise VerificationError(f"DID document: expected a known issuer, got {did!r:.120}")


# --- verifying -----------------------------------------------------------------------------------------------


def _bad_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    """An I-JSON object (RFC 7493: UTF-8, unique member names, no NaN) or ``VerificationError``."""
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=unique_members, parse_constant=_bad_constant)
    except DuplicateMember as exc:
        raise VerificationError(f"{what}: expected unique member names, got {exc.args[0]!r:.60} twice") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise VerificationError(f"{what}: expected a JSON object, got invalid JSON ({exc!s:.80})") from None
    if not isinstance(value, dict):
        raise VerificationError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


def parse_datetime(value: object, what: str) -> datetime:
    """An XML Schema dateTimeStamp (time zone required), as VC DM 2.0 §4.9 wants validFrom / validUntil."""
    if not isinstance(value, str) or len(value) > 64 or not _DATETIME.fullmatch(value):
        raise VerificationError(f"{what}: expected a date-time with a time zone (2027-02-18T10:00:00Z), got "
                                f"{value!r:.80}")
    text = value.replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:  # Python reads at most 6 fraction digits
        digits = re.match(r"\d+", rest)
        assert digits is not None
        text = f"{head}.{digits.group()[:6].ljust(6, '0')}{rest[digits.end():]}"
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError):
        raise VerificationError(f"{what}: expected a date-time on the calendar, got {value!r:.80}") from None


@dataclass(frozen=True)
class Check:
    step: int
    name: str
    verdict: str  # "pass" | "fail" | "skipped"
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"step": self.step, "check": self.name, "verdict": self.verdict, "detail": self.detail}


STEPS = ("compact JWS", "protected header", "credential", "issuer and key id", "DID document", "verification key",
         "signature", "validity period")


@dataclass
class Report:
    """What ``examine`` found: the numbered checks, and (when it got that far) the header and credential."""

    checks: list[Check] = field(default_factory=list)
    header: dict[str, Any] | None = None
    credential: dict[str, Any] | None = None
    issuer: str | None = None
    kid: str | None = None

    @property
    def ok(self) -> bool:
        return len(self.checks) == len(STEPS) and all(c.verdict == "pass" for c in self.checks)

    @property
    def failure(self) -> Check | None:
        return next((c for c in self.checks if c.verdict == "fail"), None)

    def as_json(self) -> dict[str, Any]:
        return {"verified": self.ok, "issuer": self.issuer, "kid": self.kid,
                "checks": [c.as_json() for c in self.checks]}


@dataclass(frozen=True)
class Verified:
    header: dict[str, Any]
    credential: dict[str, Any]
    issuer: str
    kid: str
    report: Report


def _issuer_of(credential: Mapping[str, Any]) -> str:
    issuer = credential.get("issuer")
    if isinstance(issuer, dict):
        issuer = issuer.get("id")
    if not isinstance(issuer, str) or not issuer.startswith("did:"):
        raise VerificationError(f"credential: expected issuer a DID (or an object whose id is one), got "
                                f"{credential.get('issuer')!r:.120}")
    return issuer


def _check_shape(credential: dict[str, Any]) -> str:
    context = credential.get("@context")
    if not isinstance(context, list) or not context or context[0] != CONTEXT_V2:
        raise VerificationError(f"credential: expected @context starting with {CONTEXT_V2}, got {context!r:.120}")
    types = credential.get("type")
    if not (isinstance(types, list) and "VerifiableCredential" in types and all(isinstance(t, str) for t in types)):
        raise VerificationError(f"credential: expected type a list with VerifiableCredential, got {types!r:.120}")
    for claim in ("vc", "vp"):
        if claim in credential:
            raise VerificationError(f"credential: expected no JWT claim {claim!r} (VC-JOSE-COSE §3.1.1: the payload "
                                    "is the credential itself), got one")
    issuer = _issuer_of(credential)
    if "iss" in credential and credential["iss"] != issuer:
        raise VerificationError(f"credential: expected iss equal to the issuer {issuer}, got {credential['iss']!r:.80}")
    subjects = credential.get("credentialSubject")
    listed = subjects if isinstance(subjects, list) else [subjects]
    if not listed or not all(isinstance(s, dict) and s for s in listed):
        raise VerificationError(f"credential: expected credentialSubject one or more non-empty objects, got "
                                f"{subjects!r:.80}")
    for name in ("validFrom", "validUntil"):
        if name in credential:
            parse_datetime(credential[name], f"credential {name}")
    if "id" in credential and not (isinstance(credential["id"], str) and _URI.fullmatch(credential["id"])):
        raise VerificationError(f"credential: expected id a URL, got {credential['id']!r:.80}")
    return issuer


def _method(document: Mapping[str, Any], did: str, kid: str) -> dict[str, Any]:
    """The verification method ``kid`` of ``document``, checked to be an assertion method of ``did``."""
    fragment = kid.partition("#")[2]

    def names(value: object) -> bool:
        return value in (kid, f"#{fragment}")

    methods = document.get("verificationMethod")
    found = [m for m in methods if isinstance(m, dict) and names(m.get("id"))] if isinstance(methods, list) else []
    assertion = document.get("assertionMethod")
    assertion = assertion if isinstance(assertion, list) else []
    embedded = [m for m in assertion if isinstance(m, dict) and names(m.get("id"))]
    referenced = any(isinstance(m, str) and names(m) for m in assertion)
    if embedded:
        found = embedded
        referenced = True
    if len(found) != 1:
        raise VerificationError(f"DID document of {did}: expected one verification method {kid}, got {len(found)}")
    if not referenced:
        raise VerificationError(f"DID document of {did}: expected {kid} among its assertionMethod (keys that may "
                                "sign credentials), got a key that is not (retired or for another purpose)")
    method = found[0]
    controller = method.get("controller", did)
    if controller != did:
        raise VerificationError(f"verification method {kid}: expected controller {did}, got {controller!r:.120}")
    return method


def _public_key(method: Mapping[str, Any], alg: str, kid: str) -> Ed25519PublicKey | ec.EllipticCurvePublicKey:
    jwk = method.get("publicKeyJwk")
    if not isinstance(jwk, dict):
        raise VerificationError(f"verification method {kid}: expected a publicKeyJwk, got type "
                                f"{method.get('type')!r:.60} without one")
    if any(k in jwk for k in ("d", "p", "q", "dp", "dq", "qi", "k")):
        raise VerificationError(f"verification method {kid}: expected a public JWK, got private key members")
    if "alg" in jwk and jwk["alg"] != alg:
        raise VerificationError(f"verification method {kid}: expected a key for {alg}, got one for {jwk['alg']!r:.20}")
    try:
        if alg == "EdDSA":
            if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
                raise VerificationError(f"verification method {kid}: expected an OKP Ed25519 key for EdDSA, got "
                                        f"kty {jwk.get('kty')!r:.20} crv {jwk.get('crv')!r:.20}")
            x = _unb64url(str(jwk.get("x", "")), "JWK x")
            if len(x) != 32:
                raise VerificationError(f"verification method {kid}: expected a 32-byte Ed25519 key, got {len(x)}")
            return Ed25519PublicKey.from_public_bytes(x)
        if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
            raise VerificationError(f"verification method {kid}: expected an EC P-256 key for ES256, got kty "
                                    f"{jwk.get('kty')!r:.20} crv {jwk.get('crv')!r:.20}")
        x, y = _unb64url(str(jwk.get("x", "")), "JWK x"), _unb64url(str(jwk.get("y", "")), "JWK y")
        if len(x) != 32 or len(y) != 32:
            raise VerificationError(f"verification method {kid}: expected 32-byte P-256 coordinates")
        return ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"),
                                             ec.SECP256R1()).public_key()
    except ValueError:
        raise VerificationError(f"verification method {kid}: expected a valid {alg} public key, got an invalid "
                                "point") from None


def _verify_signature(key: Ed25519PublicKey | ec.EllipticCurvePublicKey, alg: str, signature: bytes,
                      signing_input: bytes, kid: str) -> None:
    try:
        if isinstance(key, Ed25519PublicKey):
            key.verify(signature, signing_input)
        else:
            if len(signature) != 64:  # RFC 7518 §3.4: R || S, 32 bytes each
                raise InvalidSignature
            der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
            key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise VerificationError(f"signature: expected a valid {alg} signature by {kid}, got an invalid one") from None


def examine(token: str | bytes, resolve: Resolve, *, now: datetime | None = None,
            max_bytes: int = MAX_TOKEN_BYTES) -> Report:
    """Run the checks of the module docstring on ``token``; stops at the first failure (the rest ``skipped``).
    Never raises for bad input: the report says what failed and why."""
    report = Report()
    state: dict[str, Any] = {}
    steps: list[Callable[[], str]] = [
        lambda: _step_compact(token, max_bytes, state),
        lambda: _step_header(state, report),
        lambda: _step_credential(state, report),
        lambda: _step_issuer(state, report),
        lambda: _step_resolve(state, resolve),
        lambda: _step_key(state),
        lambda: _step_signature(state),
        lambda: _step_validity(state, now or datetime.now(UTC)),
    ]
    for number, (name, step) in enumerate(zip(STEPS, steps, strict=True), start=1):
        if report.failure is not None:
            report.checks.append(Check(number, name, "skipped", "an earlier check failed"))
            continue
        try:
            report.checks.append(Check(number, name, "pass", step()))
        except VerificationError as exc:
            report.checks.append(Check(number, name, "fail", exc.message))
    return report


def verify_credential(token: str | bytes, resolve: Resolve, *, now: datetime | None = None,
                      max_bytes: int = MAX_TOKEN_BYTES) -> Verified:
    """``examine``, raising ``VerificationError`` with the first failed check's reason."""
    report = examine(token, resolve, now=now, max_bytes=max_bytes)
    failure = report.failure
    if failure is not None:
        raise VerificationError(f"step {failure.step} ({failure.name}): {failure.detail}")
    assert report.header is not None and report.credential is not None
    assert report.issuer is not None and report.kid is not None
    return Verified(report.header, report.credential, report.issuer, report.kid, report)


def _step_compact(token: str | bytes, max_bytes: int, state: dict[str, Any]) -> str:
    if len(token) > max_bytes:
        raise VerificationError(f"token: expected at most {max_bytes} bytes, got {len(token)}")
    if isinstance(token, bytes):
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError:
            raise VerificationError("token: expected ASCII (compact JWS), got other bytes") from None
    token = token.strip()
    parts = token.split(".")
    if len(parts) != 3:
        raise VerificationError(f"token: expected a compact JWS of 3 parts (header.payload.signature), got "
                                f"{len(parts)} part{'s' if len(parts) != 1 else ''}")
    names = ("header", "payload", "signature")
    for name, part in zip(names, parts, strict=True):
        if not part or not _B64URL.fullmatch(part):
            raise VerificationError(f"token {name}: expected non-empty unpadded base64url, got {part!r:.40}")
    if len(parts[0]) > MAX_HEADER_BYTES:
        raise VerificationError(f"token header: expected at most {MAX_HEADER_BYTES} bytes, got {len(parts[0])}")
    state["parts"] = parts
    return f"{len(token)} bytes, 3 base64url parts"


def _step_header(state: dict[str, Any], report: Report) -> str:
    header = _json_object(_unb64url(state["parts"][0], "token header"), "protected header")
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise VerificationError(f"protected header: expected alg {' or '.join(ALGORITHMS)}, got {alg!r:.40}")
    typ = header.get("typ")
    if typ not in (TYP, MEDIA_TYPE):
        raise VerificationError(f"protected header: expected typ {TYP}, got {typ!r:.40}")
    if "cty" in header and header["cty"] not in (CTY, "application/vc"):
        raise VerificationError(f"protected header: expected cty {CTY} or none, got {header['cty']!r:.40}")
    if "crit" in header:
        raise VerificationError(f"protected header: expected no crit (no extension is understood), got "
                                f"{header['crit']!r:.80}")
    if "b64" in header or "jku" in header or "x5u" in header or "jwk" in header:
        raise VerificationError("protected header: expected the key named by kid only, got b64/jku/x5u/jwk")
    kid = header.get("kid")
    if not isinstance(kid, str) or len(kid) > MAX_KID:
        raise VerificationError(f"protected header: expected kid a DID URL, got {kid!r:.120}")
    split_did_url(kid)
    report.header, report.kid = header, kid
    state["header"], state["alg"], state["kid"] = header, alg, kid
    return f"alg {alg}, typ {typ}, kid {kid}"


def _step_credential(state: dict[str, Any], report: Report) -> str:
    credential = _json_object(_unb64url(state["parts"][1], "token payload"), "credential")
    issuer = _check_shape(credential)
    report.credential, report.issuer = credential, issuer
    state["credential"], state["issuer"] = credential, issuer
    return f"VC 2.0 of type {', '.join(credential['type'])} by {issuer}"


def _step_issuer(state: dict[str, Any], report: Report) -> str:
    did, _ = split_did_url(state["kid"])
    if did != state["issuer"]:
        raise VerificationError(f"kid: expected a key of the issuer {state['issuer']}, got one of {did}")
    return f"kid belongs to {did}"


def _step_resolve(state: dict[str, Any], resolve: Resolve) -> str:
    did = state["issuer"]
    document = resolve(did)
    if not isinstance(document, Mapping):
        raise VerificationError(f"DID document of {did}: expected a JSON object, got {type(document).__name__}")
    if document.get("id") != did:
        raise VerificationError(f"DID document: expected id {did}, got {document.get('id')!r:.120}")
    state["document"] = document
    return f"resolved {did}"


def _step_key(state: dict[str, Any]) -> str:
    method = _method(state["document"], state["issuer"], state["kid"])
    state["key"] = _public_key(method, state["alg"], state["kid"])
    return f"{state['kid']} is an assertion method of {state['issuer']}"


def _step_signature(state: dict[str, Any]) -> str:
    header_b64, payload_b64, sig_b64 = state["parts"]
    signature = _unb64url(sig_b64, "token signature")
    _verify_signature(state["key"], state["alg"], signature, f"{header_b64}.{payload_b64}".encode("ascii"),
                      state["kid"])
    return f"valid {state['alg']} signature"


def _step_validity(state: dict[str, Any], now: datetime) -> str:
    credential = state["credential"]
    start = parse_datetime(credential["validFrom"], "validFrom") if "validFrom" in credential else None
    end = parse_datetime(credential["validUntil"], "validUntil") if "validUntil" in credential else None
    at = now.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if start is not None and now + CLOCK_SKEW < start:
        raise VerificationError(f"validFrom: expected a time before now ({at}), got {credential['validFrom']}")
    if end is not None and now - CLOCK_SKEW >= end:
        raise VerificationError(f"validUntil: expected a time after now ({at}), got {credential['validUntil']} "
                                "(expired)")
    if start is not None and end is not None and end < start:
        raise VerificationError("validUntil: expected a time after validFrom, got an earlier one")
    return f"valid at {at}"


def subject_ids(credential: Mapping[str, Any]) -> list[object]:
    """The ``id`` of each credential subject (None where a subject has none)."""
    subjects = credential.get("credentialSubject")
    listed = subjects if isinstance(subjects, list) else [subjects]
    return [s.get("id") if isinstance(s, dict) else None for s in listed]
