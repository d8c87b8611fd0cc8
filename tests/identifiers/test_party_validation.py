"""Passport validation refuses operator and facility identifiers that claim a scheme and break it;
opaque identifiers (urn:, did:web:, free text) pass. Semantic refusals are 422 ClientErrorBadRequest
with the identifier rule in the details, like every other semantic rule of the passport."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from conftest import assert_error
from dbp.passports.validation import semantic_errors, validate_dict

BAD_GLN = "4012345000008"  # 4012345000009 is correct
GOOD_GLN = "4012345000009"
BAD_FACILITY = "(414)9506000134370"  # 9506000134376 is correct
OPAQUE = "urn:dbp:op:pro-recycling-eu"


def errors_of(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(e.path, e.rule) for e in semantic_errors(validate_dict(doc))}


def with_operator(passport: dict[str, Any], operator_id: str) -> dict[str, Any]:
    doc = copy.deepcopy(passport)
    doc["economicOperatorId"] = operator_id
    doc["generalProductInformation"]["operatorInformation"]["identifier"] = operator_id
    return doc


def authorise_operator(session_factory: Any, service_provider: dict[str, Any], operator_id: str) -> None:
    """The test service provider may write passports of ``operator_id`` (so validation, not the
    authorisation check, decides)."""
    from dbp.access import service as access
    from dbp.access.principal import Role

    with session_factory.begin() as s:
        org = access.create_org(s, name=f"Operator {operator_id}", operator_id=operator_id,
                                role=Role.economic_operator)
        access.authorise(s, operator_org_id=org.id, agent_org_id=service_provider["org_id"], reference="test")


# ------------------------------------------------------------------------------------- semantic_errors
def test_fleet_identifiers_pass(fleet: list[dict[str, Any]]) -> None:
    for doc in fleet:
        assert not any(r.startswith(("gln.", "lei.", "eori.", "iso15459.", "party.")) for _, r in errors_of(doc))


@pytest.mark.parametrize(("path", "value", "rule"), [
    ("$.economicOperatorId", BAD_GLN, "gln.checkDigit"),
    ("$.economicOperatorId", "lei:5493001KJTIIGC8Y1R13", "lei.checkDigits"),
    ("$.economicOperatorId", "eori:US123", "eori.country"),
    ("$.economicOperatorId", "DE1234567890123456", "eori.length"),
    ("$.economicOperatorId", "(414)4012345000009", "gln.role"),
    ("$.facilityId", BAD_FACILITY, "gln.checkDigit"),
    ("$.facilityId", "lei:5493001KJTIIGC8Y1R12", "lei.role"),
    ("$.generalProductInformation.operatorInformation.identifier", "gln:401234500000", "gln.length"),
    ("$.generalProductInformation.manufacturerInformation.identifier", "5493001KJTIIGC8Y1R13", "lei.checkDigits"),
    ("$.generalProductInformation.manufacturingPlace.facilityId", "9506000134375", "gln.checkDigit"),
])
def test_broken_identifier_is_refused_at_its_path(passport: dict[str, Any], path: str, value: str,
                                                  rule: str) -> None:
    doc = copy.deepcopy(passport)
    *parents, leaf = path[2:].split(".")
    node = doc
    for name in parents:
        node = node.setdefault(name, {})
    node[leaf] = value
    assert (path, rule) in errors_of(doc)


@pytest.mark.parametrize("value", [OPAQUE, "did:web:operator.example", "EO-A", "GB123456789000",
                                   "https://operator.example/", GOOD_GLN, "lei:5493001kjtiigc8y1r12",
                                   "eori:de123456789012345", "iso15459:UN:123456789"])
def test_opaque_or_valid_operator_identifier_passes(passport: dict[str, Any], value: str) -> None:
    assert errors_of(with_operator(passport, value)) == set()


# -------------------------------------------------------------------------------------------- over HTTP
def test_gln_operator_with_wrong_check_digit_is_refused(client: httpx.Client, passport: dict[str, Any],
                                                        session_factory: Any,
                                                        service_provider: dict[str, Any]) -> None:
    authorise_operator(session_factory, service_provider, BAD_GLN)
    body = assert_error(client.post("/api/v1/dpps", json=with_operator(passport, BAD_GLN)), 422,
                        "ClientErrorBadRequest")
    details = body["message"][0]["details"]
    found = {(d["path"], d["rule"]) for d in details}
    assert ("$.economicOperatorId", "gln.checkDigit") in found
    assert ("$.generalProductInformation.operatorInformation.identifier", "gln.checkDigit") in found
    assert any("expected check digit 9" in d["message"] for d in details)


def test_facility_with_wrong_check_digit_is_refused(client: httpx.Client, passport: dict[str, Any]) -> None:
    doc = copy.deepcopy(passport)
    doc["facilityId"] = BAD_FACILITY
    doc["generalProductInformation"]["manufacturingPlace"]["facilityId"] = BAD_FACILITY
    body = assert_error(client.post("/api/v1/dpps", json=doc), 422, "ClientErrorBadRequest")
    found = {(d["path"], d["rule"]) for d in body["message"][0]["details"]}
    assert found == {("$.facilityId", "gln.checkDigit"),
                     ("$.generalProductInformation.manufacturingPlace.facilityId", "gln.checkDigit")}


def test_opaque_urn_operator_is_accepted(client: httpx.Client, passport: dict[str, Any]) -> None:
    r = client.post("/api/v1/dpps", json=with_operator(passport, OPAQUE))
    assert r.status_code == 201, r.text
    assert r.json()["economicOperatorId"] == OPAQUE


def test_gln_written_as_element_string_is_accepted(client: httpx.Client, passport: dict[str, Any],
                                                   session_factory: Any,
                                                   service_provider: dict[str, Any]) -> None:
    operator = f"(417){GOOD_GLN}"
    authorise_operator(session_factory, service_provider, operator)
    r = client.post("/api/v1/dpps", json=with_operator(passport, operator))
    assert r.status_code == 201, r.text


def test_exported_from_the_package() -> None:
    import dbp.identifiers as identifiers

    for name in ("PartyIdentifier", "PartyScheme", "parse_operator_identifier", "parse_facility_identifier",
                 "recognise_operator_identifier", "recognise_facility_identifier"):
        assert getattr(identifiers, name) is not None
        assert name in identifiers.__all__


def test_two_spellings_of_one_gln_are_consistent(passport: dict[str, Any]) -> None:
    """operator.consistent / facility.consistent compare identifiers, not texts: ``(417)…`` and the bare GLN
    are one operator; two different GLNs still differ."""
    doc = with_operator(passport, GOOD_GLN)
    doc["generalProductInformation"]["operatorInformation"]["identifier"] = f"(417){GOOD_GLN}"
    assert not {r for _, r in errors_of(doc)} & {"operator.consistent"}
    doc["generalProductInformation"]["operatorInformation"]["identifier"] = "4012345000016"
    assert ("$.generalProductInformation.operatorInformation.identifier", "operator.consistent") in errors_of(doc)
    plant = doc["generalProductInformation"]["manufacturingPlace"]
    doc["facilityId"] = plant["facilityId"]
    plant["facilityId"] = f"(414){plant['facilityId']}"
    assert ("$.facilityId", "facility.consistent") not in errors_of(doc)
