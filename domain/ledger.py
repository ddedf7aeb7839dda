"""The account ledger: the use cases, each a load → call → save over the event store."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.utils import get_topic

from domain.account import (
    Account,
    Attribution,
    BantRating,
    Contact,
    Firmographics,
    account_id_for,
)
from domain.chain import ChainingMapper
from domain.errors import (
    AccountNotFound,
    Contention,
    DomainAlreadyRegistered,
    IdempotencyKeyReused,
    PolicyNotFound,
    VersionMismatch,
)
from domain.group_commit import GroupCommit
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

# Concurrent writers to one account collide on its next version; a retry reloads and
# re-checks the rules, and this many attempts make a persistent collision very unlikely.
MAX_ATTEMPTS = 8


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CommandMeta:
    """How a command was sent: by whom, why, and under which concurrency and retry guards."""

    actor: str
    reason: str | None = None
    request_id: str | None = None
    expected_version: int | None = None
    idempotency: IdempotencyKey | None = None


@dataclass(frozen=True)
class CommandResult:
    account: Account
    # Global position of the command's last event; None when a retry replayed a stored result.
    position: int | None
    replayed: bool = False


class AccountLedger(Application):
    name = "crm"
    mapper: ChainingMapper

    def __init__(self, env: dict[str, str] | None = None, clock: Callable[[], datetime] = utc_now):
        super().__init__(env)
        self.clock = clock
        self.mapper.read_stored = self.stored_event
        # Called with the global position of the last event of every save (read models wake).
        self.on_saved: list[Callable[[int], None]] = []
        # Commands' events are stored together with those of concurrent commands.
        self.group_commit = GroupCommit(self.save)
        self._turns = [threading.Lock() for _ in range(1024)]  # by account id

    def close(self) -> None:
        self.group_commit.close()
        super().close()

    def construct_mapper(self) -> ChainingMapper:
        return ChainingMapper(transcoder=self.construct_transcoder())

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        self.mapper.forget()  # heads of a save that failed, or mapped outside a save
        recordings = super().save(*objs, **kwargs)
        self.mapper.saved()
        if recordings:
            for callback in self.on_saved:
                try:
                    callback(recordings[-1].notification.id)
                except Exception:  # the events are committed: a listener must not fail the command
                    log.exception("a listener of saved events failed")
        return recordings

    # Commands ----------------------------------------------------------------------------

    def register(self, details: Firmographics, meta: CommandMeta) -> CommandResult:
        details = replace(details, domain=normalise_domain(details.domain))
        account_id = account_id_for(details.domain)
        for _ in range(MAX_ATTEMPTS):
            if (replayed := self._replay(meta)) is not None:
                return replayed
            if (existing := self._find(account_id)) is not None:
                raise DomainAlreadyRegistered(details.domain, existing.id)
            account = Account.register(details, self.attribution(meta))
            if (result := self._save(account, meta)) is not None:
                return result
        raise Contention(account_id)

    def import_account(self, details: Firmographics, meta: CommandMeta) -> tuple[str, UUID]:
        """Registers the company, or updates it when known: `registered`, `updated` or
        `unchanged` (which stores nothing, so importing the same list again adds nothing)."""
        details = replace(details, domain=normalise_domain(details.domain))
        account_id = account_id_for(details.domain)
        for _ in range(MAX_ATTEMPTS):
            by = self.attribution(meta)
            account = self._find(account_id)
            if account is None:
                account, outcome = Account.register(details, by), "registered"
            elif account.update_firmographics(details, by):
                outcome = "updated"
            else:
                return "unchanged", account_id
            try:
                self.save(account)
            except IntegrityError:
                continue  # registered or changed meanwhile: compare again
            return outcome, account_id
        raise Contention(account_id)

    def screen(
        self,
        account_id: UUID,
        outcome: ScreeningOutcome,
        criteria: list[str],
        note: str | None,
        meta: CommandMeta,
    ) -> CommandResult:
        return self._update(account_id, meta, lambda a, by: a.screen(outcome, criteria, note, by))

    def score_bant(self, account_id: UUID, rating: BantRating, meta: CommandMeta) -> CommandResult:
        return self._update(account_id, meta, lambda a, by: a.score_bant(rating, by))

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
        return self._update(account_id, meta, lambda a, by: a.add_contact(contact, by))

    def send_material(
        self, account_id: UUID, material: str, channel: str, note: str | None, meta: CommandMeta
    ) -> CommandResult:
        return self._update(
            account_id, meta, lambda a, by: a.send_material(material, channel, note, by)
        )

    def receive_response(
        self, account_id: UUID, reaction: Reaction, note: str | None, meta: CommandMeta
    ) -> CommandResult:
        return self._update(account_id, meta, lambda a, by: a.receive_response(reaction, note, by))

    def hold_meeting(self, account_id: UUID, note: str | None, meta: CommandMeta) -> CommandResult:
        return self._update(account_id, meta, lambda a, by: a.hold_meeting(note, by))

    def win_deal(
        self, account_id: UUID, amount: int | None, currency: str | None, meta: CommandMeta
    ) -> CommandResult:
        return self._update(account_id, meta, lambda a, by: a.win_deal(amount, currency, by))

    def lose_deal(self, account_id: UUID, meta: CommandMeta) -> CommandResult:
        return self._update(account_id, meta, lambda a, by: a.lose_deal(by))

    def move_stage(self, account_id: UUID, to: AbmStage, meta: CommandMeta) -> CommandResult:
        return self._update(account_id, meta, lambda a, by: a.move_stage(to, by))

    def move_funnel(self, account_id: UUID, to: FunnelState, meta: CommandMeta) -> CommandResult:
        return self._update(account_id, meta, lambda a, by: a.move_funnel(to, by))

    def set_objectives(self, period: str, targets: list[Target], meta: CommandMeta) -> Objectives:
        """Sets targets for a period; other metrics of the period keep theirs."""
        for _ in range(MAX_ATTEMPTS):
            by = self.attribution(meta)
            objectives = self._get(objectives_id(period))
            if not isinstance(objectives, Objectives):
                objectives = Objectives.open(period, by)
            for target in targets:
                objectives.set_target(target, by)
            try:
                self.save(objectives)
            except IntegrityError:
                continue
            return objectives
        raise Contention(objectives_id(period))

    def override_screening(
        self, account_id: UUID, outcome: ScreeningOutcome, meta: CommandMeta
    ) -> CommandResult:
        return self._update(account_id, meta, lambda a, by: a.override_screening(outcome, by))

    # Screening policies --------------------------------------------------------------------

    def create_policy(self, criteria: Criteria, meta: CommandMeta) -> int:
        """Adds a new version of the screening policy; returns its number."""
        for _ in range(MAX_ATTEMPTS):
            by = self.attribution(meta)
            policies = self.screening_policies() or ScreeningPolicies.start(by)
            version = policies.create_version(criteria, by)
            try:
                self.save(policies)
            except IntegrityError:
                continue  # another version was created meanwhile: number this one after it
            return version
        raise Contention(POLICIES_ID)

    def screening_policies(self) -> ScreeningPolicies | None:
        found = self._get(POLICIES_ID)
        return found if isinstance(found, ScreeningPolicies) else None

    def policy(self, version: int) -> Criteria:
        policies = self.screening_policies()
        if policies is None or version not in policies.versions:
            raise PolicyNotFound(version)
        return policies.versions[version]

    def screening_decisions(self, version: int, account_ids: list[UUID]) -> list[ScreeningDecision]:
        """What applying the policy would decide for each account; nothing is stored."""
        criteria = self.policy(version)
        decisions = []
        for account_id in account_ids:
            account = self._find(account_id)
            if account is None:
                raise AccountNotFound(account_id)
            decisions.append(ScreeningDecision.of(account, criteria))
        return decisions

    def apply_policy(
        self, version: int, account_ids: list[UUID], meta: CommandMeta
    ) -> list[ScreeningDecision]:
        """Screens each account whose outcome the policy changes; the others get no event.

        Overridden accounts and accounts past stage 1 are left alone and reported, so applying
        the same version twice adds nothing, and a run cut short can simply be run again.
        """
        self.policy(version)
        decisions = []
        for account_id in account_ids:
            decision = self._update_decision(account_id, version, meta)
            decisions.append(decision)
        return decisions

    def _update_decision(
        self, account_id: UUID, version: int, meta: CommandMeta
    ) -> ScreeningDecision:
        criteria = self.policy(version)
        for _ in range(MAX_ATTEMPTS):
            account = self._find(account_id)
            if account is None:
                raise AccountNotFound(account_id)
            decision = ScreeningDecision.of(account, criteria)
            if not decision.applies:
                return decision
            account.screen(
                decision.outcome,
                decision.failed,
                f"screening policy v{version}",
                self.attribution(meta),
                policy_version=version,
            )
            try:
                self.save(account)
            except IntegrityError:
                continue
            return decision
        raise Contention(account_id)

    # Jobs ----------------------------------------------------------------------------------

    def start_job(
        self, kind: str, params: dict[str, Any], meta: CommandMeta, job_id: UUID | None = None
    ) -> Job:
        job = Job.start(job_id or uuid4(), kind, params, self.attribution(meta))
        self.save(job)
        return job

    def job(self, job_id: UUID) -> Job | None:
        found = self._get(job_id)
        return found if isinstance(found, Job) else None

    def record_job(self, job_id: UUID, change: Callable[[Job, Attribution], None]) -> Job:
        """Records progress or the end of a job (its only writer is the process running it)."""
        job = self.job(job_id)
        assert job is not None
        change(job, self.attribution(CommandMeta(job.actor)))
        self.save(job)
        return job

    def unfinished_jobs(self) -> list[Job]:
        started = self.recorder.select_notifications(1, 1_000_000, topics=[JOB_STARTED_TOPIC])
        jobs = [self.job(n.originator_id) for n in started]
        return [j for j in jobs if j is not None and j.status == RUNNING]

    # Queries -----------------------------------------------------------------------------

    def objectives(self, period: str) -> Objectives | None:
        found = self._get(objectives_id(period))
        return found if isinstance(found, Objectives) else None

    def account(self, account_id: UUID, version: int | None = None) -> Account:
        account = self._find(account_id, version)
        if account is None or (version is not None and account.version != version):
            raise AccountNotFound(account_id)
        return account

    def account_as_of(self, account_id: UUID, at: datetime) -> Account:
        """The account as it stood at `at`, from the events recorded up to that instant."""
        account: Any = None
        for event in self.events.get(account_id):
            if event.timestamp > at:
                break
            account = event.mutate(account)
        if not isinstance(account, Account):
            raise AccountNotFound(account_id)
        return account

    def history(self, account_id: UUID, after: int = 0, limit: int = 100) -> list[Account.Event]:
        if self._find(account_id) is None:
            raise AccountNotFound(account_id)
        return list(self.events.get(account_id, gt=after or None, limit=limit))

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

    def _update(
        self,
        account_id: UUID,
        meta: CommandMeta,
        command: Callable[[Account, Attribution], None],
    ) -> CommandResult:
        # Commands on one account in this process take turns, so they do not collide in a
        # shared commit; other processes' writes are still caught by the version check.
        with self._turns[account_id.int % len(self._turns)]:
            for _ in range(MAX_ATTEMPTS):
                if (replayed := self._replay(meta)) is not None:
                    return replayed
                account = self._find(account_id)
                if account is None:
                    raise AccountNotFound(account_id)
                if meta.expected_version is not None and account.version != meta.expected_version:
                    raise VersionMismatch(meta.expected_version, account.version)
                command(account, self.attribution(meta))
                if (result := self._save(account, meta)) is not None:
                    return result
        raise Contention(account_id)

    def _save(self, account: Account, meta: CommandMeta) -> CommandResult | None:
        """Saves the account's new events with the command's receipt; None on a collision."""
        receipt = None
        if meta.idempotency is not None:
            receipt = CommandReceipt.issue(
                meta.idempotency.receipt_id(meta.actor),
                meta.idempotency.fingerprint,
                account.id,
                account.version,
                self.attribution(meta),
            )
        try:
            recordings = self.group_commit.save(account, receipt)
        except IntegrityError:
            return None
        return CommandResult(account, recordings[-1].notification.id if recordings else None)

    def _replay(self, meta: CommandMeta) -> CommandResult | None:
        """The stored result of an earlier command sent with the same idempotency key."""
        if meta.idempotency is None:
            return None
        receipt = self._find_receipt(meta.idempotency.receipt_id(meta.actor))
        if receipt is None:
            return None
        if receipt.fingerprint != meta.idempotency.fingerprint:
            raise IdempotencyKeyReused()
        account = self.repository.get(receipt.account_id, version=receipt.account_version)
        return CommandResult(account, position=None, replayed=True)

    def find_aggregate(self, aggregate_id: UUID) -> Any:
        """Any aggregate by id (a checkpoint, a job…), or None."""
        return self._get(aggregate_id)

    def attribution(self, meta: CommandMeta) -> Attribution:
        return Attribution(meta.actor, self.clock(), meta.reason, meta.request_id)

    def _find(self, account_id: UUID, version: int | None = None) -> Account | None:
        found = self._get(account_id, version)
        return found if isinstance(found, Account) else None

    def _find_receipt(self, receipt_id: UUID) -> CommandReceipt | None:
        found = self._get(receipt_id)
        return found if isinstance(found, CommandReceipt) else None

    def _get(self, aggregate_id: UUID, version: int | None = None) -> Any:
        try:
            return self.repository.get(aggregate_id, version=version)
        except AggregateNotFoundError:
            return None
