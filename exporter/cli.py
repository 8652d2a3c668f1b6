"""`tickhouse metrics [--port N]`: the pipeline exporter (lag, loads, freshness, marts coverage)."""

from __future__ import annotations

import argparse
import os
import sys

from exporter.collector import serve_metrics
from tickhouse.config import load_settings
from tickhouse.errors import TickhouseError

METRICS_PORT_DEFAULT = 9102


def main(argv: list[str]) -> int:
    """`tickhouse metrics [--port N]`: the pipeline exporter (lag, loads, freshness)."""
    parser = argparse.ArgumentParser(prog="tickhouse metrics", description=main.__doc__)
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PIPELINE_METRICS_PORT", METRICS_PORT_DEFAULT)),
        help=f"Prometheus port (env PIPELINE_METRICS_PORT, default {METRICS_PORT_DEFAULT})",
    )
    parser.add_argument(
        "--host",
        default=os.environ.get("PIPELINE_METRICS_HOST", "127.0.0.1"),
        help="address to bind (env PIPELINE_METRICS_HOST, default 127.0.0.1; 0.0.0.0 in a container)",
    )
    args = parser.parse_args(argv)
    try:
        serve_metrics(load_settings(), args.port, args.host)
    except KeyboardInterrupt:
        return 0
    except TickhouseError as err:
        print(f"tickhouse metrics: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
