"""`crm audit …`: verify the hash chains, record a checkpoint, read an account's story, export."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

from services.settings import Settings


def add_audit_commands(commands: Any) -> None:
    audit = commands.add_parser("audit", help="verify, checkpoint, read and export the record")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)

    verify = audit_commands.add_parser(
        "verify", help="check every account chain (or one) against the latest checkpoint"
    )
    verify.add_argument("--account", type=UUID, metavar="ID", help="only this account")
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
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    export.add_argument("--out", type=Path, required=True, help="the file to write")
    export.set_defaults(run=_export)


def _audit(settings: Settings):  # type: ignore[no-untyped-def]
    from services.audit import Audit
    from services.store import open_ledger

    return Audit(open_ledger(settings))


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from domain.errors import AccountNotFound

    audit = _audit(settings)
    try:
        if args.account is not None:
            try:
                reports = [audit.verify_account(args.account)]
            except AccountNotFound as error:
                print(error.detail, file=sys.stderr)
                return 2
            broken = [r for r in reports if not r.verified]
            summary = f"account {args.account}: {reports[0].events} events"
            checkpoint = reports[0].checkpoint
        else:
            with Progress(
                TextColumn("verify"), BarColumn(), MofNCompleteColumn(), transient=True
            ) as progress:
                task = progress.add_task("verify", total=None)
                report = audit.verify_all(
                    lambda done, total: progress.update(task, completed=done, total=total)
                )
            broken = report.broken
            summary = f"{report.accounts} accounts, {report.events} events"
            checkpoint = report.checkpoint
    finally:
        audit.ledger.close()
    against = (
        f"checkpoint {checkpoint.number} (root {checkpoint.root})"
        if checkpoint
        else "no checkpoint (run `crm audit checkpoint`)"
    )
    for item in broken:
        print(_describe_break(item), file=sys.stderr)
    if broken:
        print(f"NOT VERIFIED: {len(broken)} broken, of {summary}; against {against}")
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


def _checkpoint(args: argparse.Namespace, settings: Settings) -> int:
    from domain.errors import ChainBroken
    from domain.ledger import CommandMeta

    audit = _audit(settings)
    try:
        entry = audit.checkpoint(CommandMeta(args.actor, reason="crm audit checkpoint"))
    except ChainBroken as error:
        print(error.detail, file=sys.stderr)
        return 1
    finally:
        audit.ledger.close()
    print(
        f"checkpoint {entry.number}: {entry.accounts} accounts up to position {entry.position}, "
        f"root {entry.root}"
    )
    return 0


def _history(args: argparse.Namespace, settings: Settings) -> int:
    from domain.account import event_type
    from domain.errors import AccountNotFound

    audit = _audit(settings)
    try:
        try:
            audit.ledger.account(args.account)
        except AccountNotFound as error:
            print(error.detail, file=sys.stderr)
            return 2
        for event, _, after, changed in audit.story(args.account):
            why = f" because {event.reason}" if event.reason else ""
            request = f" (request {event.request_id})" if event.request_id else ""
            print(
                f"v{event.originator_version}  {event.timestamp.isoformat()}  "
                f"{event_type(event)} by {event.actor}{why}{request}"
            )
            shown = after if args.full else {name: after[name] for name in changed}
            for name, value in shown.items():
                print(f"    {name}: {json.dumps(value, ensure_ascii=False)}")
    finally:
        audit.ledger.close()
    return 0


def _export(args: argparse.Namespace, settings: Settings) -> int:
    from services.audit import EXPORT_FIELDS, EXPORT_HASHED
    from services.exporting import as_text

    audit = _audit(settings)
    try:
        with args.out.open("w", encoding="utf-8", newline="") as out:
            for chunk in as_text(
                audit.export_records(args.account), args.format, EXPORT_FIELDS, EXPORT_HASHED
            ):
                out.write(chunk)
    finally:
        audit.ledger.close()
    print(f"wrote {args.out}; check it with: python tools/verify_export.py {args.out}")
    return 0
