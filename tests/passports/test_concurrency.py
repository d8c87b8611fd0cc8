"""Concurrent writers on one passport: every request ends 200 or 409, versions stay gapless."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx


def test_concurrent_patches_never_fail_or_fork(client: httpx.Client, passport: dict[str, Any]) -> None:
    created = client.post("/api/v1/dpps", json=passport)
    assert created.status_code == 201
    dpp = created.json()["dppId"]
    base = str(client.base_url)

    def patch(i: int) -> int:
        with httpx.Client(base_url=base, timeout=60, headers=dict(client.headers)) as c:
            r = c.patch(f"/api/v1/dpps/{dpp}", json={"performanceAndDurability": {"ratedCapacity": 50.0 + i}})
            assert r.headers["content-type"].startswith("application/json")
            return r.status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(patch, range(24)))
    assert set(statuses) <= {200, 409}, statuses
    versions = client.get(f"/api/v1/dpps/{dpp}/versions").json()["versions"]
    assert [v["version"] for v in versions] == list(range(1, statuses.count(200) + 2))
    current = client.get(f"/api/v1/dpps/{dpp}")
    assert current.headers["x-dpp-version"] == str(len(versions))
    assert current.headers["etag"] == f'"{versions[-1]["sha256"]}"'


def test_concurrent_creates_of_one_product(client: httpx.Client, passport: dict[str, Any]) -> None:
    base = str(client.base_url)

    def create(_: int) -> int:
        with httpx.Client(base_url=base, timeout=60, headers=dict(client.headers)) as c:
            return c.post("/api/v1/dpps", json=passport).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(create, range(12)))
    assert statuses.count(201) == 1 and set(statuses) == {201, 409}, statuses
