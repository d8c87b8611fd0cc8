"""Regression tests for the code-review findings on lifecycle rules, validation and bulk import/export."""

from __future__ import annotations

import copy
import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import event, select, text

from dbp.config import Settings
from dbp.errors import ValidationFailed
from dbp.passports import bulk, lifecycle, service
from dbp.passports.demo import successor_document
from dbp.passports.models import Passport, PassportVersion
from dbp.passports.validation import semantic_errors, validate_dict

SUCCESSORS = "/api/v1/lifecycle/successors"


def _evs(fleet: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    return [copy.deepcopy(d) for d in fleet if d["generalProductInformation"]["batteryCategory"] == "ev"][:n]


def _create(client: httpx.Client, doc: dict[str, Any]) -> str:
    r = client.post("/api/v1/dpps", json=doc)
    assert r.status_code == 201, r.text
    return str(r.json()["dppId"])


def _rules(r: httpx.Response) -> list[str]:
    return [d["rule"] for d in r.json()["message"][0].get("details", [])]


def _rec(doc: dict[str, Any], line: int, source: str = "mem") -> bulk.RecordSource:
    return bulk.RecordSource(source, line, raw=orjson.dumps(doc))


def _failed_rules(report: bulk.ImportReport) -> dict[int, list[str]]:
    return {e["line"]: [d["rule"] for d in e["details"]] for e in report.errors}


def _stored(session_factory: Any) -> dict[str, dict[str, Any]]:
    """Current document of every stored passport by dppId."""
    with session_factory() as s:
        rows = s.execute(select(PassportVersion.dpp_id, PassportVersion.canonical).join(Passport, (
            Passport.dpp_id == PassportVersion.dpp_id) & (Passport.current_version == PassportVersion.version)))
        return {d: orjson.loads(c) for d, c in rows}


def _empty(session_factory: Any) -> None:
    with session_factory.begin() as s:
        for table in ("passport_links", "passport_versions", "passports"):
            s.execute(text(f"DELETE FROM {table}"))


def dbp(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DBP_DATABASE_URL": settings.database_url}
    return subprocess.run([sys.executable, "-m", "dbp", *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


# ------------------------------------------------------------------ 1. battery status on update
def test_patch_cannot_take_a_battery_out_of_waste_by_removing_its_status(
        client: httpx.Client, passport: dict[str, Any]) -> None:
    dpp = _create(client, passport)
    assert client.post(f"/api/v1/dpps/{dpp}/waste", json={"responsibleOperatorId": "urn:dbp:op:w"}).status_code == 200
    before = client.get(f"/api/v1/dpps/{dpp}").content
    removed = client.patch(f"/api/v1/dpps/{dpp}", json={"generalProductInformation": {"batteryStatus": None}})
    assert removed.status_code == 422 and _rules(removed) == ["batteryStatus.transition"]
    assert "waste battery" in removed.json()["message"][0]["details"][0]["message"]
    element = client.patch(f"/api/v1/dpps/{dpp}/elements/generalProductInformation/batteryStatus", content=b"null",
                           headers={"Content-Type": "application/json"})
    assert element.status_code == 422 and _rules(element) == ["batteryStatus.transition"]
    assert client.get(f"/api/v1/dpps/{dpp}").content == before


def test_patch_cannot_remove_or_reset_a_battery_status(client: httpx.Client, fleet: list[dict[str, Any]]) -> None:
    original = _evs(fleet, 1)
    pred = _create(client, original[0])
    removed = client.patch(f"/api/v1/dpps/{pred}", json={"generalProductInformation": {"batteryStatus": None}})
    assert removed.status_code == 422 and _rules(removed) == ["batteryStatus.transition"]
    r = client.post(SUCCESSORS, json={"operation": "remanufacturing", "predecessorDppIds": [pred],
                                      "passport": successor_document(original, "remanufacturing", index=3)})
    assert r.status_code == 201, r.text
    succ = r.json()["dppId"]
    for status in ("original", "re-used", None):
        p = client.patch(f"/api/v1/dpps/{succ}", json={"generalProductInformation": {"batteryStatus": status}})
        assert p.status_code == 422 and _rules(p) == ["batteryStatus.transition"], (status, p.text)
    assert client.get(f"/api/v1/dpps/{succ}").json()["generalProductInformation"]["batteryStatus"] == "remanufactured"
    # re-used stays re-used; it never goes back to original
    other = _create(client, _evs(fleet, 2)[1])
    assert client.patch(f"/api/v1/dpps/{other}", json={
        "generalProductInformation": {"batteryStatus": "re-used"}}).status_code == 200
    back = client.patch(f"/api/v1/dpps/{other}", json={"generalProductInformation": {"batteryStatus": "original"}})
    assert back.status_code == 422 and _rules(back) == ["batteryStatus.transition"]


# ------------------------------------------------------------------ 2. dppStatus removed by a merge patch
def test_patch_removing_dpp_status_keeps_the_status(client: httpx.Client, passport: dict[str, Any]) -> None:
    dpp = _create(client, passport)
    r = client.patch(f"/api/v1/dpps/{dpp}", json={"dppStatus": None, "facilityId": passport["facilityId"]})
    assert r.status_code == 200, r.text
    assert r.json()["dppStatus"] == "active"
    assert client.patch(f"/api/v1/dpps/{dpp}", json={"dppStatus": "inactive"}).json()["dppStatus"] == "inactive"
    element = client.patch(f"/api/v1/dpps/{dpp}/elements/dppStatus", content=b"null",
                           headers={"Content-Type": "application/json"})
    assert element.status_code == 200, element.text
    assert element.json()["dppStatus"] == "inactive"
    hits = client.get("/api/v1/dpps", params={"status": "inactive"}).json()["items"]
    assert [h["dppId"] for h in hits] == [dpp]


# ------------------------------------------------------------------ 3. repeated dppId in an import
def test_repeated_dpp_id_fails_only_its_record(session_factory: Any, fleet: list[dict[str, Any]]) -> None:
    with session_factory.begin() as s:
        taken = service.create_passport(s, body=orjson.dumps(fleet[0])).dpp_id
    docs = [copy.deepcopy(d) for d in fleet[1:6]]
    docs[0]["dppId"] = docs[2]["dppId"] = "urn:uuid:5f0c3b1e-7d0a-4a55-9d51-8a4f3f7f0a01"  # lines 1 and 3
    docs[3]["dppId"] = taken  # line 4: the passport of another product
    report = bulk.import_records(session_factory, [_rec(d, i) for i, d in enumerate(docs, start=1)], workers=0)
    assert (report.created, report.failed) == (3, 2)
    assert _failed_rules(report) == {3: ["import.dppIdExists"], 4: ["import.dppIdExists"]}
    assert {e["message"] for e in report.errors} == {"dppId already exists"}
    stored = _stored(session_factory)
    assert {d["uniqueProductIdentifier"] for d in stored.values()} == {
        fleet[i]["uniqueProductIdentifier"] for i in (0, 1, 2, 5)}
    # a later batch repeating an id imported earlier in the run is caught the same way
    again = [copy.deepcopy(fleet[7]), copy.deepcopy(fleet[8])]
    again[0]["dppId"] = again[1]["dppId"] = "urn:uuid:5f0c3b1e-7d0a-4a55-9d51-8a4f3f7f0a02"
    report = bulk.import_records(session_factory, [_rec(d, i) for i, d in enumerate(again, start=1)],
                                 workers=0, batch_size=1)
    assert (report.created, report.failed) == (1, 1) and _failed_rules(report) == {2: ["import.dppIdExists"]}


def test_repeated_dpp_id_via_cli(settings: Settings, session_factory: Any, fleet: list[dict[str, Any]],
                                 tmp_path: Path) -> None:
    docs = [copy.deepcopy(d) for d in fleet[:4]]
    docs[1]["dppId"] = docs[3]["dppId"] = "urn:uuid:5f0c3b1e-7d0a-4a55-9d51-8a4f3f7f0a03"
    src = tmp_path / "dup.ndjson"
    src.write_bytes(b"\n".join(orjson.dumps(d) for d in docs) + b"\n")
    report = tmp_path / "report.json"
    r = dbp(settings, "import", str(src), "--report", str(report))
    assert r.returncode == 1, r.stderr
    summary = orjson.loads(report.read_bytes())
    assert (summary["created"], summary["failed"]) == (3, 1)
    assert [(e["line"], e["details"][0]["rule"]) for e in summary["errors"]] == [(4, "import.dppIdExists")]
    assert "Traceback" not in r.stderr
    assert len(_stored(session_factory)) == 3


# ------------------------------------------------------------------ 4. --all-versions exports
def _two_versions(session_factory: Any, doc: dict[str, Any]) -> str:
    with session_factory.begin() as s:
        dpp = service.create_passport(s, body=orjson.dumps(doc)).dpp_id
    with session_factory.begin() as s:
        service.patch_passport(s, dpp_id=dpp, body=orjson.dumps({"generalProductInformation": {
            "warrantyPeriod": 99}}))
    return dpp


@pytest.mark.parametrize("batch_size", [500, 1])
def test_all_versions_export_is_not_imported_as_history(session_factory: Any, passport: dict[str, Any],
                                                        batch_size: int) -> None:
    _two_versions(session_factory, passport)
    lines = list(bulk.export_current(session_factory, all_versions=True))
    assert len(lines) == 2
    _empty(session_factory)
    report = bulk.import_records(session_factory, [bulk.RecordSource("all.ndjson", i, raw=raw)
                                                   for i, raw in enumerate(lines, start=1)],
                                 workers=0, batch_size=batch_size)
    assert (report.created, report.updated, report.failed) == (1, 0, 1)
    assert _failed_rules(report) == {2: ["import.duplicateInInput"]}
    assert "--all-versions" in report.errors[0]["details"][0]["message"]


def test_identical_repeats_across_batches_are_unchanged(session_factory: Any, fleet: list[dict[str, Any]]) -> None:
    recs = [_rec(fleet[0], 1), _rec(fleet[1], 2), _rec(fleet[0], 3)]
    report = bulk.import_records(session_factory, recs, workers=0, batch_size=1)
    assert (report.created, report.unchanged, report.failed) == (2, 1, 0)


def test_all_versions_export_selects_ids_before_bodies(session_factory: Any, engine: Any,
                                                       fleet: list[dict[str, Any]]) -> None:
    for doc in fleet[:3]:
        _two_versions(session_factory, doc)
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement.lower())

    event.listen(engine, "before_cursor_execute", record)
    try:
        lines = list(bulk.export_current(session_factory, all_versions=True, batch_size=4))
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(lines) == 6
    limited = [s for s in statements if "limit" in s]
    assert limited and not any("canonical" in s for s in limited)


# ------------------------------------------------------------------ 5. lifecycle rules for new records
def _with(doc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    for key, value in changes.items():
        if key == "batteryStatus":
            out["generalProductInformation"]["batteryStatus"] = value
        else:
            out[key] = value
    return out


def test_new_records_without_dpp_id_follow_create_rules(session_factory: Any, fleet: list[dict[str, Any]]) -> None:
    ghost = "urn:uuid:00000000-0000-4000-8000-00000000dead"
    eol = {"reason": "recycled", "at": "2026-01-01T00:00:00Z"}
    docs = [_with(fleet[0], dppStatus="archived"), _with(fleet[1], batteryStatus="waste"),
            _with(fleet[2], endOfLife=eol), _with(fleet[3], predecessorDppIds=[ghost]),
            _with(fleet[4], dppStatus="inactive"), copy.deepcopy(fleet[5])]
    report = bulk.import_records(session_factory, [_rec(d, i) for i, d in enumerate(docs, start=1)], workers=0)
    assert (report.created, report.failed) == (1, 5)
    assert _failed_rules(report) == {1: ["status.initial"], 2: ["batteryStatus.initial"], 3: ["serverManaged"],
                                     4: ["serverManaged"], 5: ["status.initial"]}
    assert len(_stored(session_factory)) == 1


def test_exported_records_must_link_to_existing_passports(session_factory: Any,
                                                          fleet: list[dict[str, Any]]) -> None:
    ghost = "urn:uuid:00000000-0000-4000-8000-00000000dead"
    ids = [f"urn:uuid:00000000-0000-4000-8000-00000000000{i}" for i in range(4)]
    docs = [_with(fleet[0], dppId=ids[0], dppStatus="inactive", successorDppIds=[ghost]),
            _with(fleet[1], dppId=ids[1], batteryStatus="remanufactured", predecessorDppIds=[ids[0]]),
            _with(fleet[2], dppId=ids[2], endOfLife={"reason": "archived", "at": "2026-01-01T00:00:00Z"}),
            _with(fleet[3], dppId=ids[3], dppStatus="archived", batteryStatus="waste",
                  endOfLife={"reason": "recycled", "at": "2026-01-01T00:00:00Z"})]
    report = bulk.import_records(session_factory, [_rec(d, i) for i, d in enumerate(docs, start=1)], workers=0)
    # line 2 names line 1, which names a passport that exists nowhere: both fail
    assert _failed_rules(report) == {1: ["import.linkUnknown"], 2: ["import.linkUnknown"],
                                     3: ["import.endOfLife"]}
    assert (report.created, report.failed) == (1, 3)
    assert set(_stored(session_factory)) == {ids[3]}


@pytest.mark.parametrize("batch_size", [500, 1])
def test_repository_export_imports_whole(session_factory: Any, fleet: list[dict[str, Any]], batch_size: int) -> None:
    originals = _evs(fleet, 3)
    with session_factory.begin() as s:
        ids = [service.create_passport(s, body=orjson.dumps(d)).dpp_id for d in originals]
    with session_factory.begin() as s:
        lifecycle.create_successor(s, body=orjson.dumps({
            "operation": "repurposing", "predecessorDppIds": ids[:2],
            "passport": successor_document(originals[:2], "repurposing", index=5)}))
    with session_factory.begin() as s:
        lifecycle.mark_waste(s, dpp_id=ids[2], body=b'{"responsibleOperatorId": "urn:dbp:op:w"}')
    with session_factory.begin() as s:
        lifecycle.mark_recycled(s, dpp_id=ids[2], body=b"{}")
    lines = list(bulk.export_current(session_factory))
    exported = {d["dppId"]: d for d in map(orjson.loads, lines)}
    assert len(exported) == 4
    _empty(session_factory)
    report = bulk.import_records(session_factory, [bulk.RecordSource("export.ndjson", i, raw=raw)
                                                   for i, raw in enumerate(lines, start=1)],
                                 workers=0, batch_size=batch_size)
    assert (report.created, report.failed) == (4, 0), report.errors
    stored = _stored(session_factory)
    assert {k: {**v, "lastUpdate": None} for k, v in stored.items()} == {
        k: {**v, "lastUpdate": None} for k, v in exported.items()}
    # and, imported again, nothing changes
    again = bulk.import_records(session_factory, [bulk.RecordSource("export.ndjson", i, raw=raw)
                                                  for i, raw in enumerate(lines, start=1)], workers=0)
    assert (again.unchanged, again.failed) == (4, 0)


# ------------------------------------------------------------------ 6. successor predecessors
def test_successor_needs_an_active_predecessor_without_successor(
        client: httpx.Client, fleet: list[dict[str, Any]]) -> None:
    originals = _evs(fleet, 3)
    draft = _create(client, {**originals[0], "dppStatus": "draft"})
    r = client.post(SUCCESSORS, json={"operation": "remanufacturing", "predecessorDppIds": [draft],
                                      "passport": successor_document(originals[:1], "remanufacturing", index=7)})
    assert r.status_code == 409 and "draft" in r.json()["message"][0]["text"], r.text
    assert client.get(f"/api/v1/dpps/{draft}").json()["dppStatus"] == "draft"

    pred = _create(client, originals[1])
    first = client.post(SUCCESSORS, json={"operation": "remanufacturing", "predecessorDppIds": [pred],
                                          "passport": successor_document(originals[1:2], "remanufacturing",
                                                                         index=8)})
    assert first.status_code == 201, first.text
    second = client.post(SUCCESSORS, json={"operation": "preparationForReuse", "predecessorDppIds": [pred],
                                           "passport": successor_document(originals[1:2], "preparationForReuse",
                                                                          index=9)})
    assert second.status_code == 409 and "already has a successor" in second.json()["message"][0]["text"]
    assert client.get(f"/api/v1/dpps/{pred}").json()["successorDppIds"] == [first.json()["dppId"]]

    inactive = _create(client, originals[2])
    assert client.patch(f"/api/v1/dpps/{inactive}", json={"dppStatus": "inactive"}).status_code == 200
    r = client.post(SUCCESSORS, json={"operation": "remanufacturing", "predecessorDppIds": [inactive],
                                      "passport": successor_document(originals[2:], "remanufacturing", index=10)})
    assert r.status_code == 409 and "inactive" in r.json()["message"][0]["text"]


# ------------------------------------------------------------------ 7. digits, CAS, GTIN
def _schema_rules(doc: dict[str, Any]) -> list[str]:
    try:
        model = validate_dict(doc)
    except ValidationFailed as exc:
        return [d.rule for d in exc.details]
    return [e.rule for e in semantic_errors(model)]


@pytest.mark.parametrize(("where", "value"), [
    ("manufacturingDate", "\u0662\u0660\u0662\u0666-\u0660\u0662-\u0662\u0668"),  # Arabic-Indic 2026-02-28
    ("manufacturingDate", "２０２６-０２"),  # fullwidth
    ("casNumber", "\u0667\u0664\u0663\u0669-\u0669\u0662-\u0661"),  # Arabic-Indic 7439-92-1
])
def test_only_ascii_digits(passport: dict[str, Any], where: str, value: str) -> None:
    if where == "casNumber":
        passport["materialComposition"]["hazardousSubstances"][0]["casNumber"] = value
    else:
        passport["generalProductInformation"][where] = value
    assert _schema_rules(passport) == ["schema.string_pattern_mismatch"]


def test_measurement_timestamp_only_ascii_digits(passport: dict[str, Any]) -> None:
    passport["performanceAndDurability"]["remainingCapacity"]["timestamp"] = "\u0662\u0660\u0662\u0666-01-01T00:00:00Z"
    assert "schema.string_pattern_mismatch" in _schema_rules(passport)


def test_cas_registry_number_is_not_zero(passport: dict[str, Any]) -> None:
    passport["materialComposition"]["hazardousSubstances"][0]["casNumber"] = "00-00-0"
    assert _schema_rules(passport) == ["cas.registryNumber"]
    passport["materialComposition"]["hazardousSubstances"][0]["casNumber"] = "7439-93-2"  # lithium
    assert _schema_rules(passport) == []


@pytest.mark.parametrize(("product_id", "rule"), [
    ("https://id.dbp.example/01/037602181/21/X1", "gtin.format"),  # 9 digits
    ("https://id.dbp.example/01/0376021810000/21/X1", "gtin.checkDigit"),  # 13 digits, wrong check digit
    ("https://id.dbp.example/01/03760218100005#top", "gtin.checkDigit"),
    ("https://id.dbp.example/01/03760218100005?linkType=all", "gtin.checkDigit"),
    ("https://id.dbp.example/01/0376021810000X/21/X1", "gtin.format"),
    ("https://id.dbp.example/01//21/X1", "gtin.format"),
    ("https://id.dbp.example/01/03760218100004#top", None),
    ("https://id.dbp.example/products/4711", None),
])
def test_gs1_digital_link_gtin(passport: dict[str, Any], product_id: str, rule: str | None) -> None:
    passport["uniqueProductIdentifier"] = product_id
    assert _schema_rules(passport) == ([rule] if rule else [])


# ------------------------------------------------------------------ 8. CSV cells by schema type
CSV_COLUMNS = ["uniqueProductIdentifier", "economicOperatorId", "dppStatus", "facilityId",
               "generalProductInformation.batteryCategory", "generalProductInformation.warrantyPeriod",
               "generalProductInformation.bmsPresent", "performanceAndDurability.ratedCapacity",
               "labels.extinguishingAgent"]


def _csv_row(n: int, capacity: str, warranty: str = "24", facility: str = "4068194000202") -> list[str]:
    return [f"https://id.dbp.example/products/CSV{n}", "urn:dbp:op:csv", "draft", facility, "lmt", warranty,
            "true", capacity, '["water"]']


def test_csv_cells_are_read_as_the_schema_types(session_factory: Any, tmp_path: Path) -> None:
    path = tmp_path / "typed.csv"
    rows = [_csv_row(1, "12.5"), _csv_row(2, "NaN"), _csv_row(3, "Infinity"), _csv_row(4, "1_000"),
            _csv_row(5, "1e999"), _csv_row(6, "12"), _csv_row(7, "1.5e1", warranty="24.0"),
            _csv_row(8, "7", facility="[plant-8]")]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(rows)
    records = list(bulk.read_records(path))
    first = orjson.loads(records[0].raw or b"")
    assert first["facilityId"] == "4068194000202"  # a GLN stays text
    assert first["generalProductInformation"] == {"batteryCategory": "lmt", "warrantyPeriod": 24, "bmsPresent": True}
    assert first["performanceAndDurability"] == {"ratedCapacity": 12.5}
    assert first["labels"] == {"extinguishingAgent": ["water"]}
    assert orjson.loads(records[7].raw or b"")["facilityId"] == "[plant-8]"
    report = bulk.import_records(session_factory, records, workers=0)
    assert _failed_rules(report) == {3: ["schema.float_type"], 4: ["schema.float_type"],
                                     5: ["schema.float_type"], 6: ["csv.number"], 8: ["schema.int_type"]}
    assert report.errors[3]["details"][0]["path"] == "$.performanceAndDurability.ratedCapacity"
    assert report.created == 3
    stored = {d["uniqueProductIdentifier"]: d for d in _stored(session_factory).values()}
    assert stored["https://id.dbp.example/products/CSV1"]["facilityId"] == "4068194000202"
    assert stored["https://id.dbp.example/products/CSV6"]["performanceAndDurability"]["ratedCapacity"] == 12
