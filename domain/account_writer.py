"""The account writer: one thread decides every account command of this process and stores
many of them in one transaction.

Every transaction costs a wait for the disk (SQLite's fsync of the WAL) and, on PostgreSQL, a
turn at the event table's lock; both cost per transaction, not per event. So commands queue
here, and the writer takes all that are waiting: it decides each against the account as last
committed (kept in memory, so a command costs the same at any history length), stores their
events together, and answers each only after that transaction committed.

Being the only writer in the process, it never races itself: a batch holds at most one command
per account (a second one waits for the next batch), and a cached account is never changed in
place, only replaced by a copy that carries the command's events once they are stored. Other
processes may write the same accounts: the store refuses an event whose version is taken (or
whose predecessor it does not hold: a store restored from a backup under a running process),
and then each command of the batch is decided again, alone, against the account reloaded from
the store. A refusal, or a command changing nothing, decided against a cached account is checked
against the store's last version of it (one question for the whole batch), so a rule never
refuses on stale state.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import queue
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError

from domain.account import Account, Attribution
from domain.errors import Contention, LedgerError
from domain.receipts import CommandReceipt

if TYPE_CHECKING:
    from domain.ledger import AccountLedger, CommandMeta, CommandResult

log = logging.getLogger("crm.writer")

MAX_BATCH = 200  # commands in one transaction
# Events of accounts not cached that a batch reads in one statement; more would be held in
# memory at once (a long history is read alone, as it is applied).
READ_TOGETHER_EVENTS = 5_000
# Other processes' writes to the same account collide on its next version; each collision
# reloads the account and decides again, and this many attempts make a persistent one unlikely.
MAX_ATTEMPTS = 8
# What the store raises when it does not answer (down, unreachable, locked past its timeout).
StoreUnavailable = (OperationalError, InterfaceError)

# Decides a command: gets the account as it stands (None when there is none yet) and returns
# the account carrying the command's new events (none: the command changes nothing).
Decide = Callable[[Account | None, Attribution], Account]


class Reply(Protocol):
    """Where a command's outcome goes: a Future, or whatever an event loop waits on."""

    def set_result(self, result: CommandResult) -> None: ...

    def set_exception(self, exception: BaseException) -> None: ...


@dataclass
class Change:
    account_id: UUID
    meta: CommandMeta
    decide: Decide
    reply: Reply = field(default_factory=Future)
    answered: bool = False
    error: BaseException | None = None  # what it was refused with

    # A reply that cannot be delivered (its event loop has closed at shutdown) is that
    # caller's loss alone: raised here, it would fail the answers still due to the rest of
    # the batch, whose commands are stored.
    def answer(self, result: CommandResult) -> None:
        self.answered = True
        try:
            self.reply.set_result(result)
        except Exception:
            log.warning("a command's answer could not be delivered", exc_info=True)

    def fail(self, error: BaseException) -> None:
        self.answered, self.error = True, error
        try:
            self.reply.set_exception(error)
        except Exception:
            log.warning("a command's refusal could not be delivered", exc_info=True)

    def keys(self) -> set[UUID]:
        """What the change writes: its account, and its receipt when it has an idempotency key."""
        if self.meta.idempotency is None:
            return {self.account_id}
        return {self.account_id, self.meta.idempotency.receipt_id(self.meta.actor)}


@dataclass
class _Decided:
    change: Change
    account: Account
    receipt: CommandReceipt | None


