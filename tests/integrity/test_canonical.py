"""The fast canonicaliser must produce exactly the bytes of the rfc8785 reference implementation."""

from __future__ import annotations

import dataclasses
import datetime
import random
import struct
from typing import Any

import orjson
import pytest
import rfc8785

from dbp.integrity.canonical import CanonicalizationError, canonical_bytes, sha256_hex

# Named vectors: (name, value, expected canonical bytes). Expected bytes are written out by hand from
# RFC 8785 §3.2.2 / Appendix B where it gives them.
VECTORS: list[tuple[str, Any, bytes]] = [
    ("integral-float", {"a": 1.0}, b'{"a":1}'),
    ("negative-zero", [-0.0], b"[0]"),
    ("large-integral", [1e20], b"[100000000000000000000]"),
    ("exponent-21", [1e21], b"[1e+21]"),
    ("tiny", [1e-7], b"[1e-7]"),
    ("fraction", [0.000001], b"[0.000001]"),
    ("key-order", {"b": 1, "a": 2, "A": 3}, b'{"A":3,"a":2,"b":1}'),
    ("nested-order", {"z": {"y": 1, "x": [3, {"b": 0, "a": 1}]}}, b'{"z":{"x":[3,{"a":1,"b":0}],"y":1}}'),
    ("control-escapes", ["\u0000\b\f\n\r\t\u001f"], b'["\\u0000\\b\\f\\n\\r\\t\\u001f"]'),
    ("no-slash-escape", ["a/b"], b'["a/b"]'),
    ("non-ascii-literal", ["\u00e9\u20ac"], '["\u00e9\u20ac"]'.encode()),
    # RFC 8785 §3.2.3: sort by UTF-16 code units; U+1F600 (surrogates D83D..) sorts before U+FB33
    ("utf16-key-order", {"\ufb33": 1, "\U0001f600": 2}, '{"\U0001f600":2,"\ufb33":1}'.encode()),
    ("literals", [None, True, False], b"[null,true,false]"),
    # I-JSON (RFC 7493 §2.2): integers up to ±(2**53 - 1) are exact; beyond that see test_refuses_...
    ("max-safe-integers", [2**53 - 1, -(2**53 - 1)], b"[9007199254740991,-9007199254740991]"),
    ("integral-float-2**53", [float(2**53)], b"[9007199254740992]"),
]


@pytest.mark.parametrize(("name", "value", "expected"), VECTORS, ids=[v[0] for v in VECTORS])
def test_vectors(name: str, value: Any, expected: bytes) -> None:
    assert canonical_bytes(value) == expected
    assert rfc8785.dumps(value) == expected


@pytest.mark.parametrize("bad", [
    float("nan"), float("inf"), {"a": float("-inf")}, {1: "x"}, "\ud800",
    2**53, -(2**53), 2**53 + 1, -(2**53) - 1, 123456789012345678, {"a": [1, 2**63 - 1]}, 2**64,
])
def test_refuses_what_i_json_forbids(bad: Any) -> None:
    with pytest.raises((rfc8785.CanonicalizationError, TypeError, ValueError)):
        rfc8785.dumps(bad)
    with pytest.raises(CanonicalizationError):
        canonical_bytes(bad)


@dataclasses.dataclass
class _Record:
    x: int = 1


@pytest.mark.parametrize("bad", [
    datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC), datetime.date(2026, 1, 1), datetime.time(12, 0),
    {"at": datetime.datetime(2026, 1, 1)}, [_Record()], {1, 2}, b"bytes",
])
def test_refuses_values_that_are_not_json_types(bad: Any) -> None:
    """orjson would write these; RFC 8785 (and rfc8785) has no form for them."""
    with pytest.raises(CanonicalizationError):
        canonical_bytes(bad)


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return rng.choice([True, False, None])
    if kind == 1:
        if rng.randrange(20) == 0:  # beyond the I-JSON integer range, where both must refuse
            return rng.choice([1, -1]) * rng.randint(2**53, 2**64)
        return rng.randint(-(2**53 - 1), 2**53 - 1)
    if kind == 2:
        while True:
            x = struct.unpack("d", rng.randbytes(8))[0]
            if x == x and abs(x) != float("inf"):
                return x
    if kind == 3:
        return rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-9, 9)
    if kind == 4:
        alphabet = "aZ09 \"\\/\n\t\u0001\u007f\u00e9\u2028\ufb33\U0001f600"
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(6)))
    if kind in (5, 6):
        keys = ["id", "a", "B", "\u00e9", "\ufb33", "\U0001f600", "zz", "1"]
        return {rng.choice(keys): _random_value(rng, depth + 1) for _ in range(rng.randrange(5))}
    return [_random_value(rng, depth + 1) for _ in range(rng.randrange(5))]


def test_matches_reference_on_generated_values() -> None:
    rng = random.Random(8785)
    refused = 0
    for _ in range(20000):
        value = _random_value(rng)
        try:
            expected = rfc8785.dumps(value)
        except rfc8785.CanonicalizationError:
            refused += 1
            with pytest.raises(CanonicalizationError):
                canonical_bytes(value)
            continue
        assert canonical_bytes(value) == expected, value
    assert 100 < refused < 2000


def test_matches_reference_on_demo_passports(fleet: list[dict[str, Any]]) -> None:
    for doc in fleet:
        assert canonical_bytes(doc) == rfc8785.dumps(doc)


def test_sha256_hex() -> None:
    assert sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.parametrize("value", [
    {"sha256": "1e" * 32},
    {"dppId": "urn:uuid:0c1b84e-5a3f-4e5b-9e-1-2e+3"},
    {"dppId": "urn:uuid:1248145e-2453-4fb1-8e0c-3f6a8d1c2e7b"},
    {"url": "https://docs.example/due-diligence-2025.pdf"},
    {"text": "nullable fields, version 2.05"},
    {"name": "Müller Zellen GmbH", "n": 3.25},
])
def test_ordinary_text_takes_the_fast_path(value: Any) -> None:
    """Digests, URLs and words that merely look like number tokens must not force the 1 ms slow path."""
    from dbp.integrity.canonical import _may_differ

    fast = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    assert not _may_differ(fast)
    assert canonical_bytes(value) == rfc8785.dumps(value)
