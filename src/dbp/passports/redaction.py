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

import itertools
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
# Access groups as bits of a mask; attributes outside any group (header fields) are always kept.
GROUP_BITS = {g: 1 << i for i, g in enumerate(AccessGroup)}
ALWAYS = 0
PUBLIC_BIT = GROUP_BITS[AccessGroup.public]

Member = tuple[int, int, int, list[tuple[int, int, int]] | None]  # start, end, group bit, children


@cache
def _bits() -> dict[tuple[str, ...], int]:
    return {path: GROUP_BITS[group] for group, path in _paths()}


def mask_of(groups: frozenset[AccessGroup]) -> int:
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
            for m, child in enumerate(sorted(value)):
                if m:
                    out += b","
                child_start = len(out)
                out += orjson.dumps(child) + b":" + orjson.dumps(value[child], option=_OPTIONS)
                children.append((child_start, len(out), bits.get((key, child), ALWAYS)))
            out += b"}"
        else:
            out += orjson.dumps(value, option=_OPTIONS)
        members.append((start, len(out), bits.get((key,), ALWAYS), children))
    out += b"}"
    return members if bytes(out) == body else None


def _object_cuts(spans: list[tuple[int, int]], removed: list[bool]) -> list[tuple[int, int]]:
    """Byte ranges to cut so that an object keeps exactly its members not ``removed`` (at least one), with
    single commas between them: a removed member goes with the comma before it, or — while no member
    before it is kept — with the comma after it."""
    cuts = []
    leading = True
    for i, (start, end) in enumerate(spans):
        if not removed[i]:
            leading = False
        elif leading:
            cuts.append((start, spans[i + 1][0]))
        else:
            cuts.append((spans[i - 1][1], end))
    return cuts


class _Cutter:
    """The byte ranges each view leaves out, from the member spans of one version. A cluster's cuts depend
    only on which of the groups present in it are withheld, so they are worked out once per such set and
    shared by every view that withholds it."""

    def __init__(self, members: list[Member]) -> None:
        self.members = members
        self.spans = [(s, e) for s, e, _, _ in members]
        self.present = [0 if children is None else _union(b for _, _, b in children)
                        for _, _, _, children in members]
        self._inner: dict[tuple[int, int], list[tuple[int, int]] | None] = {}

    def cuts(self, allowed: int) -> list[tuple[int, int]]:
        """Ranges the view for the group bits ``allowed`` leaves out, in order. A cluster all of whose
        attributes are withheld is left out whole, as ``redact`` does."""
        removed_top: list[bool] = []
        inner: list[tuple[int, int]] = []
        for i, (_, _, bit, _) in enumerate(self.members):
            if bit and not bit & allowed:
                removed_top.append(True)
                continue
            withheld = self.present[i] & ~allowed
            if not withheld:
                removed_top.append(False)
                continue
            cluster = self._cluster_cuts(i, withheld)
            removed_top.append(cluster is None)
            inner += cluster or ()
        if all(removed_top):
            return [(1, self.members[-1][1])] if self.members else []
        return sorted(_object_cuts(self.spans, removed_top) + inner)

    def _cluster_cuts(self, i: int, withheld: int) -> list[tuple[int, int]] | None:
        """Cuts inside member ``i``'s object when the group bits ``withheld`` are; None: all of it goes."""
        key = (i, withheld)
        if key not in self._inner:
            children = self.members[i][3] or []
            removed = [bool(b & withheld) for _, _, b in children]
            self._inner[key] = None if all(removed) else _object_cuts([(s, e) for s, e, _ in children], removed)
        return self._inner[key]


def _union(bits: Any) -> int:
    out = 0
    for bit in bits:
        out |= bit
    return out


def index_of(doc: dict[str, Any], body: bytes) -> str | None:
    """The view index of ``body``, the canonical bytes of ``doc``: for every combination of access groups
    that includes the public one, the view's SHA-256 and the byte ranges of ``body`` that make it up —
    JSON ``{"<group bits>": [sha256, [start, end, start, end, ...]], ...}``. None when ``body`` is not the
    member-by-member serialisation of ``doc`` (such versions' views are redacted instead)."""
    members = _members(doc, body)
    if members is None:
        return None
    cutter = _Cutter(members)
    plans: dict[str, list[Any]] = {}
    others = [bit for bit in GROUP_BITS.values() if bit != PUBLIC_BIT]
    for r in range(len(others)):  # not all groups: that view is the stored version itself
        for combo in itertools.combinations(others, r):
            allowed = PUBLIC_BIT | sum(combo)
            ranges: list[int] = []
            pos = 0
            for start, end in cutter.cuts(allowed):
                if start > pos:
                    ranges += (pos, start)
                pos = max(pos, end)
            ranges += (pos, len(body))
            view = b"".join(body[ranges[k]:ranges[k + 1]] for k in range(0, len(ranges), 2))
            plans[str(allowed)] = [sha256_hex(view), ranges]
    return orjson.dumps(plans).decode()


def view_from_index(body: bytes, index: str, groups: frozenset[AccessGroup]) -> tuple[bytes, str] | None:
    """The view of ``body`` for ``groups`` and its SHA-256, joined from the ranges the version's view index
    lists: the same bytes as ``canonical_bytes(redact(orjson.loads(body), groups))``. None when the index
    has no entry for ``groups`` (a combination without the public group)."""
    try:
        plan = orjson.loads(index).get(str(mask_of(groups)))
        if plan is None:
            return None
        sha, ranges = plan
        return b"".join(body[ranges[k]:ranges[k + 1]] for k in range(0, len(ranges), 2)), sha
    except (ValueError, TypeError, AttributeError):  # not an index this code wrote: redact instead
        return None


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
