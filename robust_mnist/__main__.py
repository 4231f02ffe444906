"""``python -m robust_mnist``: the same command line as ``robust-mnist``."""

import sys

from .cli import main

sys.exit(main())
