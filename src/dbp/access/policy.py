"""Who may read which access groups of a passport: the read decision of Art. 77(2).

``decide_read`` is pure: it takes the principal, the passport's responsible operator, the
operators that authorised the principal's organisation and the principal's live grants, and
returns the groups it may read plus a reason a person can understand. Deny by default.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

from dbp.access.principal import Principal, Role
from dbp.passports.attributes import AccessGroup

PUBLIC = frozenset({AccessGroup.public})
EVERYTHING = frozenset(AccessGroup)
ANY_PURPOSE = "*"


class PolicyError(ValueError):
    """The policy file is not valid; the message says where."""


@dataclass(frozen=True)
class Policy:
    """Role → purpose → access groups (beyond public)."""

    rules: dict[Role, dict[str, frozenset[AccessGroup]]]
    # (role, purpose, grant groups) -> decision for callers the passport's operator did not authorise: decide_read
    # is pure given the policy, and every authenticated read asks (bounded: purposes come from requests)
    decisions: dict[tuple[Role | None, str | None, frozenset[AccessGroup]], ReadDecision] = field(
        default_factory=dict, compare=False, repr=False)

    def groups_for(self, role: Role | None, purpose: str | None) -> frozenset[AccessGroup]:
        if role is None:
            return frozenset()
        by_purpose = self.rules.get(role, {})
        return by_purpose.get(ANY_PURPOSE, frozenset()) | (by_purpose.get(purpose, frozenset()) if purpose else
                                                            frozenset())

    def purposes_of(self, role: Role | None) -> list[str]:
        return sorted(self.rules.get(role, {})) if role else []


def parse_policy(text: str, *, source: str) -> Policy:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{source}: {exc}") from None
    rules: dict[Role, dict[str, frozenset[AccessGroup]]] = {}
    for role_name, body in (data.get("roles") or {}).items():
        try:
            role = Role(role_name)
        except ValueError:
            raise PolicyError(f"{source}: unknown role {role_name!r}") from None
        purposes: dict[str, frozenset[AccessGroup]] = {}
        for purpose, groups in (body.get("purposes") or {}).items():
            try:
                parsed = frozenset(AccessGroup(g) for g in groups)
            except ValueError as exc:
                raise PolicyError(f"{source}: roles.{role_name}.purposes.{purpose}: {exc}") from None
            if AccessGroup.authorities in parsed and role not in (Role.notified_body, Role.market_surveillance,
                                                                  Role.commission):
                raise PolicyError(f"{source}: test reports (authorities) are for authorities only, not {role_name}")
            purposes[purpose] = parsed
        rules[role] = purposes
    return Policy(rules)


@cache
def load_policy(path: str | None = None) -> Policy:
    if path:
        return parse_policy(Path(path).read_text(encoding="utf-8"), source=path)
    text = resources.files("dbp.access").joinpath("policy.toml").read_text(encoding="utf-8")
    return parse_policy(text, source="bundled policy.toml")


@dataclass(frozen=True)
class ReadDecision:
    groups: frozenset[AccessGroup]
    reason: str

    @property
    def everything(self) -> bool:
        return self.groups == EVERYTHING


def decide_read(
    *, principal: Principal, passport_operator_id: str | None, authorised_for: frozenset[str],
    grant_groups: frozenset[AccessGroup], policy: Policy,
) -> ReadDecision:
    """The groups ``principal`` may read of one passport, and why."""
    if principal.is_anonymous:
        return ReadDecision(PUBLIC, "public: Annex XIII point 1 only")
    if principal.role is Role.device:  # before ownership: a device key of the operator is not the operator
        return ReadDecision(PUBLIC, "device keys write dynamic data; they read only what the public reads")
    if passport_operator_id is not None and principal.operator_id == passport_operator_id:
        return ReadDecision(EVERYTHING, "responsible economic operator")
    if passport_operator_id is not None and passport_operator_id in authorised_for:
        return ReadDecision(EVERYTHING, "authorised in writing by the responsible operator")
    key = (principal.role, principal.purpose, grant_groups)
    cached = policy.decisions.get(key)
    if cached is None:
        cached = _by_policy(principal, grant_groups, policy)
        if len(policy.decisions) < MAX_CACHED_DECISIONS:
            policy.decisions[key] = cached
    return cached


MAX_CACHED_DECISIONS = 4096


def _by_policy(principal: Principal, grant_groups: frozenset[AccessGroup], policy: Policy) -> ReadDecision:
    """What the policy and the caller's grants allow (the operator did not authorise the caller)."""
    by_policy = policy.groups_for(principal.role, principal.purpose)
    groups = PUBLIC | by_policy | grant_groups
    if groups == PUBLIC:
        purposes = policy.purposes_of(principal.role)
        hint = f"; purposes for {principal.role.value}: {', '.join(purposes)}" if purposes and principal.role else ""
        stated = principal.purpose or "none"
        return ReadDecision(PUBLIC, f"no legitimate interest established for purpose {stated}{hint}")
    parts = []
    if by_policy:
        parts.append(f"{principal.role.value if principal.role else '?'} for {principal.purpose or 'any purpose'}")
    if grant_groups:
        parts.append("grant by the responsible operator")
    return ReadDecision(groups, "; ".join(parts))
