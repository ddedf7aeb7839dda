"""The `crm` command: serve the API, run the projector or the publisher, rebuild a read model,
and the auditors' commands (services/audit_cli.py)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import signal
import socket
import sys
import threading
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from projections import READ_MODEL_NAMES
from services.audit_cli import add_audit_commands
from services.gc_policy import collect_garbage_rarely
from services.logs import configure as configure_logs
from services.settings import (
    PORT_MAX,
    SettingError,
    Settings,
    nats_url,
    shown_database_url,
    without_credentials,
)

if TYPE_CHECKING:
    from rich.console import Console

    from services.importing import ImportReport

log = logging.getLogger("crm")
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
LISTEN_BACKLOG = 2048  # uvicorn's default
STARTUP_FAILED = 3  # the app's start-up failed: the status uvicorn.run exits with
BROKEN_PIPE = 128 + signal.SIGPIPE  # 141, what a shell reports of a command SIGPIPE ended


def _describe(settings: Settings) -> str:
    return "PostgreSQL" if settings.database_url else f"SQLite file {settings.sqlite_path}"


def _projector(settings: Settings):  # type: ignore[no-untyped-def]
    from services.projector import Projector
    from services.store import open_ledger, open_read_models

    ledger = open_ledger(settings)
    return Projector(
        ledger,
        open_read_models(settings),
        batch_size=settings.projector_batch_size,
        listen_url=settings.database_url,
    )


def _set_up_read_models(projector) -> None:  # type: ignore[no-untyped-def]
    """An API process's first start-up step: the read models' tables exist before the first
    request. Their writer's connection is closed after: the API only reads them."""
    projector.setup()
    projector.database.writer.dispose()


def _api_only(settings: Settings, keys):  # type: ignore[no-untyped-def]
    """The API alone: `crm project` and `crm publish` run as processes of their own."""
    from services.api.app import create_app
    from services.jobs import JobRunner
    from services.publisher import forget_publisher_metrics

    forget_publisher_metrics()
    projector = _projector(settings)
    jobs = JobRunner(projector.ledger, settings)

    def close() -> None:
        projector.database.dispose()
        projector.ledger.close()

    return create_app(
        projector.ledger,
        projector,
        settings,
        jobs=jobs,
        keys=keys,
        on_startup=[partial(_set_up_read_models, projector)],
        on_shutdown=[close],
    )


