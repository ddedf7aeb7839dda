"""Whether a PostgreSQL session is still there, without asking its server."""

from __future__ import annotations

import select


def readable(fileno: int) -> bool:
    """Whether the socket has something to read (or has hung up), at once. A session the
    server ends (a restart, a cut, a dead peer found by keepalives) leaves its socket so, with
    the reason or the end of the stream; an idle session's socket stays quiet. Polled, not
    `select`ed: select refuses a descriptor numbered 1024 or more, which a process holding many
    connections reaches."""
    poller = select.poll()
    poller.register(fileno, select.POLLIN)
    return bool(poller.poll(0))
