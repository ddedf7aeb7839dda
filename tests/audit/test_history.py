"""As of, diff and the story of an account agree with a history written down by hand; an event
stored in an old form still verifies; nothing is stored without saying who did it."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from eventsourcing.persistence import StoredEvent

from domain.account import Attribution, BantRating, Firmographics
from domain.ledger import CommandMeta
from domain.objectives import Target
from domain.screening_policy import Criteria
from domain.vocabulary import ScreeningOutcome
from services.audit import Audit
from tests.audit.tampering import crm

META = CommandMeta("marta", reason="first call", request_id="req-7")
DETAILS = Firmographics("Acme", "acme.com", "it", 200, 9_000_000, "EUR", "DE", 0.1, "fair")


def test_as_of_and_diff_agree_with_the_history_as_it_was_written(client, ledger, clock):
    # By hand: v1 registered, then t1; v2 screened, then t2; v3 rated 3333 and v4 prioritised,
    # then t3; v5 re-rated 4333.
    account_id = ledger.register(DETAILS, META).account.id
    t1 = clock.advance(hours=1)
    ledger.screen(account_id, ScreeningOutcome.QUALIFIED, ["industry"], None, META)
    t2 = clock.advance(hours=1)
    ledger.score_bant(account_id, BantRating(3, 3, 3, 3, {}), META)
    t3 = clock.advance(hours=1)
    ledger.score_bant(account_id, BantRating(4, 3, 3, 3, {}), META)
    path = f"/accounts/{account_id}"

    at_t1 = client.get(path, params={"as_of": t1.isoformat()}).json()
    at_t2 = client.get(path, params={"as_of": t2.isoformat()}).json()
    at_t3 = client.get(path, params={"as_of": t3.isoformat()}).json()
    at_v4 = client.get(path, params={"version": 4}).json()
    since_t3 = client.get(f"{path}/diff", params={"from": t3.isoformat()})
    by_versions = client.get(f"{path}/diff", params={"from": "2", "to": "5"})
    from_nothing = client.get(f"{path}/diff", params={"from": "0", "to": "1"}).json()

    assert (at_t1["version"], at_t1["screening"]) == (1, None)
    assert (at_t2["version"], at_t2["screening"]["outcome"], at_t2["bant"]) == (
        2,
        "qualified",
        None,
    )
    assert (at_t3["version"], at_t3["bant"]["score"], at_t3["abm_stage"]) == (4, 81, "prioritized")
    assert at_v4 == at_t3
    assert since_t3.status_code == 200
    assert (since_t3.json()["from_version"], since_t3.json()["to_version"]) == (4, 5)
    changes = {c["field"]: c for c in since_t3.json()["changes"]}
    assert set(changes) == {"bant"}  # after t3 only the re-rating happened
    assert changes["bant"]["before"]["budget"] == 3 and changes["bant"]["after"]["budget"] == 4
    assert [e["version"] for e in changes["bant"]["events"]] == [5]
    assert changes["bant"]["events"][0]["actor"] == "marta"
    changes = {c["field"]: c for c in by_versions.json()["changes"]}
    assert set(changes) == {"bant", "abm_stage", "abm_stage_since"}
    assert [e["version"] for e in changes["bant"]["events"]] == [3, 5]
    assert (changes["abm_stage"]["before"], changes["abm_stage"]["after"]) == (
        "identified",
        "prioritized",
    )
    assert [e["type"] for e in changes["abm_stage"]["events"]] == ["stage_changed"]
    assert {c["field"] for c in from_nothing["changes"]} >= {"name", "domain", "abm_stage"}
    assert next(c for c in from_nothing["changes"] if c["field"] == "name")["before"] is None


def test_diff_refuses_moments_it_cannot_read(client, ledger):
    account_id = ledger.register(DETAILS, META).account.id
    path = f"/accounts/{account_id}/diff"

    bad_instant = client.get(path, params={"from": "yesterday"})
    no_offset = client.get(path, params={"from": "2026-01-05T09:00:00"})
    beyond = client.get(path, params={"from": "1", "to": "9"})
    backwards = client.get(path, params={"from": "1", "to": "0"})
    missing = client.get(path)
    leading_zero = client.get(path, params={"from": "0", "to": "01"})

    # Bad parameters are 400, as everywhere, each naming its parameter.
    assert (bad_instant.status_code, bad_instant.json()["field"]) == (400, "from")
    assert (no_offset.status_code, no_offset.json()["field"]) == (400, "from")
    assert (beyond.status_code, beyond.json()["field"]) == (400, "to")
    assert (backwards.status_code, backwards.json()["field"]) == (400, "from")
    assert (missing.status_code, missing.json()["field"]) == (400, "from")
    assert (leading_zero.status_code, leading_zero.json()["field"]) == (400, "to")
    assert "leading 0" in leading_zero.json()["detail"]


def test_diff_refuses_instants_given_backwards_even_within_one_version(client, ledger):
    account_id = ledger.register(DETAILS, META).account.id
    path = f"/accounts/{account_id}/diff"
    later, earlier = "2999-01-02T00:00:00Z", "2999-01-01T00:00:00Z"  # both at its last version

    backwards = client.get(path, params={"from": later, "to": earlier})
    forwards = client.get(path, params={"from": earlier, "to": later})
    future = client.get(path, params={"from": later})  # to: now

    assert (backwards.status_code, backwards.json()["field"]) == (400, "from"), backwards.text
    assert (future.status_code, future.json()["field"]) == (400, "from"), future.text
    assert (forwards.status_code, forwards.json()["changes"]) == (200, [])


def test_the_story_says_who_when_why_and_what_changed(ledger, settings, capsys):
    account_id = ledger.register(DETAILS, META).account.id
    ledger.screen(account_id, ScreeningOutcome.QUALIFIED, ["industry"], "fits", META)

    assert crm(settings, "audit", "history", str(account_id)) == 0

    lines = capsys.readouterr().out.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("v2 "))
    assert lines[0].startswith("v1 ") and "registered by marta because first call" in lines[0]
    assert lines[0].split()[1].endswith("Z")  # in UTC, as every instant the service writes
    assert "(request req-7)" in lines[0]
    assert "screened by marta" in lines[first]
    assert lines[first + 1].startswith("    recorded: ")  # what the event says
    assert json.loads(lines[first + 1].split(": ", 1)[1])["criteria"] == ["industry"]
    assert json.loads(lines[first + 2].split(": ", 1)[1])["outcome"] == "qualified"


def test_the_story_shows_what_an_outreach_event_recorded(ledger, settings, capsys):
    account_id = ledger.register(DETAILS, META).account.id
    ledger.screen(account_id, ScreeningOutcome.QUALIFIED, ["industry"], None, META)
    ledger.score_bant(account_id, BantRating(3, 3, 3, 3, {}), META)
    ledger.send_material(account_id, "case study", "post", "pricing discussed", META)

    assert crm(settings, "audit", "history", str(account_id)) == 0

    lines = capsys.readouterr().out.splitlines()
    sent = next(i for i, line in enumerate(lines) if "material_sent by marta" in line)
    recorded = json.loads(lines[sent + 1].split(": ", 1)[1])
    assert (recorded["material"], recorded["channel"]) == ("case study", "post")
    assert recorded["note"] == "pricing discussed"


def test_an_event_stored_in_its_old_form_still_verifies(ledger):
    """Screened was written without `policy_version` before policies existed (class version 1);
    the chain covers those stored bytes, not the upcast event."""
    details = Firmographics("Old Co", f"{uuid.uuid4().hex}.com", "it", 10, 1, "EUR", "DE", 1, "x")
    account_id = ledger.register(details, META).account.id
    account = ledger.account(account_id)
    account.screen(
        ScreeningOutcome.QUALIFIED, ["industry"], "old", Attribution("a", ledger.clock())
    )
    (event,) = account.collect_events()
    stored = ledger.mapper.to_stored_event(event)
    state = json.loads(stored.state)
    del state["policy_version"], state["class_version"]
    old_form = json.dumps(state, separators=(",", ":")).encode()
    ledger.recorder.insert_events(
        [StoredEvent(stored.originator_id, stored.originator_version, stored.topic, old_form)]
    )
    ledger.score_bant(account_id, BantRating(2, 2, 2, 2, {}), META)

    report = Audit(ledger).verify_account(account_id)

    assert ledger.account(account_id).screening.policy_version is None  # upcast on load
    assert report.verified and report.events == 4


def test_every_stored_event_names_who_caused_it(client, ledger):
    created = client.post(
        "/accounts",
        json={
            "name": "Acme",
            "domain": "acme.com",
            "industry": "it",
            "headcount": 10,
            "annual_revenue": 5,
            "revenue_currency": "EUR",
            "country": "DE",
            "growth_rate": 0.1,
            "source": "fair",
        },
        headers={"Idempotency-Key": "k-1", "X-Request-ID": "r-1"},
    )
    ledger.set_objectives("2026-03", [Target("accounts_won", 10, 20, 30)], META)
    version = ledger.create_policy(Criteria(industries_included=("it",)), META).value
    ledger.apply_policy(version, [uuid.UUID(created.json()["id"])], META)
    ledger.start_job("import", {}, META)
    client.post("/audit/checkpoints")

    stored = ledger.recorder.select_notifications(1, 1000)

    assert len({n.topic for n in stored}) >= 8  # accounts, receipts, objectives, policies, jobs…
    for notification in stored:
        state = json.loads(notification.state)
        assert isinstance(state.get("actor"), str) and state["actor"], notification.topic
        assert "request_id" in state, notification.topic


def test_downloads_say_what_they_hold(client, ledger):
    account_id = ledger.register(DETAILS, META).account.id
    path = f"/accounts/{account_id}/history"

    answers = {
        "history csv": client.get(path, params={"format": "csv"}),
        "history jsonl": client.get(path, params={"format": "jsonl"}),
        "ledger csv": client.get("/audit/export", params={"format": "csv"}),
        "ledger jsonl": client.get("/audit/export"),
    }

    types = {name: a.headers["content-type"] for name, a in answers.items()}
    assert types == {
        "history csv": "text/csv; charset=utf-8",
        "history jsonl": "application/x-ndjson",
        "ledger csv": "text/csv; charset=utf-8",
        "ledger jsonl": "application/x-ndjson",
    }
    assert answers["history csv"].text.startswith("record,")
    assert json.loads(answers["ledger jsonl"].text.splitlines()[0])


@pytest.mark.parametrize("param", ["limit", "after"])
def test_a_download_refuses_paging_it_would_ignore(client, ledger, param):
    account_id = ledger.register(DETAILS, META).account.id
    path = f"/accounts/{account_id}/history"

    page = client.get(path, params={param: 1})
    download = client.get(path, params={"format": "csv", param: 1})

    assert page.status_code == 200
    assert (download.status_code, download.json()["field"]) == (400, param)
    assert "csv holds every event" in download.json()["detail"]


def test_the_store_export_checks_its_checkpoint_off_the_event_loop(client, ledger, monkeypatch):
    # Over a million accounts the check takes seconds: on the event loop, every other request
    # would wait for it.
    ledger.register(DETAILS, META)
    Audit(ledger).checkpoint(META)
    on_the_loop = []
    check = Audit.check_checkpoints

    def watched(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            on_the_loop.append(False)
        else:
            on_the_loop.append(True)
        return check(self, *args, **kwargs)

    monkeypatch.setattr(Audit, "check_checkpoints", watched)
    export = client.get("/audit/export")

    assert export.status_code == 200 and '"record": "checkpoint"' in export.text
    assert on_the_loop == [False]
