"""Input preparation speed and memory: a 12-megapixel phone photo of a sketch, on 2 cores.

``python -m bench.prepare_bench [--runs 5] [--size 4000x3000] [--cores 2]``

A synthetic photo (tests/sketch_photos.py: a wireframe on paper, on a desk, keystoned, turned, unevenly
lit, noisy, JPEG, stored sideways with an EXIF orientation) is written once to a temporary file; a
child process pinned to ``--cores`` CPUs (and OpenCV told the same) decodes it and times
:func:`web2code.app.prepare.prepare` on the decoded image. Printed: the decode time, the median and
the spread of the preparation times, the peak resident memory before and during preparation, and
the peak of Python-tracked allocations (numpy arrays, OpenCV results) inside one preparation.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _status_mib(field: str) -> float:
    """VmRSS / VmHWM of this process from /proc (ru_maxrss would carry the parent's peak over exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _reset_peak() -> None:
    """Start VmHWM over from the current RSS (Linux: clear_refs 5), so the peak is preparation's own."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _child(path: Path, runs: int, cores: int) -> dict[str, object]:
    if hasattr(os, "sched_setaffinity"):
        available = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, set(available[:cores]))
    import cv2

    cv2.setNumThreads(cores)
    from PIL import Image

    from web2code.app.prepare import prepare

    t0 = time.perf_counter()
    with Image.open(path) as f:
        img = f.copy()
    decode_s = time.perf_counter() - t0
    prepare(img)  # warm-up: imports, OpenCV's first calls
    rss_loaded = _status_mib("VmRSS")
    _reset_peak()
    times = []
    result = None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = prepare(img)
        times.append(time.perf_counter() - t0)
    rss_peak = _status_mib("VmHWM")
    tracemalloc.start()
    prepare(img)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result is not None
    return {"size": list(img.size), "megapixels": round(img.width * img.height / 1e6, 1), "cores": cores,
            "decode_s": round(decode_s, 3), "prepare_s": [round(t, 3) for t in times],
            "median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
            "max_s": round(max(times), 3), "rss_before_mib": rss_loaded,
            "rss_peak_mib": rss_peak, "traced_peak_mib": round(traced_peak / 2**20, 1),
            "summary": result.summary, "output_size": list(result.image.size)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--size", default="4000x3000", help="photo size WxH (default 12 megapixels)")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--json", action="store_true")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.runs, args.cores)))
        return 0
    sys.path.insert(0, str(REPO))
    from tests.sketch_photos import photo, wireframe

    w, h = (int(v) for v in args.size.lower().split("x"))
    print(f"making a {w}x{h} synthetic photo ...", file=sys.stderr, flush=True)
    shot = photo(wireframe(3, (1800, 1280)).image, 3, size=(w, h), orientation=6, quality=90)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "photo.jpg"
        path.write_bytes(shot.jpeg)
        r = subprocess.run([sys.executable, "-m", "bench.prepare_bench", "--child", str(path), "--runs",
                            str(args.runs), "--cores", str(args.cores)], cwd=REPO, capture_output=True, text=True,
                           check=False)
    if r.returncode != 0:
        print(r.stderr, file=sys.stderr)
        return 1
    res = json.loads(r.stdout)
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"prepare, {res['size'][0]}x{res['size'][1]} ({res['megapixels']} MP) photo on {res['cores']} cores:")
    print(f"  median {res['median_s']:.3f} s over {args.runs} runs (min {res['min_s']:.3f}, max {res['max_s']:.3f}); "
          f"JPEG decode {res['decode_s']:.3f} s (not included)")
    print(f"  peak RSS while preparing {res['rss_peak_mib']} MiB (before: {res['rss_before_mib']} MiB, "
          f"the decoded photo and the libraries); "
          f"Python-tracked peak in one run {res['traced_peak_mib']} MiB")
    print(f"  result: {res['summary']}, {res['output_size'][0]}x{res['output_size'][1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
