"""``python -m synthmed``: see :mod:`synthmed.cli`."""
from __future__ import annotations

import sys

from synthmed.cli import main

if __name__ == "__main__":
    sys.exit(main())
