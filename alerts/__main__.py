"""`python -m alerts ...` — the same as `tickhouse alerts ...`."""

import sys

from alerts.cli import main

sys.exit(main(sys.argv[1:]))
