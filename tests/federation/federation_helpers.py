"""Helpers of the federation tests (``dbp.federation`` started as separate processes): four consecutive free ports,
a PostgreSQL database of a node's own next to DBP_TEST_DATABASE_URL's, a man-in-the-middle HTTP proxy on real
loopback sockets, and bounded waits that show the nodes' logs when they time out."""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import BinaryIO, TypeVar
from urllib.parse import urlsplit

import orjson
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from dbp.db import normalise_url

T = TypeVar("T")

# every node of a test federation: a test bursts, so no 429
LIMITS: dict[str, str] = {
    "environment": "test", "rate_limit_per_address": "1000000", "rate_limit_per_address_burst": "1000000",
    "rate_limit_per_principal": "1000000", "rate_limit_per_principal_burst": "1000000"}

# hop-by-hop headers (RFC 9110 §7.6.1) and what the proxy sets itself; Accept-Encoding is dropped so that the
# repository answers in the clear and the proxy can read (and alter) what it passes on
_REQUEST_DROP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
                           "upgrade", "host", "accept-encoding", "content-length"})
_RESPONSE_DROP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})
MAX_HEAD = 64 * 1024

# the forgery: the victim's copy says it is a repurposed battery, in canonical JSON still
ORIGINAL = '"batteryStatus":"original"'
FORGED = '"batteryStatus":"repurposed"'


