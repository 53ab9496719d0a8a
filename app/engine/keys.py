"""Names this project owns in GGUF metadata and in a model folder: the one definition.

The converter writes them and the engine reads them, so both import this
module. It imports nothing: the engine must stay free of torch and the
converter of Qt, and a constants module that pulls in neither keeps both true.
"""

from __future__ import annotations

__all__ = ["DEFAULT_REPO", "LOGIT_OFFSET", "MANIFEST_FORMAT_VERSION", "MANIFEST_NAME", "PAIR_ID"]

#: F32 array (n_vocab) added to every logit: the final LayerNorm bias of
#: Crystal projected on the output embeddings, the one term a stock ``llama``
#: graph cannot hold (CONVERSION.md §3.7).
LOGIT_OFFSET = "web2code.logit_offset"

#: Random id written into a text model and the mmproj converted with it; a
#: pair with different ids must be refused.
PAIR_ID = "web2code.pair_id"

#: The file in a model folder that lists the pair and the checksums. The file
#: names it lists are plain names inside that folder.
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT_VERSION = 1

#: Where the model is published.
DEFAULT_REPO = "LLM360/CrystalChat-7B-Web2Code"
