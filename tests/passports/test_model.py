"""The data model: complete attribute metadata, strict types, layered validation with paths and rules."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from dbp.errors import ValidationFailed
from dbp.passports.attributes import uncovered_leaves
from dbp.passports.schemas import BatteryPassport, attribute_catalogue, passport_json_schema
from dbp.passports.validation import check_semantics, gtin_check_digit_ok, parse_document, semantic_errors


def _errors(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, rule) of every schema or semantic error of ``doc``."""
    try:
        model = parse_document(orjson.dumps(doc))
    except ValidationFailed as exc:
        return [(d.path, d.rule) for d in exc.details]
    return [(e.path, e.rule) for e in semantic_errors(model)]


def test_catalogue_covers_all_93_longlist_rows_and_every_leaf() -> None:
    cat = attribute_catalogue()
    rows = sorted(a["longlist"] for a in cat if "longlist" in a)
    assert rows == list(range(1, 94))
    assert uncovered_leaves(BatteryPassport) == []
    for a in cat:
        assert a["access"] in {"public", "legitimateInterest", "legitimateInterestAndAuthorities", "authorities"}
        assert set(a["applicability"]) == {"ev", "lmt", "industrial", "stationary"}
        assert a["clause"]


def test_access_groups_follow_annex_xiii() -> None:
    by_path = {a["path"]: a for a in attribute_catalogue()}
    assert by_path["labels.testReports"]["access"] == "authorities"  # point 3
    assert by_path["generalProductInformation.batteryStatus"]["access"] == "legitimateInterest"  # 4(c)
    assert by_path["circularity.dismantlingInformation"]["access"] == "legitimateInterestAndAuthorities"  # 2(c)
    assert by_path["performanceAndDurability.ratedCapacity"]["access"] == "public"  # 1(g)
    assert by_path["performanceAndDurability.capacityThresholdForExhaustion"]["applicability"] == {
        "ev": "mandatory", "lmt": "notApplicable", "industrial": "notApplicable", "stationary": "notApplicable"}
    soce = by_path["performanceAndDurability.stateOfCertifiedEnergy"]
    assert soce["kind"] == "dynamic" and soce["level"] == "individual" and soce["bms_only"] is True


def test_json_schema_carries_metadata() -> None:
    schema = passport_json_schema()
    rated = schema["$defs"]["PerformanceAndDurability"]["properties"]["ratedCapacity"]
    assert rated["x-dbp"]["unit"] == "Ah" and rated["x-dbp"]["annex_xiii"] == "1(g)"
    assert schema["additionalProperties"] is False


def test_demo_passports_are_valid(fleet: list[dict[str, Any]]) -> None:
    for doc in fleet:
        check_semantics(parse_document(orjson.dumps(doc)))


@pytest.mark.parametrize(("mutate", "path", "rule"), [
    (lambda d: d["generalProductInformation"].update(manufacturingDate="7172-75-08"),
     "$.generalProductInformation.manufacturingDate", "date.plausibleYear"),
    (lambda d: d["generalProductInformation"].update(manufacturingDate="2025-02-30"),
     "$.generalProductInformation.manufacturingDate", "date.calendar"),
    (lambda d: d["generalProductInformation"].update(manufacturingDate="2025-13"),
     "$.generalProductInformation.manufacturingDate", "date.calendar"),
    (lambda d: d["performanceAndDurability"].update(ratedCapacity=False),
     "$.performanceAndDurability.ratedCapacity", "schema.float_type"),
    (lambda d: d["performanceAndDurability"].update(ratedCapacity="60"),
     "$.performanceAndDurability.ratedCapacity", "schema.float_type"),
    (lambda d: d["performanceAndDurability"].update(ratedCapacity=-1),
     "$.performanceAndDurability.ratedCapacity", "schema.greater_than_equal"),
    (lambda d: d["circularity"].update(renewableContentShare=100.5),
     "$.circularity.renewableContentShare", "schema.less_than_equal"),
    (lambda d: d["generalProductInformation"].update(batteryMass=-3.0),
     "$.generalProductInformation.batteryMass", "schema.greater_than_equal"),
    (lambda d: d["materialComposition"]["hazardousSubstances"][0].update(casNumber="7440-48-5"),
     "$.materialComposition.hazardousSubstances[0].casNumber", "cas.checkDigit"),
    (lambda d: d["materialComposition"]["hazardousSubstances"][0].update(casNumber=" 7440-48-4"),
     "$.materialComposition.hazardousSubstances[0].casNumber", "schema.string_pattern_mismatch"),
    (lambda d: d.update(unknownField=1), "$.unknownField", "schema.extra_forbidden"),
    (lambda d: d["generalProductInformation"].update(batteryCategory="car"),
     "$.generalProductInformation.batteryCategory", "schema.enum"),
])
def test_schema_rules(passport: dict[str, Any], mutate: Any, path: str, rule: str) -> None:
    mutate(passport)
    assert (path, rule) in _errors(passport)


