"""The load generator: ``wrk`` (1 thread, N connections) rotating through a list of request paths."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench.progress import step
from bench.servers import pinned

MARK = "BENCH-JSON "
LUA = r"""
-- Rotates through the paths in PATHS_FILE (one per line); prints a JSON summary when done.
local paths_file = "%s"
local reqs, n, i = {}, 0, 0

function init(args)
  for line in io.lines(paths_file) do
    n = n + 1
    reqs[n] = wrk.format("GET", line)
  end
  if n == 0 then error("no paths in " .. paths_file) end
end

function request()
  i = i + 1
  if i > n then i = 1 end
  return reqs[i]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH-JSON {\"requests\":%%.0f,\"duration_us\":%%.0f,\"bytes\":%%.0f,\"connect\":%%.0f,\"read\":%%.0f," ..
    "\"write\":%%.0f,\"status\":%%.0f,\"timeout\":%%.0f,\"p50_us\":%%.0f,\"p90_us\":%%.0f,\"p99_us\":%%.0f," ..
    "\"max_us\":%%.0f,\"mean_us\":%%.1f}\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


class LoadFailed(RuntimeError):
    pass


def ensure_wrk() -> str:
    """Path of ``wrk``; installs Debian's package when missing and we are root, else fails clearly."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise LoadFailed("wrk is not installed: install it (Debian/Ubuntu: sudo apt-get install -y wrk) "
                         "or run with --skip-read")
    step("installing wrk (apt-get install -y wrk)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "wrk"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise LoadFailed(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    found = shutil.which("wrk")
    if not found:
        raise LoadFailed("apt-get installed wrk but it is not on PATH")
    return found


def write_script(workdir: Path, paths: list[str], name: str = "rotate") -> Path:
    paths_file = workdir / f"{name}-paths.txt"
    paths_file.write_text("".join(p + "\n" for p in paths), encoding="utf-8")
    script = workdir / f"{name}.lua"
    script.write_text(LUA % str(paths_file).replace("\\", "\\\\").replace('"', '\\"'), encoding="utf-8")
    return script


def run_wrk(base_url: str, script: Path, *, connections: int, duration: float, core: int | None,
            headers: dict[str, str] | None = None) -> dict[str, Any]:
    """One wrk run; ``headers`` go on every request (``wrk -H``; the script's ``wrk.format`` merges them)."""
    extra = [arg for name, value in (headers or {}).items() for arg in ("-H", f"{name}: {value}")]
    cmd = [*pinned(core), ensure_wrk(), "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "5s",
           *extra, "-s", str(script), base_url]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=duration + 60)
    if done.returncode != 0:
        raise LoadFailed(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith(MARK)), None)
    if line is None:
        raise LoadFailed(f"wrk printed no summary:\n{done.stdout}\n{done.stderr}")
    raw = json.loads(line[len(MARK):])
    seconds = raw["duration_us"] / 1e6
    return {
        "requests": int(raw["requests"]), "seconds": seconds, "requests_per_s": raw["requests"] / seconds,
        "mb_per_s": raw["bytes"] / seconds / 1e6, "non_2xx_3xx": int(raw["status"]),
        "socket_errors": {k: int(raw[k]) for k in ("connect", "read", "write", "timeout")},
        "latency_ms": {k: raw[f"{k}_us"] / 1000 for k in ("mean", "p50", "p90", "p99", "max")},
    }
