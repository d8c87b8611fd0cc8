"""The battery passport document: EN 18223 header plus the seven Annex XIII content clusters.

The document is what a version stores (as RFC 8785 canonical JSON) and what the API returns.
Header fields marked *server-managed* are set by the repository, whatever a client sends.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, StringConstraints

from dbp.passports.attributes import Level, attr, collect_attributes
from dbp.passports.clusters import (
    CarbonFootprint,
    Circularity,
    GeneralProductInformation,
    Labels,
    MaterialComposition,
    PerformanceAndDurability,
    SupplyChainDueDiligence,
)
from dbp.passports.types import Identifier, ShortText, Strict, Timestamp

SCHEMA_VERSION = "dbp-battery-passport/1.0.0"
CONTENT_SPECIFICATION = "urn:dbp:spec:battery-regulation-2023-1542:annex-xiii:din-dke-spec-99100:v1.2"

DppId = Annotated[
    str, StringConstraints(max_length=256, pattern=r"^urn:[A-Za-z0-9][A-Za-z0-9-]{0,31}:[A-Za-z0-9()+,.:=@;$_!*'%-]+$")
]
ProductId = Annotated[
    str, StringConstraints(min_length=3, max_length=2048,
                           pattern=r"^(https?://[!-~]+|urn:[A-Za-z0-9][!-~]+|iso15459:[!-~]+)$")
]
IND = Level.individual


class Granularity(StrEnum):
    model = "model"
    batch = "batch"
    item = "item"


class DppStatus(StrEnum):
    """The passport's own lifecycle (EN 18223 DPPStatus); archived passports are read-only."""

    draft = "draft"
    active = "active"
    inactive = "inactive"
    archived = "archived"


class EndOfLife(Strict):
    """Set when the passport ceases to exist (Art. 77(8): after recycling); data stay archived."""

    reason: Annotated[str, StringConstraints(pattern=r"^(recycled|archived)$")]
    at: Timestamp
    recyclerId: Identifier | None = None


class BatteryPassport(Strict):
    """One battery passport. Every field is an attribute with metadata (``x-dbp`` in the schema)."""

    dppId: DppId | None = attr(
        ll=1, din="6.1.2.1", level=IND, clause="Art. 77(3); Art. 3(66); EN 18223 Table 1",
        description="Battery passport identifier (server-assigned URN unless given at creation)")
    uniqueProductIdentifier: ProductId = attr(
        ll=2, din="6.1.2.2", level=IND, annex="1(a)", clause="Art. 77(3); Annex VI Part A(2); EN 18219",
        description="Unique product identifier: the web link encoded in the battery's QR code",
        default=...)
    productIdentifierAliases: list[ProductId] | None = attr(
        level=IND, appl="oooo", clause="Art. 77(3); EN 18219; ISO/IEC 15459",
        description="The same battery's identifier in other schemes (e.g. an IEC 61406 link or an ISO/IEC 15459 "
                    "identifier): aliases that resolve to this passport and can never name another battery",
        max_length=20)
    granularity: Granularity = attr(
        level=IND, clause="EN 18223 Table 1; EN 18219 (model/batch/item)",
        description="Granularity of the passport", default=Granularity.item)
    dppSchemaVersion: ShortText | None = attr(
        level=IND, clause="EN 18223 Table 1", description="Version of this data model (server-managed)")
    dppStatus: DppStatus | None = attr(
        level=IND, clause="EN 18223 Table 1", description="draft, active, inactive or archived")
    lastUpdate: Timestamp | None = attr(
        level=IND, clause="EN 18223 Table 1", description="Time this version was stored (server-managed)")
    economicOperatorId: Identifier = attr(
        level=IND, clause="EN 18223 Table 1; ESPR Art. 12; Art. 77(4)",
        description="Identifier of the economic operator responsible for the passport", default=...)
    facilityId: Identifier | None = attr(
        level=IND, appl="oooo", clause="EN 18223 Table 1; ESPR Art. 12",
        description="Identifier of the manufacturing facility")
    contentSpecificationIds: list[ShortText] | None = attr(
        level=IND, appl="oooo", clause="EN 18223 Table 1",
        description="Content specifications the passport conforms to", max_length=20)
    predecessorDppIds: list[DppId] | None = attr(
        level=IND, appl="oooo", clause="Art. 77(7); REG-ART77-12 (successor linked to 1..n originals)",
        description="Passports of the original battery or batteries (server-managed)", max_length=1000)
    successorDppIds: list[DppId] | None = attr(
        level=IND, appl="oooo", clause="Art. 77(7); Art. 13(9)",
        description="Passports created on repurposing/remanufacturing (server-managed)", max_length=1000)
    endOfLife: EndOfLife | None = attr(
        level=IND, appl="oooo", clause="Art. 77(8)", description="Recycled/archived marker (server-managed)")

    generalProductInformation: GeneralProductInformation | None = Field(
        default=None, description="Identifiers and product data")
    labels: Labels | None = Field(default=None, description="Symbols, labels and documentation of conformity")
    carbonFootprint: CarbonFootprint | None = Field(default=None, description="Battery carbon footprint")
    supplyChainDueDiligence: SupplyChainDueDiligence | None = Field(
        default=None, description="Supply-chain due diligence")
    materialComposition: MaterialComposition | None = Field(
        default=None, description="Battery materials and composition")
    circularity: Circularity | None = Field(default=None, description="Circularity and resource efficiency")
    performanceAndDurability: PerformanceAndDurability | None = Field(
        default=None, description="Performance and durability")


SERVER_MANAGED = ("dppSchemaVersion", "lastUpdate", "predecessorDppIds", "successorDppIds", "endOfLife")
CLUSTERS = (
    "generalProductInformation", "labels", "carbonFootprint", "supplyChainDueDiligence",
    "materialComposition", "circularity", "performanceAndDurability",
)


def passport_json_schema() -> dict[str, Any]:
    schema = BatteryPassport.model_json_schema(mode="validation")
    schema["$id"] = f"urn:dbp:schema:{SCHEMA_VERSION}"
    schema["title"] = "Battery passport"
    return schema


def attribute_catalogue() -> list[dict[str, Any]]:
    return [a.as_json() for a in collect_attributes(BatteryPassport)]
