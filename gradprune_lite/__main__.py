"""``python -m gradprune_lite compare ...``: the same as the ``gradprune-lite`` command."""

import sys

from .cli import main

sys.exit(main())
