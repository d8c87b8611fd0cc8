"""``dbp feed`` as a real subprocess against the test database: NDJSON in log order, cursors, --follow, exit codes."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from typing import Any

import httpx
import orjson

from dbp.config import Settings


def dbp(settings: Settings, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DBP_DATABASE_URL": settings.database_url}
    return subprocess.run([sys.executable, "-m", "dbp", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)


def _evs(fleet: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    return [copy.deepcopy(d) for d in fleet if d["generalProductInformation"]["batteryCategory"] == "ev"][:n]


def test_feed_prints_ndjson_and_resumes(settings: Settings, client: httpx.Client, fleet: list[dict[str, Any]]) -> None:
    ids = [client.post("/api/v1/dpps", json=d).json()["dppId"] for d in _evs(fleet, 3)]
    done = dbp(settings, "feed")
    assert done.returncode == 0, done.stderr
    lines = [orjson.loads(x) for x in done.stdout.splitlines()]
    assert [e["dppId"] for e in lines] == ids and all("body" not in e for e in lines)
    assert lines == client.get("/api/v1/feed").json()["entries"]
    cursor = done.stderr.strip().rsplit(" ", 1)[1]
    assert cursor == f"f1.{lines[-1]['position'] + 1}"
    middle = dbp(settings, "feed", "--cursor", f"f1.{lines[1]['position']}", "--include-body", "--limit", "1")
    assert middle.returncode == 0, middle.stderr
    rest = [orjson.loads(x) for x in middle.stdout.splitlines()]
    assert [e["dppId"] for e in rest] == ids[1:] and all(e["body"] for e in rest)
    assert dbp(settings, "feed", "--cursor", cursor).stdout == ""


def test_feed_follow_prints_new_entries(settings: Settings, client: httpx.Client,
                                        fleet: list[dict[str, Any]]) -> None:
    env = {**os.environ, "DBP_DATABASE_URL": settings.database_url}
    proc = subprocess.Popen([sys.executable, "-m", "dbp", "feed", "--follow", "--interval", "0.1"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1.5)
        dpp = client.post("/api/v1/dpps", json=_evs(fleet, 1)[0]).json()["dppId"]
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the entry is printed
        assert orjson.loads(line)["dppId"] == dpp
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_feed_help_and_bad_arguments(settings: Settings) -> None:
    helped = dbp(settings, "feed", "--help")
    assert helped.returncode == 0 and "--follow" in helped.stdout and "--cursor" in helped.stdout
    bad = dbp(settings, "feed", "--cursor", "nonsense")
    assert bad.returncode == 2 and "cursor" in bad.stderr
    assert dbp(settings, "feed", "--limit", "0").returncode == 2
    beyond = dbp(settings, "feed", "--cursor", "f1.999999")
    assert beyond.returncode == 2 and "beyond this log" in beyond.stderr