def free_ports(count: int = 5) -> int:
    """A port whose next ``count - 1`` are free as well (a federation's ``base_port``: four nodes and the
    successor that joins when custody moves)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base > 65000:
            continue
        try:
            for i in range(1, count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
    raise RuntimeError("no consecutive free ports for a federation")


def postgres_database(suffix: str) -> str | None:
    """``{db}_{suffix}`` on DBP_TEST_DATABASE_URL's server, made anew (dropped first if it exists), as a URL; None
    when DBP_TEST_DATABASE_URL is not set (the node keeps a SQLite file)."""
    url = os.environ.get("DBP_TEST_DATABASE_URL")
    if not url:
        return None
    main = make_url(normalise_url(url))
    own = main.set(database=f"{main.database}_{suffix}")
    admin = create_engine(main, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{own.database}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{own.database}"'))
    except Exception as exc:
        pytest.fail(f"DBP_TEST_DATABASE_URL={url} is set but {own.database} cannot be made there: {exc}",
                    pytrace=False)
    finally:
        admin.dispose()
    return own.render_as_string(hide_password=False)


class MitmProxy:
    """An HTTP/1.1 reverse proxy on ``127.0.0.1`` (a port of its own) in front of ``upstream`` (host:port): each
    request is forwarded over a connection of its own, its answer read whole and passed on (keep-alive towards the
    client). Faults it injects on the answers of ``GET /api/v1/feed``:

    * ``cut_next_feed()`` — the next feed answer is cut mid-body: the status line, the headers (announcing the
      whole length) and half the body are sent, then the connection is closed. Once.
    * ``tamper(marker)`` — while set, every feed entry whose ``body`` holds the text ``marker`` (e.g. a passport's
      product identifier, known before the repository assigns its dppId) gets that body altered (``ORIGINAL`` →
      ``FORGED``: still valid JSON, the page still valid JSON, Content-Length fixed); ``tamper(None)`` ends it.

    Counters: ``requests`` (by path), ``cuts``, ``tampered`` (entries altered); ``errors`` lists what went wrong
    inside the proxy (the test asserts it stays empty)."""

    def __init__(self, upstream: str) -> None:
        self.upstream_host, port = upstream.rsplit(":", 1)
        self.upstream_port = int(port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)  # accept() wakes up to see close()
        self.port = int(self.listener.getsockname()[1])
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.cuts = 0
        self.tampered = 0
        self.errors: list[str] = []
        self._cut_pending = False
        self._marker: str | None = None
        self._open: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="mitm-proxy", daemon=True)

    # ------------------------------------------------------------------------------------------ control
    def start(self) -> MitmProxy:
        self._thread.start()
        return self

    def cut_next_feed(self) -> None:
        with self.lock:
            self._cut_pending = True

    def tamper(self, marker: str | None) -> None:
        with self.lock:
            self._marker = marker

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self.listener.close()
        with self.lock:
            conns = list(self._open)
        for conn in conns:
            _close(conn)

    # ------------------------------------------------------------------------------------------ serving
    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            conn.settimeout(None)
            with self.lock:
                self._open.add(conn)
            threading.Thread(target=self._serve, args=(conn,), name="mitm-proxy-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        try:
            while True:
                request = _read_request(reader)
                if request is None:
                    return
                method, target, headers, body = request
                path = urlsplit(target).path
                with self.lock:
                    self.requests[path] += 1
                status, reason, answer_headers, answer = self._forward(method, target, headers, body)
                cut = False
                if method == "GET" and path == "/api/v1/feed" and status == 200:
                    with self.lock:
                        cut, self._cut_pending = self._cut_pending, False
                        marker = self._marker
                    if not cut and marker is not None:
                        answer = self._forge(answer, marker)
                head = [f"HTTP/1.1 {status} {reason}"]
                head += [f"{k}: {v}" for k, v in answer_headers if k.lower() not in _RESPONSE_DROP]
                head.append(f"Content-Length: {len(answer)}")
                wire = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
                if cut:
                    with self.lock:
                        self.cuts += 1
                    conn.sendall(wire + answer[: len(answer) // 2])
                    return  # the connection drops mid-answer
                conn.sendall(wire + answer)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if not isinstance(exc, ConnectionError | TimeoutError):
                with self.lock:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            reader.close()
            with self.lock:
                self._open.discard(conn)
            _close(conn)

    def _forward(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
                 ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        upstream = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=30)
        try:
            sent = {k: v for k, v in headers if k.lower() not in _REQUEST_DROP}
            upstream.request(method, target, body=body if body or method in ("POST", "PUT", "PATCH") else None,
                             headers=sent)
            response = upstream.getresponse()
            data = response.read()
            return response.status, response.reason, response.getheaders(), data
        finally:
            upstream.close()

    def _forge(self, answer: bytes, marker: str) -> bytes:
        page = orjson.loads(answer)
        altered = 0
        for entry in page.get("entries", []):
            if isinstance(entry, dict) and isinstance(entry.get("body"), str) and marker in entry["body"]:
                forged = entry["body"].replace(ORIGINAL, FORGED, 1)
                if forged == entry["body"]:
                    with self.lock:
                        self.errors.append(f"tamper: {ORIGINAL} is not in the body of {entry.get('dppId')}")
                    continue
                orjson.loads(forged)  # still a JSON document: only its content lies
                entry["body"] = forged
                altered += 1
        if not altered:
            return answer
        with self.lock:
            self.tampered += altered
        return orjson.dumps(page)


def _close(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)
    conn.close()


def _read_request(reader: BinaryIO) -> tuple[str, str, list[tuple[str, str]], bytes] | None:
    """One HTTP/1.1 request (Content-Length bodies only: what httpx sends); None at the end of the connection."""
    line = reader.readline(MAX_HEAD)
    if not line:
        return None
    method, target, _ = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    headers: list[tuple[str, str]] = []
    size = len(line)
    while True:
        raw = reader.readline(MAX_HEAD)
        size += len(raw)
        if not raw or size > MAX_HEAD:
            raise ValueError("request head cut or too large")
        text = raw.decode("latin-1").rstrip("\r\n")
        if not text:
            break
        name, value = text.split(":", 1)
        headers.append((name.strip(), value.strip()))
    fields = {k.lower(): v for k, v in headers}
    if "chunked" in fields.get("transfer-encoding", "").lower():
        raise ValueError("chunked request bodies are not proxied")
    length = int(fields.get("content-length", "0") or 0)
    body = reader.read(length) if length else b""
    return method, target, headers, body


def wait_for(what: str, fetch: Callable[[], T], until: Callable[[T], bool], *, timeout: float,
             logs: Callable[[], str], interval: float = 0.1) -> T:
    """``fetch()`` polled every ``interval`` seconds until ``until`` holds of its value (returned), for
    ``timeout`` seconds at most; then an AssertionError naming ``what``, the last value seen and the nodes' logs."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last seen: {value!r:.3000}\n"
                                 f"{logs()}")
        time.sleep(interval)
