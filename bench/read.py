"""Read throughput of ``GET /api/v1/dpps/{dppId}``: dbp under uvicorn vs the bare ASGI baseline.

Three scenarios, each a ratio against the bare baseline (``bench.baseline_app``) measured in the
same run on the same database with the same requests:

* ``public``: anonymous reads. dbp answers them on its ASGI fast path with the stored public view
  (``passport_versions.public_canonical``) after the access-log record is committed durably (batched);
  the baseline serves that same ``public_canonical`` column, so both send the same bytes.
* ``recycler``: ``Authorization: Bearer <token>`` of a recycler's API client and
  ``X-Purpose: dismantling``. dbp goes through the FastAPI route (token verification, read decision
  with a lookup of authorisations and grants, the redacted view from its LRU, access-log record); the
  baseline serves the full ``canonical`` column and ignores the headers.
* ``owner``: a token of the economic operator of the dataset's most frequent ``economicOperatorId``,
  reading only its own passports (a path list of its own): dbp serves the full version; the baseline
  the same ``canonical`` bytes.

All servers run the same uvicorn flags (1 worker, uvloop, httptools, no access log) on the same
database, pinned to core 0; wrk (1 thread) runs on core 1 with the same headers (``wrk -H``) and the
same shuffled path list for both sides of a ratio. Before measuring, a few paths per scenario are
checked (status, bytes or access header); during the runs any non-2xx/3xx response fails. Around each
measured dbp run the access-log rows are counted: every answered read must have left a record of the
expected caller (rows added / wrk's answered requests ≈ 1; up to ``connections`` more for requests
the server answered after wrk stopped counting).
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.callers import RECYCLER_PURPOSE, Callers, create_callers, fetch_token, last_log_id, log_rows_since
from bench.load import LoadFailed, run_wrk, write_script
from bench.progress import step
from bench.servers import uvicorn
from dbp.db import make_engine

PREFIX = "/api/v1/dpps/"
SERVER_CORE, LOAD_CORE = 0, 1
SCENARIOS = ("public", "recycler", "owner")
UNKNOWN = PREFIX + "urn:uuid:00000000-0000-4000-8000-000000000000"
ALL_GROUPS = frozenset({"public", "legitimateInterest", "legitimateInterestAndAuthorities", "authorities"})
RECYCLER_GROUPS = frozenset({"public", "legitimateInterestAndAuthorities"})
SETTLE_S = 0.3  # after a wrk run, before counting log rows: requests still in flight finish (batches wait <= 2 ms)


@dataclass
class Scenario:
    name: str
    title: str
    caller: str
    baseline_column: str
    paths: list[str]
    headers: dict[str, str] = field(default_factory=dict)
    # the access-log rows each answered read must leave: (principal_kind, role, purpose, outcome, groups)
    expected_log: tuple[str, str | None, str | None, str, frozenset[str]] = ("anonymous", None, None, "granted",
                                                                           frozenset({"public"}))
    check: Callable[[httpx.Client, dict[str, str], Scenario], int] | None = None

    def shown_headers(self) -> dict[str, str]:
        return {k: ("Bearer <token>" if k == "Authorization" else v) for k, v in self.headers.items()}


def dataset_ids(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return sorted(r[0] for r in conn.exec_driver_sql("SELECT dpp_id FROM passports"))
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------ verification
def _get(client: httpx.Client, name: str, url: str, headers: dict[str, str]) -> httpx.Response:
    r = client.get(url, headers=headers)
    if r.status_code != 200 or not r.headers.get("content-type", "").startswith("application/json"):
        raise LoadFailed(f"{name} answered {url} with {r.status_code} {r.headers.get('content-type')}: "
                         f"{r.text[:200]}")
    return r


def _groups(r: httpx.Response) -> frozenset[str]:
    return frozenset(g.strip() for g in r.headers.get("x-dpp-access", "").split(",") if g.strip())


def _unknown_is_404(client: httpx.Client, bases: dict[str, str], headers: dict[str, str]) -> None:
    for name, base in bases.items():
        status = client.get(base + UNKNOWN, headers=headers).status_code
        if status != 404:
            raise LoadFailed(f"{name} answered an unknown dppId with {status}, not 404")


def check_public(client: httpx.Client, bases: dict[str, str], sc: Scenario) -> int:
    """dbp's anonymous answer is byte-identical to the baseline's ``public_canonical`` and says ``public``."""
    paths = sc.paths[:20]
    for path in paths:
        mine = _get(client, "dbp", bases["dbp"] + path, sc.headers)
        base = _get(client, "baseline", bases["baseline"] + path, sc.headers)
        if mine.content != base.content:
            raise LoadFailed(f"public bodies differ for {path}: dbp {len(mine.content)} bytes, baseline "
                             f"{len(base.content)} bytes")
        if _groups(mine) != {"public"}:
            raise LoadFailed(f"dbp's anonymous read of {path} says X-DPP-Access: {mine.headers.get('x-dpp-access')}")
    _unknown_is_404(client, bases, sc.headers)
    return len(paths)


def check_recycler(client: httpx.Client, bases: dict[str, str], sc: Scenario) -> int:
    """200 with X-DPP-Access = public + legitimateInterestAndAuthorities (point 2, not 3 or 4), a view
    smaller than the full version for at least one path."""
    paths, redacted = sc.paths[:20], 0
    for path in paths:
        mine = _get(client, "dbp", bases["dbp"] + path, sc.headers)
        full = _get(client, "baseline", bases["baseline"] + path, sc.headers)
        if _groups(mine) != RECYCLER_GROUPS:
            raise LoadFailed(f"the recycler's read of {path} says X-DPP-Access: {mine.headers.get('x-dpp-access')}"
                             f"; expected {', '.join(sorted(RECYCLER_GROUPS))}")
        if len(mine.content) > len(full.content):
            raise LoadFailed(f"the recycler's view of {path} is larger than the full version")
        redacted += mine.content != full.content
    if not redacted:
        raise LoadFailed("the recycler's reads returned the full versions, not a view")
    _unknown_is_404(client, bases, sc.headers)
    return len(paths)


def check_owner(client: httpx.Client, bases: dict[str, str], sc: Scenario) -> int:
    """The responsible operator gets every access group and the full stored bytes (= the baseline's)."""
    paths = sc.paths[:20]
    for path in paths:
        mine = _get(client, "dbp", bases["dbp"] + path, sc.headers)
        full = _get(client, "baseline", bases["baseline"] + path, sc.headers)
        if _groups(mine) != ALL_GROUPS:
            raise LoadFailed(f"the owner's read of {path} says X-DPP-Access: {mine.headers.get('x-dpp-access')}")
        if mine.content != full.content:
            raise LoadFailed(f"the owner's body for {path} differs from the stored version "
                             f"({len(mine.content)} vs {len(full.content)} bytes)")
    _unknown_is_404(client, bases, sc.headers)
    return len(paths)


# ------------------------------------------------------------------------------ access log
def log_check(sc: Scenario, kinds: list[dict[str, Any]], requests: int, connections: int) -> dict[str, Any]:
    """Rows added during a measured dbp run against wrk's count of answered requests."""
    kind, role, purpose, outcome, groups = sc.expected_log
    total = sum(k["rows"] for k in kinds)
    expected = sum(k["rows"] for k in kinds
                   if k["principal_kind"] == kind and k["role"] == role and k["purpose"] == purpose
                   and k["outcome"] == outcome and k["action"] == "read"
                   and frozenset(json.loads(k["detail"])) == groups)
    if expected != total:
        raise LoadFailed(f"{sc.name}: {total - expected} of {total} access-log rows are not reads by the expected "
                         f"caller ({kind}, {role}, {purpose}); the load carried other credentials? {kinds[:5]}")
    return {"rows": total, "answered_requests": requests, "per_request": total / requests if requests else None,
            "missing": max(0, requests - total),  # answered reads without a record: must be 0
            "extra": total - requests,  # answered after wrk stopped counting: 0..connections
            "within_bounds": requests <= total <= requests + connections, "kinds": kinds}


# ------------------------------------------------------------------------------ the benchmark
def _settler(base: str, owner_token: str) -> Callable[[], None]:
    """A call that returns once dbp holds every committed access-log record in ``access_log``: any
    access-log query first moves what the server staged (``dbp.audit.staging``)."""
    def settle() -> None:
        r = httpx.get(base + "/api/v1/access-log", params={"limit": 1}, timeout=120,
                      headers={"Authorization": f"Bearer {owner_token}"})
        if r.status_code != 200:
            raise LoadFailed(f"GET /api/v1/access-log (to settle the log) answered {r.status_code}: {r.text[:200]}")
    return settle


def _cpu_ratio(runs: dict[str, list[dict[str, Any]]]) -> float | None:
    """Least CPU per request of the baseline over least of dbp (each side's best run), None if unmeasured."""
    per = {side: [r["cpu_us_per_request"] for r in rs if r.get("cpu_us_per_request")] for side, rs in runs.items()}
    if not per["baseline"] or not per["dbp"]:
        return None
    return min(per["baseline"]) / min(per["dbp"])



def _scenarios(names: list[str], paths: list[str], owner_paths: list[str], tokens: dict[str, str],
               callers: Callers | None) -> list[Scenario]:
    out = []
    for name in names:
        if name == "public":
            out.append(Scenario("public", "anonymous read, public view, logged", "anonymous",
                                "public_canonical", paths, check=check_public))
        elif name == "recycler":
            assert callers is not None
            out.append(Scenario(
                "recycler", "recycler read, X-Purpose: dismantling, logged",
                f"API client of a recycler organisation ({callers.recycler.operator_id}), token from "
                f"POST /api/v1/auth/token", "canonical", paths,
                {"Authorization": f"Bearer {tokens['recycler']}", "X-Purpose": RECYCLER_PURPOSE},
                ("client", "recycler", RECYCLER_PURPOSE, "granted", RECYCLER_GROUPS), check_recycler))
        elif name == "owner":
            assert callers is not None
            out.append(Scenario(
                "owner", "responsible operator reads its own, logged",
                f"API client of the economic operator {callers.owner.operator_id} "
                f"({len(callers.owner_dpp_ids):,} passports), token from POST /api/v1/auth/token",
                "canonical", owner_paths, {"Authorization": f"Bearer {tokens['owner']}"},
                ("client", "economicOperator", None, "granted", ALL_GROUPS), check_owner))
    return out


def read_benchmark(url: str, *, connections: int, duration: float, warmup: float, rounds: int, urls: int,
                   seed: int, scenarios: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """One result per scenario (keyed by name), each with its own best dbp and baseline runs."""
    names = [s for s in SCENARIOS if s in (scenarios or SCENARIOS)]
    ids = dataset_ids(url)
    if not ids:
        raise LoadFailed("the database holds no passports to read")
    rng = random.Random(f"{seed}/reads")
    paths = [PREFIX + rng.choice(ids) for _ in range(urls)]
    callers = create_callers(url)  # the owner's token also settles the access log around each run
    owner_paths: list[str] = []
    if "owner" in names:
        orng = random.Random(f"{seed}/owner-reads")
        owner_paths = [PREFIX + orng.choice(callers.owner_dpp_ids) for _ in range(urls)]
    columns = sorted({"public_canonical" if n == "public" else "canonical" for n in names})
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {n: {"baseline": [], "dbp": []} for n in names}
    with tempfile.TemporaryDirectory(prefix="dbp-bench-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        baselines = {col: stack.enter_context(uvicorn(
            "baseline", url, core=SERVER_CORE, log_dir=workdir, probe=paths[0],
            env={"BENCH_BASELINE_COLUMN": col}, label=f"baseline-{col}")) for col in columns}
        dbp_server = stack.enter_context(uvicorn("dbp", url, core=SERVER_CORE, log_dir=workdir, probe=paths[0]))
        dbp = dbp_server.url
        tokens = {c.name: fetch_token(dbp, c) for c in (callers.recycler, callers.owner)}
        settle = _settler(dbp, tokens["owner"])
        plan = _scenarios(names, paths, owner_paths, tokens, callers)
        scripts = {sc.name: write_script(workdir, sc.paths, sc.name) for sc in plan}
        checked: dict[str, int] = {}
        with httpx.Client(timeout=10) as client:
            for sc in plan:
                assert sc.check is not None
                checked[sc.name] = sc.check(client, {"dbp": dbp, "baseline": baselines[sc.baseline_column].url}, sc)
                step(f"{sc.name}: responses verified on {checked[sc.name]} paths (baseline serves "
                     f"{sc.baseline_column})")
        for r in range(rounds):
            for sc in plan:
                for side, server in (("baseline", baselines[sc.baseline_column]), ("dbp", dbp_server)):
                    base = server.url
                    # the idle servers wait in epoll and cost nothing
                    if warmup > 0:
                        run_wrk(base, scripts[sc.name], connections=connections, duration=warmup, core=LOAD_CORE,
                                headers=sc.headers)
                    if side == "dbp":
                        time.sleep(SETTLE_S)
                        settle()  # the warm-up's log records are moved now, outside the measured work
                        before = last_log_id(url)
                    cpu_before = server.cpu_seconds()
                    step(f"read load: {sc.name} on {side} (round {r + 1}/{rounds}, {connections} connections, "
                         f"{duration:g} s)")
                    result = run_wrk(base, scripts[sc.name], connections=connections, duration=duration,
                                     core=LOAD_CORE, headers=sc.headers)
                    if result["non_2xx_3xx"] or result["requests"] == 0:
                        raise LoadFailed(f"{sc.name} on {side}: {result['non_2xx_3xx']} non-2xx/3xx responses of "
                                         f"{result['requests']}")
                    line = (f"  {side}: {result['requests_per_s']:,.0f} req/s, "
                            f"p99 {result['latency_ms']['p99']:.1f} ms")
                    if side == "dbp":
                        time.sleep(SETTLE_S)
                        # Work the server deferred (moving this run's access-log records into the indexed
                        # table, dbp.audit.staging) is part of what the run cost: do it now, on the clock.
                        settle()
                    cpu_after = server.cpu_seconds()
                    if cpu_before is not None and cpu_after is not None:
                        result["cpu_us_per_request"] = (cpu_after - cpu_before) / result["requests"] * 1e6
                        line += f", {result['cpu_us_per_request']:.1f} µs CPU per request"
                    if side == "dbp":
                        result["access_log"] = log_check(sc, log_rows_since(url, before), result["requests"],
                                                         connections)
                        line += (f", {result['access_log']['rows']:,} access-log rows for {result['requests']:,} "
                                 f"answered requests ({result['access_log']['per_request']:.4f} per request)")
                    step(line)
                    runs[sc.name][side].append(result)
    out: dict[str, dict[str, Any]] = {}
    for sc in plan:
        best = {side: max(rs, key=lambda x: x["requests_per_s"]) for side, rs in runs[sc.name].items()}
        throughput = best["dbp"]["requests_per_s"] / best["baseline"]["requests_per_s"]
        cpu = _cpu_ratio(runs[sc.name])
        out[sc.name] = {
            "endpoint": "GET /api/v1/dpps/{dppId}", "scenario": sc.name, "title": sc.title, "caller": sc.caller,
            "headers": sc.shown_headers(), "baseline_serves": sc.baseline_column,
            "connections": connections, "duration_s": duration, "url_list": len(sc.paths),
            "distinct_ids": len(set(sc.paths)), "verified_paths": checked[sc.name],
            "dbp": best["dbp"], "baseline": best["baseline"], "all_runs": runs[sc.name],
            # the verdict takes the lower of the two: wrk's throughput ratio, and the ratio of CPU per request
            # (baseline / dbp), which also charges dbp for log work it deferred past wrk's window
            "throughput_ratio": throughput, "cpu_ratio": cpu,
            "ratio": throughput if cpu is None else min(throughput, cpu),
            "access_log": best["dbp"]["access_log"],
        }
    return out
