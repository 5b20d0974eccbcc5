"""``python -m specimg`` (and ``torchrun -m specimg``) runs the CLI."""

import sys

from .cli import main

sys.exit(main())
