"""The synthetic fleet generator: valid, deterministic, realistic and category-correct documents."""

from __future__ import annotations

import copy
import re
from collections import Counter
from typing import Any

import orjson
import pytest

from dbp.passports.demo import generate_fleet, successor_document, successor_plan
from dbp.passports.schemas import SERVER_MANAGED, BatteryPassport, attribute_catalogue
from dbp.passports.validation import semantic_errors

UPI = re.compile(r"^https://id\.dbp\.example/01/(\d{14})/21/([0-9A-Za-z-]{1,20})$")
GLN = re.compile(r"^\d{13}$")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
EV_ONLY = ("capacityThresholdForExhaustion", "stateOfCertifiedEnergy", "certifiedUsableEnergy", "remainingUsableEnergy")
CATALOGUE = attribute_catalogue()


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return list(generate_fleet(300))


# ------------------------------------------------------------------ independent reference checks
def gs1_ok(number: str) -> bool:
    """GS1 mod-10 written from the left: the digit next to the check digit carries weight 3."""
    body, check = number[:-1], int(number[-1])
    weights = [3 if (len(body) - i) % 2 == 1 else 1 for i in range(len(body))]
    return (10 - sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 10) % 10 == check


def cas_ok(cas: str) -> bool:
    digits = [int(c) for c in cas if c.isdigit()]
    body, check = digits[:-1], digits[-1]
    return sum(d * (len(body) - i) for i, d in enumerate(body)) % 10 == check


def ec_ok(ec: str) -> bool:
    digits = [int(c) for c in ec if c.isdigit()]
    return sum(d * (i + 1) for i, d in enumerate(digits[:6])) % 11 == digits[6]


