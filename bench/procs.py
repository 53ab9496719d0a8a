"""Child processes with wall time and peak resident memory, read with public tools only.

Peak RSS comes from ``os.wait4`` (the kernel's ``ru_maxrss`` of the child and of
every descendant it waited for); an optional sampler thread reads
``/proc/<pid>/status`` while the child runs, for a timeline.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


@dataclass
class Measured:
    cmd: list[str]
    rc: int
    wall_s: float
    peak_rss_bytes: int
    stdout: str
    stderr: str
    user_s: float = 0.0
    sys_s: float = 0.0
    samples: list[dict[str, Any]] = field(default_factory=list)

    def check(self, what: str) -> Measured:
        if self.rc != 0:
            tail = "\n".join((self.stderr or self.stdout).strip().splitlines()[-15:])
            raise RuntimeError(f"{what} failed (exit status {self.rc}): {' '.join(self.cmd)}\n{tail}")
        return self


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile, ... of a process, in bytes (empty if it is gone)."""
    out: dict[str, int] = {}
    try:
        with Path(f"/proc/{pid}/status").open() as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if key.startswith(("Vm", "Rss")) and len(parts) == 2 and parts[1] == "kB":
                    out[key] = int(parts[0]) * 1024
    except OSError:
        pass
    return out


def run_measured(cmd: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
                 timeout: float | None = None, sample_every: float = 0.0,
                 sample: Callable[[int], dict[str, Any]] | None = None,
                 echo: bool = False) -> Measured:
    """Run ``cmd``; wall time, peak RSS (wait4) and, with ``sample_every``, a sampled timeline."""
    full_env = dict(os.environ if env is None else env)
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env, cwd=cwd)
    chunks: dict[str, list[str]] = {"out": [], "err": []}

    def drain(pipe: Any, key: str) -> None:
        for raw in iter(pipe.readline, b""):
            line = raw.decode("utf-8", errors="replace")
            chunks[key].append(line)
            if echo and key == "err":
                sys.stderr.write("    | " + line)
        pipe.close()

    readers = [threading.Thread(target=drain, args=(proc.stdout, "out"), daemon=True),
               threading.Thread(target=drain, args=(proc.stderr, "err"), daemon=True)]
    for r in readers:
        r.start()
    samples: list[dict[str, Any]] = []
    stop = threading.Event()

    def sampler() -> None:
        while not stop.wait(sample_every):
            st = proc_status(proc.pid)
            row: dict[str, Any] = {"t": round(time.perf_counter() - t0, 2), "rss": st.get("VmRSS", 0)}
            if sample is not None:
                row.update(sample(proc.pid))
            samples.append(row)

    sampler_thread = None
    if sample_every > 0:
        sampler_thread = threading.Thread(target=sampler, daemon=True)
        sampler_thread.start()
    timer = None
    if timeout:
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if timer:
        timer.cancel()
    stop.set()
    proc.returncode = os.waitstatus_to_exitcode(status)
    for r in readers:
        r.join(timeout=10)
    if sampler_thread:
        sampler_thread.join(timeout=5)
    # ru_maxrss is in KiB on Linux (bytes on macOS)
    peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return Measured(list(cmd), proc.returncode, wall, peak, "".join(chunks["out"]), "".join(chunks["err"]),
                    usage.ru_utime, usage.ru_stime, samples)


def venv_tool(name: str) -> str:
    """A console script of the environment running the harness (e.g. web2code-convert)."""
    exe = VENV_BIN / name
    if exe.exists():
        return str(exe)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} is not installed in {VENV_BIN} (pip install -e . into the venv)")
    return found


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and every run (what the report prints for a repeated figure)."""
    vals = [float(v) for v in values]
    if not vals:
        return {"median": None, "min": None, "max": None, "runs": []}
    return {"median": round(median(vals), 4), "min": round(min(vals), 4), "max": round(max(vals), 4),
            "runs": [round(v, 4) for v in vals]}


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    import platform

    info: dict[str, Any] = {"hostname": platform.node(), "machine": platform.machine(),
                            "python": platform.python_version(), "logical_cpus": os.cpu_count()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        for line in cpuinfo.splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        flags = next((ln for ln in cpuinfo.splitlines() if ln.startswith("flags")), "")
        info["simd"] = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "f16c", "fma")
                        if f" {f}" in flags]
    except OSError:
        pass
    try:
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()
        info["mem_total_bytes"] = int(mem[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    with contextlib.suppress(OSError):
        info["loadavg_start"] = list(os.getloadavg())
    return info
