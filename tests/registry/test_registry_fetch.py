"""The registry's passport reader with an injected transport (no mocks of our own code): redirects, oversize and
slow answers, non-JSON, wrong ETag, private addresses behind a public-looking name."""

from __future__ import annotations

import asyncio
import hashlib

import httpx
import pytest

from dbp.errors import BadRequest, ValidationFailed
from dbp.registry import service
from dbp.registry.fetch import FetchFailed, HttpFetcher, check_endpoint

BODY = b'{"dppId":"urn:uuid:1","economicOperatorId":"op"}'
SHA = hashlib.sha256(BODY).hexdigest()


def _fetch(handler: httpx.MockTransport, endpoint: str = "https://repo.example", **kw: object) -> service.PassportFacts:
    fetcher = HttpFetcher(transport=handler, check_addresses=False, **kw)  # type: ignore[arg-type]
    return service.read_facts(asyncio.run(fetcher.fetch(endpoint, "urn:uuid:1")))


def _answer(status: int = 200, body: bytes = BODY, **headers: str) -> httpx.MockTransport:
    base = {"content-type": "application/json", "etag": f'"{SHA}"', "x-dpp-version": "3"}
    base.update({k.replace("_", "-"): v for k, v in headers.items()})
    return httpx.MockTransport(lambda request: httpx.Response(status, content=body, headers=base))


def test_a_good_answer_gives_the_hash_of_the_exact_bytes() -> None:
    facts = _fetch(_answer())
    assert (facts.version, facts.version_hash, facts.etag_verified) == (3, SHA, True)
    assert facts.url == "https://repo.example/api/v1/dpps/urn:uuid:1"


@pytest.mark.parametrize(("transport", "rule"), [
    (_answer(302, b"", location="http://169.254.169.254/"), "expected HTTP 200, got 302"),
    (_answer(500), "expected HTTP 200, got 500"),
    (_answer(body=b"<html>"), "expected a passport as a JSON object"),
    (_answer(body=b"[1, 2]", etag=f'"{hashlib.sha256(b"[1, 2]").hexdigest()}"'), "JSON object"),
    (_answer(content_type="text/html"), "expected application/json"),
    (_answer(etag='"0000"'), "expected the ETag to be the SHA-256"),
    (_answer(x_dpp_version="three"), "expected an X-DPP-Version header"),
])
def test_unusable_answers_are_refused(transport: httpx.MockTransport, rule: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        _fetch(transport)
    assert rule in caught.value.message


def test_oversize_and_unreachable() -> None:
    with pytest.raises(FetchFailed, match="at most 1000 bytes"):
        _fetch(_answer(body=b"{" + b" " * 5000 + b"}"), max_bytes=1000)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    with pytest.raises(FetchFailed, match="expected the repository to answer"):
        _fetch(httpx.MockTransport(refuse))


def test_a_name_resolving_to_a_private_address_is_not_fetched() -> None:
    seen: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200)

    fetcher = HttpFetcher(transport=httpx.MockTransport(record))
    import socket

    host = socket.gethostname().lower()  # resolves (through /etc/hosts) to this machine's own address
    with pytest.raises(FetchFailed, match=r"the endpoint's address is not allowed"):
        asyncio.run(fetcher.fetch(f"https://{host}", "urn:uuid:1"))
    assert seen == []


@pytest.mark.parametrize("endpoint", ["http://repo.example", "https://127.0.0.1", "https://[fe80::1]",
                                      "https://192.168.1.1:8443", "https://metadata.google.internal",
                                      "https://x.localhost", "ftp://repo.example", "https://a@repo.example",
                                      "https://repo.example:99999"])
def test_endpoints_refused_before_any_fetch(endpoint: str) -> None:
    with pytest.raises(BadRequest):
        check_endpoint(endpoint)


def test_listed_hosts_and_the_node_itself_are_allowed() -> None:
    assert check_endpoint("http://127.0.0.1:8123/", http_hosts=["127.0.0.1:8123"]) == "http://127.0.0.1:8123"
    assert check_endpoint("http://127.0.0.1:8000", own="http://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    with pytest.raises(BadRequest):
        check_endpoint("http://127.0.0.1:8124", http_hosts=["127.0.0.1:8123"])


@pytest.mark.parametrize("url", ["http://2130706433/", "http://0x7f.1/", "http://[::ffff:127.0.0.1]/",
                                 "http://[::127.0.0.1]/", "http://017700000001/", "http://127.1/",
                                 "http://[64:ff9b::7f00:1]/", "http://[2002:7f00:1::]/",
                                 "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", "http://[::ffff:10.0.0.1]/"])
def test_numeric_and_embedded_loopback_forms_are_refused(url: str) -> None:
    """S3/S4: the host as httpx connects to it; numeric IPv4 forms and IPv4 inside IPv6 never reach a socket."""
    from dbp import netguard

    host = netguard.connect_host(url)
    assert netguard.literal_refusal(host) is not None
    with pytest.raises(netguard.AddressRefused):
        netguard.check_resolved(host)
    with pytest.raises(BadRequest) as caught:
        check_endpoint(url.replace("http://", "https://"))
    assert caught.value.details[0].rule == "endpoint.address"
    seen: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200)

    fetcher = HttpFetcher(transport=httpx.MockTransport(record))
    with pytest.raises((FetchFailed, BadRequest)):
        asyncio.run(fetcher.fetch(url.replace("http://", "https://"), "urn:uuid:1"))
    assert seen == []


def test_public_addresses_and_names_pass_the_literal_check() -> None:
    from dbp import netguard

    for host in ("8.8.8.8", "2a00:1450:4001:80b::200e", "repo.example", "xn--bcher-kva.example"):
        assert netguard.literal_refusal(host) is None, host
    assert netguard.connect_host("https://BÜCHER.example/x") == "xn--bcher-kva.example"


def test_identity_encoding_is_asked_for_and_an_encoded_answer_refused() -> None:
    import gzip

    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("accept-encoding", ""))
        bomb = gzip.compress(b"{" + b" " * 100_000 + b"}")
        return httpx.Response(200, content=bomb, headers={"content-type": "application/json",
                                                          "content-encoding": "gzip", "x-dpp-version": "1"})

    with pytest.raises(FetchFailed, match="unencoded answer"):
        _fetch(httpx.MockTransport(answer))
    assert seen == ["identity"]


def test_endpoints_are_normalised_for_storage_and_comparison() -> None:
    from dbp.registry.fetch import normalise_endpoint

    assert check_endpoint("HTTPS://Repo.Example:443/dpp/") == "https://repo.example/dpp"
    assert check_endpoint("https://repo.example:8443") == "https://repo.example:8443"
    assert normalise_endpoint("HTTP://LocalHost:80/") == "http://localhost"
    assert check_endpoint("HTTP://127.0.0.1:8000/", own="http://127.0.0.1:8000") == "http://127.0.0.1:8000"