def lookup(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def walk(value: Any, path: str = "$") -> Any:
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk(v, f"{path}[{i}]")


def test_reference_checks_know_real_numbers() -> None:
    assert gs1_ok("4006381333931") and gs1_ok("9780306406157") and not gs1_ok("4006381333932")
    assert cas_ok("7440-48-4") and cas_ok("21324-40-3") and not cas_ok("7440-48-5")
    assert ec_ok("231-158-0") and not ec_ok("231-158-1")


# ------------------------------------------------------------------ validity and determinism
def test_every_document_validates(docs: list[dict[str, Any]]) -> None:
    assert len(docs) == 300
    for doc in docs:
        model = BatteryPassport.model_validate_json(orjson.dumps(doc))
        assert semantic_errors(model) == [], doc["uniqueProductIdentifier"]


def test_plain_json_without_nulls_or_server_fields(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        for path, value in walk(doc):
            assert value is not None, path
            assert type(value) in (str, int, float, bool, list, dict), path
            assert not (isinstance(value, float) and value.is_integer()), f"integral float at {path}"
        assert not set(doc) & {*SERVER_MANAGED, "dppId"}
        assert doc["granularity"] == "item" and doc["dppStatus"] == "active"
        assert doc["generalProductInformation"]["batteryStatus"] == "original"


def test_deterministic_and_prefix_stable(docs: list[dict[str, Any]]) -> None:
    assert list(generate_fleet(300)) == docs
    assert list(generate_fleet(60)) == docs[:60]
    other = list(generate_fleet(60, seed=1))
    assert other != docs[:60] and other == list(generate_fleet(60, seed=1))
    custom = next(generate_fleet(1, upi_domain="dpp.example.org"))
    assert custom["uniqueProductIdentifier"].startswith("https://dpp.example.org/01/")


def test_documents_share_no_objects() -> None:
    fleet = list(generate_fleet(50))
    pristine = copy.deepcopy(fleet)
    model_of = [d["generalProductInformation"]["batteryModelIdentifier"] for d in fleet]
    i, j = next((i, j) for i in range(50) for j in range(i + 1, 50) if model_of[i] == model_of[j])
    fleet[i]["labels"]["extinguishingAgent"].append("Sand")
    fleet[i]["generalProductInformation"]["manufacturerInformation"]["name"] = "changed"
    fleet[i]["performanceAndDurability"]["originalPowerCapability"][0]["power"] = 1
    assert fleet[j] == pristine[j]
    assert list(generate_fleet(50)) == pristine


def test_canonical_fast_path_applies(docs: list[dict[str, Any]]) -> None:
    """No exponent, integral float, digit-then-e or null: RFC 8785 bytes come from the orjson fast path."""
    for doc in docs:
        assert not re.search(rb"\d[eE]|\d\.0(?![0-9])|null", orjson.dumps(doc, option=orjson.OPT_SORT_KEYS))


def test_sizes(docs: list[dict[str, Any]]) -> None:
    sizes = [len(orjson.dumps(d)) for d in docs]
    assert all(6_000 <= s <= 12_000 for s in sizes), (min(sizes), max(sizes))


# ------------------------------------------------------------------ identifiers
def test_identifiers_have_valid_check_digits(docs: list[dict[str, Any]]) -> None:
    upis = set()
    for doc in docs:
        m = UPI.match(doc["uniqueProductIdentifier"])
        assert m, doc["uniqueProductIdentifier"]
        assert gs1_ok(m.group(1)), m.group(1)
        assert m.group(2) == doc["generalProductInformation"]["serialNumber"]
        upis.add(doc["uniqueProductIdentifier"])
        assert GLN.match(doc["facilityId"]) and gs1_ok(doc["facilityId"])
        assert doc["facilityId"] == doc["generalProductInformation"]["manufacturingPlace"]["facilityId"]
        assert GLN.match(doc["economicOperatorId"]) and gs1_ok(doc["economicOperatorId"])
        gpi = doc["generalProductInformation"]
        assert gpi["operatorInformation"]["identifier"] == doc["economicOperatorId"]
        assert gpi["manufacturerInformation"]["postalAddress"]["country"] in {"DE", "SE", "FR", "ES", "PL", "HU", "LT"}
    assert len(upis) == len(docs)


def test_cas_and_ec_numbers(docs: list[dict[str, Any]]) -> None:
    seen = 0
    for doc in docs:
        for path, value in walk(doc["materialComposition"]):
            if path.endswith(".casNumber"):
                assert cas_ok(value), (path, value)
                seen += 1
            if path.endswith(".ecNumber"):
                assert ec_ok(value), (path, value)
    assert seen > 10 * len(docs)


# ------------------------------------------------------------------ fleet realism
def test_fleet_mix(docs: list[dict[str, Any]]) -> None:
    gpis = [d["generalProductInformation"] for d in docs]
    cats = Counter(g["batteryCategory"] for g in gpis)
    assert set(cats) == {"ev", "lmt", "industrial", "stationary"}
    assert 0.35 <= cats["ev"] / len(docs) <= 0.55
    assert 5 <= len({g["manufacturerInformation"]["name"] for g in gpis}) <= 8
    chems = {d["materialComposition"]["batteryChemistry"]["shortName"] for d in docs}
    assert chems <= {"NMC811", "LFP", "NCA", "LMFP"} and len(chems) >= 3
    assert all(d["materialComposition"]["batteryChemistry"]["clearName"] for d in docs)
    batches = Counter(g["batchNumber"] for g in gpis)
    assert all(re.fullmatch(r"B202[56]-\d{4,}", b) for b in batches) and max(batches.values()) <= 500
    for g in gpis:
        assert re.fullmatch(r"202[56]-(0[1-9]|1[0-2])", g["manufacturingDate"])
        assert g["batchNumber"][1:5] == g["manufacturingDate"][:4]
    plants = {g["manufacturingPlace"]["facilityId"] for g in gpis}
    assert len(plants) > len({g["manufacturerInformation"]["name"] for g in gpis})


def test_document_urls_are_under_the_manufacturer_docs_host(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        domain = doc["generalProductInformation"]["manufacturerInformation"]["website"].removeprefix("https://www.")
        urls = [v for p, v in walk(doc) if p.endswith(".url") or p.endswith(".studyUrl")]
        assert len(urls) >= 6
        assert all(u.startswith(f"https://docs.{domain}/") for u in urls), urls


def test_category_and_bms_rules(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        gpi = doc["generalProductInformation"]
        cat, bms = gpi["batteryCategory"], gpi.get("bmsPresent") is True
        for a in CATALOGUE:
            need, value = a["applicability"][cat], lookup(doc, a["path"])
            if need == "notApplicable" or (a["bms_only"] and not bms):
                assert value is None, (cat, bms, a["path"])
            elif need == "mandatory" and a["path"] not in (*SERVER_MANAGED, "dppId") and (
                    a["kind"] == "static" or (bms and a["path"] != "performanceAndDurability.negativeEvents")):
                assert value is not None, (cat, bms, a["path"])
        pd = doc["performanceAndDurability"]
        for name in EV_ONLY:
            assert (name in pd) == (cat == "ev"), (cat, name)


def test_numbers_are_consistent(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        pd, mc, ci, cf = (doc[k] for k in ("performanceAndDurability", "materialComposition", "circularity",
                                            "carbonFootprint"))
        assert pd["minimumVoltage"] <= pd["nominalVoltage"] <= pd["maximumVoltage"]
        assert pd["idleTemperatureLowerBoundary"] <= pd["idleTemperatureUpperBoundary"]
        for part in ("cathode", "anode", "electrolyte", "separator"):
            assert sum(m["weightShare"] for m in mc["electrodeAndElectrolyteMaterials"][part]) <= 100
        assert sum(h["concentration"] for h in mc["hazardousSubstances"]) <= 100
        assert sum(m["weightShare"] for m in mc["criticalRawMaterials"]) <= 100
        for metal in ("Nickel", "Cobalt", "Lithium", "Lead"):
            assert ci[f"preConsumerRecycled{metal}Share"] + ci[f"postConsumerRecycled{metal}Share"] <= 100
        stages = ("rawMaterialAcquisition", "mainProduction", "distribution", "endOfLifeAndRecycling")
        assert sum(cf[s] for s in stages) <= cf["carbonFootprintPerFunctionalUnit"]
        for path, value in walk(pd):
            if path.endswith(".timestamp") or path == "$.lastDynamicUpdate":
                assert TIMESTAMP.match(value) and value[:7] >= doc["generalProductInformation"]["manufacturingDate"]
        if "remainingCapacity" in pd:
            assert pd["remainingCapacity"]["value"] <= pd["ratedCapacity"]
        if "remainingPowerCapability" in pd:
            assert pd["remainingPowerCapability"]["value"] <= pd["maximumPermittedPower"]
        served = doc["generalProductInformation"].get("puttingIntoServiceDate")
        if served:
            assert served[:7] >= doc["generalProductInformation"]["manufacturingDate"]


# ------------------------------------------------------------------ second life
def test_successor_plan_shape() -> None:
    count = 1000
    fleet = list(generate_fleet(count))
    plan = successor_plan(count)
    assert plan == successor_plan(count)
    assert 15 <= len(plan) <= 25
    assert plan[0][1] == "repurposing"
    used: list[int] = []
    for indexes, op in plan:
        assert 1 <= len(indexes) <= 3 and indexes == sorted(indexes)
        assert op in {"repurposing", "remanufacturing", "preparationForReuse"}
        for i in indexes:
            assert 0 <= i < count
            gpi = fleet[i]["generalProductInformation"]
            assert gpi["batteryCategory"] == "ev" and gpi["batteryStatus"] == "original"
        used.extend(indexes)
    assert len(used) == len(set(used))
    assert len({op for _, op in plan}) >= 2
    assert len(successor_plan(20)) >= 1
    assert successor_plan(300) and all(max(ix) < 300 for ix, _ in successor_plan(300))


@pytest.mark.parametrize("operation", ["repurposing", "remanufacturing", "preparationForReuse"])
def test_successor_documents(docs: list[dict[str, Any]], operation: str) -> None:
    status = {"repurposing": "repurposed", "remanufacturing": "remanufactured", "preparationForReuse": "re-used"}
    plans = [ix for ix, _ in successor_plan(300)] + [[i] for i, d in enumerate(docs)
                                                     if d["generalProductInformation"]["batteryCategory"] == "ev"][:3]
    for k, indexes in enumerate(plans):
        preds = [docs[i] for i in indexes]
        before = copy.deepcopy(preds)
        new = successor_document(preds, operation, index=k)
        assert preds == before  # predecessors untouched
        assert new == successor_document(preds, operation, index=k)
        model = BatteryPassport.model_validate_json(orjson.dumps(new))
        assert semantic_errors(model) == []
        gpi = new["generalProductInformation"]
        assert gpi["batteryStatus"] == status[operation]
        assert gpi["operatorInformation"]["name"] == "Second Life Storage GmbH"
        assert GLN.match(new["economicOperatorId"]) and gs1_ok(new["economicOperatorId"])
        assert new["economicOperatorId"] not in {p["economicOperatorId"] for p in preds}
        m = UPI.match(new["uniqueProductIdentifier"])
        assert m and gs1_ok(m.group(1))
        assert new["uniqueProductIdentifier"] not in {p["uniqueProductIdentifier"] for p in preds}
        assert not set(new) & {*SERVER_MANAGED, "dppId"}
        pd = new["performanceAndDurability"]
        if operation == "repurposing":
            assert gpi["batteryCategory"] == "stationary" and gpi["bmsPresent"] is True
            assert not set(EV_ONLY) & set(pd)
            assert pd["ratedCapacity"] >= sum(p["performanceAndDurability"]["ratedCapacity"] for p in preds) - 0.5
            assert "selfDischargeRateEvolution" in pd and "puttingIntoServiceDate" in gpi
        else:
            assert gpi["batteryCategory"] == preds[0]["generalProductInformation"]["batteryCategory"]
        for a in CATALOGUE:
            if a["applicability"][gpi["batteryCategory"]] == "notApplicable":
                assert lookup(new, a["path"]) is None, a["path"]
