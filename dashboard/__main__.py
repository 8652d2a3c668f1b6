"""`python -m dashboard`: serve the dashboard on 127.0.0.1 until stopped."""

from __future__ import annotations

import sys

from dashboard.cli import main

raise SystemExit(main(sys.argv[1:]))
