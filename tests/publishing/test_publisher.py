"""Every stored account event reaches JetStream once, in order per account."""

from __future__ import annotations

import asyncio
import logging
import signal
import uuid
from contextlib import asynccontextmanager

import msgspec
import nats
import pytest
from nats.js.api import DiscardPolicy, StreamConfig

from domain.account import BantRating, Firmographics
from domain.ledger import CommandMeta
from domain.vocabulary import ScreeningOutcome
from services.nats_server import free_port
from services.publisher import (
    PUBLISH_BACKLOG,
    STREAM_CHECK_SECONDS,
    Publisher,
    StreamSettings,
)
from tests.audit.tampering import RawStore
from tests.publishing.conftest import stream_messages, wait_for_stream_count

META = CommandMeta("tester", reason="test", request_id="req-1")


def stored_history(ledger) -> list[tuple[str, int]]:
    """(account id, version) of every stored account event, in log order."""
    return [
        (str(n.originator_id), n.originator_version)
        for n in ledger.recorder.select_notifications(1, 100_000)
        if n.topic.startswith("domain.account:Account.")
    ]


def make_accounts(ledger, count: int) -> list:
    ids = []
    for i in range(count):
        details = Firmographics(
            f"Co {i}", f"{uuid.uuid4().hex}.com", "it", 10, 1, "EUR", "DE", 1.0, "test"
        )
        account_id = ledger.register(details, META).account.id
        ledger.screen(account_id, ScreeningOutcome.QUALIFIED, ["industry"], None, META)
        ledger.score_bant(account_id, BantRating(1 + i % 5, 2, 3, 4), META)
        ids.append(account_id)
    return ids


async def publish_until(publisher: Publisher, broker, count: int) -> None:
    """Runs the publisher until the stream holds `count` messages, then stops it."""
    stop = asyncio.Event()
    task = asyncio.create_task(publisher.run(stop))
    try:
        await wait_for_stream_count(broker.url, count, timeout=10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def stream_config(broker) -> StreamConfig:
    nc = await nats.connect(broker.url)
    try:
        return (await nc.jetstream().stream_info("CRM")).config
    finally:
        await nc.close()


def assert_exactly(messages, history) -> None:
    published = [(str(e.account_id), e.version) for _, _, e in messages]
    assert len(published) == len(set(published)), "an event was published twice"
    assert sorted(published) == sorted(history), "the stream differs from the stored history"
    by_account: dict[str, list[int]] = {}
    for account_id, version in published:
        by_account.setdefault(account_id, []).append(version)
    for versions in by_account.values():
        assert versions == sorted(versions), "an account's events are out of order"


async def test_every_stored_event_is_published_once_in_order(ledger, broker, running_publisher):
    await asyncio.to_thread(make_accounts, ledger, 20)
    history = stored_history(ledger)

    await wait_for_stream_count(broker.url, len(history))
    messages = await stream_messages(broker.url)

    assert_exactly(messages, history)


async def test_messages_carry_dedupe_id_cloudevents_headers_and_position(
    ledger, broker, running_publisher
):
    (account_id,) = await asyncio.to_thread(make_accounts, ledger, 1)
    await wait_for_stream_count(broker.url, 4)

    subject, headers, event = (await stream_messages(broker.url))[2]

    assert subject == f"crm.accounts.{account_id}.bant_scored"
    assert headers["Nats-Msg-Id"] == f"{account_id}:3"
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-id"] == f"{account_id}:3"
    assert headers["ce-type"] == "crm.account.bant_scored.v1"
    assert headers["ce-source"]
    assert headers["ce-subject"] == f"accounts/{account_id}"
    # The instant written as the body writes it, so that the two compare as text too
    assert headers["ce-time"] == msgspec.to_builtins(event)["occurred_at"]
    assert headers["ce-time"].endswith("Z")
    assert int(headers["CRM-Position"]) == event.position
    assert (event.score, event.actor, event.reason, event.request_id) == (
        24,
        "tester",
        "test",
        "req-1",
    )


async def test_a_broker_outage_loses_nothing_and_duplicates_nothing(
    ledger, broker, running_publisher, caplog
):
    caplog.set_level(logging.INFO)
    await asyncio.to_thread(make_accounts, ledger, 10)
    broker.kill()
    # Commands go on while the broker is down: they neither fail nor wait for it.
    await asyncio.to_thread(make_accounts, ledger, 10)
    broker.start()
    await asyncio.to_thread(make_accounts, ledger, 5)
    history = stored_history(ledger)

    await wait_for_stream_count(broker.url, len(history))
    assert_exactly(await stream_messages(broker.url), history)
    assert running_publisher.status.backlog == 0 or running_publisher.status.head_position > 0
    # The outage is told in a line or two, not a traceback at every reconnect attempt.
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
    lost = [r for r in caplog.records if r.getMessage().startswith("NATS connection lost")]
    assert len(lost) == 1


async def test_a_stream_deleted_under_a_running_publisher_is_created_again_with_every_event(
    ledger, broker, running_publisher
):
    # Given a publisher that has published what is stored
    await asyncio.to_thread(make_accounts, ledger, 5)
    await wait_for_stream_count(broker.url, len(stored_history(ledger)))

    # When the stream is deleted under it (or a broker comes back without its store), and
    # more events are stored
    nc = await nats.connect(broker.url)
    try:
        await nc.jetstream().delete_stream("CRM")
    finally:
        await nc.close()
    await asyncio.to_thread(make_accounts, ledger, 5)
    history = stored_history(ledger)

    # Then a new stream holds every event, once and in order
    await wait_for_stream_count(broker.url, len(history), timeout=10)
    assert_exactly(await stream_messages(broker.url), history)


async def test_a_stream_deleted_under_an_idle_publisher_is_made_again_without_a_new_event(
    ledger, broker, running_publisher
):
    # Given a publisher that has published what is stored, and nothing more to publish
    await asyncio.to_thread(make_accounts, ledger, 3)
    history = stored_history(ledger)
    await wait_for_stream_count(broker.url, len(history))

    # When the stream is deleted under it (or a broker comes back without its store)
    nc = await nats.connect(broker.url)
    try:
        await nc.jetstream().delete_stream("CRM")
    finally:
        await nc.close()

    # Then, with no new event to publish, a new stream holds every event, once and in order
    await wait_for_stream_count(broker.url, len(history), timeout=STREAM_CHECK_SECONDS + 10)
    assert_exactly(await stream_messages(broker.url), history)


async def test_a_publisher_killed_mid_batch_resumes_exactly_after_the_duplicate_window(
    ledger, broker
):
    # Given a stream whose duplicate window (the shortest JetStream allows) cannot hide a copy
    nc = await nats.connect(broker.url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="CRM", subjects=["crm.accounts.>"], duplicate_window=0.1))
    await asyncio.to_thread(make_accounts, ledger, 40)
    history = stored_history(ledger)
    publisher = Publisher(ledger, broker.url, StreamSettings(), batch_size=64)
    # And a publisher killed in its second batch, whose accounts went out concurrently: the
    # later accounts' events are stored, the first account's only in part, and its is last.
    done, end, _ = publisher._read(0)
    events, _, _ = publisher._read(end)
    first = events[0].account_id
    for event in done + [e for e in events if e.account_id != first] + events[:1]:
        await publisher._publish_one(js, event)
    await nc.close()
    await asyncio.sleep(0.2)  # the publisher stays down for longer than the duplicate window

    # When a publisher starts again
    stop = asyncio.Event()
    task = asyncio.create_task(publisher.run(stop))
    try:
        await wait_for_stream_count(broker.url, len(history))
        while publisher.status.published_position < events[-1].position:
            await asyncio.sleep(0.02)  # polling the publisher's progress
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)

    # Then the stream holds every event exactly once, in order per account
    assert_exactly(await stream_messages(broker.url), history)