def _api_with_workers(settings: Settings, keys):  # type: ignore[no-untyped-def]
    """The API with the projector and the publisher in child processes (each active only while
    it holds its lock), and an embedded nats-server unless CRM_NATS_URL names one."""
    import asyncio

    from prometheus_client import REGISTRY

    from services.api.app import create_app
    from services.jobs import JobRunner
    from services.nats_server import EmbeddedNats, StoreInUse
    from services.publisher import check_broker, forget_publisher_metrics
    from services.worker_processes import PublisherProcess, SharedPositions, WorkerProcess

    projector = _projector(settings)  # first: a database that does not answer starts nothing
    broker = None
    nats_url = settings.nats_url
    if nats_url is None:
        if settings.nats_replicas > 1:  # the stream could never be created, nor any published
            raise SettingError(
                f"CRM_NATS_REPLICAS {settings.nats_replicas}: the embedded nats-server is one "
                "node; give CRM_NATS_URL a cluster, or keep one replica"
            )
        broker = EmbeddedNats(settings.make_data_dir() / "nats")
        try:
            nats_url = broker.start()
        except StoreInUse as error:
            raise SettingError(f"CRM_DATA_DIR {settings.data_dir}: {error}") from None
        except (OSError, RuntimeError) as error:  # a store it cannot make or write, say
            reason = getattr(error, "strerror", None) or str(error)
            raise SettingError(
                f"CRM_DATA_DIR {settings.data_dir}: the embedded nats-server cannot store its "
                f"streams in {broker.store_dir}: {reason}"
            ) from None
        print(f"Embedded NATS with JetStream for subscribers: {nats_url}", flush=True)
    try:
        asyncio.run(check_broker(nats_url))  # a broker too old to serve stops it here
    except BaseException:
        if broker is not None:
            broker.stop()
        raise
    positions = SharedPositions()
    projector.ledger.on_saved.append(positions.commit)
    projector.reported, projector.wanted = positions.projected, positions.want
    projecting = WorkerProcess("project", positions)
    publisher = PublisherProcess(
        nats_url, positions, lambda: projector.ledger.recorder.max_notification_id() or 0
    )
    forget_publisher_metrics()  # this process's would read as an idle publisher: the child's
    REGISTRY.register(publisher)
    jobs = JobRunner(projector.ledger, settings)
    stop_children = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def start_children() -> None:
        loop = asyncio.get_running_loop()
        for child in (projecting, publisher):
            child.start()
            tasks.append(loop.create_task(child.supervise(stop_children)))
        if broker is not None:
            tasks.append(loop.create_task(broker.supervise(stop_children)))

    async def close() -> None:
        stop_children.set()
        for task in tasks:
            await asyncio.wait_for(task, 15)
        await asyncio.gather(asyncio.to_thread(publisher.stop), asyncio.to_thread(projecting.stop))
        REGISTRY.unregister(publisher)
        projector.database.dispose()
        projector.ledger.close()
        if broker is not None:
            broker.stop()

    # Closed by the app's shutdown, which uvicorn runs before it re-raises SIGTERM/SIGINT.
    return create_app(
        projector.ledger,
        projector,
        settings,
        projecting=projecting,
        publisher=publisher,
        jobs=jobs,
        keys=keys,
        # The read models' tables exist before the first request, whenever the child starts.
        on_startup=[partial(_set_up_read_models, projector), start_children],
        on_shutdown=[close],
        broker_url=nats_url,
    )


def _listen(host: str, port: int, who: str, naming: str = "") -> socket.socket:
    """The listening socket to serve on, asked for before anything else starts, which would
    otherwise come first; an address that cannot be used (a port in use, not an address of this
    machine, an unknown name) is a SettingError that says `who` could not listen, and `naming`
    what sets the address.

    It listens at once: a socket only bound could be bound again by another process that
    also sets SO_REUSEADDR (as uvicorn does), which would then take the port. Connections
    that come while the workers start wait in the backlog."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
    try:
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as error:
        sock.close()
        reason = error.strerror or str(error)
        raise SettingError(f"{who}: cannot listen on {host}:{port}{naming}: {reason}") from None
    return sock


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from services.api.auth import key_file_warning, load_keys
    from services.request_head import BoundedHead

    keys = load_keys(settings.api_keys, settings.api_keys_file)
    if warning := key_file_warning(settings.api_keys_file):
        print(warning, file=sys.stderr, flush=True)
    # Uploads wait there to be imported, on PostgreSQL too: a directory that cannot be made
    # stops the start, not the first import.
    settings.make_data_dir()
    if not keys:
        if args.host not in LOOPBACK:
            print(
                f"refusing to listen on {args.host}: no API keys are configured "
                "(set CRM_API_KEYS or CRM_API_KEYS_FILE), and without keys the CRM serves "
                "loopback only",
                file=sys.stderr,
            )
            return 2
        print(
            "DEVELOPMENT MODE: no API keys are configured, so nobody is authenticated and "
            "X-Actor names the actor. Serving on loopback only.",
            file=sys.stderr,
            flush=True,
        )
    listening = _listen(args.host, args.port, "crm serve")
    port = listening.getsockname()[1]  # the one the system chose for --port 0
    from services.publisher import ServerTooOld

    try:
        app = _api_only(settings, keys) if args.no_workers else _api_with_workers(settings, keys)
    except ServerTooOld as error:  # CRM_NATS_URL names a broker to replace or reconfigure
        url = without_credentials(settings.nats_url or "")
        print(f"crm serve: CRM_NATS_URL {url}: {error}", file=sys.stderr)
        return 2
    host = f"[{args.host}]" if ":" in args.host else args.host  # an IPv6 address in a URL
    print(f"CRM listening on http://{host}:{port} (store: {_describe(settings)})", flush=True)
    collect_garbage_rarely()
    config = uvicorn.Config(
        app,
        host=args.host,
        port=port,
        loop="uvloop",
        http=BoundedHead,  # httptools, with a bound on the request line and headers
        ws="none",  # no route is a WebSocket: an upgrade is answered as HTTP, and no library loads
        log_level="warning",
        log_config=None,  # uvicorn's own lines go to the root logger, in the CRM's format
        server_header=False,  # no "server: uvicorn" on every answer
        # The address a request came from is the connection's (behind a proxy, the proxy's,
        # as DEPLOY.md says): X-Forwarded-For, which any client may send, is not taken for it.
        proxy_headers=False,
        timeout_graceful_shutdown=10,
    )
    server = _server_class()(config)
    with listening:
        server.run(sockets=[listening])
    return 0 if server.started else STARTUP_FAILED


def _server_class():  # type: ignore[no-untyped-def]
    import contextlib

    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, but one that a SIGTERM or SIGINT has shut down gracefully ends the
        command with status 0: uvicorn raises the signal again once it is done, so `crm serve`
        ended with 143 (and a KeyboardInterrupt traceback after SIGINT), as if it had failed."""

        @contextlib.contextmanager
        def capture_signals(self):  # type: ignore[no-untyped-def]
            with super().capture_signals():
                yield
                self._captured_signals.clear()  # what uvicorn would raise again

    return Server


