"""``python -m bench``: dataset → bulk import (dbp vs raw insert) → reads (dbp vs bare ASGI: anonymous,
recycler with a purpose, responsible operator) → resolver redirects (dbp vs bare ASGI) → backup node catch-up
(verified and stored vs the bare transfer) → transparency log → report.

Exit status: 0 when every step ran (targets missed or not, unless ``--strict``), 1 when a step
failed, 2 for bad arguments, 3 with ``--strict`` when a ratio misses its target.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from datetime import UTC, datetime
from typing import Any

from bench import backup as backup_bench
from bench import dataset as ds
from bench import imports, read, report
from bench import log as log_bench
from bench import resolver as resolver_bench
from bench.databases import fresh_databases, hide_password
from bench.load import ensure_wrk
from bench.progress import step


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks of dbp against baselines measured in the same run on the same database: "
                    "read throughput (dbp app vs a bare ASGI app, both under uvicorn, load from wrk), bulk "
                    "import rate (bulk.import_records vs a raw batched insert of the same rows) and a backup "
                    "node's catch-up (verified versions/s vs the bare transfer of the same pages).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--count", type=int, default=100_000, help="passports in the dataset")
    p.add_argument("--database-url", default=None,
                   help="sqlite:///path (the file must not exist) or postgresql://user@host:port/db (the server; "
                        "the benchmark creates and drops its own databases dbp_bench and dbp_bench_baseline). "
                        "Default: a fresh SQLite file in a new folder under ./var/bench")
    p.add_argument("--duration", type=float, default=10, help="seconds per measured load run")
    p.add_argument("--warmup", type=float, default=2, help="seconds of unmeasured load before each run (0: none)")
    p.add_argument("--connections", type=int, default=32, help="concurrent wrk connections")
    p.add_argument("--rounds", type=int, default=1, help="load runs per server (alternating); the best counts")
    p.add_argument("--urls", type=int, default=100_000, help="length of the random dppId path rotation")
    p.add_argument("--batch-size", type=int, default=500, help="import batch size (dbp and baseline)")
    p.add_argument("--import-workers", type=int, default=None,
                   help="worker processes for dbp's import (0: validate in the writer); default: dbp's own default")
    p.add_argument("--seed", type=int, default=2027, help="dataset and URL-list seed")
    p.add_argument("--skip-read", action="store_true", help="skip the read benchmark")
    p.add_argument("--read-scenarios", default=",".join(read.SCENARIOS),
                   help="comma-separated read scenarios: public (anonymous), recycler (Bearer token + X-Purpose: "
                        "dismantling), owner (Bearer token of the passports' responsible operator)")
    p.add_argument("--skip-resolver", action="store_true",
                   help="skip the resolver benchmark (307 redirects of product identifiers vs a bare ASGI app)")
    p.add_argument("--skip-backup", action="store_true",
                   help="skip the backup benchmark (a backup node catching up from zero over HTTP, every version "
                        "verified and stored, vs the bare transfer of the same pages; then dbp backup verify)")
    p.add_argument("--skip-import", action="store_true",
                   help="skip the import comparison (the dataset is still loaded through dbp's import, untimed)")
    p.add_argument("--log-leaves", type=int, default=1_000_000,
                   help="transparency log: leaves appended (after the dataset's own) before proof latency is "
                        "measured over HTTP; 0 skips the log benchmark")
    p.add_argument("--keep", action="store_true", help="keep the benchmark databases afterwards")
    p.add_argument("--strict", action="store_true", help="exit 3 when a ratio misses its target")
    args = p.parse_args(argv)
    if args.count < 1 or args.connections < 1 or args.duration <= 0 or args.rounds < 1 or args.urls < 1 \
            or args.batch_size < 1 or args.warmup < 0 or args.log_leaves < 0 \
            or (args.import_workers is not None and args.import_workers < 0):
        p.error("--count, --connections, --duration, --rounds, --urls and --batch-size must be positive")
    args.read_scenarios = [s.strip() for s in args.read_scenarios.split(",") if s.strip()]
    unknown = set(args.read_scenarios) - set(read.SCENARIOS)
    if unknown or not args.read_scenarios:
        p.error(f"--read-scenarios takes a comma-separated subset of {', '.join(read.SCENARIOS)}")
    return args


def run(args: argparse.Namespace, doc: dict[str, Any]) -> None:
    if not args.skip_read or args.log_leaves or not args.skip_resolver:
        ensure_wrk()  # fail (or install) before spending minutes on the dataset
    doc["environment"] = ds.environment()
    load = doc["environment"]["load_average_at_start"]
    if load and load[0] > 0.5:
        step(f"warning: the machine is busy (load average {load[0]:.2f}); other work skews both sides of a ratio")
    step(f"generating {args.count:,} passports (generate_fleet, seed {args.seed})")
    data = ds.generate(args.count, seed=args.seed)
    doc["dataset"] = {"count": data.count, "avg_bytes": data.avg_bytes, "seed": args.seed}
    with fresh_databases(args.database_url, keep=args.keep) as dbs:
        doc["database"] = dbs.describe()
        step(f"database: {dbs.kind} {dbs.server_version} at {dbs.location}")
        step("bulk import through dbp (bulk.import_records)")
        mine = imports.dbp_import(dbs.dbp_url, data, batch_size=args.batch_size, workers=args.import_workers,
                                  label="dbp import" if not args.skip_import else "loading dataset (dbp import)")
        del data  # the raw documents are no longer needed
        passports, versions = imports.stored_rows(dbs.dbp_url)
        canon = versions[0].index("canonical")
        doc["dataset"]["avg_canonical_bytes"] = (sum(len(r[canon].encode()) for r in versions[1])
                                                 / max(len(versions[1]), 1))
        if not args.skip_import:
            step("baseline: raw executemany of the same rows into an empty database")
            base = imports.baseline_insert(dbs.baseline_url, passports, versions, batch_size=args.batch_size)
            doc["results"]["import"] = {"batch_size": args.batch_size, "dbp": mine, "baseline": base,
                                        "ratio": mine["records_per_s"] / base["records_per_s"],
                                        "target": report.TARGETS["import"]}
        del passports, versions
        if not args.skip_read:
            step("read benchmark")
            results = read.read_benchmark(dbs.dbp_url, connections=args.connections, duration=args.duration,
                                          warmup=args.warmup, rounds=args.rounds, urls=args.urls, seed=args.seed,
                                          scenarios=args.read_scenarios)
            for name, result in results.items():
                doc["results"][f"read_{name}"] = {**result, "target": report.TARGETS[f"read_{name}"]}
        if not args.skip_resolver:
            step("resolver benchmark")
            result = resolver_bench.resolver_benchmark(dbs.dbp_url, connections=args.connections,
                                                       duration=args.duration, warmup=args.warmup,
                                                       rounds=args.rounds, urls=args.urls, seed=args.seed)
            doc["results"]["resolver"] = {**result, "target": report.TARGETS["resolver"]}
        if not args.skip_backup:  # before the log benchmark, whose synthetic leaves are no passport's versions
            step("backup benchmark")
            doc["results"]["backup"] = backup_bench.backup_benchmark(dbs.dbp_url, rounds=args.rounds)
        if args.log_leaves:
            step(f"transparency log: appending {args.log_leaves:,} leaves in real transactions")
            appends = log_bench.append_rates(dbs.dbp_url, leaves=args.log_leaves, batch_size=args.batch_size,
                                             seed=args.seed)
            proofs = log_bench.proof_latency(dbs.dbp_url, size=appends["size"], duration=args.duration,
                                             seed=args.seed)
            doc["results"]["log"] = {"appends": appends, "proofs": proofs, "target_p99_ms": report.LOG_P99_MS}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    shown = vars(args).copy()
    command = " ".join(sys.argv)
    if args.database_url:
        shown["database_url"] = hide_password(args.database_url)
        command = command.replace(args.database_url, shown["database_url"])
    doc: dict[str, Any] = {
        "started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "command": command, "args": shown,
        "environment": {}, "database": {}, "dataset": {}, "results": {}, "ok": False,
    }
    code = 0
    try:
        run(args, doc)
        doc["ok"] = True
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    except Exception as exc:
        traceback.print_exc()
        doc["error"] = f"{type(exc).__name__}: {exc}"
        print(f"\nbenchmark FAILED: {doc['error']}", file=sys.stderr)
        code = 1
    doc["elapsed_s"] = time.perf_counter() - started
    if doc["environment"] and hasattr(os, "getloadavg"):
        doc["environment"]["load_average_at_end"] = list(os.getloadavg())
    doc["targets_met"] = {name: report.verdict(name, doc["results"]) for name in report.TARGETS}
    doc["targets_met"]["backup"] = report.backup_verdict(doc["results"])
    doc["results_file"] = str(report.write(doc))
    if doc["ok"]:
        print(report.table(doc))
        if args.strict and any(v is False for v in doc["targets_met"].values()):
            code = 3
    return code


if __name__ == "__main__":
    sys.exit(main())
