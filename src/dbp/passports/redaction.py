"""Access views: a passport version with the attributes a reader may not see removed.

Works on the stored document and the attribute catalogue (every leaf belongs to exactly one
attribute, each with one access group), so it is exhaustive by construction: an attribute whose
group is not granted is absent from the view, never blanked. Views are canonical JSON too.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import cache
from typing import Any

import orjson

from dbp.integrity.canonical import canonical_bytes, sha256_hex
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


class ViewCache:
    """LRU of rendered views keyed by (passport, version, groups): versions never change, so an entry
    is never stale; the bound keeps memory flat."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, int, frozenset[AccessGroup]], tuple[bytes, str]] = OrderedDict()

    def get(self, dpp_id: str, version: int, groups: frozenset[AccessGroup], body: bytes) -> tuple[bytes, str]:
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
