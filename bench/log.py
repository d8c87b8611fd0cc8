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
"""

from __future__ import annotations

import random
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.load import LoadFailed, run_wrk, write_script
from bench.progress import Progress, step
from bench.servers import uvicorn
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


def proof_latency(url: str, *, size: int, duration: float, seed: int,
                  connections: int = PROOF_CONNECTIONS) -> dict[str, Any]:
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
            for name, paths in (("inclusion", inclusion), ("consistency", consistency)):
                check = httpx.get(server.url + paths[0], timeout=10)
                if check.status_code != 200 or not check.json()["hashes"]:
                    raise LoadFailed(f"{name} proof answered {check.status_code}: {check.text[:200]}")
                script = write_script(workdir, paths, f"log-{name}")
                step(f"{name} proofs at {size:,} leaves ({connections} connections, {duration:g} s)")
                result = run_wrk(server.url, script, connections=connections, duration=duration, core=LOAD_CORE)
                if result["non_2xx_3xx"]:
                    raise LoadFailed(f"{name} proofs: {result['non_2xx_3xx']} non-2xx/3xx of {result['requests']}")
                out[name] = result
                step(f"  {result['requests_per_s']:,.0f} proofs/s, p50 {result['latency_ms']['p50']:.2f} ms, "
                     f"p99 {result['latency_ms']['p99']:.2f} ms")
    return out
