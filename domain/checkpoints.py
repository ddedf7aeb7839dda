"""Audit checkpoints: the heads of every account chain at one log position, under one root.

A checkpoint is an aggregate of its own (its heads recorded in sorted chunks), and the
checkpoint log lists them in order. Both are stored events, chained like any other, so a
checkpoint cannot be changed unseen either.

A *full* checkpoint records every account's head. Most record only the heads that changed
since the full checkpoint before them, their *base*: an hourly checkpoint of a million accounts
would otherwise store a million heads (110 MB) every hour. Every checkpoint's root covers every
account's head all the same, so a root kept elsewhere means the same whichever kind it seals.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from types import UnionType
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.account import Attribution
from domain.chain import AppliedOrUnreadable, root_of

CHECKPOINT_LOG_ID = uuid5(NAMESPACE_URL, "urn:abm-crm:audit-checkpoints")
HEADS_PER_EVENT = 5000
# A full checkpoint at least every FULL_EVERY checkpoints (a day of hourly ones), and whenever
# more than FULL_SHARE of the accounts changed since the last one: the changes recorded since a
# full checkpoint grow with each one after it, and verifying one reads its base as well.
FULL_EVERY = 24
FULL_SHARE = 0.25

Head = tuple[str, int, str]  # account id, version, hash of the event at that version
Heads = dict[str, tuple[int, str]]  # account id: (version, hash)


def checkpoint_id(number: int) -> UUID:
    return uuid5(CHECKPOINT_LOG_ID, str(number))


class Checkpoint(Aggregate):
    class Event(AppliedOrUnreadable, Aggregate.Event):
        actor: str
        reason: str | None
        request_id: str | None

    class Opened(Event, Aggregate.Created):
        number: int
        position: int  # the last global log position the heads cover
        base: int | None = None  # the full checkpoint it records changes since; None: full

    class HeadsRecorded(Event):
        heads: list[list[str | int]]

        def apply(self, checkpoint: Checkpoint) -> None:
            checkpoint.chunks.append([(str(i), int(v), str(h)) for i, v, h in self.heads])

    class Sealed(Event):
        root: str
        accounts: int

        def apply(self, checkpoint: Checkpoint) -> None:
            checkpoint.root, checkpoint.accounts = self.root, self.accounts

    def __init__(
        self,
        *,
        number: int,
        position: int,
        actor: str,
        reason: str | None,
        request_id: str | None,
        base: int | None = None,
    ) -> None:
        self.number = number
        self.position = position
        self.base = base
        self.chunks: list[list[Head]] = []
        self.root = ""
        self.accounts = 0

    @classmethod
    def record(
        cls,
        number: int,
        position: int,
        heads: Heads,
        by: Attribution,
        full: tuple[int, Heads] | None = None,
    ) -> Checkpoint:
        """Checkpoint `number` of every head in `heads`: the heads that changed since `full`
        (the number and heads of the latest full checkpoint), or all of them when it is time
        for a full one again."""
        recorded, base = heads, None
        if full is not None and number - full[0] < FULL_EVERY:
            changed = {i: head for i, head in heads.items() if full[1].get(i) != head}
            if len(changed) <= len(heads) * FULL_SHARE:
                recorded, base = changed, full[0]
        fields = by.event_fields()
        checkpoint = cls._create(
            cls.Opened,
            id=checkpoint_id(number),
            number=number,
            position=position,
            base=base,
            **fields,
        )
        ordered = sorted((i, v, h) for i, (v, h) in recorded.items())
        for start in range(0, len(ordered), HEADS_PER_EVENT):
            chunk = [list(h) for h in ordered[start : start + HEADS_PER_EVENT]]
            checkpoint.trigger_event(cls.HeadsRecorded, heads=chunk, **fields)
        root = root_of(heads)
        checkpoint.trigger_event(cls.Sealed, root=root, accounts=len(heads), **fields)
        return checkpoint


@dataclass(frozen=True)
class CheckpointEntry:
    number: int
    checkpoint_id: UUID
    position: int
    root: str
    accounts: int
    # The first account id of each chunk: chunk k is stored at version k + 2.
    first_ids: tuple[str, ...]
    at: datetime
    base: int | None  # the full checkpoint whose heads it extends; None: it is full
    # Who wrote the entry (actor, reason, request id): as the checkpoint's, which `differences`
    # checks. Not part of what identifies an entry.
    by: tuple[str, str | None, str | None] | None = field(default=None, compare=False)


class CheckpointLog(Aggregate):
    class Event(AppliedOrUnreadable, Aggregate.Event):
        actor: str
        reason: str | None
        request_id: str | None

    class Started(Event, Aggregate.Created):
        pass

    class Added(Event):
        number: int
        checkpoint_id: UUID
        position: int
        root: str
        accounts: int
        first_ids: list[str]
        base: int | None = None

        def apply(self, log: CheckpointLog) -> None:
            log.entries.append(self.entry())

        def entry(self) -> CheckpointEntry:
            return CheckpointEntry(
                self.number,
                self.checkpoint_id,
                self.position,
                self.root,
                self.accounts,
                tuple(self.first_ids),
                self.timestamp,
                self.base,
                (self.actor, self.reason, self.request_id),
            )

    def __init__(self, *, actor: str, reason: str | None, request_id: str | None) -> None:
        self.entries: list[CheckpointEntry] = []

    @classmethod
    def start(cls, by: Attribution) -> CheckpointLog:
        return cls._create(cls.Started, id=CHECKPOINT_LOG_ID, **by.event_fields())

    @property
    def latest(self) -> CheckpointEntry | None:
        return self.entries[-1] if self.entries else None

    def add(self, checkpoint: Checkpoint, by: Attribution) -> CheckpointEntry:
        first_ids = [chunk[0][0] for chunk in checkpoint.chunks]
        self.trigger_event(
            self.Added,
            number=checkpoint.number,
            checkpoint_id=checkpoint.id,
            position=checkpoint.position,
            root=checkpoint.root,
            accounts=checkpoint.accounts,
            first_ids=first_ids,
            base=checkpoint.base,
            **by.event_fields(),
        )
        latest = self.latest
        assert latest is not None
        return latest


def misshapen(event: Checkpoint.Event | CheckpointLog.Event) -> str | None:
    """Why an event of a checkpoint or of the checkpoint log does not hold what its type says
    (a number stored as text, heads that are not `[account id, version, hash]` each…), or None.

    Its state was decoded as JSON, so any field may hold any JSON value once altered; checking
    each against its type names the event rather than failing where the value is used.
    """
    if isinstance(event, Checkpoint.HeadsRecorded) and not _are_heads(event.heads):
        return "its heads are not each an account id, a version and a hash"
    for name, kind in _field_types(type(event)).items():
        if not _fits(getattr(event, name, None), kind):
            return f"its {name} is not {kind.__name__ if isinstance(kind, type) else kind}"
    return None


def _are_heads(heads: object) -> bool:
    # Checked inline, not by _fits: a full checkpoint holds a million of them.
    return isinstance(heads, list) and all(
        isinstance(head, list)
        and len(head) == 3
        and isinstance(head[0], str)
        and type(head[1]) is int
        and isinstance(head[2], str)
        for head in heads
    )


_FIELD_TYPES: dict[type, dict[str, Any]] = {}


def _field_types(cls: type) -> dict[str, Any]:
    """The types of an event class's fields that the state supplies (heads apart)."""
    if (found := _FIELD_TYPES.get(cls)) is None:
        hints = get_type_hints(cls)
        found = _FIELD_TYPES[cls] = {
            f.name: hints[f.name]
            for f in fields(cls)
            if f.name not in ("heads", "originator_id") and not isinstance(hints[f.name], TypeVar)
        }
    return found


