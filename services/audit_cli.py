"""`crm audit …`: verify the hash chains, record a checkpoint, read an account's story, export."""

from __future__ import annotations

import argparse
import functools
import json
import sqlite3
import sys
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any
from uuid import UUID

from services.settings import Settings, shown_database_url

Command = Callable[[argparse.Namespace, Settings], int]


def add_audit_commands(commands: Any) -> None:
    audit = commands.add_parser("audit", help="verify, checkpoint, read and export the record")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)

    verify = audit_commands.add_parser(
        "verify", help="check every account chain (or one) against the latest checkpoint"
    )
    verify.add_argument("--account", type=UUID, metavar="ID", help="only this account")
    verify.add_argument(
        "--checkpoint",
        type=_checkpoint_number,
        metavar="N",
        help="with --root: a checkpoint whose root was kept outside the database",
    )
    verify.add_argument(
        "--root", type=_root, metavar="HEX", help="checkpoint N's root, as it was kept"
    )
    verify.set_defaults(run=_verify)

    checkpoint = audit_commands.add_parser(
        "checkpoint", help="record the heads of every account chain under one root hash"
    )
    checkpoint.add_argument("--actor", default="audit", help="default: %(default)s")
    checkpoint.set_defaults(run=_checkpoint)

    history = audit_commands.add_parser(
        "history", help="an account's events in order: who, when, why, and what they changed"
    )
    history.add_argument("account", type=UUID, metavar="ID")
    history.add_argument("--full", action="store_true", help="print the whole state after each")
    history.set_defaults(run=_history)

    export = audit_commands.add_parser(
        "export", help="write events with their chain hashes, for tools/verify_export.py"
    )
    export.add_argument("--account", type=UUID, metavar="ID", help="only this account")
    export.add_argument(
        "--format", choices=["jsonl", "csv"], default="jsonl", help="default: jsonl"
    )
    export.add_argument("--out", type=Path, required=True, help="the file to write")
    export.set_defaults(run=_export)


def _checkpoint_number(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a checkpoint number is 1 or more, not {text!r}")
    return int(text)


def _root(text: str) -> str:
    if len(text) != 64 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise argparse.ArgumentTypeError("a root is 64 hexadecimal digits")
    return text.lower()


def _with_audit(command: Callable[[argparse.Namespace, Any], int]) -> Command:
    """Runs an audit command on the configured event store, which it never creates: with no
    store there it says so and exits with 2. A record that cannot be read exits with 1."""

    @functools.wraps(command)
    def run(args: argparse.Namespace, settings: Settings) -> int:
        from domain.errors import LedgerError
        from services.audit import Audit
        from services.store import open_ledger

        if (absent := no_event_store(settings)) is not None:
            print(f"there is no event store at {absent}", file=sys.stderr)
            return 2
        audit = Audit(open_ledger(settings))
        try:
            return command(args, audit)
        except LedgerError as error:
            print(error.detail, file=sys.stderr)
            return 1
        finally:
            audit.ledger.close()

    return run


def no_event_store(settings: Settings) -> str | None:
    """Where the settings point when no event store is there (None when one is)."""
    from domain.ledger import AccountLedger

    if settings.database_url is None:
        path = settings.sqlite_path
        if not path.is_file():
            return str(path)
        # Read-only: opening the file the usual way would create it, and its tables.
        with closing(sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)) as conn:
            found = conn.execute(_TABLE_EXISTS_SQLITE, ("stored_events",)).fetchone()
        return None if found else f"{path} (the file holds no events)"
    import psycopg

    table = f"{AccountLedger.name}_events"
    with psycopg.connect(settings.database_url, connect_timeout=5) as conn:
        found = conn.execute(_TABLE_EXISTS, (settings.database_schema, table)).fetchone()
    where = shown_database_url(settings.database_url)
    return None if found else f"{where}, schema {settings.database_schema}"


_TABLE_EXISTS_SQLITE = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
_TABLE_EXISTS = (
    "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = %s"
)


