"""Access views: a passport version with the attributes a reader may not see removed.

Works on the stored document and the attribute catalogue (every leaf belongs to exactly one
attribute, each with one access group), so it is exhaustive by construction: an attribute whose
group is not granted is absent from the view, never blanked. Views are canonical JSON too.

Two ways to the same bytes. ``redact`` + ``canonical_bytes`` parse and re-serialise (~70 µs for a
10 KB passport). ``view_from_index`` cuts the view out of the stored canonical bytes with the version's
*view index* — where each attribute's member lies in them, computed once when the version is written
(``index_of``) — and joins the pieces (~10 µs): RFC 8785 serialises an object member by member in key
order, so an object with members removed is the remaining members' bytes joined by commas. The index
is verified when it is made (the pieces must join back into exactly the stored bytes), and a version
without one (written before indexes existed, or whose canonical form needed the slow path) is redacted.
Tests assert both ways give identical bytes for every access-group combination.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import cache
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
# Access groups as small integers in the stored index; -1: not an attribute (always kept).
GROUP_CODES = {g: i for i, g in enumerate(AccessGroup)}
NOT_AN_ATTRIBUTE = -1


@cache
def _codes() -> dict[tuple[str, ...], int]:
    return {path: GROUP_CODES[group] for group, path in _paths()}


def index_of(doc: dict[str, Any], body: bytes) -> str | None:
    """The view index of ``body``, the canonical bytes of ``doc`` — JSON ``[[keyStart, valueStart, end,
    group, children], ...]`` per top-level member, ``children`` being ``[[start, end, group], ...]`` of an
    object's members (null for other values) — or None when the members, serialised one by one, do not
    join back into exactly ``body`` (views of such a version are redacted instead)."""
    codes = _codes()
    out = bytearray(b"{")
    index: list[list[Any]] = []
    for n, key in enumerate(sorted(doc)):
        if n:
            out += b","
        key_start = len(out)
        out += orjson.dumps(key) + b":"
        value_start = len(out)
        value = doc[key]
        children: list[list[int]] | None = None
        if isinstance(value, dict):
            children = []
            out += b"{"
            for m, child in enumerate(sorted(value)):
                if m:
                    out += b","
                start = len(out)
                out += orjson.dumps(child) + b":" + orjson.dumps(value[child], option=_OPTIONS)
                children.append([start, len(out), codes.get((key, child), NOT_AN_ATTRIBUTE)])
            out += b"}"
        else:
            out += orjson.dumps(value, option=_OPTIONS)
        index.append([key_start, value_start, len(out), codes.get((key,), NOT_AN_ATTRIBUTE), children])
    out += b"}"
    if bytes(out) != body:
        return None
    return orjson.dumps(index).decode()


def view_from_index(body: bytes, index: list[list[Any]], groups: frozenset[AccessGroup]) -> bytes:
    """The canonical bytes of the view of ``body`` for ``groups``, cut out with its parsed view index:
    the same bytes as ``canonical_bytes(redact(orjson.loads(body), groups))``."""
    allowed = {GROUP_CODES[g] for g in groups}
    allowed.add(NOT_AN_ATTRIBUTE)
    parts = []
    for key_start, value_start, end, group, children in index:
        if group not in allowed:
            continue
        if children is None:
            parts.append(body[key_start:end])
            continue
        kept = [body[start:stop] for start, stop, child_group in children if child_group in allowed]
        if len(kept) == len(children):
            parts.append(body[key_start:end])
        elif kept:  # a cluster all of whose attributes are withheld is left out, as redact does
            parts.append(body[key_start:value_start] + b"{" + b",".join(kept) + b"}")
    return b"{" + b",".join(parts) + b"}"


class ViewCache:
    """LRU of rendered views keyed by (passport, version, groups): versions never change, so an entry
    is never stale; the bound keeps memory flat."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, int, frozenset[AccessGroup]], tuple[bytes, str]] = OrderedDict()

    def get(self, dpp_id: str, version: int, groups: frozenset[AccessGroup], body: bytes,
            index: str | None = None) -> tuple[bytes, str]:
        """The view's bytes and SHA-256: cut out with the version's view ``index`` when it has one."""
        key = (dpp_id, version, groups)
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
            return hit
        if index is not None:
            cut = view_from_index(body, orjson.loads(index), groups)
            view = (cut, sha256_hex(cut))
        else:
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