def _fits(value: object, kind: Any) -> bool:
    if get_origin(kind) in (Union, UnionType):
        return any(_fits(value, option) for option in get_args(kind))
    if get_origin(kind) is list:
        (item,) = get_args(kind)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if kind is int:
        return type(value) is int  # JSON's true is no number
    if kind is type(None):
        return value is None
    return isinstance(value, kind) if isinstance(kind, type) else True


def recorded_heads(events: list[Checkpoint.Event]) -> Heads:
    """The heads a checkpoint's events record (a full checkpoint's: every account's)."""
    return {
        str(account_id): (int(version), str(head))
        for event in events
        if isinstance(event, Checkpoint.HeadsRecorded)
        for account_id, version, head in event.heads
    }


def _by(event: Checkpoint.Event) -> str:
    return (
        f"by {event.actor} (request {event.request_id}, reason {event.reason!r}) at "
        f"{event.timestamp.isoformat()}"
    )


def differences(entry: CheckpointEntry, events: list[Checkpoint.Event], heads: Heads) -> list[str]:
    """What a checkpoint's events, and its entry in the checkpoint log, say that does not agree.

    `heads` are every account's head as the checkpoint has them: its own, over its base's.
    Its seal (and the log's entry, written with it) has no successor whose link vouches for it,
    so it is checked against the rest: the root and the number of accounts the heads give, and
    who wrote it and when (one checkpoint, and its entry, are written at once by one actor).
    """
    opened = events[0] if events and isinstance(events[0], Checkpoint.Opened) else None
    sealed = events[-1] if events and isinstance(events[-1], Checkpoint.Sealed) else None
    if opened is None or sealed is None:
        return ["it does not begin with its opening and end with its seal"]
    chunks = [e.heads for e in events if isinstance(e, Checkpoint.HeadsRecorded)]
    problems = []
    over = "" if entry.base is None else f" over checkpoint {entry.base}'s"
    if (root := root_of(heads)) != sealed.root:
        problems.append(f"its heads{over} give the root {root}; its seal says {sealed.root}")
    if len(heads) != sealed.accounts:
        problems.append(
            f"its heads{over} are of {len(heads)} accounts; its seal says {sealed.accounts}"
        )
    written = (opened.actor, opened.reason, opened.request_id, opened.timestamp)
    for event in events:
        if (event.actor, event.reason, event.request_id, event.timestamp) != written:
            problems.append(
                f"version {event.originator_version} says it was written {_by(event)}, its "
                f"opening {_by(opened)}"
            )
    if entry.by is not None and entry.by != written[:3]:
        actor, reason, request_id = entry.by
        problems.append(
            f"the checkpoint log says its entry was written by {actor} (request {request_id}, "
            f"reason {reason!r}), the checkpoint {_by(opened)}"
        )
    recorded = CheckpointEntry(
        opened.number,
        entry.checkpoint_id,
        opened.position,
        sealed.root,
        sealed.accounts,
        tuple(str(chunk[0][0]) for chunk in chunks if chunk),
        opened.timestamp,
        opened.base,
    )
    for name in ("number", "position", "root", "accounts", "first_ids", "at", "base"):
        if (listed := getattr(entry, name)) != (found := getattr(recorded, name)):
            problems.append(f"the checkpoint log lists its {name} as {listed}; it says {found}")
    return problems
