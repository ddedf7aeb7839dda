"""What auditors ask of the ledger: is the record intact, what changed between two moments, and
the record itself, exported with its hashes for checking without the service."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.persistence import IntegrityError, StoredEvent

from contracts.instants import written
from domain.account import EVENT_TOPIC_PREFIX, Account
from domain.chain import ChainBreak, ChainWalk, linked_hash, stored_hash, stored_state
from domain.checkpoints import (
    CHECKPOINT_LOG_ID,
    Checkpoint,
    CheckpointEntry,
    CheckpointLog,
    Heads,
    checkpoint_id,
    differences,
    misshapen,
    recorded_heads,
)
from domain.errors import (
    AccountNotFound,
    ChainBroken,
    CheckpointAltered,
    Contention,
    EventUnreadable,
    InvalidValue,
)
from domain.jobs import Job
from domain.ledger import MAX_ATTEMPTS, AccountLedger, CommandMeta
from domain.objectives import Objectives
from domain.receipts import CommandReceipt
from domain.screening_policy import ScreeningPolicies
from services.api.views import account_view, history_event
from services.leadership import Leadership
from services.store import database_unavailable, first_line

# The checkpoints' own events, and the checkpoint log's: checked by `check_checkpoints`.
CHECKPOINT_TOPIC_PREFIX = f"{Checkpoint.__module__}:"
# Every kind of record the ledger writes; a topic of none of them was changed behind its back.
LEDGER_TOPIC_PREFIXES = tuple(
    f"{kind.__module__}:"
    for kind in (Account, Checkpoint, CommandReceipt, Job, Objectives, ScreeningPolicies)
)


def _of_another_record(events: list[StoredEvent]) -> bool:
    """Whether the events are all of a record the ledger keeps beside the accounts (a job, the
    screening policies, a period's objectives…), so no account's, even one tampered with."""
    return bool(events) and all(
        e.topic.startswith(LEDGER_TOPIC_PREFIXES) and not e.topic.startswith(EVENT_TOPIC_PREFIX)
        for e in events
    )


log = logging.getLogger("crm.audit")
PAGE = 1000
# Fields of the account view that change with every event, so a diff leaves them out.
_EVERY_EVENT = frozenset({"version", "updated_at"})


@dataclass
class ChainReport:
    """One account's chain: intact, broken at a version, or missing though a checkpoint has it."""

    account_id: UUID
    events: int
    head: str
    broken: ChainBreak | None = None
    missing: bool = False
    checkpoint: CheckpointEntry | None = None
    checkpoint_version: int | None = None

    @property
    def verified(self) -> bool:
        return self.broken is None and not self.missing


@dataclass
class StoreReport:
    accounts: int = 0
    events: int = 0
    checkpoint: CheckpointEntry | None = None
    broken: list[ChainReport] = field(default_factory=list)
    checkpoint_problems: list[str] = field(default_factory=list)
    # What else the ledger keeps, each a chain of its own: screening policies, objectives,
    # import jobs, command receipts. No checkpoint records their heads.
    records: int = 0
    record_events: int = 0
    record_problems: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return not self.broken and not self.checkpoint_problems and not self.record_problems


@dataclass
class CheckpointsCheck:
    """The checkpoint log as stored, checked: its latest checkpoint with the heads it recorded,
    and every way the log or the checkpoints checked are not what was recorded."""

    latest: CheckpointEntry | None
    heads: Heads  # every account's, as the latest checkpoint has them
    problems: list[str]
    full: tuple[int, Heads] | None = None  # the latest full checkpoint checked, and its heads
    # The latest checkpoint checked that is what was recorded, and its heads: the latest's
    # when nothing is wrong with it.
    trusted: tuple[CheckpointEntry, Heads] | None = None

    def intact(self) -> CheckpointsCheck:
        """This check, when nothing is wrong; else CheckpointAltered naming every problem."""
        if self.problems:
            raise CheckpointAltered(self.problems)
        return self


@dataclass(frozen=True)
class FieldChange:
    field: str
    before: Any
    after: Any
    events: list[Account.Event]


@dataclass(frozen=True)
class Diff:
    from_version: int
    to_version: int
    changes: list[FieldChange]


class Audit:
    def __init__(self, ledger: AccountLedger) -> None:
        self.ledger = ledger
        # The latest checkpoint found intact, and the full one it extends, by place in the log
        # (their number, when the log is intact): what identifies each (its log entry, a digest
        # of its stored bytes, its base's) with every account's head as it has them. Following
        # their links and recomputing their roots from a million heads again would cost every
        # account's audit seconds, reading and hashing their bytes a tenth.
        self._intact: dict[int, tuple[object, Heads]] = {}

    # Checkpoints -------------------------------------------------------------------------

    def check_checkpoints(
        self, latest_only: bool = False, retried: bool = False
    ) -> CheckpointsCheck:
        """Reads the checkpoint log and its checkpoints (every one, or the latest only) from the
        store and checks them as any chain, and more: the last events of a chain have no
        successor to vouch for them, and a checkpoint's are what an auditor compares."""
        stored = self.ledger.stored_events(CHECKPOINT_LOG_ID)
        log_walk = ChainWalk()
        log_walk.add_all(stored)
        problems = [p] if (p := _chain_problem("the checkpoint log", log_walk)) else []
        entries, unreadable = self._log_entries(stored)
        problems += [f"the checkpoint log: {p}" for p in unreadable]
        for place, entry in enumerate(entries, 1):
            if entry.number != place or entry.checkpoint_id != checkpoint_id(place):
                problems.append(
                    f"the checkpoint log lists checkpoint {entry.number} in place {place}"
                )
        if self.ledger.stored_event(checkpoint_id(len(entries) + 1), 1) is not None:
            # Recorded since the log was read (a checkpoint and its entry are saved together),
            # or taken out of the log: read again, it is listed or it was taken out.
            listed = self.ledger.stored_event(CHECKPOINT_LOG_ID, len(stored) + 1) is not None
            if listed and not retried:
                return self.check_checkpoints(latest_only, retried=True)
            problems.append(
                f"checkpoint {len(entries) + 1} is stored, and the checkpoint log does not list it"
            )
        # A checkpoint that records changes extends the latest full checkpoint before it.
        # Checkpoints are taken by their place in the log, which their number must be (checked
        # above): a number altered in the log is named, not followed to another checkpoint.
        last_full = None
        for place, entry in enumerate(entries, 1):
            if entry.base is None:
                last_full = place
            elif entry.base != last_full:
                problems.append(
                    f"checkpoint {entry.number} ({entry.checkpoint_id}): it records changes since "
                    f"checkpoint {entry.base}, which is not the latest full checkpoint before it"
                )
        keep = {len(entries), last_full} - {None, 0}
        places = sorted(keep) if latest_only else range(1, len(entries) + 1)
        full: tuple[int, Heads] | None = None
        base: tuple[object, Heads] | None = None
        trusted: tuple[CheckpointEntry, Heads] | None = None
        heads: Heads = {}
        intact: dict[int, tuple[object, Heads]] = {}
        for place in places:
            entry = entries[place - 1]
            key, heads, found = self._check_one(place, entry, None if entry.base is None else base)
            problems += found
            if entry.base is None:
                full, base = (place, heads), (key, heads)
            if not found:  # its root, recomputed over every head (its base's too), is its seal's
                trusted = (entry, heads)
            if place in keep and not found:
                intact[place] = (key, heads)
        self._intact = intact  # one assignment: API threads check checkpoints at once
        latest = entries[-1] if entries else None
        return CheckpointsCheck(latest, heads, problems, full, trusted)

    def _check_one(
        self, place: int, entry: CheckpointEntry, base: tuple[object, Heads] | None
    ) -> tuple[object, Heads, list[str]]:
        """One checkpoint as stored, at its place in the log, over its base's heads (what
        identifies them, and them) when it records changes: what identifies it, every account's
        head as it has them, and what is wrong with it."""
        name = f"checkpoint {entry.number} ({entry.checkpoint_id})"
        stored = self.ledger.stored_events(entry.checkpoint_id)
        # The same bytes under the same entry, over the same base, are the same checkpoint.
        key = (entry, _digest(stored), None if base is None else base[0])
        if (kept := self._intact.get(place)) is not None and kept[0] == key:
            return key, kept[1], []
        walk = ChainWalk()
        walk.add_all(stored)
        problems = [broken] if (broken := _chain_problem(name, walk)) is not None else []
        events, unreadable = self._read(stored)
        heads = recorded_heads(events)
        if base is not None:
            heads = {**base[1], **heads}
        found = unreadable or differences(entry, events, heads)
        return key, heads, problems + [f"{name}: {problem}" for problem in found]

    def _read(self, stored: list[StoredEvent]) -> tuple[list[Any], list[str]]:
        """The events of a checkpoint or of the checkpoint log stored, in version order, and
        why those that cannot be read cannot (they are left out)."""
        events, unreadable = [], []
        for event in sorted(stored, key=lambda s: s.originator_version):
            try:
                read = self.ledger.mapper.to_domain_event(event)
            except EventUnreadable as error:
                unreadable.append(f"version {error.version} can no longer be read: {error.reason}")
                continue
            if (why := misshapen(read)) is not None:
                version = event.originator_version
                unreadable.append(f"version {version} can no longer be read: {why}")
                continue
            events.append(read)
        return events, unreadable

    def _log_entries(self, stored: list[StoredEvent]) -> tuple[list[CheckpointEntry], list[str]]:
        """The entries of the checkpoint log's events stored, and why those unread are not."""
        events, unreadable = self._read(stored)
        return [e.entry() for e in events if isinstance(e, CheckpointLog.Added)], unreadable

    def latest_checkpoint(self) -> CheckpointEntry | None:
        """The latest checkpoint the log lists, its checkpoints unchecked (`check_checkpoints`
        checks them)."""
        entries, _ = self._log_entries(self.ledger.stored_events(CHECKPOINT_LOG_ID))
        return entries[-1] if entries else None

    def kept_checkpoint(self, number: int, root: str) -> tuple[Heads, list[str]]:
        """Checkpoint `number`'s heads as stored, and what differs between it and the root an
        auditor kept of it elsewhere: the checkpoint gone (the latest ones removed, with the
        events only they covered), its root another, or its heads not what its root covers.
        Chains are then walked against its heads too: one rewritten with every checkpoint
        after this one would agree with the latest, not with this one."""
        entries, _ = self._log_entries(self.ledger.stored_events(CHECKPOINT_LOG_ID))
        entry = next((e for e in entries if e.number == number), None)
        if entry is None:
            latest = f"the latest is {entries[-1].number}" if entries else "it holds none"
            return {}, [f"checkpoint {number}, whose root was kept, is not in the store ({latest})"]
        if entry.root != root.lower():
            return {}, [f"checkpoint {number}'s root is {entry.root}, not {root} as it was kept"]
        base = None
        if entry.base is not None and 0 < entry.base <= len(entries):
            key, heads, _ = self._check_one(entry.base, entries[entry.base - 1], None)
            base = (key, heads)
        _, heads, found = self._check_one(number, entry, base)
        return heads, found

    def checkpoint(self, meta: CommandMeta) -> CheckpointEntry:
        """Records the heads of every account chain now; refuses when a chain is broken.

        Starts from the previous checkpoint's heads and follows only the events after it,
        checking each new event's link as it goes. When no account changed since the latest
        checkpoint, returns that one and stores nothing.
        """
        for _ in range(MAX_ATTEMPTS):
            # A checkpoint built on one that was altered would vouch for what was altered; and
            # the log, checked first, is read as an aggregate only once it is what was written.
            check = self.check_checkpoints(latest_only=True).intact()
            log = self.ledger.find_aggregate(CHECKPOINT_LOG_ID)
            if not isinstance(log, CheckpointLog):
                log = CheckpointLog.start(self.ledger.attribution(meta))
            previous = log.latest
            position = self.ledger.recorder.max_notification_id() or 0
            if check.latest != previous:
                continue  # another checkpoint was recorded since the log was read
            # The accounts written since, each followed on from the head recorded for it.
            walks: dict[str, ChainWalk] = {}
            rechecked: set[str] = set()
            start = previous.position + 1 if previous is not None else 1
            for stored in self._account_events(start, position):
                account_id = str(stored.originator_id)
                recorded = check.heads.get(account_id)
                if (walk := walks.get(account_id)) is None:
                    walk = walks[account_id] = (
                        ChainWalk.resume(*recorded) if recorded else ChainWalk()
                    )
                if recorded and stored.originator_version <= recorded[0]:
                    if account_id not in rechecked:
                        rechecked.add(account_id)
                        self._refuse_unless_intact(stored.originator_id, recorded)
                walk.add(stored)
            self._read_left_out(walks)
            for account_id, walk in walks.items():
                if (broken := walk.finish()) is not None:
                    raise ChainBroken(UUID(account_id), broken.version, broken.problem)
            if previous is not None and not walks:
                return previous  # no account changed (checkpoints' own events do not count)
            heads = {**check.heads, **{i: (w.version, w.head) for i, w in walks.items()}}
            number = previous.number + 1 if previous is not None else 1
            by = self.ledger.attribution(meta)
            checkpoint = Checkpoint.record(number, position, heads, by, check.full)
            entry = log.add(checkpoint, by)
            try:
                self.ledger.save(checkpoint, log)
            except IntegrityError:
                continue  # another checkpoint was recorded meanwhile: start from it
            return entry
        raise Contention("the checkpoint log")

    # Verification ------------------------------------------------------------------------

    def verify_account(self, account_id: UUID, kept: Heads | None = None) -> ChainReport:
        """One account's chain, against the latest checkpoint, which is checked whole first
        (CheckpointAltered when it is not what was recorded), and against the heads of one
        whose root an auditor kept (`kept_checkpoint`)."""
        check = self.check_checkpoints(latest_only=True).intact()
        entry = check.latest
        recorded = check.heads.get(str(account_id))
        kept_head = (kept or {}).get(str(account_id))
        stored = self.ledger.stored_events(account_id)
        if recorded is None and kept_head is None and (not stored or _of_another_record(stored)):
            raise AccountNotFound(account_id)
        walk = ChainWalk(recorded, kept_head)
        walk.add_all(stored)
        return ChainReport(
            account_id,
            events=len(stored),
            head=walk.head,
            broken=walk.finish() if stored else None,
            missing=not stored,
            checkpoint=entry if recorded is not None else None,
            checkpoint_version=recorded[0] if recorded is not None else None,
        )

    def verify_all(
        self, progress: Callable[[int, int], None] | None = None, kept: Heads | None = None
    ) -> StoreReport:
        """Walks the whole log once: every account chain, against the latest checkpoint and the
        heads of one whose root an auditor kept (`kept_checkpoint`); and every checkpoint, as
        stored. When the latest checkpoint is not what was recorded, the chains are walked
        against the latest one that is: a head altered in a checkpoint is the checkpoint's
        problem, and would otherwise blame the intact account it names."""
        check = self.check_checkpoints()
        entry, latest = check.trusted or (None, {})
        kept = kept or {}
        recorded = latest.keys() | kept.keys()
        walks: dict[str, ChainWalk] = {}
        others: dict[str, ChainWalk] = {}
        events = record_events = 0
        end = self.ledger.recorder.max_notification_id() or 0
        for stored in self._events(1, end, progress):
            if not stored.topic.startswith(EVENT_TOPIC_PREFIX):
                if not stored.topic.startswith(CHECKPOINT_TOPIC_PREFIX):  # checked above
                    others.setdefault(str(stored.originator_id), ChainWalk()).add(stored)
                    record_events += 1
                continue
            account_id = str(stored.originator_id)
            walk = walks.get(account_id)
            if walk is None:
                heads = latest.get(account_id), kept.get(account_id)
                walk = walks[account_id] = ChainWalk(*heads)
            walk.add(stored)
            events += 1
        for account_id in recorded - walks.keys():
            # Recorded, and not in the log: stored at a position outside it, or removed.
            if found := self.ledger.stored_events(UUID(account_id)):
                walks[account_id] = ChainWalk(latest.get(account_id), kept.get(account_id))
                walks[account_id].add_all(found)
                events += len(found)
        events += self._read_left_out(walks)
        report = StoreReport(len(walks), events, entry, checkpoint_problems=check.problems)
        report.records = len(others)
        report.record_events = record_events + self._read_left_out(others)
        for record_id, walk in sorted(others.items()):
            if (problem := _chain_problem(f"record {record_id}", walk)) is not None:
                report.record_problems.append(problem)
        misfiled = self._ids_not_as_written()
        for account_id, walk in walks.items():
            broken = walk.finish()
            if (elsewhere := misfiled.get(account_id)) is not None:
                if broken is None or elsewhere.version < broken.version:
                    broken = elsewhere
            if broken is not None:
                report.broken.append(
                    ChainReport(UUID(account_id), walk.version, walk.head, broken=broken)
                )
        for account_id in recorded - walks.keys():
            report.broken.append(
                ChainReport(UUID(account_id), 0, "", missing=True, checkpoint=entry)
            )
        report.broken.sort(key=lambda r: str(r.account_id))
        return report

    def _ids_not_as_written(self) -> dict[str, ChainBreak]:
        """By account, the first of its events stored under its id written otherwise: the log
        gives it to the account, a read of the account does not find it."""
        found: dict[str, ChainBreak] = {}
        for spelling, version in self.ledger.recorder.ids_not_as_written():
            try:
                account_id = str(UUID(spelling))
            except ValueError:
                continue  # not an id at all: the log could not have been read this far
            if account_id not in found or version < found[account_id].version:
                problem = f"it is stored under the id {spelling!r}, where reads do not find it"
                found[account_id] = ChainBreak(version, problem)
        return found

    def _refuse_unless_intact(self, account_id: UUID, recorded: tuple[int, str]) -> None:
        """A version the checkpoint covers, stored since: an event moved to another position
        unchanged, or the account's history written anew (removed, then registered again).
        The account's whole chain, against the head recorded, says which."""
        walk = ChainWalk(recorded)
        walk.add_all(self.ledger.stored_events(account_id))
        if (broken := walk.finish()) is not None:
            raise ChainBroken(account_id, broken.version, broken.problem)

    def _read_left_out(self, walks: dict[str, ChainWalk]) -> int:
        """Reads by version, straight from the store, the versions a walk of the log left out
        though later ones follow them. A chain links versions, not log positions: an event
        stored at a position outside the part of the log walked is still the account's.
        Returns how many events it read: in an untouched store, none."""
        read = 0
        for account_id, walk in walks.items():
            if (gap := walk.gap) is not None:
                first, last = gap
                found = self.ledger.recorder.select_events(UUID(account_id), gt=first - 1, lte=last)
                walk.add_all(found)
                read += len(found)
        return read

    def _account_events(self, start: int, end: int) -> Iterator[StoredEvent]:
        """The accounts' events of part of the log, and any of a kind the ledger never writes
        (its topic changed): with theirs, an export holds it and its verifier names it."""
        for stored in self._events(start, end):
            topic = stored.topic
            if topic.startswith(EVENT_TOPIC_PREFIX) or not topic.startswith(LEDGER_TOPIC_PREFIXES):
                yield stored

    def _events(
        self, start: int, end: int, progress: Callable[[int, int], None] | None = None
    ) -> Iterator[StoredEvent]:
        position = start
        while position <= end:
            page = self.ledger.recorder.select_notifications(position, PAGE, stop=end)
            if not page:
                break
            yield from page
            position = page[-1].id + 1
            if progress is not None:
                progress(min(position - 1, end), end)

    # As of, diff and export --------------------------------------------------------------

    def version_at(self, account_id: UUID, at: datetime) -> int:
        """The account's version at an instant: 0 before it was registered."""
        version = 0
        for event in self.ledger.events.get(account_id):
            if event.timestamp > at:
                break
            version = event.originator_version
        return version

    def diff(self, account_id: UUID, from_version: int, to_version: int | None) -> Diff:
        """Which fields of the account view changed between two versions, and by which events.
        Only the events up to `to` are read: versions before one that can no longer be read
        still compare."""
        latest = self.ledger.recorder.select_events(account_id, desc=True, limit=1)
        if not latest or _of_another_record(latest):
            raise AccountNotFound(account_id)
        current = latest[0].originator_version
        to_version = current if to_version is None else to_version
        if not 0 <= to_version <= current:
            raise InvalidValue("to", f"The account has versions 1 to {current}.")
        if not 0 <= from_version <= to_version:
            raise InvalidValue(
                "from", f"from must be a version or instant before to ({to_version})."
            )
        before: dict[str, Any] = {}
        after: dict[str, Any] = {}
        touched: dict[str, list[Account.Event]] = {}
        for event, _, after, changed in self.story(account_id, to_version):
            if event.originator_version == from_version:
                before = after
            elif event.originator_version > from_version:
                for name in changed:
                    touched.setdefault(name, []).append(event)
        changes = [
            FieldChange(name, before.get(name), after[name], touched[name])
            for name in sorted(touched)
            if before.get(name) != after[name]
        ]
        return Diff(from_version, to_version, changes)

    def story(
        self, account_id: UUID, to_version: int | None = None
    ) -> Iterator[tuple[Account.Event, dict[str, Any], dict[str, Any], list[str]]]:
        """Each event with the account view before and after it and the fields it changed."""
        account: Any = None
        before: dict[str, Any] = {}
        for event in self.ledger.events.get(account_id, lte=to_version):
            account = event.mutate(account)
            after = _view(account)
            changed = [n for n in after if n not in _EVERY_EVENT and after[n] != before.get(n)]
            yield event, before, after, changed
            before = after

    def export_records(self, account_id: UUID | None = None) -> Iterator[dict[str, Any]]:
        """The export: what it holds, the latest checkpoint and its heads, every event with its
        hashes, then an `end` record with the number of events.

        The checkpoint is read before this returns, so that one that cannot be read is an
        error before an HTTP answer starts, not a body cut off after it did.
        """
        opening = [{"record": "export", "scope": "store"}]
        if account_id is not None:
            opening = [{"record": "export", "scope": "account", "account_id": str(account_id)}]
        opening += self._checkpoint_records(account_id)
        return self._export(opening, account_id)

    def _checkpoint_records(self, account_id: UUID | None) -> list[dict[str, Any]]:
        # Checked whole, so that an export never vouches for a checkpoint that was altered.
        check = self.check_checkpoints(latest_only=True).intact()
        entry = check.latest
        if account_id is not None and str(account_id) not in check.heads:
            # An account the checkpoint has, or with any event stored (its first may have been
            # removed), is exported for the verifier to judge; one with neither is unknown.
            stored = self.ledger.stored_events(account_id)
            if not stored or _of_another_record(stored):
                raise AccountNotFound(account_id)
        if entry is None:
            return []
        if account_id is None:
            heads = sorted(check.heads.items())
        else:
            head = check.heads.get(str(account_id))
            heads = [] if head is None else [(str(account_id), head)]
        checkpoint = {
            "record": "checkpoint",
            "number": entry.number,
            "position": entry.position,
            "root": entry.root,
            "accounts": entry.accounts,
            "recorded_at": written(entry.at),
        }
        return [checkpoint] + [
            {"record": "head", "account_id": head_id, "version": version, "hash": head_hash}
            for head_id, (version, head_hash) in heads
        ]

    def _export(
        self, opening: list[dict[str, Any]], account_id: UUID | None
    ) -> Iterator[dict[str, Any]]:
        yield from opening
        if account_id is not None:
            stored_events: Iterator[StoredEvent] = iter(self.ledger.stored_events(account_id))
        else:
            end = self.ledger.recorder.max_notification_id() or 0
            stored_events = self._account_events(1, end)
        events = 0
        for stored in stored_events:
            events += 1
            yield self._event_record(stored)
        yield {"record": "end", "events": events}

    def _event_record(self, stored: StoredEvent) -> dict[str, Any]:
        """An event as stored, with its hashes; with its reading when it still has one, else
        `unreadable` and why (an auditor takes away exactly what the store holds)."""
        state = stored_state(stored)
        record: dict[str, Any] = {
            "record": "event",
            "account_id": str(stored.originator_id),
            "version": stored.originator_version,
            "topic": stored.topic,
            "previous_hash": linked_hash(state),
            "hash": stored_hash(stored),
            "state": state.decode("utf-8", errors="replace"),
        }
        try:
            view = msgspec.to_builtins(history_event(self.ledger.mapper.to_domain_event(stored)))
        except EventUnreadable as error:
            return {**record, "unreadable": error.reason}
        except Exception as error:  # it decodes, but not into an event that can be shown
            return {**record, "unreadable": f"it does not read as {stored.topic} ({error})"}
        record.update(
            type=view["type"],
            recorded_at=view["recorded_at"],
            actor=view["actor"],
            reason=view["reason"],
            request_id=view["request_id"],
            data=view["data"],
        )
        return record


EXPORT_FIELDS = [
    "record",
    "account_id",
    "version",
    "hash",
    "previous_hash",
    "type",
    "recorded_at",
    "actor",
    "reason",
    "request_id",
    "topic",
    "state",
    "unreadable",
    "data",
    "number",
    "position",
    "root",
    "accounts",
    "scope",
    "events",
]
# The columns tools/verify_export.py checks, written exactly as stored in CSV (hex hashes, ids,
# numbers, topics, a scope and a JSON state: none starts like a spreadsheet formula); the
# others are for reading and are escaped like every CSV export's cells.
EXPORT_HASHED = frozenset(EXPORT_FIELDS) - {
    "type",
    "recorded_at",
    "actor",
    "reason",
    "request_id",
    "unreadable",
    "data",
}


class PeriodicCheckpoints:
    """Records a checkpoint every `interval` seconds in a thread of a worker process, while
    that process is the active projector (`leadership`), so that standbys record none.

    A checkpoint with nothing new to cover stores nothing; a broken chain is logged as an
    error at every attempt, and no checkpoint is recorded until it is dealt with.
    """

    def __init__(self, audit: Audit, interval: float, leadership: Leadership | None = None):
        self.audit = audit
        self.interval = interval
        self.leadership = leadership
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval > 0:
            self._thread = threading.Thread(target=self._run, name="checkpoints", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        meta = CommandMeta("crm", reason="periodic checkpoint")
        said = None  # the checkpoint last logged: with nothing new, the latest is returned
        while not self._stop.wait(self.interval):
            if self.leadership is not None and not self.leadership.active:
                continue
            try:
                entry = self.audit.checkpoint(meta)
                if entry.number != said:
                    log.info("checkpoint %s covers position %s", entry.number, entry.position)
                    said = entry.number
            except ChainBroken as error:
                log.error("no checkpoint: %s", error.detail)
            except Exception as error:  # the store may be away for a while; try again next time
                if database_unavailable(error):
                    log.warning("no checkpoint: the database is away (%s)", first_line(error))
                else:
                    log.exception("recording a checkpoint failed")


def _digest(stored: list[StoredEvent]) -> bytes:
    digest = hashlib.sha256()
    for event in stored:
        state = stored_state(event)  # a state turned into text is no longer what was checked
        kind = "text" if isinstance(event.state, str) else "bytes"
        digest.update(f"{event.originator_version}:{kind}:{len(state)}:{event.topic}\n".encode())
        digest.update(state)
    return digest.digest()


def _chain_problem(name: str, walk: ChainWalk) -> str | None:
    if (broken := walk.finish()) is None:
        return None
    return f"{name}: first bad version {broken.version}: {broken.problem}"


def _view(account: Account) -> dict[str, Any]:
    return msgspec.to_builtins(account_view(account))
