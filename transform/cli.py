"""`tickhouse transform [dbt build options]`: `dbt build` of the whole project from the shell."""

from __future__ import annotations

import sys

from tickhouse.config import ConfigError
from transform.dbt_runner import DBT_PROJECT_DIR, PROFILES_DIR, TransformError, build


def main(argv: list[str]) -> int:
    """`tickhouse transform [DBT BUILD ARGS...]`, e.g. `tickhouse transform --full-refresh`."""
    if argv and argv[0] in {"-h", "--help"}:
        print(
            "usage: tickhouse transform [dbt build options, e.g. --full-refresh, --select fct_bars+]\n"
            f"Runs `dbt build` on {DBT_PROJECT_DIR} with the profile in {PROFILES_DIR / 'profiles.yml'}."
        )
        return 0
    try:
        build(argv)
    except ConfigError as error:
        print(f"tickhouse transform: configuration error: {error}", file=sys.stderr)
        return 2
    except TransformError as error:
        print(f"tickhouse transform: dbt build failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
