#!/usr/bin/env python3
"""Verifies an audit export of the ABM CRM without the service, with Python's standard library.

    python tools/verify_export.py ledger.jsonl      (or a .csv export)

An export comes from `crm audit export` or `GET /accounts/{id}/history?format=jsonl`. For each
account it recomputes every event's hash from the exported stored state, checks that each
event links to the one before it, and compares the chain with the heads the checkpoint
recorded; a whole-store export is also checked against the checkpoint's root hash.
docs/AUDIT.md defines the hashes. Exit status: 0 verified, 1 not verified, 2 unreadable file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

GENESIS = "0" * 64


def event_hash(account_id: str, version: int, topic: str, state: str) -> str:
    header = f"{account_id}\n{version}\n{topic}\n".encode()
    return hashlib.sha256(header + state.encode("utf-8")).hexdigest()


def root_of(heads: list[tuple[str, int, str]]) -> str:
    digest = hashlib.sha256()
    for account_id, version, head in sorted(heads):
        digest.update(f"{account_id}:{version}:{head}\n".encode())
    return digest.hexdigest()


def read_records(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("{"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    records = []
    for row in csv.DictReader(text.splitlines(keepends=True)):
        record: dict[str, Any] = {k: v for k, v in row.items() if v != ""}
        for name in ("version", "number", "position", "accounts"):
            if name in record:
                record[name] = int(record[name])
        records.append(record)
    return records


def verify(records: list[dict[str, Any]]) -> tuple[list[str], str]:
    """The problems found (empty when verified) and a one-line summary."""
    checkpoint = next((r for r in records if r["record"] == "checkpoint"), None)
    heads = {r["account_id"]: (r["version"], r["hash"]) for r in records if r["record"] == "head"}
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if record["record"] == "event":
            events[record["account_id"]].append(record)

    problems = []
    for account_id, chain in sorted(events.items()):
        chain.sort(key=lambda r: r["version"])
        problem = verify_chain(account_id, chain, heads.get(account_id))
        if problem:
            problems.append(f"account {account_id}: {problem}")
    for account_id in sorted(heads.keys() - events.keys()):
        version = heads[account_id][0]
        problems.append(
            f"account {account_id}: missing; the checkpoint recorded {version} events "
            "(first bad version 1)"
        )

    if checkpoint is None:
        return problems, f"{len(events)} accounts; no checkpoint in the export"
    summary = f"{len(events)} accounts against checkpoint {checkpoint['number']}"
    if len(heads) == checkpoint["accounts"]:
        root = root_of([(i, v, h) for i, (v, h) in heads.items()])
        if root != checkpoint["root"]:
            problems.append(
                f"the checkpoint's heads do not give its root {checkpoint['root']} (got {root})"
            )
        summary += f", root {checkpoint['root']}"
    else:
        summary += " (one account's export: its root is not recomputed)"
    return problems, summary


def verify_chain(
    account_id: str, chain: list[dict[str, Any]], recorded: tuple[int, str] | None
) -> str | None:
    head, version = GENESIS, 0
    for event in chain:
        if event["version"] != version + 1:
            return f"first bad version {version + 1}: it is missing"
        try:
            link = json.loads(event["state"]).get("previous_hash")
        except (ValueError, AttributeError):
            link = None
        if link is None:
            return f"first bad version {event['version']}: its state is unreadable or unlinked"
        if link != head:
            bad = max(version, 1)
            return f"first bad version {bad}: it differs from what was written"
        version = event["version"]
        head = event_hash(account_id, version, event["topic"], event["state"])
        if head != event["hash"]:
            return f"first bad version {version}: its hash is not the one exported"
        if recorded is not None and recorded[0] == version and recorded[1] != head:
            return f"first bad version {version}: it differs from the checkpoint's head"
    if recorded is not None and version < recorded[0]:
        return (
            f"first bad version {version + 1}: versions {version + 1} to {recorded[0]} "
            "are missing (the checkpoint recorded them)"
        )
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        records = read_records(Path(argv[1]))
    except (OSError, ValueError, KeyError) as error:
        print(f"cannot read {argv[1]}: {error}", file=sys.stderr)
        return 2
    problems, summary = verify(records)
    for problem in problems:
        print(problem)
    print(("NOT VERIFIED: " if problems else "verified: ") + summary)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
