"""`tickhouse docs`: generate dbt's documentation site and serve it on 127.0.0.1."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tickhouse.config import ConfigError
from transform.dbt_runner import TransformError
from transform.docs import DOCS_DIR, docs_port, generate, make_server


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tickhouse docs",
        description="`dbt docs generate` (lineage graph, model and column docs, the catalog of the "
        "warehouse), then serve the site on 127.0.0.1 until stopped.",
    )
    parser.add_argument("--port", type=int, help="TCP port (env DOCS_PORT; default 8580)")
    parser.add_argument("--dir", type=Path, default=DOCS_DIR, help=f"site directory (default {DOCS_DIR})")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--no-generate", action="store_true", help="serve what was generated before")
    mode.add_argument("--no-serve", action="store_true", help="only generate the site")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        port = args.port if args.port is not None else docs_port()
        if not args.no_generate:
            print(f"tickhouse docs: dbt docs generate into {args.dir} ...", flush=True)
            generate(args.dir)
        if args.no_serve:
            return 0
        server = make_server(args.dir, port)
    except ConfigError as error:
        print(f"tickhouse docs: configuration error: {error}", file=sys.stderr)
        return 2
    except TransformError as error:
        print(f"tickhouse docs: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"tickhouse docs: cannot listen on 127.0.0.1:{port}: {error} (set DOCS_PORT)", file=sys.stderr)
        return 1
    bound = server.server_address[1]
    print(f"tickhouse docs: serving http://127.0.0.1:{bound}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