def _metrics_socket(args: argparse.Namespace) -> socket.socket | None:
    """Where `crm project` or `crm publish` serves its metrics, when --metrics-port asks for
    them; taken first, so that an address that cannot be used stops the command at once."""
    if not args.metrics_port or args.for_serve:  # crm serve's children: the API serves them
        return None
    naming = " for metrics (--metrics-host or CRM_HOST, --metrics-port or CRM_METRICS_PORT)"
    return _listen(args.metrics_host, args.metrics_port, f"crm {args.command}", naming)


def _serve_metrics(listening: socket.socket | None, *collectors) -> None:  # type: ignore[no-untyped-def]
    """Prometheus metrics, in a thread, for the processes that serve no API."""
    if listening is None:
        return
    from wsgiref.simple_server import WSGIRequestHandler

    from prometheus_client import REGISTRY, make_wsgi_app
    from prometheus_client.exposition import ThreadingWSGIServer

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass  # a line per scrape would drown the worker's own log

    for collector in collectors:
        REGISTRY.register(collector)
    # prometheus_client's start_http_server would bind a socket of its own: this one is bound
    # and listening, so the server takes it and sets what its own binding would have set.
    host, port = listening.getsockname()[:2]
    server = ThreadingWSGIServer((host, port), QuietHandler, bind_and_activate=False)
    server.socket.close()
    server.socket = listening
    server.server_name, server.server_port = host, port
    server.setup_environ()
    server.set_app(make_wsgi_app())
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("metrics on http://%s:%d/metrics", host, port)


def _small_pools(settings: Settings) -> Settings:
    """A projector or a publisher reads with one thread at a time (and a projector records its
    audit checkpoints with another): pools of the API's size would only hold idle connections,
    which count against the database's limit (one of each is a child of each `crm serve`)."""
    return dataclasses.replace(settings, database_pool_size=min(settings.database_pool_size, 2))


def _project(args: argparse.Namespace, settings: Settings) -> int:
    from services.audit import Audit, PeriodicCheckpoints
    from services.leadership import Leadership, lead_in_thread

    metrics = _metrics_socket(args)
    projector = _projector(_small_pools(settings))
    leadership = Leadership(settings, "projector")
    checkpoints = PeriodicCheckpoints(
        Audit(projector.ledger), settings.audit_checkpoint_seconds, leadership
    )
    stop = threading.Event()
    if args.for_serve:  # `crm serve`'s child: it serves the read models' metrics
        from services.worker_processes import serve_projector

        serve_projector(args.for_serve, projector, stop)
    else:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        from services.api.metrics import StoreCollector

        log.info("projector following %s", _describe(settings))
        _serve_metrics(metrics, StoreCollector(projector, projects=True, leadership=leadership))
    checkpoints.start()
    try:
        collect_garbage_rarely()
        lead_in_thread(leadership, stop, projector.run)
    finally:
        checkpoints.stop()
        projector.database.dispose()
        projector.ledger.close()
    return 0


