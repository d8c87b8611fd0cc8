"""The one error tree of dbp.

Services raise these; ``app.py`` maps every one of them, in one place, to the EN 18222 result
object (``statusCode`` + ``message[]``) with the matching HTTP status. Nothing else reaches a
client: unexpected exceptions become a 500 result object without a stack trace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FieldError:
    """One broken rule at one place of a document (JSON path) — what, where and which rule."""

    path: str
    rule: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "rule": self.rule, "message": self.message}


class DbpError(Exception):
    """Base of every error a client may see. ``status_code`` is EN 18222's name for it."""

    http_status = 500
    status_code = "ServerInternalError"

    def __init__(self, message: str, *, details: list[FieldError] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: list[FieldError] = details or []


class BadRequest(DbpError):
    http_status = 400
    status_code = "ClientErrorBadRequest"


class ValidationFailed(BadRequest):
    """The document breaks schema or semantic rules; ``details`` lists each (path, rule)."""

    http_status = 422
    status_code = "ClientErrorBadRequest"


class Unauthorized(DbpError):
    http_status = 401
    status_code = "ClientNotAuthorized"


class Forbidden(DbpError):
    http_status = 403
    status_code = "ClientForbidden"


class NotFound(DbpError):
    http_status = 404
    status_code = "ClientErrorResourceNotFound"


class Gone(NotFound):
    """It existed and is withdrawn for good, e.g. a retired registration (RFC 9110 §15.5.11)."""

    http_status = 410
    status_code = "ClientErrorResourceGone"


class MethodNotAllowed(DbpError):
    http_status = 405
    status_code = "ClientMethodNotAllowed"


class Conflict(DbpError):
    """The request contradicts stored state (duplicate identifier, read-only passport, bad transition)."""

    http_status = 409
    status_code = "ClientResourceConflict"


class PreconditionFailed(DbpError):
    """``If-Match`` named a version that is no longer current."""

    http_status = 412
    status_code = "ClientErrorPreconditionFailed"


class PayloadTooLarge(DbpError):
    http_status = 413
    status_code = "ClientErrorPayloadTooLarge"


class UnsupportedMediaType(DbpError):
    http_status = 415
    status_code = "ClientErrorUnsupportedMediaType"


class NotAcceptable(DbpError):
    http_status = 406
    status_code = "ClientErrorNotAcceptable"


class UriTooLong(DbpError):
    http_status = 414
    status_code = "ClientErrorUriTooLong"


class TooManyRequests(DbpError):
    """A rate limit (``dbp.hardening``); the response says when to retry (``Retry-After``)."""

    http_status = 429
    status_code = "ClientErrorTooManyRequests"


class HeadersTooLarge(DbpError):
    http_status = 431
    status_code = "ClientErrorRequestHeaderFieldsTooLarge"


class ServiceUnavailable(DbpError):
    """The database is busy or unreachable; the client may retry."""

    http_status = 503
    status_code = "ServerErrorServiceUnavailable"


class VerificationError(DbpError):
    """Integrity check failed: says what was expected and what was found."""

    http_status = 500
    status_code = "ServerErrorIntegrity"


@dataclass
class ResultMessage:
    text: str
    correlation_id: str
    timestamp: str
    message_type: str = "Error"
    code: str | None = None
    details: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "messageType": self.message_type,
            "text": self.text,
            "correlationId": self.correlation_id,
            "timestamp": self.timestamp,
        }
        if self.code:
            out["code"] = self.code
        if self.details:
            out["details"] = self.details
        return out


class ProofError(VerificationError):
    """A Merkle proof, checkpoint or signed note was refused (``dbp.integrity``).

    ``reason`` is a stable slug naming the check that failed (``root-mismatch``, ``proof-length``,
    ``bad-signature``, …) so callers and tests can tell failures apart without parsing the message;
    the message says what was expected and what was found.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