async def test_a_stream_keeping_messages_less_than_two_minutes_is_created_and_filled(
    ledger, broker
):
    # Given events, and messages to be kept for less than the usual duplicate window
    await asyncio.to_thread(make_accounts, ledger, 3)
    history = stored_history(ledger)
    publisher = Publisher(ledger, broker.url, StreamSettings(max_age_seconds=60), batch_size=64)

    # When the publisher runs
    await publish_until(publisher, broker, len(history))

    # Then it created the stream with that age limit and published every event into it
    assert_exactly(await stream_messages(broker.url), history)
    config = await stream_config(broker)
    assert (config.max_age, config.duplicate_window) == (60, 60)


async def test_an_existing_stream_is_left_as_it_is_and_a_setting_it_does_not_follow_is_said(
    ledger, broker, caplog
):
    # Given a stream made by hand, keeping messages for ever on one replica
    nc = await nats.connect(broker.url)
    try:
        await nc.jetstream().add_stream(name="CRM", subjects=["crm.accounts.>"])
    finally:
        await nc.close()
    await asyncio.to_thread(make_accounts, ledger, 2)
    history = stored_history(ledger)
    publisher = Publisher(ledger, broker.url, StreamSettings(max_age_seconds=3600), batch_size=64)

    # When a publisher told to keep messages for an hour runs
    await publish_until(publisher, broker, len(history))

    # Then it publishes into the stream as it is, and says that it keeps messages for ever
    assert_exactly(await stream_messages(broker.url), history)
    assert not (await stream_config(broker)).max_age
    assert [
        r.getMessage()
        for r in caplog.records
        if r.name == "crm.publisher" and r.levelno == logging.WARNING
    ] == [
        "stream CRM keeps messages for ever, not for 3600 s as CRM_NATS_MAX_AGE_SECONDS says; "
        "`nats stream edit` changes it"
    ]


