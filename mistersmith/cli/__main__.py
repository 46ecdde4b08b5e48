"""``python -m mistersmith.cli ...``: the same as the ``mistersmith`` command."""

import sys

from . import main

sys.exit(main())
