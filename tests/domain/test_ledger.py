"""The ledger over a real store (SQLite and PostgreSQL): natural keys, optimistic concurrency,
idempotent retries, and reading an account as it was."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import IntegrityError

from domain.account import BantRating, Firmographics, account_id_for
from domain.errors import (
    AccountNotFound,
    DomainAlreadyRegistered,
    IdempotencyKeyReused,
    InvalidValue,
    JobEnded,
    JobNotFound,
    RuleViolation,
    VersionMismatch,
)
from domain.ledger import AccountLedger, CommandMeta
from domain.objectives import Target
from domain.receipts import CommandReceipt, IdempotencyKey
from domain.screening_policy import Criteria
from domain.vocabulary import AbmStage, BuyingRole, DecisionPower, ScreeningOutcome
from services.store import open_ledger
from tests.domain.scenario import ACME

META = CommandMeta("marta@sales", reason="planning", request_id="req-1")


def company(domain: str) -> Firmographics:
    return Firmographics(**{**vars(ACME), "domain": domain})


def registered(ledger: AccountLedger, domain: str = "acme.com") -> UUID:
    return ledger.register(company(domain), META).account.id


def qualified(ledger: AccountLedger, domain: str = "acme.com") -> UUID:
    account_id = registered(ledger, domain)
    ledger.screen(account_id, ScreeningOutcome.QUALIFIED, ["industry"], None, META)
    return account_id


def stored_position(ledger: AccountLedger) -> int:
    return ledger.recorder.max_notification_id() or 0


def versions(events) -> list[int]:
    return [e.originator_version for e in events]


def keyed(key: str, fingerprint: str = "sha256:aa", actor: str = "marta@sales") -> CommandMeta:
    return CommandMeta(actor, reason="planning", idempotency=IdempotencyKey(key, fingerprint))


# The web domain is the natural key ---------------------------------------------------------


def test_a_registered_account_is_stored_under_its_normalised_domain(ledger):
    result = ledger.register(company("WWW.Acme.COM."), META)

    account = ledger.account(result.account.id)
    assert account.firmographics.domain == "acme.com"
    assert account.id == account_id_for("acme.com")
    assert account.stage is AbmStage.IDENTIFIED
    assert result.position == stored_position(ledger)
    assert not result.replayed


@pytest.mark.parametrize("written", ["acme.com", "WWW.ACME.COM", "www.acme.com.", "Acme.Com"])
def test_a_second_registration_of_a_domain_is_refused_naming_the_existing_account(ledger, written):
    first = registered(ledger, "acme.com")
    position = stored_position(ledger)

    with pytest.raises(DomainAlreadyRegistered) as refusal:
        ledger.register(company(written), META)

    assert refusal.value.account_id == first
    assert refusal.value.domain == "acme.com"
    assert str(first) in refusal.value.detail
    assert stored_position(ledger) == position


def test_another_domain_is_another_account(ledger):
    assert registered(ledger, "acme.com") != registered(ledger, "acme.de")


def test_a_registration_with_something_that_is_not_a_domain_is_refused_and_stores_nothing(ledger):
    with pytest.raises(InvalidValue):
        ledger.register(company("https://acme.com/"), META)

    assert stored_position(ledger) == 0


def test_a_command_for_an_unknown_account_is_refused(ledger):
    unknown = uuid4()

    with pytest.raises(AccountNotFound) as refusal:
        ledger.screen(unknown, ScreeningOutcome.QUALIFIED, [], None, META)

    assert refusal.value.account_id == unknown


def test_a_command_refused_by_a_rule_stores_nothing(ledger):
    account_id = registered(ledger)
    position = stored_position(ledger)

    with pytest.raises(RuleViolation) as refusal:
        ledger.score_bant(account_id, BantRating(4, 4, 4, 4), META)

    assert refusal.value.rule == "bant_requires_qualified"
    assert stored_position(ledger) == position
    assert ledger.account(account_id).version == 1


# Optimistic concurrency ------------------------------------------------------------------


def test_a_command_with_the_current_version_expected_is_applied(ledger):
    account_id = registered(ledger)

    result = ledger.screen(
        account_id,
        ScreeningOutcome.EXCLUDED,
        ["country"],
        None,
        CommandMeta("marta@sales", expected_version=1),
    )

    assert result.account.version == 3
    assert ledger.account(account_id).stage is AbmStage.EXCLUDED


def test_a_command_expecting_an_old_version_is_refused_and_stores_nothing(ledger):
    account_id = qualified(ledger)  # version 2
    position = stored_position(ledger)

    with pytest.raises(VersionMismatch) as refusal:
        ledger.score_bant(
            account_id, BantRating(4, 4, 4, 4), CommandMeta("marta@sales", expected_version=1)
        )

    assert (refusal.value.expected, refusal.value.actual) == (1, 2)
    assert stored_position(ledger) == position
    account = ledger.account(account_id)
    assert account.version == 2
    assert account.bant is None


@pytest.mark.parametrize("ratings", [1, 600])  # one INSERT on SQLite, and more than one
def test_a_save_with_one_version_taken_meanwhile_stores_none_of_its_events(
    ledger, settings, clock, ratings
):
    rated, contended = qualified(ledger, "acme.com"), qualified(ledger, "globex.com")
    by = ledger.attribution(META)
    first = ledger.repository.get(rated)
    for i in range(ratings):
        first.score_bant(BantRating(1 + i % 5, 2, 3, 4), by)
    second = ledger.repository.get(contended)
    second.score_bant(BantRating(5, 5, 5, 5), by)
    other_process = open_ledger(settings, clock=clock)
    try:
        other_process.score_bant(contended, BantRating(1, 1, 1, 1), META)  # the same version
    finally:
        other_process.close()
    position = stored_position(ledger)

    with pytest.raises(IntegrityError):
        ledger.save(first, second)

    assert stored_position(ledger) == position
    assert versions(ledger.recorder.select_events(rated)) == [1, 2]


# Idempotent retries ----------------------------------------------------------------------


def test_a_registration_retried_with_the_same_key_is_replayed_and_stored_once(ledger):
    first = ledger.register(company("acme.com"), keyed("k-1"))
    position = stored_position(ledger)

    retry = ledger.register(company("acme.com"), keyed("k-1"))

    assert retry.replayed and retry.position is None
    assert not first.replayed and first.position is not None
    assert retry.account.id == first.account.id
    assert retry.account.version == 1
    assert stored_position(ledger) == position


def test_a_command_retried_with_the_same_key_is_applied_once(ledger):
    account_id = qualified(ledger)
    first = ledger.add_contact(
        account_id,
        "Ann",
        "CFO",
        BuyingRole.ECONOMIC,
        DecisionPower.DECISION_MAKER,
        None,
        keyed("k"),
    )
    position = stored_position(ledger)

    retry = ledger.add_contact(
        account_id,
        "Ann",
        "CFO",
        BuyingRole.ECONOMIC,
        DecisionPower.DECISION_MAKER,
        None,
        keyed("k"),
    )

    assert retry.replayed
    assert retry.account.version == first.account.version
    assert stored_position(ledger) == position
    assert len(ledger.account(account_id).contacts) == 1
    assert versions(ledger.history(account_id)) == [1, 2, 3]


def test_a_retry_after_later_commands_replays_the_account_as_the_first_attempt_left_it(ledger):
    account_id = qualified(ledger)
    first = ledger.score_bant(account_id, BantRating(2, 2, 2, 2), keyed("k-rate"))
    ledger.score_bant(account_id, BantRating(5, 5, 5, 5), META)

    retry = ledger.score_bant(account_id, BantRating(2, 2, 2, 2), keyed("k-rate"))

    assert retry.replayed
    assert retry.account.version == first.account.version == 4
    assert retry.account.bant.score == 16
    assert ledger.account(account_id).bant.score == 625
    assert ledger.account(account_id).version == 5


def test_a_receipt_stored_in_its_first_form_still_replays_its_command(ledger):
    account_id = qualified(ledger)
    rated = ledger.score_bant(account_id, BantRating(2, 2, 2, 2), META).account
    key = IdempotencyKey("k-old", "sha256:aa")
    old = CommandReceipt._create(  # as account commands stored their receipts at first
        CommandReceipt.Issued,
        id=key.receipt_id("marta@sales"),
        fingerprint=key.fingerprint,
        account_id=account_id,
        account_version=rated.version,
        actor="marta@sales",
        request_id=None,
    )
    ledger.save(old)
    ledger.score_bant(account_id, BantRating(5, 5, 5, 5), META)

    retry = ledger.score_bant(account_id, BantRating(2, 2, 2, 2), keyed("k-old"))

    assert retry.replayed
    assert (retry.account.version, retry.account.bant.score) == (rated.version, 16)
    assert ledger.account(account_id).bant.score == 625


def test_the_same_key_for_a_different_request_is_refused_and_stores_nothing(ledger):
    account_id = qualified(ledger)
    ledger.score_bant(account_id, BantRating(2, 2, 2, 2), keyed("k-rate", "sha256:aa"))
    position = stored_position(ledger)

    with pytest.raises(IdempotencyKeyReused):
        ledger.score_bant(account_id, BantRating(3, 3, 3, 3), keyed("k-rate", "sha256:bb"))

    assert stored_position(ledger) == position
    assert ledger.account(account_id).bant.score == 16


def test_the_same_key_sent_by_another_actor_is_another_command(ledger):
    account_id = registered(ledger)
    for actor in ("marta@sales", "li@marketing"):
        ledger.add_contact(
            account_id,
            "Ann",
            "CFO",
            BuyingRole.ECONOMIC,
            DecisionPower.DECISION_MAKER,
            None,
            keyed("k", actor=actor),
        )

    assert len(ledger.account(account_id).contacts) == 2


def test_a_refused_command_leaves_its_key_free_for_a_retry(ledger):
    account_id = registered(ledger)
    with pytest.raises(RuleViolation):
        ledger.score_bant(account_id, BantRating(3, 3, 3, 3), keyed("k-rate"))
    ledger.screen(account_id, ScreeningOutcome.QUALIFIED, [], None, META)

    result = ledger.score_bant(account_id, BantRating(3, 3, 3, 3), keyed("k-rate"))

    assert not result.replayed
    assert ledger.account(account_id).bant.score == 81


# Reading the past ------------------------------------------------------------------------


def test_an_account_as_of_an_instant_shows_what_was_recorded_up_to_it(ledger, clock):
    before_registration = clock.advance(seconds=1)
    account_id = qualified(ledger)
    after_screening = clock.advance(days=1)
    ledger.score_bant(account_id, BantRating(4, 3, 5, 2), META)
    after_rating = clock.advance(days=1)
    ledger.send_material(account_id, "white paper", "email", None, META)

    then = ledger.account_as_of(account_id, after_screening)
    assert (then.version, then.stage, then.bant) == (2, AbmStage.IDENTIFIED, None)
    assert then.is_qualified

    later = ledger.account_as_of(account_id, after_rating)
    assert (later.version, later.stage, later.bant.score) == (4, AbmStage.PRIORITIZED, 120)

    now = ledger.account_as_of(account_id, clock.advance(seconds=1))
    assert (now.version, now.stage) == (6, AbmStage.OUTREACH)

    with pytest.raises(AccountNotFound):
        ledger.account_as_of(account_id, before_registration)


def test_a_clock_set_back_still_stamps_an_accounts_change_after_its_last_one(ledger, clock):
    account_id = qualified(ledger)
    screened_at = ledger.account(account_id).modified_on
    clock.advance(hours=-1)  # another host's clock behind this one's, or this one set back

    ledger.score_bant(account_id, BantRating(4, 3, 5, 2), META)

    rated = ledger.history(account_id)[-2:]  # bant_scored and the stage change it caused
    assert [e.timestamp for e in rated] == [screened_at + timedelta(microseconds=1)] * 2
    then = ledger.account_as_of(account_id, screened_at)
    assert (then.version, then.stage, then.bant) == (2, AbmStage.IDENTIFIED, None)
    now = ledger.account_as_of(account_id, rated[0].timestamp)
    assert (now.version, now.stage, now.bant.score) == (4, AbmStage.PRIORITIZED, 120)


def test_a_clock_set_back_still_stamps_a_periods_new_target_after_its_last_one(ledger, clock):
    ledger.set_objectives("2026", [Target("accounts_won", 10, 20, 30)], META)
    first_set_at = ledger.objectives("2026").modified_on
    clock.advance(hours=-1)  # another host's clock behind this one's, or this one set back

    ledger.set_objectives("2026", [Target("accounts_won", 40, 50, 60)], META)

    # The stage report as of the first setting shows the first targets, not the later ones.
    assert ledger.objectives("2026").modified_on == first_set_at + timedelta(microseconds=1)


def test_a_clock_set_back_still_dates_a_new_policy_version_after_the_last_one(ledger, clock):
    ledger.create_policy(Criteria(headcount_min=10), META)
    clock.advance(hours=-1)

    ledger.create_policy(Criteria(headcount_min=50), META)

    created_at = ledger.screening_policies().created_at
    assert created_at[2] == created_at[1] + timedelta(microseconds=1)


def test_an_account_at_a_version_is_the_state_after_that_many_events(ledger):
    account_id = qualified(ledger)
    ledger.score_bant(account_id, BantRating(4, 3, 5, 2), META)  # versions 3 and 4

    assert ledger.account(account_id, version=1).screening is None
    assert ledger.account(account_id, version=2).is_qualified
    at_three = ledger.account(account_id, version=3)
    assert (at_three.bant.score, at_three.stage) == (120, AbmStage.IDENTIFIED)
    assert ledger.account(account_id, version=4).stage is AbmStage.PRIORITIZED
    assert ledger.account(account_id).version == 4


@pytest.mark.parametrize("version", [0, 5, 99])
def test_an_account_at_a_version_it_has_not_reached_is_not_found(ledger, version):
    account_id = qualified(ledger)
    ledger.score_bant(account_id, BantRating(4, 3, 5, 2), META)

    with pytest.raises(AccountNotFound):
        ledger.account(account_id, version=version)


def test_history_pages_through_the_events_after_a_version(ledger):
    account_id = qualified(ledger)  # 1 registered, 2 screened
    ledger.score_bant(account_id, BantRating(1, 1, 1, 1), META)  # 3 scored, 4 stage changed
    for email in ("a@acme.com", "b@acme.com", "c@acme.com"):  # 5, 6, 7
        ledger.add_contact(
            account_id, "X", "Y", BuyingRole.END_USER, DecisionPower.INFLUENCER, email, META
        )

    assert versions(ledger.history(account_id)) == [1, 2, 3, 4, 5, 6, 7]
    assert versions(ledger.history(account_id, limit=2)) == [1, 2]
    assert versions(ledger.history(account_id, after=2, limit=3)) == [3, 4, 5]
    assert versions(ledger.history(account_id, after=5, limit=3)) == [6, 7]
    assert versions(ledger.history(account_id, after=7)) == []


def test_history_keeps_every_rating_with_who_gave_it_and_why(ledger):
    account_id = qualified(ledger)
    ledger.score_bant(account_id, BantRating(1, 2, 3, 4), META)
    ledger.score_bant(
        account_id, BantRating(5, 5, 4, 4), CommandMeta("li@marketing", reason="budget approved")
    )

    ratings = [
        (e.budget, e.authority, e.need, e.timing, e.actor, e.reason)
        for e in ledger.history(account_id)
        if type(e).__name__ == "BantScored"
    ]
    assert ratings == [
        (1, 2, 3, 4, "marta@sales", "planning"),
        (5, 5, 4, 4, "li@marketing", "budget approved"),
    ]
    assert ledger.account(account_id).bant.score == 400


def test_the_history_of_an_unknown_account_is_not_found(ledger):
    with pytest.raises(AccountNotFound):
        ledger.history(uuid4())


def test_events_carry_the_ledger_clock_and_the_command_meta(ledger, clock):
    at = clock.advance(hours=3)
    account_id = registered(ledger)

    [event] = ledger.history(account_id)

    assert event.timestamp > at
    assert event.timestamp == ledger.account(account_id).created_on
    assert (event.actor, event.reason, event.request_id) == ("marta@sales", "planning", "req-1")


def test_a_burst_of_objectives_and_policies_in_one_process_is_stored_whole(ledger):
    # Forty managers set one period's targets and twenty screening policies at once, in the
    # request threads of one API process: none is refused for the others' writes.
    metrics = ["accounts_won", "entered_outreach", "entered_warm_up", "entered_prioritized"]

    def set_target(i: int):
        target = Target(metrics[i % 4], i, i + 1, i + 2)
        return ledger.set_objectives("2026-09", [target], META)

    def create_policy(i: int):
        return ledger.create_policy(Criteria(industries_excluded=(f"industry {i}",)), META)

    with ThreadPoolExecutor(max_workers=16) as pool:
        set_ = list(pool.map(set_target, range(40)))
        created = list(pool.map(create_policy, range(20)))

    assert ledger.objectives("2026-09").version == 41  # opened, then one target at a time
    assert all(outcome.value.period == "2026-09" for outcome in set_)
    assert sorted(outcome.value for outcome in created) == list(range(1, 21))


def test_a_jobs_record_made_while_another_process_cancelled_it_is_refused_not_lost(ledger):
    job = ledger.start_job("import", {"file": "x.csv"}, CommandMeta("importer")).value
    tries = []

    def progress(j, by):  # the runner's record, which a cancellation overtakes once
        tries.append(j.status)
        if len(tries) == 1:
            ledger.record_job(job.id, lambda other, by: other.cancel(by), CommandMeta("manager"))
        j.progress(1, 10, by)

    with pytest.raises(JobEnded):
        ledger.record_job(job.id, progress)

    assert tries == ["running", "cancelled"]  # read again after the conflict
    stored = ledger.job(job.id)
    assert (stored.status, stored.done) == ("cancelled", 0)
    with pytest.raises(JobNotFound):
        ledger.record_job(uuid4(), progress)