async def test_a_stream_that_refuses_events_is_said_and_reported_until_it_takes_them(
    ledger, broker, caplog
):
    # Given a stream made by hand that takes 3 messages and refuses any more
    config = StreamConfig(
        name="CRM", subjects=["crm.accounts.>"], max_msgs=3, discard=DiscardPolicy.NEW
    )
    async with publishing_into(config, ledger, broker) as (publisher, js, history):
        # When the publisher has published 3 events and keeps being refused the next
        await until(lambda: publisher.view().state == "refused")
        refused = publisher.view()

        # Then it says why, once however often it retries, and /status and /ready report it
        errors = [
            r.getMessage()
            for r in caplog.records
            if r.name == "crm.publisher" and r.levelno >= logging.ERROR
        ]
        assert errors == [f"{refused.refused}; events wait in the log"]
        assert "stream CRM refuses events: maximum messages exceeded" in errors[0]
        assert (refused.connected, refused.published_position < len(history)) == (True, True)

        # And once the stream's limit is lifted, every event is in it once, and it is ok
        config.max_msgs = -1
        await js.update_stream(config)
        await wait_for_stream_count(broker.url, len(history))
        assert_exactly(await stream_messages(broker.url), history)
        await until(lambda: publisher.view().state == "ok")
        assert publisher.view().refused is None


async def test_a_stream_of_the_name_that_takes_other_subjects_is_said_and_reported_refused(
    ledger, broker, caplog
):
    # Given a stream named as the publisher's, made by hand for other subjects
    config = StreamConfig(name="CRM", subjects=["other.>"])
    async with publishing_into(config, ledger, broker) as (publisher, js, history):
        # When the publisher starts on it
        await until(lambda: publisher.view().state == "refused")
        refused = publisher.view()

        # Then /status and /ready report it refused, saying why, and the log says it once
        assert refused.connected
        assert "stream CRM takes subjects other.>, not crm.accounts.>" in refused.refused
        errors = [
            r.getMessage()
            for r in caplog.records
            if r.name == "crm.publisher" and r.levelno >= logging.ERROR
        ]
        assert errors == [f"{refused.refused}; events wait in the log"]
        assert "creating it again" not in caplog.text

        # And once the stream takes the events' subjects too, every event is in it once
        config.subjects = ["other.>", "crm.accounts.>"]
        await js.update_stream(config)
        await wait_for_stream_count(broker.url, len(history))
        assert_exactly(await stream_messages(broker.url), history)
        await until(lambda: publisher.view().state == "ok")


@asynccontextmanager
async def publishing_into(config: StreamConfig, ledger, broker):
    """A stream made by hand as `config` says, two accounts' events in the log, and a publisher
    running on them; yields the publisher, the JetStream context and the stored history."""
    nc = await nats.connect(broker.url)
    js = nc.jetstream()
    await js.add_stream(config)
    await asyncio.to_thread(make_accounts, ledger, 2)
    publisher = Publisher(ledger, broker.url, StreamSettings(), batch_size=64)
    stop = asyncio.Event()
    task = asyncio.create_task(publisher.run(stop))
    try:
        yield publisher, js, stored_history(ledger)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await nc.close()


async def test_a_stream_that_keeps_messages_as_long_as_the_setting_says_is_not_warned_of(
    ledger, broker, caplog
):
    # Given the stream a publisher made to keep messages for 600.5 s (a fraction of a second)
    await asyncio.to_thread(make_accounts, ledger, 1)
    history = stored_history(ledger)
    settings = StreamSettings(max_age_seconds=600.5)
    await publish_until(Publisher(ledger, broker.url, settings), broker, len(history))
    caplog.clear()

    # When a publisher with the same setting starts on it again
    await asyncio.to_thread(make_accounts, ledger, 1)
    await publish_until(Publisher(ledger, broker.url, settings), broker, len(history) + 3)

    # Then it says nothing about how long the stream keeps them
    assert (await stream_config(broker)).max_age == 600.5
    assert not [r for r in caplog.records if "CRM_NATS_MAX_AGE_SECONDS" in r.getMessage()]


async def test_a_broker_without_jetstream_is_refused_at_start_up_saying_why(tmp_path):
    from services.nats_server import EmbeddedNats
    from services.publisher import ServerTooOld, check_broker

    plain = EmbeddedNats(tmp_path / "plain", jetstream=False)
    plain.start()
    try:
        with pytest.raises(ServerTooOld, match="JetStream is not enabled"):
            await check_broker(plain.url)
    finally:
        plain.stop()


