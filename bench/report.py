"""The human-readable table (stdout) and the JSON results file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
# Issue 3: public read with logging >= 0.6 x the bare app, authenticated read >= 0.4 x.
TARGETS = {"read_public": 0.6, "read_recycler": 0.4, "read_owner": 0.4, "import": 0.3, "resolver": 0.5}
LOG_P99_MS = 5.0  # issue 4: inclusion and consistency proofs at 10^6 leaves, over HTTP
BACKUP_VERSIONS_PER_S = 1000.0  # issue 6: a backup catches up >= 1,000 verified versions/s on one core
READ_LABELS = {"read_public": "read, anonymous (public view)", "read_recycler": "read, recycler + X-Purpose",
               "read_owner": "read, owner (full version)"}


def verdict(name: str, results: dict[str, Any]) -> bool | None:
    part = results.get(name)
    return None if part is None else bool(part["ratio"] >= TARGETS[name])


def backup_verdict(results: dict[str, Any]) -> bool | None:
    """Issue 6's target is absolute (verified versions/s); the ratio to the bare transfer is reported beside it."""
    part = results.get("backup")
    return None if part is None else bool(part["backup"]["versions_per_s"] >= BACKUP_VERSIONS_PER_S)


def table(doc: dict[str, Any]) -> str:
    env, db, data, res = doc["environment"], doc["database"], doc["dataset"], doc["results"]
    lines = [
        f"dbp benchmark — {doc['started']}",
        f"  environment: Python {env['python']} ({env['implementation']}), {env['cpu_count']} CPUs"
        f" ({env['cpu_model'] or 'unknown model'}), {env['platform']}",
        f"  load avg:    {_load(env)}",
        f"  database:    {db['kind']} {db['server_version']} ({db['location']})",
        f"  dataset:     {data['count']:,} passports, avg {data['avg_bytes']:,.0f} bytes as imported"
        + (f", avg {data['avg_canonical_bytes']:,.0f} bytes stored (canonical)" if data.get("avg_canonical_bytes")
           else ""),
        "",
        f"  {'benchmark':<34}{'dbp':>14}{'baseline':>14}{'ratio':>8}  {'target':<8}",
        "  " + "-" * 84,
    ]
    reads = [name for name in READ_LABELS if res.get(name)]
    for name in reads:
        read = res[name]
        ok = "OK" if verdict(name, res) else "MISS"
        lines.append(f"  {READ_LABELS[name]:<34}{read['dbp']['requests_per_s']:>8,.0f} req/s"
                     f"{read['baseline']['requests_per_s']:>8,.0f} req/s{read['ratio']:>8.2f}  "
                     f">= {TARGETS[name]:<5}{ok}")
        d, b = read["dbp"]["latency_ms"], read["baseline"]["latency_ms"]
        lines.append(f"  {'  latency p50 / p99 (ms)':<34}{d['p50']:>6.2f} /{d['p99']:>6.2f}"
                     f"{b['p50']:>7.2f} /{b['p99']:>6.2f}")
        dc, bc = read["dbp"].get("cpu_us_per_request"), read["baseline"].get("cpu_us_per_request")
        if dc and bc:
            lines.append(f"  {'  CPU per request (µs)':<34}{dc:>12.1f}{bc:>14.1f}{read['cpu_ratio'] or bc / dc:>8.2f}"
                         f"  (throughput ratio {read['throughput_ratio']:.2f}; the lower ratio counts)")
        log = read.get("access_log")
        if log:
            flag = "" if log["within_bounds"] else (f"  LOST {log['missing']:,}" if log["missing"] else
                                                    "  MORE ROWS THAN IN-FLIGHT REQUESTS")
            lines.append(f"  {'  access-log rows per request':<34}{log['per_request']:>12.4f}"
                         f"   ({log['rows']:,} rows for {log['answered_requests']:,} answered){flag}")
        headers = ", ".join(f"{k}: {v}" for k, v in read["headers"].items()) or "no credentials"
        lines.append(f"    ({headers}; baseline serves {read['baseline_serves']}; {read['distinct_ids']:,} distinct "
                     f"ids in a {read['url_list']:,}-path rotation)")
    if reads:
        first = res[reads[0]]
        lines.append(f"    (all reads: {first['connections']} connections, {first['duration_s']:g} s per run, "
                     f"wrk 1 thread; best of {len(first['all_runs']['dbp'])} run(s) per side)")
    rsv = res.get("resolver")
    if rsv:
        ok = "OK" if verdict("resolver", res) else "MISS"
        lines.append(f"  {'resolver 307 (GS1 Digital Link)':<34}{rsv['dbp']['requests_per_s']:>8,.0f} req/s"
                     f"{rsv['baseline']['requests_per_s']:>8,.0f} req/s{rsv['ratio']:>8.2f}  "
                     f">= {TARGETS['resolver']:<5}{ok}")
        d, b = rsv["dbp"]["latency_ms"], rsv["baseline"]["latency_ms"]
        lines.append(f"  {'  latency p50 / p99 (ms)':<34}{d['p50']:>6.2f} /{d['p99']:>6.2f}"
                     f"{b['p50']:>7.2f} /{b['p99']:>6.2f}")
        dc, bc = rsv["dbp"].get("cpu_us_per_request"), rsv["baseline"].get("cpu_us_per_request")
        if dc and bc:
            lines.append(f"  {'  CPU per request (µs)':<34}{dc:>12.1f}{bc:>14.1f}{rsv['cpu_ratio'] or bc / dc:>8.2f}"
                         f"  (throughput ratio {rsv['throughput_ratio']:.2f}; the lower ratio counts)")
        lines.append(f"    ({rsv['registrations']:,} registrations, {rsv['distinct_ids']:,} distinct identifiers in a "
                     f"{rsv['url_list']:,}-path rotation; {rsv['connections']} connections, {rsv['duration_s']:g} s "
                     f"per run, best of {len(rsv['all_runs']['dbp'])} run(s) per side)")
    imp = res.get("import")
    if imp:
        ok = "OK" if verdict("import", res) else "MISS"
        lines.append(f"  {'bulk import (batch ' + str(imp['batch_size']) + ')':<34}"
                     f"{imp['dbp']['records_per_s']:>8,.0f} rec/s{imp['baseline']['records_per_s']:>8,.0f} rec/s"
                     f"{imp['ratio']:>8.2f}  >= {TARGETS['import']:<5}{ok}")
        lines.append(f"    (dbp {imp['dbp']['seconds']:,.1f} s with {imp['dbp'].get('workers', 0)} validation worker "
                     f"process(es), baseline raw executemany "
                     f"{imp['baseline']['seconds']:,.1f} s for {imp['dbp']['records']:,} records)")
    bkp = res.get("backup")
    if bkp:
        ok = "OK" if backup_verdict(res) else "MISS"
        mine, base = bkp["backup"], bkp["baseline"]
        lines.append(f"  {'backup catch-up (verified, stored)':<34}{mine['versions_per_s']:>7,.0f} ver/s"
                     f"{base['versions_per_s']:>7,.0f} ver/s{bkp['ratio']:>8.2f}  "
                     f">= {BACKUP_VERSIONS_PER_S:,.0f} ver/s {ok}")
        parts = ", ".join(f"{k} {v:.1f}" for k, v in mine["breakdown_s"].items())
        lines.append(f"    ({bkp['versions']:,} versions, log of {bkp['tree_size']:,} leaves; backup "
                     f"{mine['seconds']:,.1f} s = {parts} s; feed requests {mine['feed_fetch_s']:.1f} s in the "
                     f"fetch thread, overlapped)")
        lines.append(f"    (baseline: bare transfer of the same leaves and feed pages with the same client, "
                     f"{base['seconds']:,.1f} s; best of {len(bkp['all_runs']['backup'])} run(s) per side"
                     f"{'; backup pinned to one core, repository on the other' if bkp['pinned'] else ''})")
        chk = bkp.get("recheck")
        if chk:
            lines.append(f"  {'  dbp backup verify (held copies)':<34}{chk['versions_per_s']:>7,.0f} ver/s"
                         f"   ({chk['versions']:,} versions, {chk['leaves']:,} leaves, {chk['nodes']:,} nodes, "
                         f"{chk['checkpoints']} checkpoint(s) re-checked in {chk['seconds']:,.1f} s)")
    tlog = res.get("log")
    if tlog:
        a = tlog["appends"]
        lines.append(f"  transparency log ({a['size']:,} leaves): {a['single']['per_s']:,.0f} single-leaf "
                     f"transactions/s, {a['batched']['per_s'] or 0:,.0f} leaves/s in batches of "
                     f"{a['batched']['batch_size']}")
        for name, r in tlog["proofs"].items():
            ok = "OK" if r["latency_ms"]["p99"] <= LOG_P99_MS else "MISS"
            lines.append(f"    {name + ' proofs over HTTP':<32}{r['requests_per_s']:>8,.0f} /s  p50 "
                         f"{r['latency_ms']['p50']:.2f} ms  p99 {r['latency_ms']['p99']:.2f} ms  "
                         f"(target p99 <= {LOG_P99_MS:g} ms) {ok}")
    if not reads and not imp and not tlog and not rsv and not bkp:
        lines.append("  (nothing measured)")
    lines.append("")
    lines.append(f"  results: {doc['results_file']}")
    return "\n".join(lines)


def _load(env: dict[str, Any]) -> str:
    start, end = env.get("load_average_at_start"), env.get("load_average_at_end")
    text = f"{start[0]:.2f} at start" if start else "unknown"
    return text + (f", {end[0]:.2f} at end (1-minute; > 0.5 means other work shared the 2 cores)" if end else "")


def write(doc: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, indent=2, sort_keys=False) + "\n"
    stamp = doc["started"].replace(":", "").replace("-", "")
    (RESULTS / f"{stamp}-n{doc['args']['count']}.json").write_text(text, encoding="utf-8")  # history
    path = RESULTS / "latest.json"
    path.write_text(text, encoding="utf-8")
    return path
