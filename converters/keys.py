"""Names this project owns in GGUF metadata and in the output folder.

The engine reads these, so they live in one place and nowhere else.
"""

from __future__ import annotations

#: F32 array (n_vocab) added to every logit: the final LayerNorm bias of
#: Crystal projected on the output embeddings, the one term a stock ``llama``
#: graph cannot hold (CONVERSION.md §3.7).
LOGIT_OFFSET = "web2code.logit_offset"

#: Random id written into a text model and the mmproj converted with it; a
#: pair with different ids must be refused.
PAIR_ID = "web2code.pair_id"

#: The file in OUTDIR that lists the pair and the checksums.
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT_VERSION = 1

#: Where the model is published.
DEFAULT_REPO = "LLM360/CrystalChat-7B-Web2Code"
