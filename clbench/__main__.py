"""``python -m clbench``: the ``clbench`` command (:mod:`clbench.cli`)."""
from __future__ import annotations

import sys

from clbench.cli import main

sys.exit(main())
