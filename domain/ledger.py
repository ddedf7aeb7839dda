"""The account ledger: the use cases, each a load → call → save over the event store."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application, project_aggregate
from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.utils import get_topic

from domain.account import (
    EVENT_TOPIC_PREFIX,
    Account,
    Attribution,
    BantRating,
    Contact,
    Firmographics,
    account_id_for,
)
from domain.account_writer import MAX_ATTEMPTS, AccountWriter, Change, Reply
from domain.chain import ChainingMapper, GaplessEventStore
from domain.errors import (
    AccountNotFound,
    Contention,
    DomainAlreadyRegistered,
    IdempotencyKeyReused,
    JobNotFound,
    LedgerError,
    ObjectivesNotFound,
    PolicyNotFound,
    VersionMismatch,
)
from domain.jobs import RUNNING, Job
from domain.objectives import Objectives, Target, objectives_id
from domain.receipts import CommandReceipt, IdempotencyKey
from domain.screening_policy import POLICIES_ID, Criteria, ScreeningDecision, ScreeningPolicies
from domain.vocabulary import (
    AbmStage,
    BuyingRole,
    DecisionPower,
    FunnelState,
    Reaction,
    ScreeningOutcome,
)
from domain.web_domain import normalise_domain

log = logging.getLogger("crm.ledger")
JOB_STARTED_TOPIC = get_topic(Job.Started)
T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(UTC)


def _wait(reply: Reply) -> CommandResult:
    """The result of a command submitted without a reply of the caller's own."""
    assert isinstance(reply, Future)
    return reply.result()


# Commands of a bulk use case (an import, a policy applied) handed to the writer at once.
BULK_WINDOW = 100

ANY_VERSION = -1  # the version a command expects when any will do, so long as there is one


@dataclass(frozen=True)
class CommandMeta:
    """How a command was sent: by whom, why, and under which concurrency and retry guards."""

    actor: str
    reason: str | None = None
    request_id: str | None = None
    expected_version: int | None = None  # a version, ANY_VERSION, or None: not checked
    idempotency: IdempotencyKey | None = None

    def refuse_unless_expected(self, version: int, subject: str = "The account is") -> None:
        """VersionMismatch unless `version` (0: nothing written yet) is the one expected."""
        expected = self.expected_version
        if expected == ANY_VERSION:
            if version == 0:
                raise VersionMismatch(None, version, subject)
        elif expected is not None and version != expected:
            raise VersionMismatch(expected, version, subject)


