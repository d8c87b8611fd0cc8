"""Who is calling: the principal every access decision and every access-log record is about."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    """Roles of organisations in the battery value chain (Art. 77(2), Art. 78; EN 18239)."""

    economic_operator = "economicOperator"  # places the battery on the market; responsible operator
    service_provider = "serviceProvider"  # acts for an economic operator, authorised in writing
    repairer = "repairer"
    remanufacturer = "remanufacturer"
    second_life_operator = "secondLifeOperator"
    recycler = "recycler"
    waste_operator = "wasteOperator"  # producer responsibility organisation or waste management operator
    purchaser = "purchaser"  # legal purchaser of an individual battery, or an aggregator acting for it
    notified_body = "notifiedBody"
    market_surveillance = "marketSurveillance"
    commission = "commission"
    device = "device"  # a battery management gateway posting dynamic data
    backup_provider = "backupProvider"  # independent DPP service provider holding backup copies (ESPR Art. 10(4))


AUTHORITIES = frozenset({Role.notified_body, Role.market_surveillance, Role.commission})


class PrincipalKind(StrEnum):
    anonymous = "anonymous"
    user = "user"
    client = "client"
    api_key = "apiKey"


@dataclass(frozen=True)
class Principal:
    """An authenticated (or anonymous) caller, with the purpose it stated for this request."""

    kind: PrincipalKind
    subject: str  # client id, user name, API key id, or "anonymous"
    org_id: str | None = None
    operator_id: str | None = None  # the organisation's operator identifier (matches economicOperatorId)
    role: Role | None = None
    purpose: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    dpp_ids: frozenset[str] | None = None  # device keys: the batteries they may feed; None = no limit

    @property
    def is_anonymous(self) -> bool:
        return self.kind is PrincipalKind.anonymous

    @property
    def is_authority(self) -> bool:
        return self.role in AUTHORITIES

    def with_purpose(self, purpose: str | None) -> Principal:
        return Principal(self.kind, self.subject, self.org_id, self.operator_id, self.role, purpose, self.scopes,
                         self.dpp_ids)


ANONYMOUS = Principal(kind=PrincipalKind.anonymous, subject="anonymous")
