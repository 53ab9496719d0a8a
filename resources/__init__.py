"""Package data: icons, the preview shell page, prompt presets, sample images."""

from pathlib import Path

RESOURCES = Path(__file__).resolve().parent


def path(name: str) -> Path:
    """Absolute path of a bundled resource file."""
    return RESOURCES / name
