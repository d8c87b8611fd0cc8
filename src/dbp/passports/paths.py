"""Element paths (EN 18222 ReadDataElement / UpdateDataElement) and JSON Merge Patch (RFC 7396).

An element path names one value inside a passport: segments separated by ``/`` or ``.``, each a
field name (letters and digits, starting with a letter) or an array index, e.g.
``performanceAndDurability/ratedCapacity`` or ``materialComposition.hazardousSubstances.0.casNumber``
(``hazardousSubstances[0]`` is accepted too). Anything else — empty segments, ``..``, escapes,
wildcards — is refused before any lookup, so a path can never leave the document.
"""

from __future__ import annotations

import re
from typing import Any

from dbp.errors import BadRequest, FieldError, NotFound

_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,63}$")
_INDEX = re.compile(r"^(0|[1-9][0-9]{0,5})$")
_BRACKET = re.compile(r"\[(\d{1,6})\]")
MAX_SEGMENTS = 16

Segment = str | int


def parse_element_path(raw: str) -> list[Segment]:
    """Split and check a path; raises BadRequest naming the offending segment."""
    if not raw or len(raw) > 512:
        raise BadRequest("element path must be 1..512 characters")
    text = _BRACKET.sub(r"/\1", raw)
    parts = re.split(r"[/.]", text.strip("/"))
    if len(parts) > MAX_SEGMENTS:
        raise BadRequest(f"element path has more than {MAX_SEGMENTS} segments")
    out: list[Segment] = []
    for i, part in enumerate(parts):
        if _FIELD.match(part):
            out.append(part)
        elif _INDEX.match(part) and i > 0:
            out.append(int(part))
        else:
            raise BadRequest(
                f"invalid element path segment {part!r}",
                details=[FieldError(path=raw, rule="elementPath.segment",
                                    message="segments are field names or array indexes")],
            )
    return out


def display(path: list[Segment]) -> str:
    out = "$"
    for s in path:
        out += f"[{s}]" if isinstance(s, int) else f".{s}"
    return out


def get_element(doc: Any, path: list[Segment]) -> Any:
    node = doc
    for seg in path:
        in_list = isinstance(seg, int) and isinstance(node, list) and seg < len(node)
        in_dict = isinstance(seg, str) and isinstance(node, dict) and seg in node
        if in_list or in_dict:
            node = node[seg]
        else:
            raise NotFound(f"no element at {display(path)}")
    return node


def set_element(doc: dict[str, Any], path: list[Segment], value: Any) -> dict[str, Any]:
    """A copy of ``doc`` with the element at ``path`` replaced (``None`` removes it).

    Missing objects along the path are created; an array index may address an existing item or
    append at the end. The copy shares untouched subtrees with ``doc``.
    """
    if not path:
        raise BadRequest("element path must name an element inside the passport")

    def put(node: Any, depth: int) -> Any:
        seg = path[depth]
        last = depth == len(path) - 1
        if isinstance(seg, int):
            if not isinstance(node, list) or seg > len(node):
                raise NotFound(f"no array item at {display(path[: depth + 1])}")
            copy = list(node)
            child = copy[seg] if seg < len(copy) else None
            new = value if last else put(_or_empty(child, path[depth + 1]), depth + 1)
            if new is None:
                if seg < len(copy):
                    del copy[seg]
            elif seg == len(copy):
                copy.append(new)
            else:
                copy[seg] = new
            return copy
        if node is None:
            node = {}
        if not isinstance(node, dict):
            raise NotFound(f"{display(path[:depth])} is not an object")
        copy_d = dict(node)
        child = copy_d.get(seg)
        new = value if last else put(_or_empty(child, path[depth + 1]), depth + 1)
        if new is None:
            copy_d.pop(seg, None)
        else:
            copy_d[seg] = new
        return copy_d

    result = put(doc, 0)
    assert isinstance(result, dict)
    return result


def _or_empty(child: Any, next_seg: Segment) -> Any:
    """The existing child, or the empty container the next segment needs."""
    if child is not None:
        return child
    return [] if isinstance(next_seg, int) else {}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 §2 MergePatch: objects merge recursively, ``null`` removes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
