"""`make demo` / `tickhouse demo`: bring the stack up and show where everything is.

The producer, drain, dbt and alert stages join this flow as they land (issues 3-6, 8).
"""

from __future__ import annotations

from tickhouse.stack.manager import up


def run_demo() -> int:
    up()
    import argparse

    from tickhouse.cli import cmd_status

    return cmd_status(argparse.Namespace())
