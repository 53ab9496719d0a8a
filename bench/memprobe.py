"""Resident memory of the application process and its engine worker with a pair loaded.

Run as a fresh child of ``bench.run`` (``python -m bench.memprobe ...``): it
imports what the application's process needs to drive a worker (no Qt: the GUI
figure is the lead's hook), starts a :class:`WorkerBackend`, generates one
token, then reads ``/proc/<pid>/status`` (VmRSS, VmHWM, RssAnon, RssFile) of
itself and of the worker. Prints one JSON object.

``--raw`` instead loads the pair straight through llama.cpp in this process
with chosen model parameters (mmap on/off, CPU weight repacking on/off), to
show where the worker's memory goes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from .procs import proc_status


def worker_probe(model: Path, mmproj: Path, threads: int, image: Path) -> dict[str, Any]:
    from web2code.app.engine.events import Failed, Finished, GenerationParams
    from web2code.app.engine.pair import ModelPair
    from web2code.app.engine.session import EngineOptions
    from web2code.app.engine.worker import WorkerBackend

    pair = ModelPair(model=model, mmproj=mmproj, name=model.stem)
    backend = WorkerBackend(pair, EngineOptions(n_gpu_layers=0, n_threads=threads))
    try:
        t0 = time.perf_counter()
        stats = None
        for ev in backend.generate(image, GenerationParams(max_tokens=1, seed=1)):
            if isinstance(ev, Failed):
                raise RuntimeError(ev.message + " " + ev.detail)
            if isinstance(ev, Finished):
                stats = ev.stats
        wall = time.perf_counter() - t0
        pid = backend.pid
        assert pid is not None
        child = proc_status(pid)
        parent = proc_status()
        return {"parent": parent, "worker": child, "worker_pid": pid, "first_request_wall_s": wall,
                "load_s": stats.load_s if stats else None}
    finally:
        backend.close()


def raw_probe(model: Path, mmproj: Path, threads: int, *, mmap: bool, repack: bool) -> dict[str, Any]:
    """Load through llama.cpp (the engine's adapter) with the given parameters; RSS after load and after
    one decode."""
    from web2code.app.engine import llama

    llama.init()
    before = proc_status()
    t0 = time.perf_counter()
    m = llama.Model(model, n_gpu_layers=0, read_weights=not mmap, repack=repack)
    try:
        ctx = llama.Context(m, llama.ContextParams(n_ctx=2048, n_batch=1024, n_ubatch=512, n_threads=threads))
        llama.Vision(mmproj, m, use_gpu=False, n_threads=threads)
        load_s = time.perf_counter() - t0
        after_load = proc_status()
        # one token, so compute buffers are allocated as in a request
        t1 = time.perf_counter()
        ctx.decode(tokens=[1], positions=[0])
        decode_s = time.perf_counter() - t1
        after_decode = proc_status()
    finally:
        m.close()
    return {"use_mmap": mmap, "repack": repack, "load_s": load_s, "decode_rc": 0, "one_token_s": decode_s,
            "before": before, "after_load": after_load, "after_decode": after_decode}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--mmproj", type=Path, required=True)
    ap.add_argument("--image", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--raw", action="store_true")
    ap.add_argument("--no-mmap", action="store_true")
    ap.add_argument("--no-repack", action="store_true")
    args = ap.parse_args(argv)
    threads = args.threads or (os.cpu_count() or 2)
    if args.raw:
        out = raw_probe(args.model, args.mmproj, threads, mmap=not args.no_mmap, repack=not args.no_repack)
    else:
        out = worker_probe(args.model, args.mmproj, threads, args.image)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
