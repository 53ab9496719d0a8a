"""Entry point of the bundle's ``web2code-convert`` executable (PyInstaller script)."""

from __future__ import annotations

import sys

from web2code.converters.cli import main

if __name__ == "__main__":
    sys.exit(main())
