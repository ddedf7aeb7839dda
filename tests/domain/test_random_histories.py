"""Any sequence of commands, refused or not, keeps every account consistent, and what is stored
replays to exactly the state the live aggregate reached."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from uuid import UUID

import pytest
from hypothesis import assume, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from domain.account import Account, BantRating
from domain.errors import (
    DomainAlreadyRegistered,
    IdempotencyKeyReused,
    LedgerError,
    VersionMismatch,
)
from domain.ledger import AccountLedger, CommandMeta, CommandResult
from domain.receipts import IdempotencyKey
from domain.vocabulary import (
    ACTIVE_STAGES,
    AbmStage,
    BuyingRole,
    DecisionPower,
    FunnelState,
    Reaction,
    ScreeningOutcome,
)
from services.api.views import account_view
from services.settings import Settings
from services.store import open_ledger
from tests.conftest import Clock
from tests.domain.scenario import ACME

Command = Callable[[CommandMeta], CommandResult]

# Three companies; the first also under spellings that must resolve to the same account.
SPELLINGS = {
    "acme.com": ["acme.com", "WWW.ACME.COM", "Acme.com."],
    "globex.de": ["globex.de"],
    "initech.co.uk": ["initech.co.uk"],
}
reasons = st.one_of(st.just("new information"), st.sampled_from([None, "", "  "]))
ratings = st.tuples(*(st.integers(0, 6) for _ in range(4)))  # 0 and 6 are refused on purpose
emails = st.sampled_from([None, "ceo@x.com", "CEO@X.COM", "cto@x.com"])


class RandomHistories(RuleBasedStateMachine):
    accounts = Bundle("accounts")

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="crm-histories-"))
        self.settings = Settings(data_dir=self.directory)
        self.ledger = open_ledger(self.settings, clock=Clock())
        # A second application on the same file: it shares nothing with the first but the file.
        self.replayer: AccountLedger = open_ledger(self.settings)
        self.live: dict[UUID, Account] = {}  # the aggregates the commands returned
        self.sent = 0
        self.last_applied: tuple[UUID, Command, CommandMeta, int] | None = None

    def teardown(self) -> None:
        self.ledger.close()
        self.replayer.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def attempt(self, account_id: UUID, command: Command, reason: str | None = "why") -> bool:
        """Sends a command with a fresh idempotency key; a refusal must store nothing."""
        before = self.ledger.account(account_id).version
        assert before == self.live[account_id].version
        self.sent += 1
        meta = CommandMeta(
            "hypothesis",
            reason=reason,
            request_id=f"req-{self.sent}",
            idempotency=IdempotencyKey(f"key-{self.sent}", f"fingerprint-{self.sent}"),
        )
        try:
            result = command(meta)
        except LedgerError as refusal:
            # Events show which rules the histories reached (--hypothesis-show-statistics).
            event(f"refused: {getattr(refusal, 'rule', type(refusal).__name__)}")
            assert self.ledger.account(account_id).version == before
            return False
        assert not result.replayed
        assert result.account.id == account_id
        assert result.account.version > before
        assert self.ledger.account(account_id).version == result.account.version
        event(f"reached: {result.account.stage}")
        event(f"reached: {result.account.funnel}")
        self.live[account_id] = result.account
        self.last_applied = (account_id, command, meta, result.account.version)
        return True

    # Registration ----------------------------------------------------------------------------

    def registered(self, written: str) -> UUID | None:
        details = replace(ACME, domain=written)
        try:
            result = self.ledger.register(details, CommandMeta("hypothesis"))
        except DomainAlreadyRegistered as refusal:
            assert refusal.account_id in self.live
            assert refusal.domain in SPELLINGS
            return None
        assert result.account.id not in self.live
        assert result.account.firmographics.domain in SPELLINGS
        self.live[result.account.id] = result.account
        return result.account.id

    @initialize(target=accounts, steps=st.integers(0, 6), then_lost=st.booleans())
    def register_the_first_company_and_take_it_some_way(self, steps: int, then_lost: bool):
        account_id = self.registered("acme.com")
        self.push_forward(account_id, steps)
        if then_lost:
            self.attempt(account_id, lambda m: self.ledger.lose_deal(account_id, m), "no budget")
        return account_id

    @rule(target=accounts, written=st.sampled_from([s for ss in SPELLINGS.values() for s in ss]))
    def register(self, written: str):
        account_id = self.registered(written)
        return multiple() if account_id is None else account_id

    # Commands --------------------------------------------------------------------------------

    @rule(account=accounts, outcome=st.sampled_from(ScreeningOutcome))
    def screen(self, account: UUID, outcome: ScreeningOutcome):
        self.attempt(account, lambda m: self.ledger.screen(account, outcome, ["industry"], None, m))

    @rule(account=accounts, values=ratings)
    def score_bant(self, account: UUID, values: tuple[int, int, int, int]):
        self.attempt(account, lambda m: self.ledger.score_bant(account, BantRating(*values), m))

    @rule(account=accounts, role=st.sampled_from(BuyingRole), email=emails)
    def add_contact(self, account: UUID, role: BuyingRole, email: str | None):
        power = DecisionPower.INFLUENCER
        self.attempt(
            account,
            lambda m: self.ledger.add_contact(account, "Ann", "CFO", role, power, email, m),
        )

    @rule(account=accounts)
    def send_material(self, account: UUID):
        self.attempt(
            account, lambda m: self.ledger.send_material(account, "cases", "post", None, m)
        )

    @rule(
        account=accounts, reaction=st.sampled_from([r for r in Reaction if r is not Reaction.NONE])
    )
    def receive_response(self, account: UUID, reaction: Reaction):
        self.attempt(account, lambda m: self.ledger.receive_response(account, reaction, None, m))

    @rule(account=accounts)
    def record_no_response(self, account: UUID):
        self.attempt(account, lambda m: self.ledger.record_no_response(account, None, m))

    @rule(account=accounts)
    def hold_meeting(self, account: UUID):
        self.attempt(account, lambda m: self.ledger.hold_meeting(account, None, m))

    @rule(
        account=accounts,
        amount=st.sampled_from([None, 10_000]),
        currency=st.sampled_from([None, "EUR"]),
    )
    def win_deal(self, account: UUID, amount: int | None, currency: str | None):
        self.attempt(account, lambda m: self.ledger.win_deal(account, amount, currency, m))

    @rule(account=accounts, reason=reasons)
    def lose_deal(self, account: UUID, reason: str | None):
        self.attempt(account, lambda m: self.ledger.lose_deal(account, m), reason)

    @rule(account=accounts, to=st.sampled_from(AbmStage), reason=reasons)
    def move_stage(self, account: UUID, to: AbmStage, reason: str | None):
        self.attempt(account, lambda m: self.ledger.move_stage(account, to, m), reason)

    @rule(account=accounts, to=st.sampled_from(FunnelState), reason=reasons)
    def move_funnel(self, account: UUID, to: FunnelState, reason: str | None):
        self.attempt(account, lambda m: self.ledger.move_funnel(account, to, m), reason)

    @rule(account=accounts, steps=st.integers(1, 6))
    def push_forward(self, account: UUID, steps: int):
        """Takes the account a few steps further on its way, so histories reach won and care."""
        for _ in range(steps):
            if not self.attempt(account, self.next_step(self.live[account])):
                return

    def next_step(self, state: Account) -> Command:
        ledger, account = self.ledger, state.id
        if not state.is_qualified:
            return lambda m: ledger.screen(account, ScreeningOutcome.QUALIFIED, [], None, m)
        if state.bant is None or state.stage is AbmStage.IDENTIFIED:
            return lambda m: ledger.score_bant(account, BantRating(4, 4, 4, 4), m)
        if state.stage is AbmStage.PRIORITIZED:
            return lambda m: ledger.send_material(account, "paper", "email", None, m)
        if state.stage is AbmStage.OUTREACH:
            return lambda m: ledger.receive_response(account, Reaction.POSITIVE, None, m)
        if state.stage is AbmStage.WARM_UP:
            return lambda m: ledger.win_deal(account, 5000, "EUR", m)
        return lambda m: ledger.move_funnel(account, FunnelState.CARE, m)

    # Retries and concurrency guards ----------------------------------------------------------

    @precondition(lambda self: self.last_applied is not None)
    @rule()
    def retry_the_last_applied_command_with_its_key(self):
        account_id, command, meta, version_then = self.last_applied
        stored = self.ledger.account(account_id).version

        result = command(meta)

        assert result.replayed
        assert result.account.version == version_then
        assert self.ledger.account(account_id).version == stored

    @precondition(lambda self: self.last_applied is not None)
    @rule()
    def reuse_the_last_key_for_another_request(self):
        account_id, command, meta, _ = self.last_applied
        stored = self.ledger.account(account_id).version
        other = replace(meta, idempotency=replace(meta.idempotency, fingerprint="other"))

        with pytest.raises(IdempotencyKeyReused):
            command(other)

        assert self.ledger.account(account_id).version == stored

    @rule(account=accounts, stale=st.integers(1, 3))
    def send_a_command_expecting_an_old_version(self, account: UUID, stale: int):
        current = self.live[account].version
        # A version the account had: below 0 is none (and -1 means any version at all)
        assume(current - stale >= 0)
        meta = CommandMeta("hypothesis", expected_version=current - stale)
        role, power = BuyingRole.TECHNICAL, DecisionPower.DECISION_MAKER

        with pytest.raises(VersionMismatch) as refusal:
            self.ledger.add_contact(account, "Bo", "CTO", role, power, None, meta)

        assert (refusal.value.expected, refusal.value.actual) == (current - stale, current)
        assert self.ledger.account(account).version == current

    # Invariants ------------------------------------------------------------------------------

    @invariant()
    def every_account_obeys_the_rules_of_its_state(self):
        for account in self.live.values():
            assert isinstance(account.stage, AbmStage)
            assert isinstance(account.funnel, FunnelState)
            if account.bant is not None:
                bant = account.bant
                assert bant.score == bant.budget * bant.authority * bant.need * bant.timing
            if account.funnel is FunnelState.CARE:
                assert account.stage is AbmStage.WON
            if account.stage in ACTIVE_STAGES:
                assert account.bant is not None
                assert account.is_qualified
            if account.stage in (AbmStage.OUTREACH, AbmStage.WARM_UP):
                assert account.materials_sent > 0
            if account.stage is AbmStage.WARM_UP:
                assert account.has_warm_signal
            if account.stage is AbmStage.EXCLUDED:
                assert not account.is_qualified
            if account.stage in (AbmStage.WON, AbmStage.LOST):
                assert account.deal is not None
                assert account.deal.outcome == account.stage.value
            else:
                assert account.deal is None
            emails = [c.email.lower() for c in account.contacts if c.email]
            assert len(set(emails)) == len(emails)

    @invariant()
    def the_stored_events_replay_to_the_live_state(self):
        for account_id, live in self.live.items():
            reloaded = self.replayer.repository.get(account_id)
            assert account_view(reloaded) == account_view(live)

            folded = None
            for stored in self.ledger.events.get(account_id):
                folded = stored.mutate(folded)
            assert account_view(folded) == account_view(live)

    @invariant()
    def each_stage_change_starts_where_the_previous_one_ended(self):
        for account_id, live in self.live.items():
            stage = AbmStage.IDENTIFIED
            for stored in self.ledger.events.get(account_id):
                if isinstance(stored, Account.StageChanged):
                    assert stored.from_stage == stage
                    assert stored.to_stage != stage
                    stage = AbmStage(stored.to_stage)
            assert stage is live.stage


def test_any_history_of_commands_keeps_every_account_consistent_and_replayable():
    run_state_machine_as_test(
        RandomHistories,
        settings=settings(max_examples=30, stateful_step_count=25, deadline=None),
    )
