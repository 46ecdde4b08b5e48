"""``python -m mistersmith ...``: the same as the ``mistersmith`` command."""

import sys

from mistersmith.cli import main

sys.exit(main())
