"""``dbp demo`` leaves every demo passport registered with the embedded registry before it prints its URLs."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from conftest import run_demo
from dbp.cli import app as cli
from dbp.db import make_engine


def test_demo_passports_are_registered_before_the_urls_are_printed(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    url, port, _ = run_demo(tmp_path, monkeypatch, count=40)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            live = conn.execute(text("SELECT count(*) FROM passports WHERE dpp_status = 'active'")).scalar()
            registered = conn.execute(text("SELECT count(*) FROM registrations")).scalar()
            receipts = conn.execute(text("SELECT count(*) FROM registry_receipts WHERE registration_id IS NOT NULL "
                                         "AND last_error IS NULL")).scalar()
            superseded = conn.execute(text("SELECT count(*) FROM registrations WHERE status = 'superseded'")).scalar()
            endpoints = {r[0] for r in conn.execute(text("SELECT endpoint FROM registrations"))}
    finally:
        engine.dispose()
    assert live and registered == receipts and registered >= live
    assert endpoints == {f"http://127.0.0.1:{port}"}
    assert superseded is not None and superseded >= 1  # the demo's second-life passports supersede their originals
    again = CliRunner().invoke(cli, ["registry", "status"])
    assert again.exit_code == 0 and "pending: 0" in again.output and "failing: 0" in again.output, again.output
