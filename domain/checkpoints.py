"""Audit checkpoints: the heads of every account chain at one log position, under one root.

A checkpoint is an aggregate of its own (its heads recorded in sorted chunks, so one account's
head is found by reading one chunk), and the checkpoint log lists them in order. Both are
stored events, chained like any other, so a checkpoint cannot be changed unseen either.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.account import Attribution
from domain.chain import root_of

CHECKPOINT_LOG_ID = uuid5(NAMESPACE_URL, "urn:abm-crm:audit-checkpoints")
HEADS_PER_EVENT = 5000

Head = tuple[str, int, str]  # account id, version, hash of the event at that version


def checkpoint_id(number: int) -> UUID:
    return uuid5(CHECKPOINT_LOG_ID, str(number))


class Checkpoint(Aggregate):
    class Event(Aggregate.Event):
        actor: str
        reason: str | None
        request_id: str | None

    class Opened(Event, Aggregate.Created):
        number: int
        position: int  # the last global log position the heads cover

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
        self, *, number: int, position: int, actor: str, reason: str | None, request_id: str | None
    ) -> None:
        self.number = number
        self.position = position
        self.chunks: list[list[Head]] = []
        self.root = ""
        self.accounts = 0

    @classmethod
    def record(cls, number: int, position: int, heads: list[Head], by: Attribution) -> Checkpoint:
        fields = by.event_fields()
        checkpoint = cls._create(
            cls.Opened, id=checkpoint_id(number), number=number, position=position, **fields
        )
        ordered = sorted(heads)
        for start in range(0, len(ordered), HEADS_PER_EVENT):
            chunk = [list(h) for h in ordered[start : start + HEADS_PER_EVENT]]
            checkpoint.trigger_event(cls.HeadsRecorded, heads=chunk, **fields)
        checkpoint.trigger_event(cls.Sealed, root=root_of(ordered), accounts=len(ordered), **fields)
        return checkpoint

    def heads(self) -> list[Head]:
        return [head for chunk in self.chunks for head in chunk]


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

    def chunk_version(self, account_id: UUID) -> int | None:
        index = bisect_right(self.first_ids, str(account_id)) - 1
        return None if index < 0 else index + 2


class CheckpointLog(Aggregate):
    class Event(Aggregate.Event):
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
            **by.event_fields(),
        )
        latest = self.latest
        assert latest is not None
        return latest


def differences(entry: CheckpointEntry, events: list[Checkpoint.Event]) -> list[str]:
    """What a checkpoint's events, and its entry in the checkpoint log, say that does not agree.

    Its seal (and the log's entry, written with it) has no successor whose link vouches for it,
    so it is checked against the rest: the root and the number of accounts the heads give, and
    who wrote it and when (one checkpoint, and its entry, are written at once by one actor).
    """
    opened = events[0] if events and isinstance(events[0], Checkpoint.Opened) else None
    sealed = events[-1] if events and isinstance(events[-1], Checkpoint.Sealed) else None
    if opened is None or sealed is None:
        return ["it does not begin with its opening and end with its seal"]
    chunks = [e.heads for e in events if isinstance(e, Checkpoint.HeadsRecorded)]
    heads = [(str(i), int(v), str(h)) for chunk in chunks for i, v, h in chunk]
    problems = []
    if (root := root_of(heads)) != sealed.root:
        problems.append(f"its heads give the root {root}; its seal says {sealed.root}")
    if len(heads) != sealed.accounts:
        problems.append(f"it holds heads of {len(heads)} accounts; its seal says {sealed.accounts}")
    written = (opened.actor, opened.reason, opened.request_id, opened.timestamp)
    for event in events:
        if (event.actor, event.reason, event.request_id, event.timestamp) != written:
            problems.append(
                f"version {event.originator_version} says it was written by {event.actor} at "
                f"{event.timestamp.isoformat()}, its opening by {opened.actor} at "
                f"{opened.timestamp.isoformat()}"
            )
    recorded = CheckpointEntry(
        opened.number,
        entry.checkpoint_id,
        opened.position,
        sealed.root,
        sealed.accounts,
        tuple(str(chunk[0][0]) for chunk in chunks if chunk),
        opened.timestamp,
    )
    for name in ("number", "position", "root", "accounts", "first_ids", "at"):
        if (listed := getattr(entry, name)) != (found := getattr(recorded, name)):
            problems.append(f"the checkpoint log lists its {name} as {listed}; it says {found}")
    return problems
