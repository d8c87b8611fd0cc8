"""Resolver redirects: dbp's resolver (``dbp.resolver.serving``) vs a bare ASGI app answering the same 307.

Every passport of the dataset is registered (inserted straight into ``registrations``, one executemany: the
benchmark measures resolving, not registering) with the endpoint :data:`ENDPOINT`. The load is ``GET`` of the
GS1 Digital Link paths of the product identifiers (``/01/{gtin}/21/{serial}``, a shuffled rotation), no query
string, no ``Accept``. dbp answers through ``Hardening`` and the resolver's fast path: parse and validate the
identifier, the route (successors, node directory, backup) and the links, kept until the database changes, a
307 with ``Location``, ``Link``, ``Vary``, ``Cache-Control`` and CORS headers. The baseline
(``bench.baseline_app``, ``BENCH_BASELINE_KIND=resolver``) reads the product key off the path, looks the
registration up by primary key and answers 307 with the same ``Location``. Same uvicorn flags, same cores, same
wrk set-up as ``bench.read``; before measuring, a few paths are checked to give both servers' same Location, and
an unknown identifier a 404 on both. The verdict takes the lower of the throughput ratio and the ratio of CPU
per request (baseline / dbp). SQLite only (the resolver's PostgreSQL path runs its queries in a thread per
request; no baseline for it here).
"""

from __future__ import annotations

import random
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from bench.load import LoadFailed, run_wrk, write_script
from bench.progress import step
from bench.read import LOAD_CORE, PREFIX, SERVER_CORE, _cpu_ratio
from bench.servers import uvicorn
from dbp.db import make_engine
from dbp.identifiers import product_key

ENDPOINT = "https://repo.bench.example"
TS = "2027-01-01T00:00:00.000000Z"
UNKNOWN = "/01/09506000134352/21/NOT-REGISTERED"


def register_dataset(url: str) -> list[tuple[str, str]]:
    """Register every passport (one executemany); (GS1 path, expected Location) per passport."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            rows = conn.exec_driver_sql(
                "SELECT dpp_id, product_id, product_key, operator_id, current_version FROM passports").fetchall()
            conn.exec_driver_sql("DELETE FROM registrations")
            params = [(f"bench-{i}", key or product_key(pid), pid, dpp, op, "item", ENDPOINT, version, "0" * 64,
                       "active", 1, TS, TS, "bench")
                      for i, (dpp, pid, key, op, version) in enumerate(rows)]
            marks = ", ".join(["?" if engine.dialect.name == "sqlite" else "%s"] * 14)
            conn.exec_driver_sql(
                "INSERT INTO registrations (registration_id, product_key, product_id, dpp_id, operator_id, granularity,"
                " endpoint, dpp_version, version_hash, status, revision, registered_at, updated_at, registrant) "
                f"VALUES ({marks})", params)
    finally:
        engine.dispose()
    return [(urlsplit(pid).path, f"{ENDPOINT}/api/v1/dpps/{quote(dpp, safe=':')}") for dpp, pid, *_ in rows]


def _check(client: httpx.Client, bases: dict[str, str], expected: list[tuple[str, str]]) -> int:
    for path, location in expected[:20]:
        for name, base in bases.items():
            r = client.get(base + path)
            if r.status_code != 307 or r.headers.get("location") != location:
                raise LoadFailed(f"{name} answered {path} with {r.status_code} Location "
                                 f"{r.headers.get('location')!r}, expected 307 {location}")
    for name, base in bases.items():
        status = client.get(base + UNKNOWN).status_code
        if status != 404:
            raise LoadFailed(f"{name} answered an unregistered identifier with {status}, not 404")
    return min(20, len(expected))


def resolver_benchmark(url: str, *, connections: int, duration: float, warmup: float, rounds: int, urls: int,
                       seed: int) -> dict[str, Any]:
    if not url.startswith("sqlite"):
        raise LoadFailed("the resolver benchmark runs on SQLite only (use --skip-resolver with PostgreSQL)")
    step("registering the dataset's passports (one executemany into registrations)")
    pairs = register_dataset(url)
    if not pairs:
        raise LoadFailed("the database holds no passports to resolve")
    rng = random.Random(f"{seed}/resolver")
    paths = [rng.choice(pairs)[0] for _ in range(urls)]
    runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "dbp": []}
    with tempfile.TemporaryDirectory(prefix="dbp-bench-resolver-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        engine = make_engine(url)
        try:  # the servers' readiness probe wants a 200: a passport read (both serve one)
            with engine.connect() as conn:
                probe = PREFIX + conn.exec_driver_sql("SELECT dpp_id FROM passports LIMIT 1").scalar_one()
        finally:
            engine.dispose()
        servers = {
            "baseline": stack.enter_context(uvicorn("baseline", url, core=SERVER_CORE, log_dir=workdir, probe=probe,
                                                    env={"BENCH_BASELINE_KIND": "resolver",
                                                         "BENCH_BASELINE_COLUMN": "public_canonical"},
                                                    label="baseline-resolver")),
            "dbp": stack.enter_context(uvicorn("dbp", url, core=SERVER_CORE, log_dir=workdir, probe=probe,
                                               label="dbp-resolver")),
        }
        with httpx.Client(timeout=10, follow_redirects=False) as client:
            verified = _check(client, {k: s.url for k, s in servers.items()}, pairs)
        step(f"resolver: 307 and Location verified on {verified} paths on both servers")
        script = write_script(workdir, paths, "resolver")
        for r in range(rounds):
            for side in ("baseline", "dbp"):
                server = servers[side]
                if warmup > 0:
                    run_wrk(server.url, script, connections=connections, duration=warmup, core=LOAD_CORE)
                cpu_before = server.cpu_seconds()
                step(f"resolver load on {side} (round {r + 1}/{rounds}, {connections} connections, {duration:g} s)")
                result = run_wrk(server.url, script, connections=connections, duration=duration, core=LOAD_CORE)
                if result["non_2xx_3xx"] or result["requests"] == 0:
                    raise LoadFailed(f"resolver on {side}: {result['non_2xx_3xx']} non-2xx/3xx responses of "
                                     f"{result['requests']}")
                cpu_after = server.cpu_seconds()
                line = f"  {side}: {result['requests_per_s']:,.0f} req/s, p99 {result['latency_ms']['p99']:.1f} ms"
                if cpu_before is not None and cpu_after is not None:
                    result["cpu_us_per_request"] = (cpu_after - cpu_before) / result["requests"] * 1e6
                    line += f", {result['cpu_us_per_request']:.1f} µs CPU per request"
                step(line)
                runs[side].append(result)
    best = {side: max(rs, key=lambda x: x["requests_per_s"]) for side, rs in runs.items()}
    throughput = best["dbp"]["requests_per_s"] / best["baseline"]["requests_per_s"]
    cpu = _cpu_ratio(runs)
    return {"endpoint": "GET /01/{gtin}/21/{serial} -> 307", "connections": connections, "duration_s": duration,
            "url_list": len(paths), "distinct_ids": len(set(paths)), "verified_paths": verified,
            "registrations": len(pairs), "dbp": best["dbp"], "baseline": best["baseline"], "all_runs": runs,
            "throughput_ratio": throughput, "cpu_ratio": cpu,
            "ratio": throughput if cpu is None else min(throughput, cpu)}
