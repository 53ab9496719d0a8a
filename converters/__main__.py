"""``python -m web2code.converters`` = ``web2code-convert``."""

import sys

from .cli import main

sys.exit(main())
