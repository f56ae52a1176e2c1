"""``python -m director`` is ``lvsd``."""

import sys

from director.cli import main

sys.exit(main())