@_with_audit
def _verify(args: argparse.Namespace, audit: Any) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from domain.errors import AccountNotFound

    if (args.checkpoint is None) != (args.root is None):
        print("crm audit verify: give --checkpoint and --root together", file=sys.stderr)
        return 2
    kept, problems = (
        audit.kept_checkpoint(args.checkpoint, args.root)
        if args.checkpoint is not None
        else ({}, [])
    )
    if args.account is not None:
        try:
            reports = [audit.verify_account(args.account, kept)]
        except AccountNotFound as error:
            print(error.detail, file=sys.stderr)
            return 2
        problems += [_describe_break(r) for r in reports if not r.verified]
        summary = f"account {args.account}: {reports[0].events} events"
        checkpoint, none_intact = reports[0].checkpoint, False
    else:
        with Progress(
            TextColumn("verify"), BarColumn(), MofNCompleteColumn(), transient=True
        ) as progress:
            task = progress.add_task("verify", total=None)
            report = audit.verify_all(
                lambda done, total: progress.update(task, completed=done, total=total), kept
            )
        problems += [
            *(_describe_break(r) for r in report.broken),
            *report.checkpoint_problems,
            *report.record_problems,
        ]
        summary = f"{report.accounts} accounts, {report.events} events"
        if report.records:  # policies, objectives, import jobs, command receipts
            summary += f", {report.records} other records ({report.record_events} events)"
        # Walked against the latest checkpoint that is what was recorded: there may be none.
        checkpoint, none_intact = report.checkpoint, bool(report.checkpoint_problems)
    if checkpoint:
        against = f"checkpoint {checkpoint.number} (root {checkpoint.root})"
    elif none_intact:
        against = "no checkpoint: none stored is what was recorded"
    else:
        that = " that records it" if args.account else ""
        against = f"no checkpoint{that} (run `crm audit checkpoint`)"
    problems = list(dict.fromkeys(problems))  # the kept checkpoint's, when checked with all
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"NOT VERIFIED: {len(problems)} problems, of {summary}; against {against}")
        return 1
    print(f"verified {summary}; against {against}")
    return 0


def _describe_break(report: Any) -> str:
    if report.missing:
        return f"account {report.account_id}: missing, though the checkpoint recorded it"
    return (
        f"account {report.account_id}: first bad version {report.broken.version}: "
        f"{report.broken.problem}"
    )


@_with_audit
def _checkpoint(args: argparse.Namespace, audit: Any) -> int:
    from domain.ledger import CommandMeta

    entry = audit.checkpoint(CommandMeta(args.actor, reason="crm audit checkpoint"))
    kind = "full" if entry.base is None else f"the heads changed since checkpoint {entry.base}"
    print(
        f"checkpoint {entry.number} ({kind}): {entry.accounts} accounts up to position "
        f"{entry.position}, root {entry.root}"
    )
    return 0


@_with_audit
def _history(args: argparse.Namespace, audit: Any) -> int:
    import msgspec

    from contracts.instants import written
    from domain.errors import AccountNotFound
    from services.api.views import history_event

    try:
        audit.ledger.account(args.account)
    except AccountNotFound as error:
        print(error.detail, file=sys.stderr)
        return 2
    for event, _, after, changed in audit.story(args.account):
        why = f" because {event.reason}" if event.reason else ""
        request = f" (request {event.request_id})" if event.request_id else ""
        recorded = history_event(event)
        print(
            f"v{event.originator_version}  {written(event.timestamp)}  "
            f"{recorded.type} by {event.actor}{why}{request}"
        )
        # What the event itself says (a material's name and channel, a meeting's note), which
        # the account shows only as counts.
        print(f"    recorded: {msgspec.json.encode(recorded.data).decode()}")
        shown = after if args.full else {name: after[name] for name in changed}
        for name, value in shown.items():
            print(f"    {name}: {json.dumps(value, ensure_ascii=False)}")
    return 0


@_with_audit
def _export(args: argparse.Namespace, audit: Any) -> int:
    from domain.errors import AccountNotFound
    from services.audit import EXPORT_FIELDS, EXPORT_HASHED
    from services.exporting import as_text, write_whole

    try:
        records = audit.export_records(args.account)
    except AccountNotFound as error:
        print(error.detail, file=sys.stderr)
        return 2
    if problem := write_whole(
        args.out, as_text(records, args.format, EXPORT_FIELDS, EXPORT_HASHED)
    ):
        print(f"crm audit export: cannot write {args.out}: {problem}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}; check it with: python tools/verify_export.py {args.out}")
    return 0
