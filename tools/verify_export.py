#!/usr/bin/env python3
"""Verifies an audit export of the ABM CRM without the service, with Python's standard library.

    python tools/verify_export.py ledger.jsonl      (or a .csv export)
    python tools/verify_export.py ledger.jsonl --checkpoint 12 --root 5f0c…   (a root kept)

An export comes from `crm audit export`, `GET /audit/export` or
`GET /accounts/{id}/history?format=jsonl`. Its first record says what it holds: the whole
store or one account. For each account it recomputes every event's hash from the exported
stored state, checks that each event links to the one before it, that what is shown for
reading (type, time, actor, reason, request id, data) is what the stored state says, and
compares the chain with the heads the checkpoint recorded; a whole-store export must hold a
head for every account of the checkpoint, and those heads must give the checkpoint's root hash.
The last record counts the events, so an export cut off on the way is found. With
`--checkpoint N --root HEX`, the root of a checkpoint kept outside the database: the export's
checkpoint must be that one with that root (an earlier one: checkpoints were removed since, with
the events only they covered; a later one, which a chain rewritten with every checkpoint after
N would agree with, cannot vouch for N: `crm audit verify --checkpoint N --root HEX` checks the
store against N's heads). docs/AUDIT.md defines the hashes.
Exit status: 0 verified, 1 not verified, 2 unreadable file.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import sys
import uuid
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

GENESIS = "0" * 64
# The fields each kind of record needs, and their types; other fields are for reading.
FIELDS: dict[str, dict[str, type]] = {
    "export": {"scope": str},
    "checkpoint": {"number": int, "root": str, "accounts": int},
    "head": {"account_id": str, "version": int, "hash": str},
    "event": {"account_id": str, "version": int, "topic": str, "state": str, "hash": str},
    "end": {"events": int},
}
NUMBERS = ("version", "number", "position", "accounts", "events")
SCOPES = ("store", "account")
# The members of a stored state that are not the event's data.
ENVELOPE = (
    "timestamp",
    "originator_topic",
    "class_version",
    "actor",
    "reason",
    "request_id",
    "previous_hash",
)
# What a spreadsheet takes for the start of a formula: a CSV export writes such a text with a
# `'` before it.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class Unreadable(Exception):
    """The file is not an audit export this tool can read (exit status 2)."""


def event_hash(account_id: str, version: int, topic: str, state: str) -> str:
    header = f"{account_id}\n{version}\n{topic}\n".encode()
    return hashlib.sha256(header + state.encode("utf-8")).hexdigest()


def root_of(heads: list[tuple[str, int, str]]) -> str:
    digest = hashlib.sha256()
    for account_id, version, head in sorted(heads):
        digest.update(f"{account_id}:{version}:{head}\n".encode())
    return digest.hexdigest()


def read_records(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """The records of an export, each checked for the fields its kind needs, and whether it is
    the CSV export; Unreadable when
    the file is not an export (empty, neither JSON Lines nor the CSV export, a record that
    lacks what it needs, or no first record saying what the export holds)."""
    # Lines end at a line feed only: a text in the export may hold a line separator (U+2028,
    # which a reason or note may), and str.splitlines() would cut the record there.
    with path.open(encoding="utf-8", newline="") as file:
        lines = file.readlines()
    start = "".join(lines).lstrip()
    if not start:
        raise Unreadable("the file is empty")
    if start.startswith("{"):
        records = [
            (f"line {number}", _json_record(line))
            for number, line in enumerate(lines, 1)
            if line.strip()
        ]
    elif start.startswith("record,"):
        reader = csv.DictReader(lines)
        records = [(f"row {reader.line_num}", _csv_record(row)) for row in reader]
    else:
        raise Unreadable("it is neither JSON Lines nor CSV of an audit export")
    for where, record in records:
        _check_fields(where, record)
    kinds = [record["record"] for _, record in records]
    if kinds[0] != "export" or kinds.count("export") != 1:
        raise Unreadable(
            "its first record, and only that one, must be the `export` record saying what "
            "the export holds (the whole store or one account)"
        )
    export = records[0][1]
    if export["scope"] not in SCOPES:
        raise Unreadable(f"the export's scope is {export['scope']!r}, not store or account")
    if export["scope"] == "account" and not isinstance(export.get("account_id"), str):
        raise Unreadable("an account's export must name its account_id")
    if kinds.count("checkpoint") > 1:
        raise Unreadable("it has more than one checkpoint record")
    return [record for _, record in records], not start.startswith("{")


def _json_record(line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        raise Unreadable(f"a line is not JSON: {line[:80]!r}") from None
    except RecursionError:
        raise Unreadable(f"a line nests too deeply to be a record: {line[:80]!r}") from None


def _csv_record(row: dict[str | None, Any]) -> dict[str, Any]:
    if None in row:
        raise Unreadable("a row has more cells than the header has columns")
    record: dict[str, Any] = {k: v for k, v in row.items() if k is not None and v not in ("", None)}
    if record.get("record") == "event" and row.get("state") == "":
        record["state"] = ""  # an event stored without a state: found as one, as in JSON Lines
    for name in NUMBERS:
        if name in record:
            try:
                record[name] = int(record[name])
            except ValueError:
                raise Unreadable(f"{name} is not a number: {record[name]!r}") from None
    return record


def _check_fields(where: str, record: Any) -> None:
    if not isinstance(record, dict):
        raise Unreadable(f"{where} is not a record (a JSON object)")
    kind = record.get("record")
    if not isinstance(kind, str) or kind not in FIELDS:
        what = "has no `record` field" if kind is None else f"is an unknown record {kind!r}"
        raise Unreadable(f"{where} {what}: it is not part of an audit export")
    for name, expected in FIELDS[kind].items():
        value = record.get(name)
        if not isinstance(value, expected) or isinstance(value, bool):
            raise Unreadable(f"{where}: the {kind} record needs {name} ({expected.__name__})")


def verify(records: list[dict[str, Any]], spreadsheet: bool = False) -> tuple[list[str], str]:
    """The problems found (empty when verified) and a one-line summary. `spreadsheet`: the
    records come from the CSV export."""
    export = records[0]
    checkpoint = next((r for r in records if r["record"] == "checkpoint"), None)
    heads = {r["account_id"]: (r["version"], r["hash"]) for r in records if r["record"] == "head"}
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if record["record"] == "event":
            events[record["account_id"]].append(record)

    problems = []
    if export["scope"] == "account":
        others = (heads.keys() | events.keys()) - {export["account_id"]}
        if others:
            problems.append(
                f"the export of account {export['account_id']} holds records of "
                f"{len(others)} other accounts"
            )
    for account_id, chain in sorted(events.items()):
        chain.sort(key=lambda r: r["version"])
        problem = verify_chain(account_id, chain, heads.get(account_id))
        if problem:
            problems.append(f"account {account_id}: {problem}")
        problems += [
            f"account {account_id}: version {event['version']}: its `{name}` is not what its "
            "stored state says (what is shown for reading was altered)"
            for event in chain
            if (name := misread(event, spreadsheet))
        ]
    for account_id in sorted(heads.keys() - events.keys()):
        version = heads[account_id][0]
        problems.append(
            f"account {account_id}: missing; the checkpoint recorded {version} events "
            "(first bad version 1)"
        )
    problems += _ending(records)

    what = "the whole store" if export["scope"] == "store" else "one account's export"
    if checkpoint is None:
        if heads:
            problems.append("the export has heads but no checkpoint record")
        return problems, f"{len(events)} accounts ({what}); no checkpoint in the export"
    summary = f"{len(events)} accounts ({what}) against checkpoint {checkpoint['number']}"
    if export["scope"] == "account":
        return problems, summary + " (its root is not recomputed)"
    if len(heads) != checkpoint["accounts"]:
        problems.append(
            f"the checkpoint recorded {checkpoint['accounts']} accounts, and this whole-store "
            f"export has heads for {len(heads)}: accounts were removed from it"
        )
    root = root_of([(i, v, h) for i, (v, h) in heads.items()])
    if root != checkpoint["root"]:
        problems.append(
            f"the checkpoint's heads do not give its root {checkpoint['root']} (got {root})"
        )
    return problems, summary + f", root {checkpoint['root']}"


def _ending(records: list[dict[str, Any]]) -> list[str]:
    """The `end` record must close the export and count its events."""
    ends = [r for r in records if r["record"] == "end"]
    if not ends or records[-1]["record"] != "end" or len(ends) > 1:
        return ["the export does not end with its `end` record: it was cut off or altered"]
    counted = sum(1 for r in records if r["record"] == "event")
    if ends[0]["events"] != counted:
        return [f"the `end` record counts {ends[0]['events']} events; the export has {counted}"]
    return []


def verify_chain(
    account_id: str, chain: list[dict[str, Any]], recorded: tuple[int, str] | None
) -> str | None:
    """The first bad version of one account's events, in version order, and why; None if none.

    An event whose link does not match the event before it means that one of the two was
    altered: the event after it, or the checkpoint's head, tells which (see `_altered`).
    """
    head, version = GENESIS, 0
    unlinked = None  # a version whose link does not match the event before it
    for event in chain:
        link = _link(event["state"])
        if event["version"] == version:
            return f"first bad version {version}: it is exported twice"
        if unlinked is not None:
            follows = event["version"] == version + 1
            return _altered(unlinked, follows and link is not None and link != head)
        if event["version"] != version + 1:
            return f"first bad version {version + 1}: it is missing"
        if link is None:
            return (
                f"first bad version {event['version']}: it can no longer be read: "
                "its state is not JSON with a link"
            )
        if "unreadable" in event:  # the service could not read what it exported
            return (
                f"first bad version {event['version']}: it can no longer be read: "
                f"{event['unreadable']}"
            )
        if link != head:
            # Nothing comes before the first event, and the checkpoint's head is vouched for:
            # either way this one is the one altered.
            if event["version"] == 1 or recorded == (version, head):
                return _altered(event["version"], True)
            unlinked = event["version"]
        version = event["version"]
        head = event_hash(account_id, version, event["topic"], event["state"])
        if head != event["hash"]:
            return f"first bad version {version}: its hash is not the one exported"
        if recorded is not None and recorded[0] == version:
            if unlinked is not None:
                return _altered(unlinked, recorded[1] != head)
            if recorded[1] != head:
                return f"first bad version {version}: it differs from the checkpoint's head"
    if unlinked is not None:
        return _altered(unlinked, False)
    if recorded is not None and version < recorded[0]:
        return (
            f"first bad version {version + 1}: versions {version + 1} to {recorded[0]} "
            "are missing (the checkpoint recorded them)"
        )
    return None


def misread(event: dict[str, Any], spreadsheet: bool) -> str | None:
    """The first field of an event shown for reading that says other than its stored state,
    if any. A field of `data` the state lacks may only be null: a field the event type gained
    after the event was stored, which reading fills in."""
    try:
        state = json.loads(event["state"])
    except (ValueError, RecursionError):
        return None  # unreadable: the chain names it
    if not isinstance(state, dict) or "unreadable" in event:
        return None
    stored = {name: _plain(value) for name, value in state.items()}
    shown = dict(event)
    if spreadsheet:  # nested values are JSON in their cell; an empty cell is no value
        try:
            shown["data"] = json.loads(event.get("data", "null"))
        except ValueError:
            return "data"
    data = shown.get("data")
    if not isinstance(data, dict):
        return "data"
    expected = {
        "previous_hash": stored.get("previous_hash"),
        "type": _snake(event["topic"].rpartition(".")[2]),
        "actor": stored.get("actor"),
        "reason": stored.get("reason"),
        "request_id": stored.get("request_id"),
    }
    for name, value in expected.items():
        if shown.get(name) not in (value, _neutralised(value) if spreadsheet else value):
            return name
    if _instant(shown.get("recorded_at")) != _instant(stored.get("timestamp")):
        return "recorded_at"
    fields = stored.keys() - set(ENVELOPE)
    if any(data.get(name, ...) != stored[name] for name in fields) or any(
        data[name] is not None for name in data.keys() - fields
    ):
        return "data"
    return None


def _plain(value: Any) -> Any:
    """A value of a stored state as reading shows it (a UUID hyphenated, an instant as text)."""
    if isinstance(value, dict) and set(value) == {"_type_", "_data_"}:
        if value["_type_"] == "uuid_hex":
            try:
                return str(uuid.UUID(value["_data_"]))
            except (TypeError, ValueError, AttributeError):
                return value  # no id: shown as anything, it is not what the state says
        return value["_data_"]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _instant(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _neutralised(value: Any) -> Any:
    quoted = isinstance(value, str) and value.startswith((*FORMULA_STARTS, "'"))
    return "'" + value if quoted else value


def _link(state: str) -> str | None:
    try:
        link = json.loads(state).get("previous_hash")
    except (ValueError, AttributeError, RecursionError):
        return None
    return link if isinstance(link, str) else None


def _altered(unlinked: int, contradicted: bool) -> str:
    """A version does not link to the one before it: one of the two was altered. When the
    unlinked one is contradicted too (the next event does not link to it, or it does not hash
    to the checkpoint's head), it is: one alteration explains both. Otherwise the one before."""
    bad = unlinked if contradicted else unlinked - 1
    return f"first bad version {bad}: it differs from what was written"


def compare_kept(records: list[dict[str, Any]], number: int, root: str) -> str | None:
    """What differs between the export's checkpoint and checkpoint `number`, whose root was
    kept elsewhere, if anything."""
    checkpoint = next((r for r in records if r["record"] == "checkpoint"), None)
    if checkpoint is None or checkpoint["number"] < number:
        held = "none" if checkpoint is None else f"checkpoint {checkpoint['number']}"
        return (
            f"the export holds {held}, and checkpoint {number}'s root was kept: "
            f"checkpoints were removed from the store, or the export was taken before "
            f"checkpoint {number} was recorded (an export taken since holds it)"
        )
    if checkpoint["number"] > number:
        return (
            f"the export holds checkpoint {checkpoint['number']}, not checkpoint {number} whose "
            "root was kept: it cannot vouch for what that one covered (check the store with "
            f"crm audit verify --checkpoint {number} --root {root})"
        )
    if checkpoint["root"] != root.lower():
        return f"checkpoint {number}'s root is {checkpoint['root']}, not {root} as it was kept"
    return None


# As `crm audit verify` reads them (this file stands alone: it imports nothing of the CRM).
def _number(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a checkpoint number is 1 or more, not {text!r}")
    return int(text)


def _root(text: str) -> str:
    if len(text) != 64 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise argparse.ArgumentTypeError("a root is 64 hexadecimal digits")
    return text.lower()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="verify_export.py",
        description=__doc__.splitlines()[0],
        epilog="Exit status: 0 verified, 1 not verified, 2 unreadable file (or arguments).",
    )
    parser.add_argument("file", type=Path, help="an export: JSON Lines or CSV")
    parser.add_argument("--checkpoint", type=_number, metavar="N", help="with --root")
    parser.add_argument("--root", type=_root, metavar="HEX", help="checkpoint N's root, kept")
    args = parser.parse_args(argv[1:])
    if (args.checkpoint is None) != (args.root is None):
        parser.error("give --checkpoint and --root together")
    try:
        records = read_records(args.file)
    except (OSError, ValueError, csv.Error, Unreadable) as error:
        print(f"cannot read {args.file}: {error}", file=sys.stderr)
        return 2
    try:
        problems, summary = verify(*records)
    except RecursionError:  # a stored state nested deeper than any event's
        print(f"cannot read {args.file}: a record nests too deeply", file=sys.stderr)
        return 2
    if args.checkpoint is not None:
        if kept := compare_kept(records[0], args.checkpoint, args.root):
            problems.append(kept)
        else:
            summary += f"; checkpoint {args.checkpoint} kept: the export's is it"
    for problem in problems:
        print(problem)
    print(("NOT VERIFIED: " if problems else "verified: ") + summary)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
