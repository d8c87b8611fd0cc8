"""Transparency-log benchmark (issue 4): append rate inside real transactions, and proof latency over
HTTP once the log holds ``--log-leaves`` leaves.

* Appends: ``dbp.integrity.log.append`` in committed transactions on dbp's own engine — first one leaf per
  transaction (what each passport write adds), then batches of ``--batch-size`` leaves (what each bulk
  import batch adds) until the log holds the requested number of leaves. The leaves are synthetic
  passport versions (random ids and hashes): the log stores what a leaf commits to, not the version.
* Proofs: dbp's server (pinned like the read benchmark) signs its checkpoint; wrk then asks for
  inclusion proofs of random leaves and consistency proofs from random sizes to the checkpoint's size,
  each for ``--duration`` seconds with PROOF_CONNECTIONS connections (a latency target is about one
  request's service time, not a queue of 32); latency percentiles are wrk's. Target (issue 4): p99 <= 5 ms.
  Around every run the server's CPU time (``/proc``) and wrk's (``getrusage`` of the reaped child) are read:
  CPU per proof on the server, and how busy the load generator was (a client near 100 % of its core would
  make the figures the client's, not dbp's).

``python -m bench.log`` runs this part alone (``--help``): on a SQLite file that it keeps (``--database-url``,
default ``var/bench/log/log.sqlite3``) it appends only the leaves still missing, so repeated runs measure the
same 10^6-leaf log without rebuilding it.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.databases import hide_password, migrate
from bench.load import LoadFailed, ensure_wrk, run_wrk, write_script
from bench.progress import Progress, step
from bench.report import LOG_P99_MS
from bench.servers import ROOT, uvicorn
from dbp.db import make_engine, make_sessionmaker, transaction
from dbp.integrity import log

SERVER_CORE, LOAD_CORE = 0, 1
SINGLE_APPENDS = 2000
PROOF_CONNECTIONS = 4


def _leaves(rng: random.Random, count: int) -> list[log.Leaf]:
    at = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    return [log.Leaf(dpp_id=f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}", version=1,
                     sha256=f"{rng.getrandbits(256):064x}", at=at) for _ in range(count)]


def append_rates(url: str, *, leaves: int, batch_size: int, seed: int) -> dict[str, Any]:
    rng = random.Random(f"{seed}/log")
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    try:
        with transaction(factory) as session:
            start_size = log.size(session)
        single = min(SINGLE_APPENDS, leaves)
        one_each = _leaves(rng, single)
        started = time.perf_counter()
        for leaf in one_each:
            with transaction(factory) as session:
                log.append(session, leaves=[leaf])
        single_s = time.perf_counter() - started
        rest = leaves - single
        progress = Progress("appending leaves in batches", rest)
        started = time.perf_counter()
        done = 0
        while done < rest:
            chunk = _leaves(rng, min(batch_size, rest - done))
            with transaction(factory) as session:
                log.append(session, leaves=chunk)
            done += len(chunk)
            progress.add(len(chunk))
        batch_s = time.perf_counter() - started
        progress.finish()
        with transaction(factory) as session:
            size = log.size(session)
    finally:
        engine.dispose()
    return {"start_size": start_size, "size": size,
            "single": {"transactions": single, "seconds": single_s, "per_s": single / single_s if single else None},
            "batched": {"batch_size": batch_size, "leaves": rest, "seconds": batch_s,
                        "per_s": rest / batch_s if rest and batch_s else None}}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def proof_latency(url: str, *, size: int, duration: float, seed: int,
                  connections: int = PROOF_CONNECTIONS, rounds: int = 1, warmup: float = 0) -> dict[str, Any]:
    """wrk's figures for inclusion and consistency proofs (``rounds`` runs each, alternating; the run with the
    median p99 — of an even number, the higher of the two middle ones — is reported, every run is kept under
    ``runs``), with the server's CPU per proof and wrk's CPU share."""
    rng = random.Random(f"{seed}/proofs")
    inclusion = [f"/api/v1/log/proof/inclusion?leafIndex={rng.randrange(size)}&treeSize={size}"
                 for _ in range(20000)]
    consistency = [f"/api/v1/log/proof/consistency?from={rng.randrange(1, size)}&to={size}" for _ in range(20000)]
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="dbp-bench-log-") as tmp:
        workdir = Path(tmp)
        with uvicorn("dbp", url, core=SERVER_CORE, log_dir=workdir, probe="/health") as server:
            deadline = time.monotonic() + 60
            while True:  # the server's checkpointer signs the grown log within about a second
                r = httpx.get(server.url + "/api/v1/log/checkpoint", headers={"Accept": "application/json"},
                              timeout=10)
                if r.status_code == 200 and r.json()["size"] >= size:
                    break
                if time.monotonic() > deadline:
                    raise LoadFailed(f"no checkpoint of {size} leaves within 60 s: {r.status_code} {r.text[:200]}")
                time.sleep(0.2)
            scripts = {}
            for name, paths in (("inclusion", inclusion), ("consistency", consistency)):
                check = httpx.get(server.url + paths[0], timeout=10)
                if check.status_code != 200 or not check.json()["hashes"]:
                    raise LoadFailed(f"{name} proof answered {check.status_code}: {check.text[:200]}")
                scripts[name] = write_script(workdir, paths, f"log-{name}")
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in scripts}
            for round_no in range(rounds):
                for name, script in scripts.items():
                    if warmup:
                        run_wrk(server.url, script, connections=connections, duration=warmup, core=LOAD_CORE)
                    step(f"{name} proofs at {size:,} leaves ({connections} connections, {duration:g} s"
                         f"{f', round {round_no + 1} of {rounds}' if rounds > 1 else ''})")
                    server_cpu, client_cpu = server.cpu_seconds(), _children_cpu()
                    result = run_wrk(server.url, script, connections=connections, duration=duration,
                                     core=LOAD_CORE)
                    client_s = _children_cpu() - client_cpu
                    server_after = server.cpu_seconds()
                    if result["non_2xx_3xx"]:
                        raise LoadFailed(f"{name} proofs: {result['non_2xx_3xx']} non-2xx/3xx of "
                                         f"{result['requests']}")
                    if server_cpu is not None and server_after is not None and result["requests"]:
                        result["server_cpu_ms_per_request"] = (server_after - server_cpu) * 1000 / result["requests"]
                        result["server_cpu_share"] = (server_after - server_cpu) / result["seconds"]
                    result["client_cpu_share"] = client_s / result["seconds"]
                    runs[name].append(result)
                    step(f"  {_line(result)}")
            for name, results in runs.items():
                median = sorted(results, key=lambda r: r["latency_ms"]["p99"])[len(results) // 2]
                out[name] = {**median, "runs": [{"requests_per_s": r["requests_per_s"], "latency_ms": r["latency_ms"]}
                                              for r in results]}
    return out


def _line(result: dict[str, Any]) -> str:
    text = (f"{result['requests_per_s']:,.0f} proofs/s, p50 {result['latency_ms']['p50']:.2f} ms, "
            f"p99 {result['latency_ms']['p99']:.2f} ms")
    if "server_cpu_ms_per_request" in result:
        text += (f"; server CPU {result['server_cpu_ms_per_request']:.3f} ms/proof "
                 f"({result['server_cpu_share']:.0%} of its core)")
    return text + f"; wrk CPU {result['client_cpu_share']:.0%} of its core"


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


DEFAULT_URL = f"sqlite:///{ROOT / 'var' / 'bench' / 'log' / 'log.sqlite3'}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.log",
        description="The transparency-log benchmark alone: grow a kept SQLite log to --log-leaves leaves (only "
                    "what is missing is appended, timed), then measure proof latency over HTTP with wrk.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--database-url", default=DEFAULT_URL,
                   help="the database to grow and serve from (created and migrated when it is a missing SQLite "
                        "file; any other URL must point to a migrated dbp database)")
    p.add_argument("--log-leaves", type=int, default=1_000_000, help="leaves the log must hold")
    p.add_argument("--batch-size", type=int, default=500, help="leaves per append transaction (after the first "
                                                                 f"{SINGLE_APPENDS:,} single-leaf ones)")
    p.add_argument("--duration", type=float, default=10, help="seconds per measured wrk run")
    p.add_argument("--warmup", type=float, default=2, help="seconds of unmeasured load before each run")
    p.add_argument("--connections", type=int, default=PROOF_CONNECTIONS, help="concurrent wrk connections")
    p.add_argument("--rounds", type=int, default=3, help="runs per proof kind; the run of median p99 is reported")
    p.add_argument("--seed", type=int, default=2027)
    p.add_argument("--nice", type=int, default=0,
                   help="niceness increment for this process, hence for the server and wrk it starts (negative: "
                        "ahead of other work on a shared machine; needs root). Reported with the figures")
    args = p.parse_args(argv)
    if args.log_leaves < 2 or args.duration <= 0 or args.connections < 1 or args.rounds < 1 or args.batch_size < 1:
        p.error("--log-leaves must be at least 2; --duration, --connections, --rounds, --batch-size positive")
    ensure_wrk()
    niceness = os.nice(args.nice) if args.nice else os.nice(0)  # the server and wrk inherit it
    load_start = _load()
    if load_start > 0.5:
        step(f"warning: the machine is busy (load average {load_start:.2f}); latency figures will show it")
    url = args.database_url
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        migrate(url)
    engine = make_engine(url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            have = log.size(session)
    finally:
        engine.dispose()
    appended: dict[str, Any] | None = None
    if have < args.log_leaves:
        step(f"appending {args.log_leaves - have:,} leaves to the {have:,} there are")
        appended = append_rates(url, leaves=args.log_leaves - have, batch_size=args.batch_size, seed=args.seed + have)
        have = appended["size"]
    proofs = proof_latency(url, size=have, duration=args.duration, seed=args.seed, connections=args.connections,
                           rounds=args.rounds, warmup=args.warmup)
    print(f"transparency log, {have:,} leaves ({hide_password(url)}); "
          f"load average {load_start:.2f} at start, {_load():.2f} at end; niceness {niceness}")
    if appended is not None:
        single, batched = appended["single"], appended["batched"]
        print(f"  appends: {single['per_s'] or 0:,.0f} single-leaf transactions/s, "
              f"{batched['per_s'] or 0:,.0f} leaves/s in batches of {batched['batch_size']}")
    code = 0
    for name, r in proofs.items():
        ok = r["latency_ms"]["p99"] <= LOG_P99_MS
        code = code if ok else 3
        runs = ", ".join(f"{x['latency_ms']['p99']:.2f}" for x in r["runs"])
        print(f"  {name:<12} {_line(r)}  (p99 of each run: {runs} ms; target p99 <= {LOG_P99_MS:g} ms) "
              f"{'OK' if ok else 'MISS'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
