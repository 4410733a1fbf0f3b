"""``python -m steadysolve.demo``."""

import sys

from .cli import main

sys.exit(main())
