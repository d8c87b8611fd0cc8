"""Read throughput of ``GET /api/v1/dpps/{dppId}``: dbp under uvicorn vs the bare ASGI baseline.

Both servers run the same uvicorn flags (1 worker, uvloop, httptools, no access log) on the same
database, pinned to core 0; wrk (1 thread) runs on core 1 and rotates through the same shuffled
list of random dppIds for both. Before measuring, a handful of paths are fetched from both servers
and must return 200 with byte-identical bodies; during the runs, any non-2xx/3xx response fails.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

import httpx

from bench.load import LoadFailed, run_wrk, write_script
from bench.progress import step
from bench.servers import uvicorn
from dbp.db import make_engine

PREFIX = "/api/v1/dpps/"
SERVER_CORE, LOAD_CORE = 0, 1


def dataset_ids(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return sorted(r[0] for r in conn.exec_driver_sql("SELECT dpp_id FROM passports"))
    finally:
        engine.dispose()


def verify(bases: dict[str, str], paths: list[str]) -> int:
    """Every server answers every path with 200, JSON and the same bytes; an unknown id is 404."""
    with httpx.Client(timeout=10) as client:
        for path in paths:
            bodies = {}
            for name, base in bases.items():
                r = client.get(base + path)
                if r.status_code != 200 or not r.headers.get("content-type", "").startswith("application/json"):
                    raise LoadFailed(f"{name} answered {path} with {r.status_code} {r.headers.get('content-type')}")
                bodies[name] = r.content
            if len(set(bodies.values())) != 1:
                raise LoadFailed(f"bodies differ for {path}: " + ", ".join(f"{n} {len(b)} bytes"
                                                                           for n, b in bodies.items()))
        for name, base in bases.items():
            status = client.get(base + PREFIX + "urn:uuid:00000000-0000-4000-8000-000000000000").status_code
            if status != 404:
                raise LoadFailed(f"{name} answered an unknown dppId with {status}, not 404")
    return len(paths)


def read_benchmark(url: str, *, connections: int, duration: float, warmup: float, rounds: int, urls: int,
                   seed: int) -> dict[str, Any]:
    ids = dataset_ids(url)
    if not ids:
        raise LoadFailed("the database holds no passports to read")
    rng = random.Random(f"{seed}/reads")
    paths = [PREFIX + rng.choice(ids) for _ in range(urls)]
    runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "dbp": []}
    with tempfile.TemporaryDirectory(prefix="dbp-bench-") as tmp:
        workdir = Path(tmp)
        script = write_script(workdir, paths)
        with uvicorn("baseline", url, core=SERVER_CORE, log_dir=workdir, probe=paths[0]) as baseline, \
                uvicorn("dbp", url, core=SERVER_CORE, log_dir=workdir, probe=paths[0]) as dbp:
            bases = {"baseline": baseline, "dbp": dbp}
            checked = verify(bases, paths[:20])
            step(f"responses verified: {checked} paths, identical bytes from both servers")
            for r in range(rounds):
                for name, base in bases.items():  # the idle server waits in epoll and costs nothing
                    if warmup > 0:
                        run_wrk(base, script, connections=connections, duration=warmup, core=LOAD_CORE)
                    step(f"read load on {name} (round {r + 1}/{rounds}, {connections} connections, "
                         f"{duration:g} s)")
                    result = run_wrk(base, script, connections=connections, duration=duration, core=LOAD_CORE)
                    if result["non_2xx_3xx"] or result["requests"] == 0:
                        raise LoadFailed(f"{name}: {result['non_2xx_3xx']} non-2xx/3xx responses of "
                                         f"{result['requests']}")
                    step(f"  {name}: {result['requests_per_s']:,.0f} req/s, p99 {result['latency_ms']['p99']:.1f} ms")
                    runs[name].append(result)
    best = {name: max(rs, key=lambda x: x["requests_per_s"]) for name, rs in runs.items()}
    return {
        "endpoint": "GET /api/v1/dpps/{dppId}", "connections": connections, "duration_s": duration,
        "url_list": len(paths), "distinct_ids": len(set(paths)), "verified_paths": checked,
        "dbp": best["dbp"], "baseline": best["baseline"], "all_runs": runs,
        "ratio": best["dbp"]["requests_per_s"] / best["baseline"]["requests_per_s"],
    }
