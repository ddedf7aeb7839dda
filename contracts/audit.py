"""HTTP views for auditors: chain verification, checkpoints and the diff between two moments.

docs/AUDIT.md defines the hashes these views report.
"""

from datetime import datetime
from typing import Any
from uuid import UUID

from msgspec import Struct


class CheckpointView(Struct, frozen=True):
    number: int
    position: int  # the last global log position the checkpoint covers
    root: str
    accounts: int
    recorded_at: datetime


class ChainAudit(Struct, frozen=True):
    account_id: UUID
    verified: bool
    events: int
    head: str  # the hash of the last intact event
    first_bad_version: int | None = None
    problem: str | None = None
    missing: bool = False  # no events are stored, though the checkpoint recorded some
    checkpoint: CheckpointView | None = None
    checkpoint_version: int | None = None  # the account's version the checkpoint recorded


class ChangingEvent(Struct, frozen=True):
    version: int
    type: str
    recorded_at: datetime
    actor: str
    reason: str | None
    request_id: str | None


class FieldChangeView(Struct, frozen=True):
    field: str
    before: Any
    after: Any
    events: list[ChangingEvent]


class AccountDiff(Struct, frozen=True):
    account_id: UUID
    from_version: int
    to_version: int
    changes: list[FieldChangeView]
