"""The `crm` command."""

from __future__ import annotations

import argparse
import logging
import sys

from services.settings import Settings


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from services.api.app import create_app
    from services.store import open_ledger

    ledger = open_ledger(settings)
    # Closed by the app's shutdown, which uvicorn runs before it re-raises SIGTERM/SIGINT.
    app = create_app(ledger, settings, on_shutdown=[ledger.close])
    where = settings.database_url and "PostgreSQL" or f"SQLite file {settings.sqlite_path}"
    logging.getLogger("crm").info("event store: %s", where)
    print(f"CRM listening on http://{args.host}:{args.port} (store: {where})", flush=True)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        timeout_graceful_shutdown=10,
    )
    return 0


def build_parser(settings: Settings | None = None) -> argparse.ArgumentParser:
    settings = settings or Settings.from_env()
    parser = argparse.ArgumentParser(prog="crm", description="Event-sourced ABM CRM.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--host", default=settings.host, help="default: %(default)s")
    serve.add_argument("--port", type=int, default=settings.port, help="default: %(default)s")
    serve.set_defaults(run=_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    settings = Settings.from_env()
    args = build_parser(settings).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return args.run(args, settings)


if __name__ == "__main__":
    sys.exit(main())
