"""``python -m mistersmith.bench SUITE [--json] [--quick] [--quiet]``."""

import sys

from mistersmith.bench import main

sys.exit(main())
