"""The `tickhouse` console script."""
import sys


def main() -> int:
    print("tickhouse: placeholder", file=sys.stderr)
    return 2
