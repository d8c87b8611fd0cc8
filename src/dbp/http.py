"""HTTP plumbing shared by every domain: result objects, correlation ids, body limits.

Pure ASGI middleware (no BaseHTTPMiddleware) so the hot read path pays microseconds, not a task.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dbp.errors import BadRequest, DbpError, PayloadTooLarge, ResultMessage

log = logging.getLogger("dbp")


def correlation_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("correlation_id") or uuid.uuid4())


def result_response(
    *, http_status: int, status_code: str, text: str, correlation: str,
    details: list[dict[str, str]] | None = None, code: str | None = None,
) -> Response:
    msg = ResultMessage(text=text, correlation_id=correlation, code=code, details=details or [],
                        timestamp=datetime.now(UTC).isoformat().replace("+00:00", "Z"))
    body = orjson.dumps({"statusCode": status_code, "message": [msg.as_dict()]})
    return Response(body, status_code=http_status, media_type="application/json",
                    headers={"X-Correlation-ID": correlation})


def error_response(request: Request, exc: DbpError) -> Response:
    return result_response(http_status=exc.http_status, status_code=exc.status_code, text=exc.message,
                           correlation=correlation_id(request), details=[d.as_dict() for d in exc.details])


class CorrelationAndLimits:
    """Gives every request a correlation id and refuses bodies over ``max_body`` with 413.

    A declared Content-Length over the limit is refused before reading; a chunked body is counted
    as it streams and cut off at the limit, so an oversize upload never reaches a handler.
    """

    def __init__(self, app: ASGIApp, *, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cid = None
        for name, value in scope["headers"]:
            if name == b"x-correlation-id" and 0 < len(value) <= 128 and value.isascii():
                cid = value.decode()
        cid = cid or str(uuid.uuid4())
        scope.setdefault("state", {})["correlation_id"] = cid
        if "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b""):
            # no identifier or filter holds NUL, and PostgreSQL cannot even compare with one
            await self._refuse(scope, receive, send, cid, BadRequest("the request URL contains a NUL character"))
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_body
                except ValueError:
                    too_big = False
                if too_big:
                    await self._refuse(scope, receive, send, cid, self._too_large())
                    return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _BodyTooLarge()
            return message

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if all(name.lower() != b"x-correlation-id" for name, _ in headers):  # result objects carry it
                    headers.append((b"x-correlation-id", cid.encode()))
                    message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        except _BodyTooLarge:
            await self._refuse(scope, receive, send, cid, self._too_large())

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"request body exceeds {self.max_body} bytes")

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, cid: str, exc: DbpError) -> None:
        response = result_response(http_status=exc.http_status, status_code=exc.status_code, text=exc.message,
                                   correlation=cid)
        await response(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def json_response(data: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status_code, media_type="application/json", headers=headers)
