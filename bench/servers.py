"""Uvicorn processes for the read benchmark: identical flags for dbp and for the baseline."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
UVICORN_FLAGS = ["--workers", "1", "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                 "--log-level", "warning"]
FACTORIES = {"dbp": "bench.servers:dbp_app", "baseline": "bench.baseline_app:create"}


class ServerFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class Server:
    """A running uvicorn process: its base URL and process id."""

    url: str
    pid: int

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the process has used so far (all its threads), None where /proc is missing."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


# dbp's settings for the benchmark, beyond the database: the rate limiter stays on (its per-request
# cost is part of what is measured) but with limits no load generator reaches (the defaults, 200
# requests/s per address, would answer most of wrk's requests with 429), and access tokens outlive
# the run (their lifetime does not change what a verification costs: verified tokens are cached).
BENCH_SETTINGS: dict[str, Any] = {
    "rate_limit_per_address": 1e9, "rate_limit_per_address_burst": 10**9,
    "rate_limit_per_principal": 1e9, "rate_limit_per_principal_burst": 10**9,
    "token_ttl_seconds": 86400,
    "auto_register": False,  # registering 100,000 passports with the embedded registry would run under the load
    "registry_probe_interval": 0, "backup_follow": False,  # no background rounds during the measured reads
}


def dbp_app() -> Any:
    """The real dbp application on the benchmark database (``uvicorn --factory``)."""
    from dbp.app import create_app
    from dbp.config import Settings

    return create_app(Settings(database_url=os.environ["BENCH_DATABASE_URL"], **BENCH_SETTINGS))


def pinned(core: int | None) -> list[str]:
    """``taskset -c CORE`` when we pin (taskset present and more than one core), else nothing."""
    if core is None or shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        return []
    return ["taskset", "-c", str(core)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def command(name: str, port: int, core: int | None) -> list[str]:
    return [*pinned(core), sys.executable, "-m", "uvicorn", FACTORIES[name], "--factory", "--app-dir", str(ROOT),
            "--host", "127.0.0.1", "--port", str(port), *UVICORN_FLAGS]


@contextmanager
def uvicorn(name: str, database_url: str, *, core: int | None, log_dir: Path, probe: str,
            env: dict[str, str] | None = None, label: str | None = None) -> Iterator[Server]:
    """Start one server, wait until ``probe`` answers 200, yield it (URL and pid), stop it (by its pid).

    ``env``: extra environment for the server (e.g. the baseline's ``BENCH_BASELINE_COLUMN``);
    ``label`` names it in logs and errors (default ``name``)."""
    port = free_port()
    label = label or name
    log_path = log_dir / f"{label}.log"
    full_env = {**os.environ, **(env or {}), "BENCH_DATABASE_URL": database_url}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command(name, port, core), cwd=ROOT, env=full_env, stdout=log,
                                stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise ServerFailed(f"{label} server exited with {proc.returncode}:\n{_tail(log_path)}")
            try:
                if httpx.get(base + probe, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise ServerFailed(f"{label} server did not answer {probe} within 60 s:\n{_tail(log_path)}")
            time.sleep(0.1)
        yield Server(base, proc.pid)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