def _publish(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    import uvloop

    from services.publisher import ServerTooOld, publisher_for
    from services.store import open_ledger
    from services.worker_processes import serve_publisher

    if settings.nats_url is None:
        print(
            "crm publish needs CRM_NATS_URL (crm serve embeds a broker of its own)", file=sys.stderr
        )
        return 2
    metrics = _metrics_socket(args)
    ledger = open_ledger(_small_pools(settings))
    publisher = publisher_for(settings, ledger, settings.nats_url)

    async def run() -> None:
        stop = asyncio.Event()
        if args.for_serve:
            serve_publisher(args.for_serve, publisher, stop)
        else:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop.set)
        await publisher.run(stop)

    if not args.for_serve:  # else `crm serve` has said where, and serves the metrics
        log.info("publishing %s to %s", _describe(settings), without_credentials(settings.nats_url))
        _serve_metrics(metrics)
    try:
        collect_garbage_rarely()
        uvloop.run(run())  # the loop `crm serve` runs on too: a JetStream publish costs less
    except ServerTooOld as error:  # CRM_NATS_URL names a broker to replace or reconfigure
        url = without_credentials(settings.nats_url)
        print(f"crm publish: CRM_NATS_URL {url}: {error}", file=sys.stderr)
        return 2
    finally:
        ledger.close()
    return 0


def _rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    names = [args.name] if args.name else list(READ_MODEL_NAMES)
    projector = _projector(settings)
    collect_garbage_rarely()
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} events/s"),
            TimeRemainingColumn(),
        ) as progress:
            task = progress.add_task(f"rebuild {', '.join(names)}", total=None, rate="-")

            def update(done: int, total: int) -> None:
                progress.update(task, completed=done, total=max(total, done))
                speed = progress.tasks[task].speed
                progress.update(task, rate=f"{speed:,.0f}" if speed else "-")

            applied = projector.rebuild(*names, progress=update)
        print(f"{', '.join(names)}: rebuilt from {applied} events and made live")
    finally:
        projector.database.dispose()
        projector.ledger.close()
    return 0


def _nats_option(text: str) -> str:
    """--url, checked as CRM_NATS_URL is."""
    try:
        url = nats_url(text, "--url")
    except SettingError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if url is None:
        raise argparse.ArgumentTypeError("--url must list servers such as nats://host:4222")
    return url


def _tail(args: argparse.Namespace, settings: Settings) -> int:
    from services.tail import deliver_from, run_tail

    url = args.url or settings.nats_url
    if url is None:
        print(
            "crm tail needs --url or CRM_NATS_URL (crm serve prints its broker's URL)",
            file=sys.stderr,
        )
        return 2
    config = deliver_from(args.from_start, args.from_seq, args.since)
    return run_tail(url, args.subject, config, args.limit, args.idle)


