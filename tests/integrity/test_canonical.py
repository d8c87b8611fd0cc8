"""The fast canonicaliser must produce exactly the bytes of the rfc8785 reference implementation."""

from __future__ import annotations

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
]


@pytest.mark.parametrize(("name", "value", "expected"), VECTORS, ids=[v[0] for v in VECTORS])
def test_vectors(name: str, value: Any, expected: bytes) -> None:
    assert canonical_bytes(value) == expected
    assert rfc8785.dumps(value) == expected


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {"a": float("-inf")}, {1: "x"}, "\ud800"])
def test_refuses_what_i_json_forbids(bad: Any) -> None:
    with pytest.raises(CanonicalizationError):
        canonical_bytes(bad)


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return rng.choice([True, False, None])
    if kind == 1:
        return rng.randint(-(2**53), 2**53)
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
    for _ in range(20000):
        value = _random_value(rng)
        assert canonical_bytes(value) == rfc8785.dumps(value), value


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
