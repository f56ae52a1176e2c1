"""The data-plane fast path lvsd uses: the C extension, or its pure-Python twin.

`DIRECTOR_NO_EXTENSIONS=1` forces the twin; if the C extension cannot be imported the twin
is used and one WARNING says why. `IMPLEMENTATION` is "c" or "py" and is logged at start-up
and exported as a metric label. Both modules have the same names and semantics; see
`director.dataplane._fastpath_py` for the API and the table's design.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from director.dataplane._fastpath_py import *  # noqa: F403

    IMPLEMENTATION: str
elif os.environ.get("DIRECTOR_NO_EXTENSIONS") == "1":
    from director.dataplane._fastpath_py import *  # noqa: F403

    IMPLEMENTATION = "py"
else:
    try:
        from director.dataplane._fastpath import *  # noqa: F403
        from director.dataplane._fastpath import ConnTable  # noqa: F401  (a stale build lacks it)

        IMPLEMENTATION = "c"
    except ImportError as exc:
        log.warning("fastpath: C extension unavailable (%s); using the Python twin", exc)
        from director.dataplane._fastpath_py import *  # noqa: F403

        IMPLEMENTATION = "py"