def _export_contracts(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from contracts.asyncapi import asyncapi_document, event_schemas
    from services.nats_server import last_embedded_url

    try:
        args.dir.mkdir(parents=True, exist_ok=True)
        for name, schema in event_schemas().items():
            (args.dir / f"{name}.schema.json").write_text(json.dumps(schema, indent=2) + "\n")
        # Without a broker of its own, subscribers find `crm serve`'s embedded one where it
        # listened last (on this data directory).
        brokers = (
            without_credentials(settings.nats_url)
            if settings.nats_url
            else last_embedded_url(settings.data_dir / "nats")
        )
        document = asyncapi_document(settings.nats_stream, brokers=brokers)
        (args.dir / "asyncapi.json").write_text(json.dumps(document, indent=2) + "\n")
    except OSError as error:  # a directory that cannot be made or written: named, exit 2
        # mkdir(exist_ok=True) says "File exists" of a regular file in the way.
        reason = "Not a directory" if isinstance(error, FileExistsError) else error.strerror
        print(f"crm contracts export: cannot write {args.dir}: {reason}", file=sys.stderr)
        return 2
    print(f"wrote {len(event_schemas())} JSON Schemas and asyncapi.json to {args.dir}")
    return 0


def _import(args: argparse.Namespace, settings: Settings) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import Progress
    from rich.table import Table

    from domain.errors import PolicyNotFound
    from domain.ledger import CommandMeta
    from services.importing import UnknownCharset, import_rows, text_codec
    from services.store import open_ledger

    try:
        data = args.file.read_bytes()
    except OSError as error:  # missing, a directory, unreadable: the file is refused
        print(f"crm import: refused: {args.file}: {error.strerror}", file=sys.stderr)
        return 2
    if args.dry_run and args.screen_with is not None:
        print("crm import: --dry-run screens nothing: leave out --screen-with", file=sys.stderr)
        return 2
    if args.charset is not None:
        try:
            text_codec(args.charset)
        except UnknownCharset:
            print(
                f"crm import: --charset {args.charset}: not a charset it can read", file=sys.stderr
            )
            return 2
    console = Console()
    ledger = open_ledger(settings)
    # Rows allocate objects by the thousand, and each full collection would walk the
    # accounts the writer keeps: collected rarely, a list of 100,000 is imported a fifth sooner.
    collect_garbage_rarely()
    meta = CommandMeta(args.actor, reason=f"import of {args.file.name}")
    try:
        if args.screen_with is not None:
            try:
                ledger.policy(args.screen_with)  # now, not once the rows are stored
            except PolicyNotFound as error:
                print(f"crm import: --screen-with {args.screen_with}: {error}", file=sys.stderr)
                return 2
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"import {escape(args.file.name)}", total=None)
            report = import_rows(
                ledger,
                data,
                meta,
                strict=args.strict,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
                charset=args.charset,
                dry_run=args.dry_run,
            )
        if report.errors:
            table = Table("line", "column", "reason", title="rows not imported")
            for error in report.errors:  # the file's own text, not rich markup
                table.add_row(str(error.line), escape(error.column), escape(error.reason))
            console.print(table)
            if unlisted := report.error_count - len(report.errors):
                console.print(f"and {unlisted} more errors, not listed")
        if report.refused:
            console.print(f"[red]refused:[/red] {escape(report.refused)}")
            return 2
        if args.dry_run:
            _print_changes(console, report)
        console.print(
            f"{'dry run, nothing stored: would be ' if args.dry_run else ''}"
            f"{report.registered} registered, {report.updated} updated, "
            f"{report.unchanged} unchanged, {report.rejected} rejected"
        )
        if args.screen_with is not None and report.account_ids:
            decisions = ledger.apply_policy(args.screen_with, report.account_ids, meta)
            applied = sum(1 for d in decisions if d.applies)
            console.print(f"screened by policy v{args.screen_with}: {applied} decisions recorded")
    finally:
        ledger.close()
    return 1 if report.rejected else 0


def _print_changes(console: Console, report: ImportReport) -> None:
    """A dry run's changes: each company it would register, and each field it would change."""
    from rich.markup import escape
    from rich.table import Table

    if not report.changes:
        return
    table = Table(title="changes")
    for column in ("line", "domain", "would be", "field", "stored", "in the file"):
        table.add_column(column, overflow="fold")  # a domain cut short would name another
    for change in report.changes:
        if not change.fields:
            table.add_row(str(change.line), escape(change.domain), change.outcome)
        for name, (before, after) in change.fields.items():
            cells = (change.outcome, name, escape(str(before)), escape(str(after)))
            table.add_row(str(change.line), escape(change.domain), *cells)
    console.print(table)
    if unlisted := report.registered + report.updated - len(report.changes):
        console.print(f"and {unlisted} more changes, not listed")


