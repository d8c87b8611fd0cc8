"""Import/export and the CLI, run as real subprocesses against the test database."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import func, select

from dbp.config import Settings
from dbp.passports.models import Passport, PassportVersion


def dbp(settings: Settings, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DBP_DATABASE_URL": settings.database_url}
    return subprocess.run([sys.executable, "-m", "dbp", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)


def counts(session_factory: Any) -> tuple[int, int]:
    with session_factory() as s:
        return (s.scalar(select(func.count()).select_from(Passport)),
                s.scalar(select(func.count()).select_from(PassportVersion)))


def test_help_everywhere(settings: Settings) -> None:
    for args in ([], ["serve"], ["demo"], ["import"], ["export"], ["db", "upgrade"]):
        r = dbp(settings, *args, "--help")
        assert r.returncode == 0 and "Usage" in r.stdout, (args, r.stderr)


def test_import_mixed_files_reports_bad_records_and_keeps_good(
        settings: Settings, session_factory: Any, fleet: list[dict[str, Any]], tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.json").write_bytes(orjson.dumps(fleet[:5]))
    bad = {**fleet[5], "performanceAndDurability": {**fleet[5]["performanceAndDurability"], "ratedCapacity": False}}
    lines = [orjson.dumps(d) for d in fleet[6:10]] + [orjson.dumps(bad), b"{not json"]
    (folder / "b.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    with (folder / "c.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["uniqueProductIdentifier", "economicOperatorId", "dppStatus",
                         "generalProductInformation.batteryCategory", "performanceAndDurability.ratedCapacity",
                         "labels.extinguishingAgent"])
        writer.writerow(["https://id.dbp.example/01/04012345000016/21/CSV1", "urn:dbp:op:csv", "draft", "lmt",
                         "12.5", '["water"]'])
    report = tmp_path / "report.json"
    r = dbp(settings, "import", str(folder), "--report", str(report))
    assert r.returncode == 1, r.stderr  # some records failed
    summary = orjson.loads(report.read_bytes())
    assert (summary["created"], summary["failed"]) == (10, 2)
    rules = {d["rule"] for e in summary["errors"] for d in e["details"]}
    assert "schema.float_type" in rules
    assert {e["line"] for e in summary["errors"] if e["source"].endswith("b.ndjson")} == {5, 6}
    assert counts(session_factory) == (10, 10)
    again = dbp(settings, "import", str(folder / "a.json"))
    assert again.returncode == 0 and '"unchanged": 5' in again.stdout
    assert counts(session_factory) == (10, 10)
    changed = [{**fleet[0], "facilityId": fleet[0]["facilityId"]}, fleet[1]]
    changed[0]["performanceAndDurability"] = {**fleet[0]["performanceAndDurability"], "ratedCapacity": 1.25}
    (tmp_path / "changed.json").write_bytes(orjson.dumps(changed))
    upd = dbp(settings, "import", str(tmp_path / "changed.json"))
    assert upd.returncode == 0 and '"updated": 1' in upd.stdout and '"unchanged": 1' in upd.stdout
    assert counts(session_factory) == (10, 11)


def test_export_roundtrips_through_import(settings: Settings, session_factory: Any, fleet: list[dict[str, Any]],
                                          tmp_path: Path) -> None:
    src = tmp_path / "fleet.json"
    src.write_bytes(orjson.dumps(fleet[:8]))
    assert dbp(settings, "import", str(src)).returncode == 0
    out = tmp_path / "export.ndjson"
    r = dbp(settings, "export", "-o", str(out))
    assert r.returncode == 0, r.stderr
    exported = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(exported) == 8
    with session_factory() as s:
        stored = {v.dpp_id: v.canonical.encode() for v in s.scalars(select(PassportVersion))}
    assert {d["dppId"] for d in exported} == set(stored)
    for line in out.read_bytes().splitlines():
        assert line == stored[orjson.loads(line)["dppId"]]
    # importing the export back changes nothing: same products, same content
    back = dbp(settings, "import", str(out))
    assert back.returncode == 0 and '"unchanged": 8' in back.stdout


def test_import_missing_file_exit_code(settings: Settings, tmp_path: Path) -> None:
    r = dbp(settings, "import", str(tmp_path / "nope.json"))
    assert r.returncode == 2 and "no such file" in r.stderr


def test_demo_seeds_idempotently(settings: Settings, session_factory: Any) -> None:
    first = dbp(settings, "demo", "--count", "60", "--no-serve")
    assert first.returncode == 0, first.stderr
    assert "/docs" in first.stdout and "dppsByProductId/" in first.stdout
    n_passports, _ = counts(session_factory)
    assert n_passports > 60  # the fleet plus second-life passports
    with session_factory() as s:
        statuses = set(s.scalars(select(Passport.battery_status)))
        categories = set(s.scalars(select(Passport.category)))
    assert {"original"} < statuses and categories == {"ev", "lmt", "industrial", "stationary"}
    second = dbp(settings, "demo", "--count", "60", "--no-serve")
    assert second.returncode == 0
    assert counts(session_factory)[0] == n_passports


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_starts_and_answers(settings: Settings, passport: dict[str, Any]) -> None:
    port = _free_port()
    env = {**os.environ, "DBP_DATABASE_URL": settings.database_url, "DBP_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "dbp", "serve"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "dbp serve did not come up"
            time.sleep(0.1)
        anonymous = httpx.post(f"http://127.0.0.1:{port}/api/v1/dpps", json=passport)
        assert anonymous.status_code == 401  # the served app enforces write rights
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/schema").status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
