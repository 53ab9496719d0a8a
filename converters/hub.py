"""SOURCE and --vision-tower: a local folder, or a Hugging Face repo id fetched into the HF cache.

Downloads go through huggingface-hub (shared cache, resumable, progress bars)
and fetch only what the converter reads: configs, the tokenizer, and one
weight format (safetensors when the repo has it, else ``.bin``). A repo's code
files are never fetched and never run.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from .errors import ConvertError

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_META = ["config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
         "special_tokens_map.json", "*.index.json", "README.md"]


def is_repo_id(source: str) -> bool:
    return bool(_REPO_ID.match(source)) and not source.startswith((".", "/", "~"))


def _weight_patterns(files: list[str]) -> list[str]:
    if any(f.endswith(".safetensors") for f in files):
        return ["*.safetensors"]
    return ["pytorch_model*.bin"]


def _network_error(repo_id: str, what: str, e: Exception) -> ConvertError:
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    if isinstance(e, GatedRepoError):
        return ConvertError(f"{what} {repo_id} is gated: accept its licence on huggingface.co and log in "
                            "(hf auth login), or pass a local folder")
    if isinstance(e, (RepositoryNotFoundError, RevisionNotFoundError)):
        return ConvertError(f"{what} {repo_id} not found on the Hugging Face Hub (and no such local folder)")
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return ConvertError(
        f"cannot download {what} {repo_id} (network unavailable? {reason}); download it elsewhere "
        f"(e.g. hf download {repo_id} --local-dir DIR) and pass the local folder DIR instead"
    )


def resolve(source: str, *, what: str = "checkpoint") -> Path:
    """A local folder holding ``source``: the folder itself, or a snapshot in the HF cache."""
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConvertError(f"{what} {source} is not a folder")
        return path
    if not is_repo_id(source):
        raise ConvertError(f"{what} folder not found: {source}")
    from huggingface_hub import HfApi, snapshot_download

    try:
        # its retry warnings would bury the one-line error when the network is down
        hf_log = logging.getLogger("huggingface_hub")
        level = hf_log.level
        hf_log.setLevel(logging.ERROR)
        try:
            files = HfApi().list_repo_files(source)
        finally:
            hf_log.setLevel(level)
        patterns = _META + _weight_patterns(files)
        return Path(snapshot_download(source, allow_patterns=patterns))
    except KeyboardInterrupt:
        raise
    except Exception as e:  # huggingface-hub and its HTTP client raise many types for "offline"
        error = _network_error(source, what, e)
    # Offline, a complete earlier download in the cache still serves.
    try:
        return Path(snapshot_download(source, allow_patterns=[*_META, "*.safetensors", "pytorch_model*.bin"],
                                      local_files_only=True))
    except Exception:
        raise error from None
