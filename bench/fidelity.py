"""Seconds per fidelity score for a 1280×2000 page, OCR cold and cached, and the peak memory.

    python -m bench.fidelity [--rounds 3] [--width 1280] [--height 2000]

The reference is a generated page (tests/fidelity_pages.py) rendered to a 1280-wide
screenshot and cut or padded to the height; the candidate is the same page with one
block's text and one background changed. "Cold" scores with an empty OCR cache (the
OCR engine already loaded, as in a running application; its load is reported apart);
"cached" scores again with the image's OCR in the cache. Each figure is the median of
the rounds; the process's peak resident memory is read at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=2000)
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="w2c-fidelity-bench-")
    os.environ["WEB2CODE_HOME"] = home  # a private, empty cache

    import numpy as np
    from PIL import Image

    from tests import fidelity_pages as fp
    from web2code.app import cli_score
    from web2code.app.fidelity import ocr
    from web2code.app.ui.render import render_html_sync

    cli_score.qt_ready()
    renderer = cli_score.shared_renderer()
    site = fp.make_site(2026)
    while True:  # enough sections for the height
        shot = render_html_sync(site.html(), args.width, args.height, renderer=renderer)
        if shot.height >= args.height or len(site.sections) > 40:
            break
        site.sections[1:1] = [fp.make_site(len(site.sections) + s).sections[2] for s in range(3)]
    rgb = np.full((args.height, args.width, 3), 255, dtype=np.uint8)
    rgb[: min(args.height, shot.height)] = shot.image[: args.height]
    image = Image.fromarray(rgb)
    candidate = fp.change_background(fp.change_text(site, 1, seed=1)).html()

    t0 = time.perf_counter()
    ocr._get_engine()
    load_s = time.perf_counter() - t0

    cold, cached, scores = [], [], []
    for _ in range(args.rounds):
        for f in Path(home).glob("cache/ocr/*/*.json"):
            f.unlink()
        t0 = time.perf_counter()
        r = cli_score.score_html(image, candidate)
        cold.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        r2 = cli_score.score_html(image, candidate)
        cached.append(time.perf_counter() - t0)
        scores.append((r.fidelity.score, r2.fidelity.score))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n_blocks = len(r.fidelity.ref_boxes)
    print(f"fidelity score of a {args.width}x{args.height} page ({n_blocks} text blocks in the image, "
          f"{len(r.fidelity.cand_boxes)} on the page), {os.cpu_count()} CPUs, {args.rounds} rounds (median)")
    print(f"  OCR engine load (once per process): {load_s:.2f} s")
    print(f"  score, OCR cold:   {statistics.median(cold):.2f} s   (rounds: {', '.join(f'{x:.2f}' for x in cold)})")
    print(f"  score, OCR cached: {statistics.median(cached):.2f} s   (rounds: {', '.join(f'{x:.2f}' for x in cached)})")
    print(f"  score: {scores[0][0]:.4f} cold, {scores[0][1]:.4f} cached "
          f"(spread over rounds {max(abs(a - b) for a, b in scores):.1e})")
    print(f"  peak resident memory of the process: {peak_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