class AccountWriter:
    def __init__(self, ledger: AccountLedger, cache_size: int) -> None:
        self._ledger = ledger
        self._cache_size = cache_size
        self._cache: OrderedDict[UUID, Account] = OrderedDict()  # as last committed
        self._queue: queue.SimpleQueue[Change | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # Held while a change is queued and while closing: so no change is queued behind the
        # writer's last item, where nobody would answer it.
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, change: Change) -> Reply:
        with self._lock:
            if self._closed:
                raise RuntimeError("the ledger is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="account-writer", daemon=True
                )
                self._thread.start()
            self._queue.put(change)
        return change.reply

    def close(self) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join(timeout=30)

    # The writer's loop ---------------------------------------------------------------------

    def _run(self) -> None:
        waiting: deque[Change] = deque()  # deferred from the last batch: they go first
        stopping = False
        while not (stopping and not waiting):
            if not waiting:
                item = self._queue.get()
                if item is None:
                    break
                waiting.append(item)
            while len(waiting) < MAX_BATCH and not stopping:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                else:
                    waiting.append(item)
            batch = [waiting.popleft() for _ in range(min(len(waiting), MAX_BATCH))]
            try:
                waiting.extendleft(reversed(self._write(batch)))
            except BaseException as error:  # a bug here must not leave callers waiting
                log.exception("the account writer failed a batch")
                for change in batch:
                    if not change.answered:
                        change.fail(error)

    def _write(self, batch: list[Change]) -> list[Change]:
        """Decides and stores a batch; returns the changes deferred to the next batch."""
        decided: list[_Decided] = []
        unchanged: list[tuple[Change, Account]] = []
        doubtful: list[Change] = []
        claimed: set[UUID] = set()
        deferred: list[Change] = []
        away: BaseException | None = None
        try:
            read = self._read_together(batch)
        except StoreUnavailable as error:
            read, away = {}, error
        for change in batch:
            if away is not None:
                # The store did not answer the batch's first question or an earlier change of
                # it, after its timeout and retry: asked for each in turn, it would keep the last
                # waiting for all of those timeouts, one after the other. They are refused at
                # once, as that one was.
                change.fail(away)
                continue
            keys = change.keys()
            if keys & claimed:
                deferred.append(change)  # an earlier change of this batch writes the same
                continue
            outcome = self._decide(change, unchanged, read=read, doubtful=doubtful)
            if outcome is not None:
                decided.append(outcome)
            elif isinstance(change.error, StoreUnavailable):
                away = change.error
            if outcome is not None or (doubtful and doubtful[-1] is change):
                claimed |= keys
        if doubtful and away is None:
            try:
                self._confirm(doubtful)
            except StoreUnavailable as error:
                away = error
        for change in doubtful:
            if away is not None:
                change.fail(away)
            elif (outcome := self._decide(change, unchanged)) is not None:
                decided.append(outcome)
        if away is not None:
            for change, _ in unchanged:
                change.fail(away)
            unchanged.clear()
        self._answer_unchanged(unchanged)
        if decided:
            self._store(decided)
        return deferred

    def _store(self, decided: list[_Decided], *, again: bool = False) -> None:
        try:
            positions = self._save(decided)
        except IntegrityError:
            # Another process wrote one of these accounts (or receipts) first: decide them
            # all again on the accounts as stored, together once more, then one by one.
            for outcome in decided:
                self._forget(outcome.account.id)
            if again:
                for outcome in decided:
                    self._write_alone(outcome.change)
                return
            unchanged: list[tuple[Change, Account]] = []
            redecided = [self._decide(o.change, unchanged, fresh=True) for o in decided]
            self._answer_unchanged(unchanged)
            if retry := [outcome for outcome in redecided if outcome is not None]:
                self._store(retry, again=True)
            return
        except BaseException as error:  # the store is away: every command in it learns so
            for outcome in decided:
                self._cache.pop(outcome.account.id, None)
                outcome.change.fail(error)
            return
        for outcome in decided:
            self._answer(outcome, positions)

    def _write_alone(self, change: Change) -> None:
        for _ in range(MAX_ATTEMPTS):
            unchanged: list[tuple[Change, Account]] = []
            outcome = self._decide(change, unchanged, fresh=True)
            if outcome is None:
                self._answer_unchanged(unchanged)
                return
            try:
                positions = self._save([outcome])
            except IntegrityError:
                self._forget(change.account_id)
                continue
            except BaseException as error:
                change.fail(error)
                return
            self._answer(outcome, positions)
            return
        change.fail(Contention(f"account {change.account_id}"))

    # One change ----------------------------------------------------------------------------

    def _decide(
        self,
        change: Change,
        unchanged: list[tuple[Change, Account]],
        *,
        fresh: bool = False,
        read: Mapping[UUID, Account | None] | None = None,
        doubtful: list[Change] | None = None,
    ) -> _Decided | None:
        """Decides a change; None when it is answered already (refused or replayed), or when
        it changes nothing and has no key to keep: then it is added to `unchanged`, to be
        answered with the log's head.

        `fresh` reads the account from the store, not the cache. `read` holds accounts read
        from the store when the batch began (None: it had no events), not read again. Given
        `doubtful`, a change refused, or changing nothing, on the cached account is added to it
        instead: the store may know more (another process's writes), and is asked for the
        whole batch at once (`_confirm`) before those are decided again."""
        ledger = self._ledger
        try:
            if (replayed := ledger.replay(change.meta)) is not None:
                change.answer(replayed)
                return None
            current = None if fresh else self._cache.get(change.account_id)
            from_cache = current is not None
            if current is None:
                if not fresh and read is not None and change.account_id in read:
                    current = read[change.account_id]
                else:
                    current = self._load(change.account_id)
            by = ledger.attribution(change.meta)
            try:
                account = change.decide(_copy(current), by.after(current))
            except LedgerError:
                if from_cache and doubtful is not None:
                    doubtful.append(change)
                    return None
                raise
            if from_cache and doubtful is not None and not account.pending_events:
                doubtful.append(change)
                return None
            if not account.pending_events and change.meta.idempotency is None:
                unchanged.append((change, account))
                return None
            # A command that changed nothing still keeps its key (its receipt alone is stored):
            # otherwise a retry after another change would apply it then, and the key would
            # not refuse another request.
            receipt = None
            if (key := change.meta.idempotency) is not None:
                receipt = CommandReceipt.record(
                    key.receipt_id(change.meta.actor),
                    key.fingerprint,
                    account.id,
                    account.version,
                    by,
                )
            return _Decided(change, account, receipt)
        except BaseException as error:
            change.fail(error)
            return None

    def _forget(self, account_id: UUID) -> None:
        """Drops the account from this writer's cache and from the library's, whose copy is
        brought up to date by reading the events after its version: one ahead of a store
        restored from a backup would never be, and a command decided on it would be refused
        again and again."""
        self._cache.pop(account_id, None)
        if (cached := self._ledger.repository.cache) is not None:
            with contextlib.suppress(KeyError):
                cached.get(account_id, evict=True)

    def _read_together(self, batch: list[Change]) -> dict[UUID, Account | None]:
        """The batch's accounts that are not cached, read from the store together: None for
        each it holds no event of (a bulk import's new companies), and the others whose
        events come to READ_TOGETHER_EVENTS at most (fewest first); an account left out is
        read alone when it is decided. Two statements, where each account would cost a read
        of its own. Should another process write one meanwhile, the save meets its version
        taken, and the change is decided again on the account as stored."""
        ids = {change.account_id for change in batch if change.account_id not in self._cache}
        if len(ids) < 2:  # one read alone costs what the question would
            return {}
        ledger = self._ledger
        versions = ledger.recorder.last_versions(ids)
        read: dict[UUID, Account | None] = dict.fromkeys(ids - versions.keys())
        chosen, events = [], 0
        for account_id, version in sorted(versions.items(), key=itemgetter(1)):
            events += version
            if events > READ_TOGETHER_EVENTS:
                break
            chosen.append(account_id)
        if chosen:
            read.update(ledger.read_accounts(chosen))
        return read

    def _confirm(self, doubtful: list[Change]) -> None:
        """Drops from the cache each of these accounts whose last stored version is not the
        cached copy's, so that it is read again: the events another process stored since, or
        (the store restored to before it) the whole account. One statement for them all,
        where loading each again would read and apply its every event."""
        cached = {
            change.account_id: account.version
            for change in doubtful
            if (account := self._cache.get(change.account_id)) is not None
        }
        stored = self._ledger.recorder.last_versions(cached)
        for account_id, version in cached.items():
            if stored.get(account_id, 0) > version:
                self._cache.pop(account_id)
            elif stored.get(account_id) != version:
                self._forget(account_id)

    def _load(self, account_id: UUID) -> Account | None:
        try:
            found = self._ledger.repository.get(account_id)
        except AggregateNotFoundError:
            return None
        return found if isinstance(found, Account) else None

    def _save(self, decided: list[_Decided]) -> dict[UUID, int]:
        """Stores the batch in one transaction; returns each account's last position."""
        aggregates: list[Any] = []
        for outcome in decided:
            aggregates.append(outcome.account)
            if outcome.receipt is not None:
                aggregates.append(outcome.receipt)
        recordings = self._ledger.save(*aggregates)
        return {r.domain_event.originator_id: r.notification.id for r in recordings}

    def _answer(self, outcome: _Decided, positions: dict[UUID, int]) -> None:
        account = outcome.account
        self._keep(account)
        # A keyed command that changed nothing stored its receipt alone, after every event of
        # the account it answers with.
        receipt = outcome.receipt
        head = positions.get(receipt.id) if receipt is not None else None
        outcome.change.answer(self._ledger.result(account, positions.get(account.id), head))

    def _answer_unchanged(self, unchanged: list[tuple[Change, Account]]) -> None:
        """Answers the changes that stored nothing with the log's head, read once they were
        all decided: it is at or after every event the accounts they answer with hold."""
        if not unchanged:
            return
        try:
            head = self._ledger.recorder.max_notification_id()
        except BaseException as error:
            for change, _ in unchanged:
                change.fail(error)
            return
        for change, account in unchanged:
            # As the store holds it (a change to nothing stores nothing): a re-import of the
            # same file then finds it here rather than reading it again.
            self._keep(account)
            change.answer(self._ledger.result(account, None, head))

    def _keep(self, account: Account) -> None:
        """Caches the account as stored, most recently used."""
        if self._cache_size > 0:
            self._cache[account.id] = account
            self._cache.move_to_end(account.id)
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)


def _copy(account: Account | None) -> Account | None:
    """A copy to decide on: the account's state is only ever rebound, never changed in place,
    so a shallow copy leaves the cached one as it was whatever the command does."""
    if account is None:
        return None
    work = copy.copy(account)
    work._pending_events = []
    return work
