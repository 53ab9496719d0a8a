"""The llama.cpp we run is our patched build: CLIP's class token comes first."""

from __future__ import annotations

import numpy as np

from web2code.app.engine import clsprobe


def test_installed_llama_cpp_puts_class_token_first() -> None:
    result = clsprobe.probe()
    assert result.class_token_first, result.verdict
    # The probe must be able to tell the two graphs apart at all: the buggy
    # order is far off while the fixed order agrees to F16-conv precision.
    assert result.error_cls_first < 1e-2
    assert result.error_cls_last > 0.3


def test_probe_references_differ_for_the_two_orders() -> None:
    # Guard against a probe that could not fail: its two references must
    # disagree by far more than the tolerance used above.
    w = clsprobe._weights()
    img = clsprobe._image()
    first = clsprobe.reference(w, img, class_first=True)
    last = clsprobe.reference(w, img, class_first=False)
    assert first.shape == (clsprobe.N_PATCHES, clsprobe.PROJ)
    rel = np.abs(first - last).max() / np.abs(first).max()
    assert rel > 0.3
