"""Audit speed and room: recording a checkpoint (after seeding, and after one change), the size of
each in the event store (the first holds every account's head, the second only the change),
one account's audit against it (the first in a process, and again), beside the raw read of
that account's stored events, and `crm audit verify` of the whole store, at several sizes. A
script, not a test.

    uv run python bench/audit.py --accounts 10000,100000 [--postgres URL] [--json OUT]

Accounts are seeded through the domain in bulk, as bench/projections.py seeds them.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.projections import (  # noqa: E402
    bench_settings,
    close_store,
    print_figures,
    seed,
    store_arguments,
)
from domain.account import BantRating  # noqa: E402
from domain.ledger import CommandMeta  # noqa: E402
from services.audit import CHECKPOINT_TOPIC_PREFIX, Audit  # noqa: E402
from services.store import open_ledger  # noqa: E402

META = CommandMeta(actor="bench")
RUNS = 20


def seconds(work) -> float:  # type: ignore[no-untyped-def]
    began = time.perf_counter()
    work()
    return time.perf_counter() - began


def median_ms(work) -> float:  # type: ignore[no-untyped-def]
    return statistics.median(seconds(work) for _ in range(RUNS)) * 1000


def checkpoint_bytes(ledger, number: int) -> int:  # type: ignore[no-untyped-def]
    """The bytes the checkpoint `number` and its log entry hold in the event store."""
    from domain.checkpoints import CHECKPOINT_LOG_ID, checkpoint_id

    own = sum(len(e.state) for e in ledger.stored_events(checkpoint_id(number)))
    entry = ledger.stored_events(CHECKPOINT_LOG_ID)[number]  # version 1 starts the log
    assert entry.topic.startswith(CHECKPOINT_TOPIC_PREFIX)
    return own + len(entry.state)


def measure(ledger, size: int) -> dict:  # type: ignore[no-untyped-def]
    first = ledger.recorder.select_notifications(1, 1)[0].originator_id  # the first seeded
    full = None

    def record_full() -> None:
        nonlocal full
        full = Audit(ledger).checkpoint(META)

    after_seed = seconds(record_full)
    assert full is not None and full.base is None
    ledger.score_bant(first, BantRating(2, 3, 4, 5, {}), META)
    recorder = Audit(ledger)
    entry = None

    def record() -> None:
        nonlocal entry
        entry = recorder.checkpoint(META)

    after_one = seconds(record)
    assert entry is not None
    auditor = Audit(ledger)
    cold = seconds(lambda: auditor.verify_account(first)) * 1000
    warm = median_ms(lambda: auditor.verify_account(first))
    raw = median_ms(lambda: ledger.stored_events(first))
    whole = seconds(lambda: Audit(ledger).verify_all())
    return {
        "accounts": size,
        "checkpoint_after_seed_s": round(after_seed, 3),
        "checkpoint_after_one_change_s": round(after_one, 3),
        "full_checkpoint_mb": round(checkpoint_bytes(ledger, full.number) / 1e6, 1),
        "checkpoint_kb": round(checkpoint_bytes(ledger, entry.number) / 1e3, 1),
        "account_audit_first_ms": round(cold, 1),
        "account_audit_ms": round(warm, 2),
        "raw_account_read_ms": round(raw, 3),
        "audit_to_raw_read": round(warm / raw, 1),
        "verify_all_s": round(whole, 2),
        "checkpoints": entry.number,
    }


def main() -> int:
    args = store_arguments(__doc__.splitlines()[0])
    console = Console(width=150)
    settings = bench_settings(args.postgres)
    ledger = open_ledger(settings)
    figures = []
    seeded = 0
    with Progress(console=console, transient=True) as progress:
        for size in args.sizes:
            seed(ledger, seeded, size - seeded, progress)
            seeded = size
            figures.append(measure(ledger, size))
    columns = {
        "accounts": "accounts",
        "checkpoints": "checkpoints",
        "checkpoint_after_seed_s": "checkpoint after seeding s",
        "checkpoint_after_one_change_s": "checkpoint after one change s",
        "full_checkpoint_mb": "full checkpoint MB",
        "checkpoint_kb": "checkpoint after one change kB",
        "account_audit_first_ms": "account audit, first ms",
        "account_audit_ms": "account audit ms",
        "raw_account_read_ms": "raw account read ms",
        "audit_to_raw_read": "audit / raw read",
        "verify_all_s": "verify all s",
    }
    table = Table(title=f"Audit on {settings.store_name}")
    for title in columns.values():
        table.add_column(title, justify="right")
    for f in figures:
        table.add_row(*(f"{f[key]:,}" for key in columns))
    print_figures(console, table, settings.store_name, figures, args.json)
    close_store(ledger, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
