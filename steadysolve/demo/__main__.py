"""``python -m steadysolve.demo`` (the same command as ``steadysolve demo``)."""

import sys

from .cli import main

if __name__ == "__main__":  # importing this module (pydoc, documentation tools) runs nothing
    sys.exit(main())
