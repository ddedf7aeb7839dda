"""What a read model asks of a batch of (position, event) pairs before applying it."""

from __future__ import annotations

from typing import Any

from domain.account import Account

# What the projector hands a read model for each event of the log: its position, its
# account's id as the tables store it (turned into text once an event, not at every use), and
# the event (None for one that no read model applies, another aggregate's among them).
Entry = tuple[int, str, Any]


def stored_accounts(batch: list[Entry], kinds: tuple[type, ...]) -> set[str]:
    """Accounts with events of these kinds in the batch but not registered in it: the ones
    whose rows are in the tables already, to be read in one query."""
    registered = {a for _, a, e in batch if isinstance(e, Account.Registered)}
    return {a for _, a, e in batch if isinstance(e, kinds)} - registered
