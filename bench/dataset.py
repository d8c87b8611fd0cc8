"""The benchmark dataset (dbp's deterministic synthetic fleet, serialized once) and the environment."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import version

import orjson

from bench.progress import Progress
from dbp.passports.demo import generate_fleet


@dataclass
class Dataset:
    raws: list[bytes]  # the import input: one JSON document per passport, as a client would send it

    @property
    def count(self) -> int:
        return len(self.raws)

    @property
    def avg_bytes(self) -> float:
        return sum(map(len, self.raws)) / max(len(self.raws), 1)


def generate(count: int, *, seed: int) -> Dataset:
    progress = Progress("generating passports", count)
    raws: list[bytes] = []
    for doc in generate_fleet(count, seed=seed):
        raws.append(orjson.dumps(doc))
        if len(raws) % 1000 == 0:
            progress.add(1000)
    progress.add(len(raws) % 1000)
    progress.finish()
    return Dataset(raws)


def environment() -> dict[str, object]:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    wrk = shutil.which("wrk")
    wrk_version = None
    if wrk:
        out = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
        wrk_version = (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else None
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "cpu_model": _cpu_model(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "taskset": shutil.which("taskset") is not None,
        "wrk": wrk_version,
        "packages": {p: _version(p) for p in ("fastapi", "starlette", "uvicorn", "uvloop", "httptools",
                                              "pydantic", "sqlalchemy", "psycopg", "orjson")},
    }


def _version(package: str) -> str | None:
    try:
        return version(package)
    except Exception:
        return None


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None
