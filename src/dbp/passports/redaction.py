"""Access views: a passport version with the attributes a reader may not see removed.

Works on the stored document and the attribute catalogue (every leaf belongs to exactly one
attribute, each with one access group), so it is exhaustive by construction: an attribute whose
group is not granted is absent from the view, never blanked. Views are canonical JSON too.

Two ways to the same bytes. ``redact`` + ``canonical_bytes`` parse and re-serialise (~60 µs for a
10 KB passport). ``view_from_index`` cuts the view out of the stored canonical bytes with the version's
*view index* — where each member lies in them, computed once when the version is written (``index_of``,
~50 µs) — and joins the pieces (~15 µs with the view's SHA-256): RFC 8785 serialises an object member
by member in key order, so an object with members removed is the remaining members' bytes joined by
commas. The index is verified when it is made (the pieces must join back into exactly the stored
bytes); a version without one (written before indexes existed, or whose canonical form needed the
slow path) is redacted. Tests assert both ways give identical bytes for every access-group combination.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import cache, lru_cache
from typing import Any

import orjson

from dbp.integrity.canonical import _OPTIONS, canonical_bytes, sha256_hex
from dbp.passports.attributes import AccessGroup, collect_attributes
from dbp.passports.schemas import BatteryPassport


@cache
def _paths() -> tuple[tuple[AccessGroup, tuple[str, ...]], ...]:
    return tuple((a.meta.access, tuple(a.path.split("."))) for a in collect_attributes(BatteryPassport))


@cache
def withheld_paths(groups: frozenset[AccessGroup]) -> tuple[tuple[str, ...], ...]:
    return tuple(path for group, path in _paths() if group not in groups)


def group_of(path: list[str | int]) -> AccessGroup | None:
    """The access group of the attribute an element path falls in (None: not an attribute path)."""
    names = [p for p in path if isinstance(p, str)]
    for group, attr_path in _paths():
        if tuple(names[: len(attr_path)]) == attr_path:
            return group
    return None


def redact(doc: dict[str, Any], groups: frozenset[AccessGroup]) -> dict[str, Any]:
    """A copy of ``doc`` without the attributes outside ``groups`` (clusters left empty are dropped)."""
    out = dict(doc)
    touched: set[str] = set()
    for path in withheld_paths(groups):
        if len(path) == 1:
            out.pop(path[0], None)
            continue
        cluster = out.get(path[0])
        if not isinstance(cluster, dict) or path[1] not in cluster:
            continue
        if path[0] not in touched:
            cluster = dict(cluster)
            out[path[0]] = cluster
            touched.add(path[0])
        cluster.pop(path[1], None)
    for name in touched:
        if not out[name]:
            del out[name]
    return out


def redacted_bytes(body: bytes, groups: frozenset[AccessGroup]) -> tuple[bytes, str]:
    """Canonical bytes of the view and their SHA-256."""
    view = canonical_bytes(redact(orjson.loads(body), groups))
    return view, sha256_hex(view)


# ------------------------------------------------------------------------------------ view index
# Access groups as bits of a mask; attributes outside any group (header fields) are always kept.
GROUP_BITS = {g: 1 << i for i, g in enumerate(AccessGroup)}
ALWAYS = 0
PUBLIC_BIT = GROUP_BITS[AccessGroup.public]

# start, end, group bit, children (an object a view may cut: its members' start, end, group bit), and
# the union of its children's group bits
Member = tuple[int, int, int, list[tuple[int, int, int]] | None, int]


@cache
def _bits() -> dict[tuple[str, ...], int]:
    return {path: GROUP_BITS[group] for group, path in _paths()}


def mask_of(groups: frozenset[AccessGroup]) -> int:
    return _mask(frozenset(groups))  # frozenset() of a frozenset is the same object: no copy on the hot path


@lru_cache(maxsize=64)  # a handful of combinations exist and every authenticated read asks
def _mask(groups: frozenset[AccessGroup]) -> int:
    mask = 0
    for group in groups:
        mask |= GROUP_BITS[group]
    return mask


@cache
def _cut_clusters() -> frozenset[str]:
    """Top-level members with an attribute that some view withholds (every view shows public ones)."""
    return frozenset(path[0] for group, path in _paths() if len(path) > 1 and group is not AccessGroup.public)


def _members(doc: dict[str, Any], body: bytes) -> list[Member] | None:
    """Where each top-level member of ``doc`` — and each member of an object value that a view may cut —
    lies in ``body``; None unless the members, serialised one by one and joined, are exactly ``body``."""
    bits = _bits()
    cut_clusters = _cut_clusters()
    out = bytearray(b"{")
    members: list[Member] = []
    for n, key in enumerate(sorted(doc)):
        if n:
            out += b","
        start = len(out)
        out += orjson.dumps(key) + b":"
        value = doc[key]
        children: list[tuple[int, int, int]] | None = None
        if isinstance(value, dict) and key in cut_clusters:
            children = []
            out += b"{"
            run: dict[str, Any] = {}  # consecutive members every view keeps: serialised and spanned as one
            for child in sorted(value):
                bit = bits.get((key, child), ALWAYS)
                if bit in (ALWAYS, PUBLIC_BIT):
                    run[child] = value[child]
                    continue
                if run:
                    _append_run(out, run, children)
                    run = {}
                if children:
                    out += b","
                child_start = len(out)
                out += orjson.dumps(child) + b":" + orjson.dumps(value[child], option=_OPTIONS)
                children.append((child_start, len(out), bit))
            if run:
                _append_run(out, run, children)
            out += b"}"
        else:
            out += orjson.dumps(value, option=_OPTIONS)
        present = 0
        for _, _, bit in children or ():
            present |= bit
        members.append((start, len(out), bits.get((key,), ALWAYS), children, present))
    out += b"}"
    return members if bytes(out) == body else None


def _append_run(out: bytearray, run: dict[str, Any], children: list[tuple[int, int, int]]) -> None:
    """Append members that every view keeps as one span (their object's serialisation without braces)."""
    if children:
        out += b","
    start = len(out)
    out += orjson.dumps(run, option=_OPTIONS)[1:-1]
    children.append((start, len(out), ALWAYS))


@cache
def catalogue_fingerprint() -> str:
    """What an index's group bits were worked out from — this index format and every attribute's access
    group. An index made under another catalogue (a release that moved an attribute to another group)
    is not used: its views are redacted under the current one."""
    lines = ["dbp-view-index/1", *sorted(f"{'.'.join(path)}={group.value}" for group, path in _paths())]
    return sha256_hex("\n".join(lines).encode())[:16]


def index_of(doc: dict[str, Any], body: bytes) -> str | None:
    """The view index of ``body``, the canonical bytes of ``doc``: JSON ``{"catalogue": fingerprint,
    "members": [[start, end, groupBit, children, childBits], ...]}`` — where each top-level member lies
    in ``body``, ``children`` ``[[start, end, groupBit], ...]`` for an object a view may cut
    (consecutive members every view keeps as one span) else null, ``childBits`` the union of their
    group bits. None when ``body`` is not the member-by-member serialisation of ``doc`` (such versions'
    views are redacted instead)."""
    members = _members(doc, body)
    if members is None:
        return None
    return orjson.dumps({"catalogue": catalogue_fingerprint(), "members": members}).decode()


def view_from_index(body: bytes, index: str, groups: frozenset[AccessGroup]) -> tuple[bytes, str] | None:
    """The view of ``body`` for ``groups`` and its SHA-256: the members it keeps, cut out of ``body`` with
    its view index and joined — the same bytes as ``canonical_bytes(redact(orjson.loads(body), groups))``.
    None for a combination without the public group (the index merges public members into spans that
    every view keeps) and for an index this code did not write or made under another catalogue."""
    allowed = mask_of(groups)
    if not allowed & PUBLIC_BIT:
        return None
    try:
        parsed = orjson.loads(index)
        if not isinstance(parsed, dict) or parsed.get("catalogue") != catalogue_fingerprint():
            return None
        members: list[Member] = parsed["members"]  # lists where Member says tuples: read the same way
        if not isinstance(members, list):
            return None
        parts = []
        for start, end, bit, children, present in members:
            if bit and not bit & allowed:
                continue
            if not present & ~allowed:  # nothing in it is withheld
                parts.append(body[start:end])
                continue
            if children is None:
                return None
            kept = [body[s:e] for s, e, b in children if not b or b & allowed]
            if kept:  # a cluster all of whose attributes are withheld is left out, as redact does
                parts.append(body[start:children[0][0]] + b",".join(kept) + b"}")
    except (ValueError, TypeError, AttributeError, IndexError, KeyError):  # not an index this code wrote
        return None
    view = b"{" + b",".join(parts) + b"}"
    return view, sha256_hex(view)


class ViewCache:
    """Views of stored versions. With a view index, joined from its byte ranges; without one, redacted and
    kept in an LRU keyed by (passport, version, groups): versions never change, so an entry is never
    stale; the bound keeps memory flat."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, int, frozenset[AccessGroup]], tuple[bytes, str]] = OrderedDict()

    def get(self, dpp_id: str, version: int, groups: frozenset[AccessGroup], body: bytes,
            index: str | None = None) -> tuple[bytes, str]:
        """The view's bytes and SHA-256: joined from the ranges the version's view ``index`` lists (a few
        microseconds, nothing cached), or redacted and cached when the version has no index."""
        if index is not None:
            cut = view_from_index(body, index, groups)
            if cut is not None:
                return cut
        key = (dpp_id, version, groups)
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
            return hit
        view = redacted_bytes(body, groups)
        self._items[key] = view
        if len(self._items) > self.size:
            self._items.popitem(last=False)
        return view


def changed_attributes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Paths of the attributes whose value differs between two documents (server stamps excluded)."""
    out = []
    for _, path in _paths():
        if path[0] in ("lastUpdate", "dppSchemaVersion"):
            continue
        a: Any = old
        b: Any = new
        for part in path:
            a = a.get(part) if isinstance(a, dict) else None
            b = b.get(part) if isinstance(b, dict) else None
        if a != b:
            out.append(".".join(path))
    return out
