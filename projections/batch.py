"""What a read model asks of a batch of (position, event) pairs before applying it."""

from __future__ import annotations

from typing import Any

from domain.account import Account


def stored_accounts(batch: list[tuple[int, Any]], kinds: tuple[type, ...]) -> set[str]:
    """Accounts with events of these kinds in the batch but not registered in it: the ones
    whose rows are in the tables already, to be read in one query."""
    registered = {str(e.originator_id) for _, e in batch if isinstance(e, Account.Registered)}
    return {str(e.originator_id) for _, e in batch if isinstance(e, kinds)} - registered