def _export(args: argparse.Namespace, settings: Settings) -> int:
    from services.audit_cli import no_event_store
    from services.exporting import render, write_whole

    if args.bom and args.format != "csv":
        print("crm export: --bom is for CSV only: JSON Lines has none", file=sys.stderr)
        return 2
    # Run where no store is (another directory than the CRM's), it would make an empty one
    # and export nothing, as if the CRM held no account.
    if (absent := no_event_store(settings)) is not None:
        print(f"crm export: there is no event store at {absent}", file=sys.stderr)
        return 2
    projector = _projector(settings)
    try:
        projector.setup()
        projector.catch_up()  # export what the log holds now, even where no projector runs
        chunks = render(projector.database, args.kind, args.format, args.bom)
        if args.out is None:
            sys.stdout.writelines(chunks)
        elif problem := write_whole(args.out, chunks):
            print(f"crm export: cannot write {args.out}: {problem}", file=sys.stderr)
            return 2
    finally:
        projector.database.dispose()
        projector.ledger.close()
    return 0


def _instant(value: str):  # type: ignore[no-untyped-def]
    from contracts.instants import NoOffset, OutOfRange, parse_instant

    try:
        return parse_instant(value)
    except NoOffset:
        raise argparse.ArgumentTypeError("give an offset, e.g. 2026-01-31T12:00:00Z") from None
    except OutOfRange:
        raise argparse.ArgumentTypeError(f"{value!r} is {OutOfRange.said}") from None
    except ValueError:  # else argparse says "invalid _instant value"
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an RFC 3339 instant, e.g. 2026-01-31T12:00:00Z"
        ) from None


def sequence(text: str) -> int:
    """A JetStream stream sequence for argparse, which names the option and this function."""
    number = int(text)
    if number < 1:  # JetStream refuses a consumer starting at sequence 0
        raise argparse.ArgumentTypeError(f"stream sequences start at 1, not {number}")
    return number


def count(text: str) -> int:
    """A number of events for argparse: stopping after none would print nothing."""
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"give at least 1, not {number}")
    return number


def seconds(text: str) -> float:
    """A positive number of seconds for argparse."""
    number = float(text)
    if not (math.isfinite(number) and number > 0):
        raise argparse.ArgumentTypeError(f"give a number of seconds above 0, not {text}")
    return number