async def test_an_unreadable_event_stops_publishing_after_every_event_before_it(
    ledger, broker, settings, caplog
):
    # Given three accounts, the second one's first event no longer readable
    ids = await asyncio.to_thread(make_accounts, ledger, 3)
    RawStore(settings, ledger).garble_state(ids[1], 1)
    history = stored_history(ledger)
    before = history[: history.index((str(ids[1]), 1))]

    # When the publisher runs, until it has failed on that event
    publisher = Publisher(ledger, broker.url, StreamSettings(), batch_size=64)
    stop = asyncio.Event()
    task = asyncio.create_task(publisher.run(stop))
    try:
        await wait_for_stream_count(broker.url, len(before))
        while not any("can no longer be read" in str(r.exc_info) for r in caplog.records):
            await asyncio.sleep(0.05)  # polling the log the publisher writes as it fails
        view = publisher.view()
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)

    # Then every event before it is in the stream, in order, and none after it
    assert_exactly(await stream_messages(broker.url), before)
    # And /status and /ready say why, not that the broker is away
    assert view.state == "stopped"
    assert f"Version 1 of {ids[1]} can no longer be read" in view.stopped
    (bad,) = [
        n.id
        for n in ledger.recorder.select_notifications(1, 100_000)
        if (n.originator_id, n.originator_version) == (ids[1], 1)
    ]
    assert publisher.status.published_position == bad - 1


async def test_the_backlog_counts_the_events_that_wait_while_the_broker_is_away(
    ledger, broker, running_publisher
):
    # Given a publisher that has published everything
    await asyncio.to_thread(make_accounts, ledger, 2)
    await wait_for_stream_count(broker.url, len(stored_history(ledger)))
    await until(lambda: backlog(running_publisher) == (0, 0))

    # When the broker goes away and events are stored meanwhile
    broker.kill()
    await asyncio.to_thread(make_accounts, ledger, 3)

    # Then the backlog, in /status and in the metric, counts them: it is what an operator
    # watches during an outage
    await until(lambda: backlog(running_publisher) == (12, 12))
    broker.start()
    await until(lambda: backlog(running_publisher) == (0, 0))


async def test_the_backlog_counts_the_whole_log_before_the_broker_was_ever_reached(ledger):
    # Given events stored, and a publisher started while its broker does not answer
    await asyncio.to_thread(make_accounts, ledger, 2)
    publisher = Publisher(ledger, f"nats://127.0.0.1:{free_port()}", StreamSettings())
    stop = asyncio.Event()
    task = asyncio.create_task(publisher.run(stop))
    try:
        # Then every event waits, as far as it knows: none is known to be in the stream
        head = ledger.recorder.max_notification_id()
        await until(lambda: backlog(publisher) == (head, head))
        assert publisher.view().state == "unavailable"
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_the_backlog_counts_what_waits_from_the_moment_the_publisher_resumes(ledger, broker):
    # Given events stored, and a stream that holds none of them
    await asyncio.to_thread(make_accounts, ledger, 2)
    publisher = Publisher(ledger, broker.url, StreamSettings())
    nc = await nats.connect(broker.url)
    try:
        js = nc.jetstream()
        await publisher.ensure_stream(js)

        # When the publisher finds where to resume, before it publishes anything
        position = await publisher.resume_position(js)
    finally:
        await nc.close()

    # Then its backlog is every event, not none until its next count of the log
    head = ledger.recorder.max_notification_id()
    assert (position, backlog(publisher)[0]) == (0, head)


async def test_a_broker_that_hangs_is_reported_unavailable_and_loses_nothing(
    ledger, broker, running_publisher
):
    # Given a publisher that has published everything
    await asyncio.to_thread(make_accounts, ledger, 2)
    await wait_for_stream_count(broker.url, len(stored_history(ledger)))
    assert running_publisher.view().state == "ok"

    # When the broker stops answering without closing its connections, as a stopped process or
    # an unreachable host does, and events are stored meanwhile
    broker.process.send_signal(signal.SIGSTOP)
    try:
        await asyncio.to_thread(make_accounts, ledger, 2)
        # Then the publisher says it cannot reach the broker, within a few pings
        await until(lambda: running_publisher.view().state == "unavailable")
    finally:
        broker.process.send_signal(signal.SIGCONT)

    # And once the broker answers again, every event is in the stream once
    history = stored_history(ledger)
    await wait_for_stream_count(broker.url, len(history))
    assert_exactly(await stream_messages(broker.url), history)
    await until(lambda: running_publisher.view().state == "ok")


def backlog(publisher: Publisher) -> tuple[int, int]:
    """The publisher's backlog as /status shows it, and as crm_publish_backlog_events does."""
    (gauge,) = PUBLISH_BACKLOG.collect()
    return publisher.view().backlog, int(gauge.samples[0].value)


async def until(condition, seconds: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "not in time"
        await asyncio.sleep(0.05)  # polling the publisher, which works in this event loop
