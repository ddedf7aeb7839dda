"""How often the CRM's processes collect garbage: every `crm` process that runs for long or
replays much sets it once, after start-up."""

from __future__ import annotations

import gc


def collect_garbage_rarely() -> None:
    """A long-running process holds many long-lived objects (accounts kept by the writer and
    for reads, the read models' pages, the libraries' own), and with Python's default
    thresholds a full collection walks them all every few hundred requests, stalling every
    request in flight; a rebuild allocates a few objects an event and collects as often. Objects
    alive at start-up are frozen out of collections, and collections run less often; reference
    counting frees memory as before. Measured (BENCHMARKS.md): on the write path p99 halved
    and a third more commands/s; a rebuild a quarter faster."""
    gc.freeze()
    gc.set_threshold(10_000, 20, 100)
