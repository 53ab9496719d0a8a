"""``python -m web2code.app`` runs the same entry point as the ``web2code`` command."""

import sys

from .cli import main

sys.exit(main())
