"""Names this project owns in GGUF metadata and in the output folder.

Defined once, in :mod:`web2code.app.engine.keys` (torch-free, Qt-free, so the
engine and the converter share it); re-exported here for the converter's modules.
"""

from __future__ import annotations

from ..app.engine.keys import DEFAULT_REPO, LOGIT_OFFSET, MANIFEST_FORMAT_VERSION, MANIFEST_NAME, PAIR_ID

__all__ = ["DEFAULT_REPO", "LOGIT_OFFSET", "MANIFEST_FORMAT_VERSION", "MANIFEST_NAME", "PAIR_ID"]
