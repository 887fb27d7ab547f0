"""Helpers shared by the benchmarks: a server, wall time, peak memory, a results file."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from claimsync.pgserver import PgServer, obtain_server
from claimsync.resources import project_dir

RESULTS = Path(__file__).resolve().parent / "results"


def server() -> PgServer:
    """$CLAIMSYNC_BENCH_PG_URL, else $CLAIMSYNC_TEST_PG_URL, else the embedded/local one."""
    url = os.environ.get("CLAIMSYNC_BENCH_PG_URL") or os.environ.get("CLAIMSYNC_TEST_PG_URL")
    return obtain_server(project_dir() / ".claimsync" / "bench-pg", admin_url=url)


@dataclass
class Timer:
    seconds: float = 0.0


@contextmanager
def timed() -> Iterator[Timer]:
    timer = Timer()
    start = time.perf_counter()
    try:
        yield timer
    finally:
        timer.seconds = time.perf_counter() - start


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_isolated(module: str, *args: str) -> str:
    """Run ``python -m module args`` in a fresh process (its own peak RSS); return its stdout."""
    result = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, check=True)
    return result.stdout


@dataclass
class Report:
    name: str
    title: str
    lines: list[str] = field(default_factory=list)

    def add(self, line: str = "") -> None:
        print(line)
        self.lines.append(line)

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.add("| " + " | ".join(header) + " |")
        self.add("|" + "|".join("---" for _ in header) + "|")
        for row in rows:
            self.add("| " + " | ".join(row) + " |")

    def write(self) -> Path:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"{self.name}.md"
        head = [
            f"# {self.title}",
            "",
            f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {platform.node() or 'this machine'}: "
            f"{os.cpu_count()} cores, Python {platform.python_version()}. Timings are noisy here: "
            "compare against the baseline in the same run.",
            "",
        ]
        path.write_text("\n".join(head + self.lines) + "\n", encoding="utf-8")
        return path