def test_voltage_order(passport: dict[str, Any]) -> None:
    pd = passport["performanceAndDurability"]
    pd["minimumVoltage"], pd["nominalVoltage"], pd["maximumVoltage"] = 300.0, 250.0, 400.0
    assert ("$.performanceAndDurability.minimumVoltage", "voltage.order") in _errors(passport)


def test_idle_temperature_range(passport: dict[str, Any]) -> None:
    pd = passport["performanceAndDurability"]
    pd["idleTemperatureLowerBoundary"], pd["idleTemperatureUpperBoundary"] = 40.0, -20.0
    assert ("$.performanceAndDurability.idleTemperatureLowerBoundary", "temperature.range") in _errors(passport)


def test_shares_sum_at_most_100(passport: dict[str, Any]) -> None:
    subs = passport["materialComposition"]["hazardousSubstances"]
    subs[0]["concentration"] = 90.0
    subs.append({**subs[0], "name": "another", "concentration": 20.0})
    assert ("$.materialComposition.hazardousSubstances", "shares.sumAtMost100") in _errors(passport)
    circ = passport["circularity"]
    circ["preConsumerRecycledNickelShare"], circ["postConsumerRecycledNickelShare"] = 60.0, 50.0
    assert ("$.circularity.postConsumerRecycledNickelShare", "shares.sumAtMost100") in _errors(passport)


def test_gtin_check_digit(passport: dict[str, Any]) -> None:
    assert gtin_check_digit_ok("04012345000016") and not gtin_check_digit_ok("04012345000017")
    passport["uniqueProductIdentifier"] = "https://id.dbp.example/01/04012345000017/21/X1"
    assert ("$.uniqueProductIdentifier", "gtin.checkDigit") in _errors(passport)


def test_category_conditional_attributes(passport: dict[str, Any]) -> None:
    lmt = copy.deepcopy(passport)
    lmt["generalProductInformation"]["batteryCategory"] = "lmt"
    assert ("$.performanceAndDurability.capacityThresholdForExhaustion", "category.notApplicable") in _errors(lmt)
    missing = copy.deepcopy(passport)
    del missing["performanceAndDurability"]["capacityThresholdForExhaustion"]
    assert ("$.performanceAndDurability.capacityThresholdForExhaustion", "required.forActivation") in _errors(
        missing)
    missing["dppStatus"] = "draft"  # a draft may be incomplete
    assert _errors(missing) == []


def test_bms_conditional_attributes(passport: dict[str, Any]) -> None:
    passport["generalProductInformation"]["bmsPresent"] = False
    passport["performanceAndDurability"]["stateOfCertifiedEnergy"] = {"value": 97.0,
                                                                      "timestamp": "2026-01-01T00:00:00Z"}
    assert ("$.performanceAndDurability.stateOfCertifiedEnergy", "bms.notApplicable") in _errors(passport)


def test_future_measurements_refused(passport: dict[str, Any]) -> None:
    passport["performanceAndDurability"]["stateOfCharge"] = {"value": 50.0, "timestamp": "2199-01-01T00:00:00Z"}
    assert ("$.performanceAndDurability.stateOfCharge.timestamp", "timestamp.notInFuture") in _errors(passport)


def test_every_error_names_path_and_rule(passport: dict[str, Any]) -> None:
    passport["performanceAndDurability"].update(ratedCapacity=True, nominalVoltage="x")
    passport["generalProductInformation"]["manufacturingDate"] = "2026-02-31"
    errors = _errors(passport)
    assert len(errors) >= 3
    assert all(path.startswith("$") and rule for path, rule in errors)