@dataclass(frozen=True)
class CommandResult:
    account: Account
    # Global position of the command's last event; None when it stored no account event (a retry
    # that replayed a stored result, or a command that changed nothing: with a key, it stored
    # its receipt alone).
    position: int | None
    replayed: bool = False
    # When it stored no account event: a position at or after every event the answer reflects
    # (the log's head when it was decided, or its receipt's), so a read that reaches it does.
    head: int | None = None

    @property
    def visible_at(self) -> int | None:
        """The log position a read model must reach to reflect this result."""
        return self.position if self.position is not None else self.head


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What a command on policies, objectives or jobs answers; `replayed` when it is the first
    answer to a command sent with the same idempotency key (then nothing was stored now)."""

    value: T
    replayed: bool = False
    # The log position a read with min_position waits for to reflect the command (the log's
    # head when it was replayed).
    position: int | None = None


class AccountLedger(Application):
    name = "crm"
    mapper: ChainingMapper

    def __init__(
        self,
        env: dict[str, str] | None = None,
        clock: Callable[[], datetime] = utc_now,
        cache_size: int = 10_000,
    ):
        super().__init__(env)
        self.clock = clock
        self.mapper.read_stored = self.stored_event
        # Called with the global position of the last event of every save (read models wake).
        self.on_saved: list[Callable[[int], None]] = []
        # Every account command of this process is decided and stored there, many together.
        self.writer = AccountWriter(self, cache_size)
        # The objectives and the screening policy are decided in request threads, each reading
        # then saving: one at a time in this process, so that a burst of them does not make
        # them retry each other into Contention (another process's still may; a retry reads
        # again).
        self._records = threading.Lock()

    def close(self) -> None:
        self.writer.close()
        super().close()

    def construct_mapper(self) -> ChainingMapper:
        return ChainingMapper(transcoder=self.construct_transcoder())

    def construct_event_store(self) -> GaplessEventStore:
        return GaplessEventStore(mapper=self.mapper, recorder=self.recorder)

    def save(self, *aggregates: Any) -> Any:
        """Stores the aggregates' new events in one transaction.

        The library's own `save` checks every object against runtime-checkable Protocols
        first, which costs more than mapping the events; the ledger saves aggregates only,
        and keeps no snapshots, so it puts their events in the store itself.
        """
        events = [e for a in aggregates if a is not None for e in a.collect_events()]
        if not events:
            return []
        self.mapper.forget()  # heads of a save that failed, or mapped outside a save
        recordings = self.events.put(events)
        self.mapper.saved()
        if recordings:
            for callback in self.on_saved:
                try:
                    callback(recordings[-1].notification.id)
                except Exception:  # the events are committed: a listener must not fail the command
                    log.exception("a listener of saved events failed")
        return recordings

    # Commands ----------------------------------------------------------------------------
    # Each returns when its events are stored. `submit` and `submit_registration` return at
    # once, for callers that must not block (the HTTP API): the result goes to `reply`, a new
    # Future unless the caller brings its own, which they return.

    def submit(
        self,
        account_id: UUID,
        meta: CommandMeta,
        command: Callable[..., None],
        *args: Any,
        reply: Reply | None = None,
    ) -> Reply:
        """Queues `command(account, *args, by)`, an Account command method, for the writer."""

        def decide(account: Account | None, by: Attribution) -> Account:
            if account is None:
                raise AccountNotFound(account_id)
            meta.refuse_unless_expected(account.version)
            command(account, *args, by)
            return account

        return self.writer.submit(Change(account_id, meta, decide, reply or Future()))

    def submit_registration(
        self, details: Firmographics, meta: CommandMeta, reply: Reply | None = None
    ) -> Reply:
        details = replace(details, domain=normalise_domain(details.domain))

        def decide(account: Account | None, by: Attribution) -> Account:
            if account is not None:
                raise DomainAlreadyRegistered(details.domain, account.id)
            return Account.register(details, by)

        return self.writer.submit(
            Change(account_id_for(details.domain), meta, decide, reply or Future())
        )

    def register(self, details: Firmographics, meta: CommandMeta) -> CommandResult:
        return _wait(self.submit_registration(details, meta))

    def import_accounts(
        self, rows: Sequence[tuple[Firmographics, Collection[str] | None]], meta: CommandMeta
    ) -> list[tuple[str, UUID] | LedgerError]:
        """Registers each company, or updates it when known: `registered`, `updated` or
        `unchanged` (which stores nothing, so importing the same list again adds nothing), with
        its account; or the rule that refused the row, in the rows' order.

        A known company changes only in the fields stated for its row (all of them for None);
        the others keep their values as the writer finds them when it decides, so a value
        another command set after the file was read is not undone either."""
        prepared = [self._import_change(details, stated, meta) for details, stated in rows]
        results = self._run_all([change for change, _ in prepared])
        outcomes: list[tuple[str, UUID] | LedgerError] = []
        for (change, was_known), result in zip(prepared, results, strict=True):
            if isinstance(result, LedgerError):
                outcomes.append(result)
            elif result.position is None:
                outcomes.append(("unchanged", change.account_id))
            else:
                outcomes.append(("updated" if was_known[0] else "registered", change.account_id))
        return outcomes

    def _import_change(
        self, details: Firmographics, stated: Collection[str] | None, meta: CommandMeta
    ) -> tuple[Change, list[bool]]:
        """The change importing a row makes, and whether the account existed when the writer
        last decided it (filled in then)."""
        details = replace(details, domain=normalise_domain(details.domain))
        known: list[bool] = []

        def decide(account: Account | None, by: Attribution) -> Account:
            known[:] = [account is not None]
            if account is None:
                return Account.register(details, by)
            account.update_firmographics(account.firmographics.merged(details, stated), by)
            return account

        return Change(account_id_for(details.domain), meta, decide), known

    def _run_all(self, changes: Sequence[Change]) -> list[CommandResult | LedgerError]:
        """Each change's result, or the rule that refused it, in order. The writer is handed
        BULK_WINDOW changes at a time and stores them in shared transactions (one each would
        cost a commit per change); a user's command queued behind them waits for a window,
        not for the whole list. An error of the store itself is raised once every change
        handed over has its answer."""
        results: list[CommandResult | LedgerError] = []
        for start in range(0, len(changes), BULK_WINDOW):
            window = changes[start : start + BULK_WINDOW]
            for change in window:
                self.writer.submit(change)
            failure: Exception | None = None
            for change in window:
                try:
                    results.append(_wait(change.reply))
                except LedgerError as error:
                    results.append(error)
                except Exception as error:
                    failure = failure or error
            if failure is not None:
                raise failure
        return results

    def import_preview(
        self, details: Firmographics, stated: Collection[str] | None = None
    ) -> tuple[str, UUID, dict[str, tuple[Any, Any]]]:
        """What `import_account` would do now, storing nothing: its outcome, the account, and
        each field it would change, with its value before and after."""
        details = replace(details, domain=normalise_domain(details.domain))
        account_id = account_id_for(details.domain)
        account = self._find(account_id)
        if account is None:
            return "registered", account_id, {}
        stored = account.firmographics
        changes = stored.changes_to(stored.merged(details, stated))
        changed = {name: (getattr(stored, name), value) for name, value in changes.items()}
        return ("updated" if changed else "unchanged"), account_id, changed

    def screen(
        self,
        account_id: UUID,
        outcome: ScreeningOutcome,
        criteria: list[str],
        note: str | None,
        meta: CommandMeta,
    ) -> CommandResult:
        return _wait(self.submit(account_id, meta, Account.screen, outcome, criteria, note))

    def score_bant(self, account_id: UUID, rating: BantRating, meta: CommandMeta) -> CommandResult:
        return _wait(self.submit(account_id, meta, Account.score_bant, rating))

    def add_contact(
        self,
        account_id: UUID,
        name: str,
        title: str,
        buying_role: BuyingRole,
        decision_power: DecisionPower,
        email: str | None,
        meta: CommandMeta,
    ) -> CommandResult:
        contact = Contact(uuid4(), name, title, buying_role, decision_power, email)
        return _wait(self.submit(account_id, meta, Account.add_contact, contact))

    def send_material(
        self, account_id: UUID, material: str, channel: str, note: str | None, meta: CommandMeta
    ) -> CommandResult:
        return _wait(self.submit(account_id, meta, Account.send_material, material, channel, note))

    def receive_response(
        self, account_id: UUID, reaction: Reaction, note: str | None, meta: CommandMeta
    ) -> CommandResult:
        return _wait(self.submit(account_id, meta, Account.receive_response, reaction, note))

    def record_no_response(
        self, account_id: UUID, note: str | None, meta: CommandMeta
    ) -> CommandResult:
        return _wait(self.submit(account_id, meta, Account.record_no_response, note))

    def hold_meeting(self, account_id: UUID, note: str | None, meta: CommandMeta) -> CommandResult:
        return _wait(self.submit(account_id, meta, Account.hold_meeting, note))

    def win_deal(
        self, account_id: UUID, amount: int | None, currency: str | None, meta: CommandMeta
    ) -> CommandResult:
        return _wait(self.submit(account_id, meta, Account.win_deal, amount, currency))

    def lose_deal(self, account_id: UUID, meta: CommandMeta) -> CommandResult:
        return _wait(self.submit(account_id, meta, Account.lose_deal))

    def move_stage(self, account_id: UUID, to: AbmStage, meta: CommandMeta) -> CommandResult:
        return _wait(self.submit(account_id, meta, Account.move_stage, to))

    def move_funnel(self, account_id: UUID, to: FunnelState, meta: CommandMeta) -> CommandResult:
        return _wait(self.submit(account_id, meta, Account.move_funnel, to))

    def override_screening(
        self, account_id: UUID, outcome: ScreeningOutcome, meta: CommandMeta
    ) -> CommandResult:
        return _wait(self.submit(account_id, meta, Account.override_screening, outcome))

    def set_objectives(
        self,
        period: str,
        targets: list[Target],
        meta: CommandMeta,
        remove: Sequence[str] = (),
    ) -> Outcome[Objectives]:
        """Sets targets for a period and removes those of the metrics in `remove`; the period's
        other metrics keep theirs."""
        with self._records:
            return self._set_objectives(period, targets, meta, remove)

    def _set_objectives(
        self, period: str, targets: list[Target], meta: CommandMeta, remove: Sequence[str]
    ) -> Outcome[Objectives]:
        for _ in range(MAX_ATTEMPTS):
            if (answered := self.answered(meta)) is not None:
                return Outcome(
                    answered, replayed=True, position=self.recorder.max_notification_id()
                )
            objectives = self.objectives(period)
            version = objectives.version if objectives else 0  # none set: none to expect
            meta.refuse_unless_expected(version, f"The objectives of {period} are")
            by = self.attribution(meta).after(objectives)  # reads as of an instant need it
            if objectives is None and not targets:
                raise ObjectivesNotFound(period)  # only removals: a period is not opened for them
            objectives = objectives or Objectives.open(period, by)
            for target in targets:
                objectives.set_target(target, by)
            for metric in remove:
                objectives.remove_target(metric, by)
            try:
                # A key is kept even when no target changed, so that it still refuses
                # another request.
                saved = self.save(objectives, self._receipt_for(meta, objectives, by))
            except IntegrityError:
                continue  # written meanwhile (the objectives, or the receipt by a retry)
            position = saved[-1].notification.id if saved else self.recorder.max_notification_id()
            return Outcome(objectives, position=position)
        raise Contention(f"the objectives of {period}")

    # Screening policies --------------------------------------------------------------------

    def create_policy(self, criteria: Criteria, meta: CommandMeta) -> Outcome[int]:
        """Adds a new version of the screening policy, or answers with the version that the
        command first sent with the same idempotency key created."""
        with self._records:
            return self._create_policy(criteria, meta)

    def _create_policy(self, criteria: Criteria, meta: CommandMeta) -> Outcome[int]:
        for _ in range(MAX_ATTEMPTS):
            if (answered := self.answered(meta)) is not None:
                return Outcome(
                    max(answered.versions),
                    replayed=True,
                    position=self.recorder.max_notification_id(),
                )
            policies = self.screening_policies()
            by = self.attribution(meta).after(policies)  # versions are created in order
            policies = policies or ScreeningPolicies.start(by)
            version = policies.create_version(criteria, by)
            try:
                saved = self.save(policies, self._receipt_for(meta, policies, by))
            except IntegrityError:
                continue  # another version was created meanwhile: number this one after it
            return Outcome(version, position=saved[-1].notification.id)
        raise Contention("the screening policy")

    def screening_policies(self) -> ScreeningPolicies | None:
        found = self._get(POLICIES_ID)
        return found if isinstance(found, ScreeningPolicies) else None

    def policy(self, version: int) -> Criteria:
        policies = self.screening_policies()
        if policies is None or version not in policies.versions:
            raise PolicyNotFound(version)
        return policies.versions[version]

    def screening_decisions(
        self, version: int, account_ids: list[UUID]
    ) -> Iterator[ScreeningDecision]:
        """What applying the policy would decide for each account, one account loaded at a
        time (a million would not fit); nothing is stored. An unknown policy version raises at
        once, an unknown account when it comes."""
        criteria = self.policy(version)
        return (ScreeningDecision.of(a, criteria) for a in self.accounts(account_ids))

    def accounts(self, account_ids: list[UUID]) -> Iterator[Account]:
        """The accounts as they stand now; raises AccountNotFound for the first unknown one."""
        for account_id in account_ids:
            account = self._find(account_id)
            if account is None:
                raise AccountNotFound(account_id)
            yield account

    def require_accounts(self, account_ids: list[UUID]) -> None:
        """Raises AccountNotFound for the first id no account has; reads only each first
        event, not the accounts (a check before a run that loads them anyway)."""
        for account_id in account_ids:
            first = self.stored_event(account_id, 1)
            if first is None or not first.topic.startswith(EVENT_TOPIC_PREFIX):
                raise AccountNotFound(account_id)

    def apply_policy(
        self, version: int, account_ids: list[UUID], meta: CommandMeta
    ) -> list[ScreeningDecision]:
        """Screens each account whose outcome the policy changes; the others get no event.

        Overridden accounts and accounts past stage 1 are left alone and reported, so applying
        the same version twice adds nothing, and a run cut short can simply be run again. An
        unknown account is refused (AccountNotFound) once the others are screened.
        """
        criteria = self.policy(version)
        prepared = [self._screening_change(a, version, criteria, meta) for a in account_ids]
        for result in self._run_all([change for change, _ in prepared]):
            if isinstance(result, LedgerError):
                raise result
        return [decided[0] for _, decided in prepared]

    def _screening_change(
        self, account_id: UUID, version: int, criteria: Criteria, meta: CommandMeta
    ) -> tuple[Change, list[ScreeningDecision]]:
        """The change screening an account by the policy makes, and its decision by the
        writer's last attempt (filled in then)."""
        decided: list[ScreeningDecision] = []

        def decide(account: Account | None, by: Attribution) -> Account:
            if account is None:
                raise AccountNotFound(account_id)
            decision = ScreeningDecision.of(account, criteria)
            decided[:] = [decision]
            if decision.applies:
                account.screen(
                    decision.outcome,
                    decision.failed,
                    f"screening policy v{version}",
                    by,
                    policy_version=version,
                )
            return account

        return Change(account_id, meta, decide), decided

    # Jobs ----------------------------------------------------------------------------------

    def start_job(
        self, kind: str, params: dict[str, Any], meta: CommandMeta, job_id: UUID | None = None
    ) -> Outcome[Job]:
        """Starts a job, or answers with the job (as it started) that the command first sent
        with the same idempotency key started."""
        job_id = job_id or uuid4()
        for _ in range(MAX_ATTEMPTS):
            if (answered := self.answered(meta)) is not None:
                return Outcome(answered, replayed=True)
            by = self.attribution(meta)
            job = Job.start(job_id, kind, params, by)
            try:
                self.save(job, self._receipt_for(meta, job, by))
            except IntegrityError:
                continue  # a retry with the same key stored its receipt first
            return Outcome(job)
        raise Contention(f"job {job_id}")

    def job(self, job_id: UUID) -> Job | None:
        found = self._get(job_id)
        return found if isinstance(found, Job) else None

    def record_job(
        self,
        job_id: UUID,
        change: Callable[[Job, Attribution], None],
        meta: CommandMeta | None = None,
    ) -> Job:
        """Records progress or the end of a job, or its cancellation, attributed as `meta` says
        (by default, to the job's actor). Its writers are the process running it and whoever
        cancels it: one that finds the other wrote first reads the job again and makes its
        change on it (JobEnded when the job has ended meanwhile)."""
        for _ in range(MAX_ATTEMPTS):
            job = self.job(job_id)
            if job is None:
                raise JobNotFound(job_id)
            change(job, self.attribution(meta or CommandMeta(job.actor)))
            try:
                self.save(job)
            except IntegrityError:
                continue
            return job
        raise Contention(f"job {job_id}")

    def unfinished_jobs(self) -> list[Job]:
        started = self.recorder.select_notifications(1, 1_000_000, topics=[JOB_STARTED_TOPIC])
        jobs = [self.job(n.originator_id) for n in started]
        return [j for j in jobs if j is not None and j.status == RUNNING]

    # Queries -----------------------------------------------------------------------------

    def objectives(self, period: str, version: int | None = None) -> Objectives | None:
        """A period's objectives now, or at `version` (None when it has no such version)."""
        found = self._get(objectives_id(period), version)
        if not isinstance(found, Objectives) or version not in (None, found.version):
            return None
        return found

    def objectives_as_of(self, period: str, at: datetime) -> Objectives | None:
        """A period's objectives as they were set at `at` (None before the first)."""
        found = self._as_of(objectives_id(period), at)
        return found if isinstance(found, Objectives) else None

    def account(self, account_id: UUID, version: int | None = None) -> Account:
        account = self._find(account_id, version)
        if account is None or (version is not None and account.version != version):
            raise AccountNotFound(account_id)
        return account

    def account_as_of(self, account_id: UUID, at: datetime) -> Account:
        """The account as it stood at `at`, from the events recorded up to that instant."""
        account = self._as_of(account_id, at)
        if not isinstance(account, Account):
            raise AccountNotFound(account_id)
        return account

    def _as_of(self, originator_id: UUID, at: datetime) -> Any:
        """An aggregate from its events recorded up to `at` (None before the first)."""
        aggregate: Any = None
        for event in self.events.get(originator_id):
            if event.timestamp > at:
                break
            aggregate = event.mutate(aggregate)
        return aggregate

    def caused_since(
        self, account_id: UUID, meta: CommandMeta, since: datetime
    ) -> list[Account.Event]:
        """The account's events from `since` on that name `meta`'s actor and request: what a
        job started then stored of it, as its events carry no job of their own."""
        caused = []
        for event in self.events.get(account_id, desc=True):
            if event.timestamp < since:
                break
            if (event.actor, event.request_id) == (meta.actor, meta.request_id):
                caused.append(event)
        return caused

    def history(self, account_id: UUID, after: int = 0, limit: int = 100) -> list[Account.Event]:
        if self._find(account_id) is None:
            raise AccountNotFound(account_id)
        return list(self.events.get(account_id, gt=after or None, limit=limit))

    def read_accounts(self, account_ids: Collection[UUID]) -> dict[UUID, Account]:
        """The accounts among these that the store holds, read together in one statement. One
        that does not read (an event changed or removed behind the ledger's back) is left
        out, for a read of it alone to say why."""
        accounts: dict[UUID, Account] = {}
        for account_id, events in self.events.get_each(account_ids).items():
            try:
                account = project_aggregate(None, events)
            except Exception:  # an event that does not apply: read alone, it fails one command
                continue
            if isinstance(account, Account):
                accounts[account_id] = account
        return accounts

    def stored_event(self, originator_id: UUID, version: int) -> StoredEvent | None:
        """One event as it is stored, before any upcasting."""
        found = self.recorder.select_events(originator_id, gt=version - 1, lte=version)
        return found[0] if found else None

    def stored_events(self, originator_id: UUID) -> list[StoredEvent]:
        return list(self.recorder.select_events(originator_id))

    def ping(self) -> None:
        """Touches the store; raises when it does not answer."""
        self.recorder.max_notification_id()

    # Internals ---------------------------------------------------------------------------

    def result(
        self, account: Account, position: int | None, head: int | None = None
    ) -> CommandResult:
        return CommandResult(account, position, head=head)

    def replay(self, meta: CommandMeta) -> CommandResult | None:
        """The stored result of an earlier account command sent with the same idempotency key."""
        account = self.answered(meta)
        if account is None:
            return None
        # The exact position of the first command's events is not kept anywhere a query can
        # reach without SQL; the log's head is at or after it, and that is what reads need.
        head = self.recorder.max_notification_id()
        return CommandResult(account, position=None, replayed=True, head=head)

    def answered(self, meta: CommandMeta) -> Any:
        """What an earlier command sent with the same idempotency key wrote, as it left it;
        None when there was none. Raises IdempotencyKeyReused when that was another request."""
        if meta.idempotency is None:
            return None
        receipt = self._find_receipt(meta.idempotency.receipt_id(meta.actor))
        if receipt is None:
            return None
        if receipt.fingerprint != meta.idempotency.fingerprint:
            raise IdempotencyKeyReused()
        return self.repository.get(receipt.subject_id, version=receipt.subject_version)

    def find_aggregate(self, aggregate_id: UUID) -> Any:
        """Any aggregate by id (a checkpoint, a job…), or None."""
        return self._get(aggregate_id)

    def attribution(self, meta: CommandMeta) -> Attribution:
        return Attribution(meta.actor, self.clock(), meta.reason, meta.request_id)

    def _find(self, account_id: UUID, version: int | None = None) -> Account | None:
        found = self._get(account_id, version)
        return found if isinstance(found, Account) else None

    def _receipt_for(self, meta: CommandMeta, subject: Any, by: Attribution) -> Any:
        """The receipt to save with a command's events when it came with an idempotency key."""
        if meta.idempotency is None:
            return None
        return CommandReceipt.record(
            meta.idempotency.receipt_id(meta.actor),
            meta.idempotency.fingerprint,
            subject.id,
            subject.version,
            by,
        )

    def _find_receipt(self, receipt_id: UUID) -> CommandReceipt | None:
        found = self._get(receipt_id)
        return found if isinstance(found, CommandReceipt) else None

    def _get(self, aggregate_id: UUID, version: int | None = None) -> Any:
        try:
            return self.repository.get(aggregate_id, version=version)
        except AggregateNotFoundError:
            return None
