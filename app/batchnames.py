"""Output file names for a batch: one name per input image, never two the same.

The CLI (``web2code generate`` with several images) and the GUI's batch dialog
both name their outputs here, so the same inputs give the same files either way.

The rule, in the words the README uses:

* ``page.png`` becomes ``page.html``.
* When several inputs share a name without extension (``good.png`` and
  ``good.jpg``), each keeps its extension: ``good.png.html`` and
  ``good.jpg.html``. Nobody wins by input order.
* Should two names still be the same (the same file name from two folders),
  the second becomes ``good.png-2.html``, the third ``good.png-3.html``, in
  input order.

Names are compared without regard to case, because macOS and Windows file
systems do not tell ``Page.html`` from ``page.html``. The result depends only
on the inputs (their order included), not on what is already on disk.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

__all__ = ["output_names"]


def output_names(inputs: Sequence[Path], suffix: str = ".html") -> list[str]:
    """The output file name (no folder) for each input, in the same order; all distinct."""
    stems = Counter(p.stem.casefold() for p in inputs)
    bases = [p.name if stems[p.stem.casefold()] > 1 else p.stem for p in inputs]
    taken: set[str] = set()
    names: list[str] = []
    # Names that the first pass already gives out are reserved up front, so a later "-2" never
    # takes the name that an input would have had by itself.
    reserved = Counter(b.casefold() for b in bases)
    for base in bases:
        name = base + suffix
        if name.casefold() in taken:
            n = 2
            while True:
                candidate = f"{base}-{n}{suffix}"
                if candidate.casefold() not in taken and reserved[f"{base}-{n}".casefold()] == 0:
                    name = candidate
                    break
                n += 1
        taken.add(name.casefold())
        names.append(name)
    return names
