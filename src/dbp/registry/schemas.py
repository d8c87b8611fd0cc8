"""Request bodies of the registry API (camelCase JSON, strict: unknown members, wrong types and control characters
are a 400 naming the member and the rule) and the parsing of a raw body into one of them."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from dbp.errors import BadRequest, FieldError
from dbp.integrity.canonical import DuplicateMember, unique_members
from dbp.passports.types import Identifier
from dbp.passports.validation import json_path

_NO_SPACE = r"^[^\s\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]+$"
ProductIdText = Annotated[str, StringConstraints(min_length=3, max_length=2048, pattern=_NO_SPACE)]
DppIdText = Annotated[str, StringConstraints(
    max_length=256, pattern=r"^urn:[A-Za-z0-9][A-Za-z0-9-]{0,31}:[A-Za-z0-9()+,.:=@;$_!*'%-]+$")]
EndpointText = Annotated[str, StringConstraints(min_length=8, max_length=2048, pattern=_NO_SPACE)]
CommodityCode = Annotated[str, StringConstraints(pattern=r"^[0-9]{6,10}$")]
NodeId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]


class Granularity(StrEnum):
    item = "item"
    batch = "batch"
    model = "model"


class NodeKind(StrEnum):
    repository = "repository"
    backup = "backup"
    registry = "registry"


class NodeStatus(StrEnum):
    active = "active"
    exited = "exited"
    unreachable = "unreachable"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class RegisterRequest(Strict):
    """EN 18222 PostNewDPPToRegistry."""

    uniqueProductIdentifier: ProductIdText
    dppId: DppIdText
    economicOperatorId: Identifier
    facilityId: Identifier | None = None
    commodityCode: CommodityCode | None = Field(default=None, description="HS / CN / TARIC code, 6-10 digits")
    granularity: Granularity = Granularity.item
    endpoint: EndpointText = Field(description="the repository's API base URL (https)")
    backupProvider: NodeId | None = Field(default=None, description="node id of the backup provider")
    aliases: list[ProductIdText] | None = Field(default=None, max_length=20,
                                                description="the battery's identifiers in other schemes")


class RoutingRequest(Strict):
    """A routing change: a new endpoint, a successor operator (custody), a new backup provider."""

    endpoint: EndpointText | None = None
    economicOperatorId: Identifier | None = None
    backupProvider: NodeId | None = None


class JwkSet(BaseModel):
    model_config = ConfigDict(extra="allow")

    keys: list[dict[str, Any]] = Field(max_length=50)


class NodeCreate(Strict):
    nodeId: NodeId
    kind: NodeKind
    operatorId: Identifier | None = None
    endpoint: EndpointText
    keys: JwkSet | None = None
    status: NodeStatus = NodeStatus.active


class NodePatch(Strict):
    status: NodeStatus | None = None
    endpoint: EndpointText | None = None
    keys: JwkSet | None = None


class VerifyRequest(Strict):
    proof: Annotated[str, StringConstraints(min_length=1, max_length=64 * 1024)]


M = TypeVar("M", bound=BaseModel)


def parse_body(raw: bytes, model: type[M]) -> M:
    """``raw`` as ``model``: I-JSON (no duplicate members, valid UTF-8), an object, then the model's rules;
    ``BadRequest`` with one detail per broken rule otherwise."""
    try:
        orjson.loads(raw)
        data = json.loads(raw, object_pairs_hook=unique_members)
    except DuplicateMember as exc:
        raise BadRequest(f"request body repeats the member name {exc.args[0]!r}",
                         details=[FieldError("$", "json.duplicateKey", "member names must be unique")]) from None
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}",
                         details=[FieldError("$", "json.syntax", str(exc)[:200])]) from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object", details=[FieldError("$", "json.object", "an object")])
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        details = [FieldError(json_path(tuple(e.get("loc", ()))), f"request.{e.get('type', 'invalid')}",
                              str(e.get("msg", ""))[:300]) for e in exc.errors()[:50]]
        raise BadRequest("the request body breaks the registry's rules", details=details) from None