def build_parser(settings: Settings | None = None) -> argparse.ArgumentParser:
    settings = settings or Settings.from_env()
    parser = argparse.ArgumentParser(prog="crm", description="Event-sourced ABM CRM.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve", help="serve the HTTP API, with the projector and the publisher beside it"
    )
    serve.add_argument("--host", default=settings.host, help="default: %(default)s")
    serve.add_argument("--port", type=port, default=settings.port, help="default: %(default)s")
    serve.add_argument(
        "--no-workers",
        action="store_true",
        help="the API only: run `crm project` and `crm publish` as processes of their own",
    )
    serve.set_defaults(run=_serve)
    project = commands.add_parser(
        "project", help="keep the read models up to date (and record audit checkpoints)"
    )
    project.set_defaults(run=_project)
    publish = commands.add_parser("publish", help="publish account events to NATS JetStream")
    publish.set_defaults(run=_publish)
    for worker in (project, publish):
        # `crm serve` starts its children so: a socket to its API process and a shared page.
        worker.add_argument("--for-serve", metavar="FDS", help=argparse.SUPPRESS)
        worker.add_argument(
            "--metrics-port",
            type=port,
            default=settings.metrics_port,
            help="serve Prometheus metrics on this port (CRM_METRICS_PORT; default: none)",
        )
        worker.add_argument(
            "--metrics-host", default=settings.host, help="default: CRM_HOST, %(default)s"
        )
    tail = commands.add_parser("tail", help="print account events from NATS, live or replayed")
    tail.add_argument("--url", type=_nats_option, help="NATS URL (default: CRM_NATS_URL)")
    tail.add_argument("--subject", default="crm.accounts.>", help="default: %(default)s")
    start = tail.add_mutually_exclusive_group()
    start.add_argument("--from-start", action="store_true", help="replay from the first event")
    start.add_argument(
        "--from-seq", type=sequence, metavar="N", help="replay from stream sequence N (1: first)"
    )
    start.add_argument("--since", type=_instant, metavar="TIME", help="replay from an instant")
    tail.add_argument("--limit", type=count, metavar="N", help="stop after N events")
    tail.add_argument(
        "--idle", type=seconds, metavar="SECONDS", help="stop when no event came for this long"
    )
    tail.set_defaults(run=_tail)
    importing = commands.add_parser("import", help="register or update accounts from a CSV file")
    importing.add_argument("file", type=Path)
    importing.add_argument("--strict", action="store_true", help="refuse the file on a bad row")
    importing.add_argument(
        "--screen-with",
        type=int,
        metavar="VERSION",
        help="then screen the imported accounts by this policy version",
    )
    importing.add_argument(
        "--charset",
        metavar="NAME",
        help="the file's charset, such as windows-1252 (default: UTF-8, with or without a BOM)",
    )
    importing.add_argument(
        "--dry-run",
        action="store_true",
        help="store nothing: say what each row would do, and list the changes",
    )
    importing.add_argument("--actor", default="import", help="default: %(default)s")
    importing.set_defaults(run=_import)
    export = commands.add_parser("export", help="write the account list or the leaderboard")
    export.add_argument("kind", choices=["accounts", "leaderboard"])
    export.add_argument("--format", choices=["csv", "jsonl"], default="csv", help="default: csv")
    export.add_argument("--out", type=Path, help="a file (default: standard output)")
    export.add_argument(
        "--bom",
        action="store_true",
        help="begin a CSV file with a UTF-8 byte order mark, which Excel needs to open it as UTF-8",
    )
    export.set_defaults(run=_export)
    contracts = commands.add_parser("contracts", help="the published contracts")
    contracts_commands = contracts.add_subparsers(dest="contracts_command", required=True)
    schemas = contracts_commands.add_parser(
        "export", help="write a JSON Schema per integration event and the AsyncAPI document"
    )
    schemas.add_argument("dir", type=Path)
    schemas.set_defaults(run=_export_contracts)
    rebuild = commands.add_parser("rebuild", help="replay read models into fresh tables")
    rebuild.add_argument(
        "name", nargs="?", choices=sorted(READ_MODEL_NAMES), help="one read model (default: all)"
    )
    rebuild.set_defaults(run=_rebuild)
    add_audit_commands(commands)
    return parser


def port(text: str) -> int:
    """A port number for argparse, which names the option and this function on an error."""
    number = int(text)
    if not 0 <= number <= PORT_MAX:
        raise argparse.ArgumentTypeError(f"a port is from 0 to {PORT_MAX}, not {number}")
    return number


def main(argv: list[str] | None = None) -> int:
    # Every file the CRM makes (stores, uploads, exports, its broker's) may hold personal data:
    # its user's alone, whatever the directory it is made in lets others do.
    os.umask(0o077)
    settings = None
    try:
        settings = Settings.from_env()
        args = build_parser(settings).parse_args(argv)
        settings = settings.naming_connections(f"crm-{args.command}")
        configure_logs(settings.log_format, settings.log_level)
        status = args.run(args, settings)  # which may read a setting's file (the API keys)
        sys.stdout.flush()  # here, where a reader that has gone is told from an error
        return status
    except SettingError as exc:  # a setting that cannot be used: named, not a traceback
        print(exc, file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader has gone (`crm export … | head`): stop quietly, with the status of a
        # command killed by SIGPIPE, as cat's in the same pipe. Standard output goes to
        # /dev/null, or Python's flush of it at exit would fail again, with a message.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE
    except Exception as exc:
        from services.store import database_unavailable, first_line

        # A database that does not answer may be right and down: status 1, not 2, so that a
        # supervisor tells it from a setting to fix.
        if settings is None or settings.database_url is None or not database_unavailable(exc):
            raise
        reason = first_line(exc)
        url = shown_database_url(settings.database_url)
        print(f"CRM_DATABASE_URL {url}: the database does not answer: {reason}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
