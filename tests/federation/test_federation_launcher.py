"""``dbp.federation`` (what ``dbp federation`` starts): a registry, two repositories and a backup node as separate
``dbp serve`` processes, each with its own database (repo-a on PostgreSQL when DBP_TEST_DATABASE_URL is set).
Passports are registered and backed up; when repo-a dies, the registry's probes mark it unreachable and every one
of its product identifiers resolves to the backup, whose copies verify against repo-a's keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from federation_helpers import LIMITS, free_ports, postgres_database
from typer.testing import CliRunner

from dbp.cli import app as cli
from dbp.federation import Federation
from dbp.integrity.evidence import jwk_key
from dbp.integrity.verify import Trusted, verify_bundle


@pytest.fixture()
def fed(tmp_path: Path) -> Iterator[Federation]:
    pg = postgres_database("fedl_a")
    f = Federation(tmp_path / "fed", base_port=free_ports(), count=4, probe_interval=0.5, settings=LIMITS,
                   database_urls={"repo-a": pg} if pg else {})
    try:
        f.prepare()
        f.start()
        f.connect()
        yield f
    finally:
        f.stop()


def test_a_dead_repository_fails_over_to_the_backup_and_its_passports_still_verify(fed: Federation) -> None:
    for name in ("repo-a", "repo-b"):
        fed.publish(name)
    for name in ("repo-a", "repo-b"):
        fed.wait_registered(name)
        fed.follow(name)
    for name in ("repo-a", "repo-b"):
        status = fed.wait_backed_up(name, 4)
        assert status["status"] == "following" and status["openRejections"] == 0 and status["alerts"] == 0
    a, b, backup = fed.nodes["repo-a"], fed.nodes["repo-b"], fed.nodes["backup"]
    keys = [(*jwk_key(k["jwk"], "key"), k["createdAt"], k["retiredAt"])
            for k in httpx.get(f"{a.base_url}/api/v1/log/keys").json()["keys"]]
    trusted = Trusted(keys={kid: x for kid, x, _, _ in keys}, periods={kid: (c, r) for kid, _, c, r in keys})

    fed.kill("repo-a")
    fed.wait("the registry to route repo-a's identifiers to the backup", lambda: all(
        fed.resolve(p).headers.get("location", "").startswith(f"{backup.base_url}/backup/api/v1/dpps/")
        for p in fed.product_ids("repo-a")), timeout=30)
    nodes = {n["nodeId"]: n["status"] for n in httpx.get(
        f"{fed.nodes['registry'].base_url}/api/v1/registry/nodes").json()["items"]}
    assert nodes["repo-a"] == "unreachable" and nodes["repo-b"] == "active"
    for product, dpp in zip(fed.product_ids("repo-a"), fed.dpp_ids("repo-a"), strict=True):
        scan = fed.resolve(product)
        assert scan.status_code == 307
        copy = httpx.get(scan.headers["location"])
        assert copy.status_code == 200 and copy.headers["X-DPP-Served-By"] == "backup"
        assert copy.json()["dppId"] == dpp
        evidence = httpx.get(f"{backup.base_url}/backup/api/v1/dpps/{dpp}/evidence")
        assert verify_bundle(evidence.content, trusted=trusted).verdict == "valid"
    for product in fed.product_ids("repo-b"):
        assert fed.resolve(product).headers["location"].startswith(b.base_url)


def test_federation_command_help() -> None:
    result = CliRunner().invoke(cli, ["federation", "--help"])
    assert result.exit_code == 0 and "--no-serve" in result.output
