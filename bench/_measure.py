"""Helpers for the benchmark scripts: run a command and record wall time and the peak resident
memory of its whole process tree (the command plus its worker processes), sampled from /proc."""

from __future__ import annotations

import os
import platform
import subprocess
import threading
import time
from pathlib import Path


def _tree_rss_kib(root: int) -> int:
    """Sum of VmRSS over ``root`` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run ``cmd``; return (wall seconds, peak tree RSS in MiB, combined output)."""
    wall, rss, _cpu, out = run_timed(cmd, env)
    return wall, rss, out


def run_timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, float, str]:
    """Run ``cmd``; return (wall seconds, peak tree RSS in MiB, CPU seconds, combined output).

    CPU is user + system time of the command and every descendant it waited for
    (``RUSAGE_CHILDREN`` before and after): on a shared machine a steadier figure than wall
    time, which other jobs' load inflates.
    """
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak = 0
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {}), "COLUMNS": "120"},
    )
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss_kib(proc.pid))
            time.sleep(0.1)

    t0 = time.perf_counter()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{out}")
    return wall, peak / 1024, cpu, out


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{platform.system()} {platform.machine()}, {cpus} CPU(s), Python "
        f"{platform.python_version()}, load average at start {load:.2f}"
    )
