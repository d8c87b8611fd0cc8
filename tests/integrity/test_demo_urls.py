"""``dbp demo`` prints where to find the log, a passport's evidence bundle and how to verify it, and those URLs
answer on a real server (the newcomer's path through issues 4 and 5: the scan link resolves to the passport)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from dbp.app import create_app
from dbp.cli import app as cli
from dbp.config import Settings


def test_demo_prints_working_integrity_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import ServerThread, run_demo

    url, port, output = run_demo(tmp_path, monkeypatch, count=3)
    evidence = re.search(r"evidence bundle:\s+(\S+)", output)
    verify = re.search(r"verify it \(2nd shell\):\s+\.venv/bin/dbp verify (\S+)", output)
    checkpoint = re.search(r"transparency log:\s+(\S+)", output)
    qr = re.search(r"its QR code \(PNG\):\s+(\S+)", output)
    scan = re.search(r"scan -> resolver \(307\):\s+(\S+)", output)
    linkset = re.search(r"its linkset \(RFC 9264\):\s+(\S+)", output)
    registration = re.search(r"its registration:\s+(\S+)", output)
    sample = re.search(r"sample passport \(JSON\):\s+(\S+)", output)
    assert qr and scan and linkset and registration and sample, output
    assert evidence and verify and checkpoint, output
    with ServerThread(create_app(Settings(database_url=url, environment="test", port=port)), port):
        deadline = time.monotonic() + 15
        while (r := httpx.get(evidence.group(1))).status_code != 200:  # once a checkpoint covers it (1 s)
            assert time.monotonic() < deadline, r.text
            time.sleep(0.1)
        assert r.json()["view"] == "public" and r.json()["format"] == "dbp.evidence/1"
        assert httpx.get(checkpoint.group(1)).status_code == 200
        image = httpx.get(qr.group(1))
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        # the printed scan link is answered by the resolver with a 307 to the sample passport (registered by demo)
        hop = httpx.get(scan.group(1), headers={"Accept": "application/json"})
        assert hop.status_code == 307 and hop.headers["location"] == sample.group(1), (hop.status_code, hop.text)
        assert httpx.get(scan.group(1), headers={"Accept": "application/json"}, follow_redirects=True).json()[
            "dppId"] == sample.group(1).rsplit("/", 1)[1]
        assert httpx.get(linkset.group(1)).headers["content-type"].startswith("application/linkset+json")
        found = httpx.get(registration.group(1)).json()
        assert [r["dppId"] for r in found["items"]] == [sample.group(1).rsplit("/", 1)[1]], found
        checked = CliRunner().invoke(cli, ["verify", verify.group(1)])
        assert checked.exit_code == 0, checked.output
