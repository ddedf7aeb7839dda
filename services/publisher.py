"""Publishes every account event to NATS JetStream: complete, never twice, in order per account.

The event store is the outbox: the publisher follows its notification log, never a request.
It publishes a batch of consecutive log positions: accounts concurrently, each account's
events one after the other, and starts the next batch only when JetStream has acknowledged
all of them; a failed publish is retried, with the same `Nats-Msg-Id`, unless the account's
last message in the stream shows that it was stored all the same. A publish JetStream refuses as
a duplicate counts only if the message it names is the event; one that someone else published
under the event's `Nats-Msg-Id` holds the account's events back until the duplicate window has
passed and JetStream takes the event.

Where it resumes. The stream alone cannot always say how far the publisher got: messages age out
(CRM_NATS_MAX_AGE_SECONDS), and anyone may publish on its subjects or delete a message. So after
each acknowledged batch the publisher records, in a key-value bucket that keeps it for ever
(RECORD_BUCKET, under the stream's name), the log position up to which every event is stored and
the stream's last sequence then, tied to the stream's creation time: a stream deleted and
created again starts from nothing and receives every event. On start:
- a stream whose last sequence is the record's received nothing since: it resumes from the
  recorded position, exactly, even if every message has aged out;
- otherwise the last batch went out in part, or a message not the publisher's came. It looks
  back from the stream's end for the last message with a `CRM-Position` header (passing over
  deleted, aged-out and foreign ones), and re-checks the range the last batch may have covered,
  from the highest position certainly stored (the record's, or that message's less a batch),
  skipping what each account's last message in the stream shows was stored.
A batch is published whole before the next begins and the record is written before the next,
so only the last batch is ever in doubt. A publisher killed at any moment resumes exactly,
however long it was down, with one exception: if it was killed in the middle of a batch and
stayed down longer than the stream keeps messages, that batch's messages have aged out and
nothing shows which were stored, so they are published again (never lost).

The record also names the log's entry at its position, and each batch is read from that
entry on: a log that no longer holds it (a store restored from a backup, or another store
pointed at the stream) is not the one the stream was published from, and the events it gets
would take positions and ids subscribers already hold for others. Nothing is published then
until an operator deletes the stream or names another (docs/DEPLOY.md, Backup and restore).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import msgspec
import nats
from eventsourcing.persistence import Notification
from msgspec import Struct
from nats.errors import NoServersError, TimeoutError
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
)
from nats.js.errors import APIError, BucketNotFoundError, NoStreamResponseError, NotFoundError
from nats.js.kv import KeyValue
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from contracts.events import AccountEvent, subject, type_name
from domain.account import EVENT_TOPIC_PREFIX
from domain.errors import EventUnreadable
from domain.ledger import AccountLedger
from services.integration_events import to_integration_event
from services.leadership import Leadership, lead_in_loop
from services.settings import Settings
from services.store import database_unavailable, first_line

log = logging.getLogger("crm.publisher")
T = TypeVar("T")

# In the process that publishes (crm serve with workers, or crm publish).
PUBLISHED = Counter("crm_events_published", "Account events acknowledged by JetStream")
PUBLISH_LAG = Histogram(
    "crm_publish_lag_seconds",
    "From an event's commit to JetStream's acknowledgement",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
BACKLOG = ("crm_publish_backlog_events", "Log positions not yet in the stream")
ACTIVE = ("crm_publisher_active", "1 while this process is the active publisher")
PUBLISH_BACKLOG = Gauge(*BACKLOG)
PUBLISHER_ACTIVE = Gauge(*ACTIVE)

PUBLISHER_METRICS = (PUBLISHED, PUBLISH_LAG, PUBLISH_BACKLOG, PUBLISHER_ACTIVE)


def away_publisher_gauges(backlog: int) -> list[Metric]:
    """The publisher's gauges as the API process of `crm serve` reports them while its
    publisher's process does not answer: the backlog it counts itself, and none active."""
    return [GaugeMetricFamily(*BACKLOG, value=backlog), GaugeMetricFamily(*ACTIVE, value=0)]


def forget_publisher_metrics() -> None:
    """For a process that never publishes: zeros there would read as an idle publisher."""
    for metric in PUBLISHER_METRICS:
        with contextlib.suppress(KeyError):  # forgotten already
            REGISTRY.unregister(metric)


POSITION_HEADER = "CRM-Position"
MIN_SERVER = (2, 10, 0)
DUPLICATE_WINDOW_SECONDS = 120.0
POLL_SECONDS = 0.2
BEHIND_SECONDS = 5.0  # how often a publisher whose log is not its stream's looks again
BACKLOG_SECONDS = 1.0  # how often the backlog is counted while nothing can be published
RECORD_BUCKET = "crm_publisher"  # JetStream key-value bucket: the publisher's record per stream
PING_SECONDS = 5  # how often the connection to the broker is checked
# How often an idle publisher checks that its stream is still there: a stream deleted, or a
# broker come back without its store, is made again and filled without waiting for a command.
STREAM_CHECK_SECONDS = 5.0
SCAN_LIMIT = 1024  # messages looked at, back from the stream's end, for the publisher's last


class Record(Struct, frozen=True):
    """What the publisher knows the stream holds, written after each acknowledged batch."""

    stream_created: str  # the stream's creation time: which stream this is about
    position: int  # every event up to here is in the stream
    seq: int  # the stream's last sequence then: a later message came after the record
    # The entry of the log at `position`, `<originator id>:<version>` (None where the batch
    # ended in a gap, and in records written before it was kept): a log that holds another
    # there (a store restored from a backup) is not the one the stream was published from.
    at: str | None = None


@dataclass(frozen=True)
class StreamSettings:
    name: str = "CRM"
    subject_prefix: str = "crm.accounts"
    max_age_seconds: float = 0  # 0 keeps messages for ever, so a subscriber can replay all
    replicas: int = 1
    source: str = "urn:crm"  # CloudEvents source


@dataclass
class PublisherStatus:
    connected: bool = False  # connected, and the active publisher
    published_position: int = 0  # every event up to here is in the stream
    head_position: int = 0  # the last position in the event log
    published: int = 0
    # Why JetStream refuses the events that wait (a stream's limit reached, its store full),
    # until it takes one again.
    refused: str | None = None
    # Why the publisher cannot go past the next event: it can no longer be read. Not the
    # broker's doing, so not reported as the broker's; cleared once the publisher moves again.
    stopped: str | None = None
    # Commit → ack of recently published events, in milliseconds (a bounded window).
    lags_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))

    @property
    def backlog(self) -> int:
        return max(self.head_position - self.published_position, 0)

    @property
    def last_lag_ms(self) -> float | None:
        return self.lags_ms[-1] if self.lags_ms else None

    def lag_percentile(self, fraction: float) -> float | None:
        if not self.lags_ms:
            return None
        ordered = sorted(self.lags_ms)
        return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)]


class PublisherView(Struct, frozen=True):
    """The publisher as /status shows it, read in the process that runs it."""

    # ok: connected; refused: connected, and the stream refuses what waits (see `refused`);
    # stopped: at an event that can no longer be read (see `stopped`); standby: another
    # process publishes; unavailable: ours cannot reach the broker
    state: str
    connected: bool
    published_position: int
    head_position: int
    backlog: int
    last_lag_ms: float | None
    lag_p50_ms: float | None
    lag_p99_ms: float | None
    refused: str | None = None
    stopped: str | None = None


REFUSAL_SAID_EVERY_SECONDS = 60


class ServerTooOld(RuntimeError):
    pass


def publisher_for(settings: Settings, ledger: AccountLedger, nats_url: str) -> Publisher:
    """The publisher `crm serve` and `crm publish` run: active while it holds its lock."""
    stream = StreamSettings(
        name=settings.nats_stream,
        max_age_seconds=settings.nats_max_age_seconds,
        replicas=settings.nats_replicas,
    )
    return Publisher(ledger, nats_url, stream, leadership=Leadership(settings, "publisher"))


class Publisher:
    def __init__(
        self,
        ledger: AccountLedger,
        nats_url: str,
        stream: StreamSettings | None = None,
        batch_size: int = 256,
        leadership: Leadership | None = None,
    ) -> None:
        self.ledger = ledger
        self.leadership = leadership  # None: publish without asking (one publisher is known)
        self.nats_url = nats_url
        self.stream = stream or StreamSettings()
        self.batch_size = batch_size
        self.status = PublisherStatus()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nc: Any = None  # the live connection, while this process is the active publisher
        self._broker_failing = False
        self._stop = asyncio.Event()  # the running publisher's stop
        self._records: KeyValue | None = None
        self._stream_created: str | None = None  # of the stream resumed into
        self._seq = 0  # the stream's last sequence known: resumed at, or acknowledged since
        self._at: str | None = None  # the log's entry at the position published up to
        self._refusal_said: tuple[str, float] | None = None  # the refusal logged, and when
        self._stream_checked = time.monotonic()  # when the stream was last seen to be there

    @property
    def connected(self) -> bool:
        """Active, and connected to the broker right now (not reconnecting)."""
        return self.status.connected and self._nc is not None and self._nc.is_connected

    def view(self) -> PublisherView:
        s = self.status
        if s.stopped:
            state = "stopped"
        elif self.connected:
            state = "refused" if s.refused else "ok"
        elif self.leadership is not None and self.leadership.standing_by:
            state = "standby"
        else:
            state = "unavailable"
        return PublisherView(
            state=state,
            connected=self.connected,
            published_position=s.published_position,
            head_position=s.head_position,
            backlog=s.backlog,
            last_lag_ms=s.last_lag_ms,
            lag_p50_ms=s.lag_percentile(0.5),
            lag_p99_ms=s.lag_percentile(0.99),
            refused=s.refused,
            stopped=s.stopped,
        )

    # Running ---------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Publishes until `stop` is set; survives broker and store outages."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.ledger.on_saved.append(self.wake_up)
        try:
            if self.leadership is None:
                await self._run(stop)
            else:
                await lead_in_loop(self.leadership, stop, self._run)
        finally:
            self.ledger.on_saved.remove(self.wake_up)

    def wake_up(self, _position: int = 0) -> None:
        """Something was committed: called from any thread (the writer's, after its commit,
        or the one that follows another process's commits); must never fail the command."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    async def _run(self, stop: asyncio.Event) -> None:
        counting = asyncio.get_running_loop().create_task(self._count_backlog(stop))
        try:
            await self._publish(stop)
        finally:
            counting.cancel()
            await asyncio.gather(counting, return_exceptions=True)

    async def _count_backlog(self, stop: asyncio.Event) -> None:
        """Reads the log's head every second: while the broker is away nothing is published,
        and the backlog, what an operator watches then, would stand where the outage began.
        Before the publisher first reaches the broker, nothing is known to be in the stream:
        the whole log counts, rather than none while nothing goes out."""
        while not stop.is_set():
            with contextlib.suppress(Exception):  # the store away: the last count stands
                head = await asyncio.to_thread(self._head)
                self.status.head_position = max(self.status.head_position, head)
                PUBLISH_BACKLOG.set(self.status.backlog)
            await _sleep_unless(stop, BACKLOG_SECONDS)

    async def _publish(self, stop: asyncio.Event) -> None:
        self._stop = stop
        failing = False
        while not stop.is_set():
            nc = None
            try:
                # nats-py retries its first connection for ever: a stop must not wait for it.
                nc = await _unless_stopped(
                    stop,
                    nats.connect(
                        nats_servers(self.nats_url),
                        connect_timeout=2,
                        # A broker that hangs (stopped, or its host unreachable) answers no
                        # ping: after two, the connection is dropped and the publisher reported
                        # unavailable, where nats-py's default took four minutes.
                        ping_interval=PING_SECONDS,
                        max_outstanding_pings=2,
                        max_reconnect_attempts=-1,
                        reconnect_time_wait=0.5,
                        allow_reconnect=True,
                        error_cb=self._broker_error,
                        reconnected_cb=self._broker_back,
                    ),
                )
                if nc is None:
                    break
                check_server(nc)
                self._broker_failing = False
                # Connected from here: a stream the broker refuses is reported as refused.
                self.status.connected, self._nc = True, nc
                js = nc.jetstream(timeout=5)
                if not await self._ensure_stream_and_bucket(js, stop):
                    break
                position = await self.resume_position(js)
                self.status.refused = self._refusal_said = None  # the stream is there
                PUBLISHER_ACTIVE.set(1)
                while not stop.is_set():
                    before = position
                    position = await self._publish_next(js, position, stop)
                    if position != before:
                        failing = False  # it moves again: a failure from now on is a new one
                        self.status.stopped = None
            except ServerTooOld:
                log.error("the broker cannot serve the publisher; nothing is published")
                raise
            except LogRewritten as error:
                # Until an operator decides: nothing published, and a line every few seconds.
                log.error("%s", error)
                await _sleep_unless(stop, BEHIND_SECONDS)
            except NoStreamResponseError:
                log.warning(
                    "no stream %s (or no bucket %s) on the broker; creating it again",
                    self.stream.name,
                    RECORD_BUCKET,
                )
            except APIError as error:  # the broker answers, and refuses the stream or bucket
                self._say_refused(_refusal(f"the broker refuses stream {self.stream.name}", error))
            except (NoServersError, OSError, TimeoutError, nats.errors.Error) as exc:
                log.warning("NATS unavailable (%s); events wait in the log", type(exc).__name__)
            except Exception as error:
                if isinstance(error, EventUnreadable):
                    self.status.stopped = f"{error.detail} Nothing after it is published."
                if failing:  # the same failure: a line, not a traceback twice a second
                    log.warning("publisher still failing: %s", error)
                elif database_unavailable(error):  # it comes back by itself: no page at night
                    said = first_line(error)
                    log.warning("publisher lost the database (%s); starting again", said)
                else:
                    log.exception("publisher failed; starting again")
                failing = True
            finally:
                self.status.connected = False
                self._nc = None
                PUBLISHER_ACTIVE.set(0)
                if nc is not None and not nc.is_closed:
                    try:
                        await nc.close()
                    except Exception:  # closing a broken connection may fail too
                        pass
            if not stop.is_set():
                await _sleep_unless(stop, 0.5)

    async def _ensure_stream_and_bucket(self, js: JetStreamContext, stop: asyncio.Event) -> bool:
        """Makes sure of the stream and the record bucket, staying connected while the broker
        refuses them, so that /ready says refused (not unavailable) until an operator acts;
        False when stopped first."""
        while not stop.is_set():
            try:
                await self.ensure_stream(js)
                await self.ensure_record_bucket(js)
                return True
            except APIError as error:
                self._say_refused(_refusal(f"the broker refuses stream {self.stream.name}", error))
            except OtherSubjects as error:
                self._say_refused(str(error))
            await _sleep_unless(stop, 0.5)
        return False

    def _say_refused(self, said: str) -> None:
        """A refusal by JetStream, which retrying does not cure until an operator acts (a
        stream's limit of messages or bytes, a full store, subjects another stream holds, a
        stream of the name that takes other subjects): logged when it first comes and once a
        minute while it lasts, not at every retry."""
        self.status.refused = said
        now = time.monotonic()
        if self._refusal_said is None or self._refusal_said[0] != said:
            log.error("%s; events wait in the log", said)
        elif now - self._refusal_said[1] < REFUSAL_SAID_EVERY_SECONDS:
            return
        else:
            log.error("still: %s", said)
        self._refusal_said = (said, now)

    async def _broker_error(self, error: Exception) -> None:
        # nats-py reports every failed reconnect, by default with a traceback: one line an
        # outage (or a shutdown that stopped the broker first) says as much.
        if not self._broker_failing:
            self._broker_failing = True
            log.warning("NATS connection lost (%s: %s); reconnecting", type(error).__name__, error)

    async def _broker_back(self) -> None:
        self._broker_failing = False
        log.info("NATS connection back")

    async def _publish_next(self, js: JetStreamContext, position: int, stop: asyncio.Event) -> int:
        batch, end, at = await asyncio.to_thread(partial(self._read, position, check=True))
        self.status.head_position = max(self.status.head_position, end)
        if end == position:
            assert self._wake is not None
            self._wake.clear()
            await _sleep_unless(stop, POLL_SECONDS, self._wake)
            self.status.head_position = await asyncio.to_thread(self._head)
            PUBLISH_BACKLOG.set(self.status.backlog)
            await self._check_stream(js)
            return position
        await self._publish_all(js, batch)
        self._at = at
        await self._record(js, end)
        self.status.published_position = end
        PUBLISH_BACKLOG.set(self.status.backlog)
        log.info(
            "published %d events up to %d",
            len(batch),
            end,
            extra={
                "fields": {"events": len(batch), "position": end, "backlog": self.status.backlog}
            },
        )
        return end

    async def _check_stream(self, js: JetStreamContext) -> None:
        """Every STREAM_CHECK_SECONDS: NoStreamResponseError, as a publish would get, when the
        stream is gone, so that starting again makes it and fills it with every event."""
        now = time.monotonic()
        if now < self._stream_checked + STREAM_CHECK_SECONDS:
            return
        self._stream_checked = now
        try:
            await js.stream_info(self.stream.name)
        except NotFoundError:
            raise NoStreamResponseError() from None

    def _read(
        self, after: int, *, check: bool = False
    ) -> tuple[list[AccountEvent], int, str | None]:
        """Integration events of the next batch, the last log position it covers, and the
        log's entry there (None for a gap). With `check`, first that the log still holds at
        `after` the entry published there (`_at`): read in the same query.

        A batch spans at most `batch_size` positions (not events: positions may have gaps),
        which is what lets `resume_position` bound the range it must check.
        """
        stop = after + self.batch_size
        head = self._head()  # read first: a position committed later is never skipped
        first = after if check and self._at is not None else after + 1
        notifications = list(
            self.ledger.recorder.select_notifications(
                first, self.batch_size + after + 1 - first, stop=stop
            )
        )
        if first == after:
            self._check_entry(after, notifications[:1], head)
            del notifications[0]
        mapper = self.ledger.mapper
        events = []
        before = None  # the notification before this one
        for n in notifications:
            if not n.topic.startswith(EVENT_TOPIC_PREFIX):
                before = n
                continue
            try:
                event = to_integration_event(mapper.to_domain_event(n), n.id)
            except EventUnreadable:
                if n.id == after + 1:
                    raise  # nothing before it to publish: the publisher stops here
                # Everything before it goes out; it stops the next batch, so no later event is
                # published before it, and `crm audit verify` names it.
                at = _entry(before) if before is not None and before.id == n.id - 1 else None
                return events, n.id - 1, at
            if event is not None:
                events.append(event)
            before = n
        if notifications:
            return events, notifications[-1].id, _entry(notifications[-1])
        if head >= stop:  # nothing in the range although the log goes beyond: all a gap
            return events, stop, None
        return events, after, self._at

    def _check_log(self, position: int) -> int:
        """The log's head; LogRewritten unless the log holds at `position` what was published
        there."""
        head = self._head()
        if position > 0:
            found = self.ledger.recorder.select_notifications(position, 1, stop=position)
            self._check_entry(position, found, head)
        return head

    def _check_entry(self, position: int, found: Sequence[Notification], head: int) -> None:
        entry = _entry(found[0]) if found and found[0].id == position else None
        if head < position:
            raise LogRewritten(self.stream.name, position, f"its end at {head}")
        if self._at is not None and entry != self._at:
            raise LogRewritten(self.stream.name, position, entry or "no entry there", self._at)

    def _head(self) -> int:
        return self.ledger.recorder.max_notification_id() or 0

    async def _publish_all(self, js: JetStreamContext, events: list[AccountEvent]) -> None:
        """Publishes accounts concurrently, and each account's events one after the other."""
        by_account: dict[Any, list[AccountEvent]] = {}
        for event in events:
            by_account.setdefault(event.account_id, []).append(event)
        await asyncio.gather(*(self._publish_in_order(js, chain) for chain in by_account.values()))

    async def _publish_in_order(self, js: JetStreamContext, chain: list[AccountEvent]) -> None:
        for event in chain:
            attempt = 0
            forced = False  # the stream holds another message under the event's id
            while True:
                try:
                    # A failed attempt may have been stored all the same, and its Nats-Msg-Id
                    # dedupes a copy only within the duplicate window, which a broker away
                    # for longer has left: the account's last message says.
                    if (
                        attempt == 0
                        or forced
                        or await self._stored_version(js, event) < event.version
                    ):
                        await self._publish_one(js, event)
                    break
                except TakenId as taken:
                    # Published again until the duplicate window has passed and the stream
                    # takes it: the account's later events wait, so none goes out before it.
                    if not forced:
                        log.error("%s", taken)
                    forced = True
                    if self._stop.is_set():
                        raise
                    attempt += 1
                    await _sleep_unless(self._stop, min(0.05 * 2**attempt, 2.0))
                except NoStreamResponseError:
                    # No stream takes the subject (deleted, or on a broker that lost its store):
                    # no retry would ever succeed. Starting again creates it and resumes from
                    # its end, so an empty stream receives every event again.
                    raise
                except (TimeoutError, nats.errors.Error, OSError) as error:
                    if self._stop.is_set():  # what is not acknowledged is resumed next start
                        raise
                    if isinstance(error, APIError):
                        self._say_refused(
                            _refusal(f"stream {self.stream.name} refuses events", error)
                        )
                    attempt += 1
                    await asyncio.sleep(min(0.05 * 2**attempt, 2.0))

    async def _publish_one(self, js: JetStreamContext, event: AccountEvent) -> None:
        data = msgspec.json.encode(event)
        ack = await js.publish(
            subject(event, self.stream.subject_prefix),
            data,
            stream=self.stream.name,
            headers=self.headers(event),
        )
        if ack.duplicate and not await self._holds(js, ack.seq, data):
            raise TakenId(event, self.stream.name, ack.seq)
        self._seq = max(self._seq, ack.seq)
        self.status.published += 1
        self.status.refused = self._refusal_said = None
        lag = time.time() - event.occurred_at.timestamp()
        self.status.lags_ms.append(lag * 1000)
        PUBLISHED.inc()
        PUBLISH_LAG.observe(lag)

    async def _holds(self, js: JetStreamContext, seq: int, data: bytes) -> bool:
        """Whether the stream's message `seq`, under whose id JetStream refused a message as a
        duplicate, is that message: an earlier attempt of the publisher's stored all the same,
        rather than someone else's message that took the id (or one deleted since)."""
        try:
            return (await js.get_msg(self.stream.name, seq=seq)).data == data
        except NotFoundError:
            return False

    def headers(self, event: AccountEvent) -> dict[str, str]:
        tag = type(event).__struct_config__.tag
        return {
            "Nats-Msg-Id": event.id,
            "ce-specversion": "1.0",
            "ce-id": event.id,
            "ce-type": str(tag),
            "ce-source": self.stream.source,
            "ce-time": msgspec.json.encode(event.occurred_at)[1:-1].decode(),  # as the body has it
            "ce-subject": f"accounts/{event.account_id}",
            "ce-datacontenttype": "application/json",
            POSITION_HEADER: str(event.position),
        }

    # The stream ----------------------------------------------------------------------------

    async def ensure_stream(self, js: JetStreamContext) -> None:
        try:
            info = await js.stream_info(self.stream.name)
        except NotFoundError:
            max_age = self.stream.max_age_seconds
            await js.add_stream(
                StreamConfig(
                    name=self.stream.name,
                    subjects=[f"{self.stream.subject_prefix}.>"],
                    storage=StorageType.FILE,
                    retention=RetentionPolicy.LIMITS,
                    discard=DiscardPolicy.OLD,
                    max_age=max_age or None,
                    # JetStream refuses a window longer than the messages are kept.
                    duplicate_window=min(DUPLICATE_WINDOW_SECONDS, max_age or float("inf")),
                    num_replicas=self.stream.replicas,
                )
            )
            log.info("created stream %s", self.stream.name)
            return
        # An existing stream is left as it is: it may have been tuned by hand, and changing
        # how long it keeps messages drops some at once. A setting it does not follow is said;
        # subjects that leave out the events' would have every publish answered "no stream".
        wanted = f"{self.stream.subject_prefix}.>"
        if not any(_takes_every(given, wanted) for given in info.config.subjects or ()):
            raise OtherSubjects(self.stream.name, info.config.subjects or [], wanted)
        kept = info.config.max_age or 0  # seconds, as nats-py reads JetStream's nanoseconds
        if not math.isclose(kept, self.stream.max_age_seconds, abs_tol=1e-6):
            log.warning(
                "stream %s keeps messages %s, not %s as CRM_NATS_MAX_AGE_SECONDS says; "
                "`nats stream edit` changes it",
                self.stream.name,
                f"for {kept:g} s" if kept else "for ever",
                f"for {self.stream.max_age_seconds:g} s"
                if self.stream.max_age_seconds
                else "for ever",
            )
        if (info.config.num_replicas or 1) != self.stream.replicas:
            log.warning(
                "stream %s has %s replicas, not %s as CRM_NATS_REPLICAS says; "
                "`nats stream edit` changes it",
                self.stream.name,
                info.config.num_replicas or 1,
                self.stream.replicas,
            )

    async def ensure_record_bucket(self, js: JetStreamContext) -> None:
        try:
            self._records = await js.key_value(RECORD_BUCKET)
        except BucketNotFoundError:
            self._records = await js.create_key_value(
                KeyValueConfig(
                    bucket=RECORD_BUCKET,
                    description="How far the CRM's publisher got, per stream",
                    history=1,
                    storage=StorageType.FILE,
                    replicas=self.stream.replicas,
                )
            )
            log.info("created key-value bucket %s", RECORD_BUCKET)

    async def resume_position(self, js: JetStreamContext) -> int:
        """The log position up to which every event is certainly in the stream."""
        info = await js.stream_info(self.stream.name)
        self._stream_created = info.created.isoformat() if info.created else None
        self._seq = last_seq = info.state.last_seq
        record = await self._recorded(info)
        position, seq = (record.position, record.seq) if record else (0, 0)
        self._at = record.at if record else None
        head = await asyncio.to_thread(self._check_log, position)
        self.status.head_position = max(self.status.head_position, head)
        if last_seq > seq:
            # Messages came after the record (or there is none): the last batch went out in
            # part, or is not recorded yet, or someone published on the stream's subjects.
            # Batches are published whole before the next begins, so everything before the last
            # batch is stored. That batch (at most batch_size positions) holds the publisher's
            # last message, but its accounts went out concurrently: events on either side of
            # that message's position may be stored or not, and each account's last message says.
            last = await self._last_position(js, info, after_seq=seq)
            if last is not None and last > head:
                raise LogRewritten(self.stream.name, last, f"its end at {head}")
            if last is not None:
                start = max(position, last - self.batch_size)
                position = await self._recheck(js, start, max(position, last) + self.batch_size)
            elif record is not None:  # none found: aged out or deleted, or none came
                position = await self._recheck(js, position, position + self.batch_size)
            else:
                log.warning(
                    "stream %s has no message of the publisher's near its end, and no record of "
                    "how far it got: checking every event against the stream",
                    self.stream.name,
                )
                position = await self._recheck(js, 0, None)
            await self._record(js, position)
        self.status.published_position = position
        return position

    async def _recorded(self, info: StreamInfo) -> Record | None:
        """The record of the stream as it is now, if there is one."""
        if self._records is None or self._stream_created is None:
            return None
        try:
            entry = await self._records.get(self._record_key)
            record = msgspec.json.decode(entry.value or b"", type=Record)
        except NotFoundError:
            return None
        except msgspec.DecodeError:
            log.warning("the record of stream %s cannot be read; ignoring it", self.stream.name)
            return None
        if record.stream_created != self._stream_created:
            return None  # of a stream deleted since: this one starts from nothing
        if record.seq > info.state.last_seq:
            log.warning(
                "stream %s ends before the publisher's record of it (a broker that lost part of "
                "its store?): checking its end against the event log",
                self.stream.name,
            )
            return None
        return record

    async def _record(self, js: JetStreamContext, position: int) -> None:
        if self._records is None or self._stream_created is None:
            return
        record = Record(self._stream_created, position, self._seq, self._at)
        await self._records.put(self._record_key, msgspec.json.encode(record))

    @property
    def _record_key(self) -> str:
        name = self.stream.name
        if re.fullmatch(r"[-_=a-zA-Z0-9]+", name):
            return name
        return "b64." + base64.urlsafe_b64encode(name.encode()).decode()  # keys take no more

    async def _last_position(
        self, js: JetStreamContext, info: StreamInfo, after_seq: int
    ) -> int | None:
        """The `CRM-Position` of the stream's last message that has one, after `after_seq`."""
        state = info.state
        lowest = max(state.first_seq, after_seq + 1, state.last_seq - SCAN_LIMIT + 1)
        for seq in range(state.last_seq, lowest - 1, -1):
            try:
                msg = await js.get_msg(self.stream.name, seq=seq)
            except NotFoundError:  # deleted, or aged out since
                continue
            position = (msg.headers or {}).get(POSITION_HEADER, "")
            if position.isdigit():
                return int(position)
            # no position: someone else's message
        return None

    async def _recheck(self, js: JetStreamContext, position: int, until: int | None) -> int:
        """Publishes what the stream lacks from `position` on, to `until` or the log's end."""
        self._at = None  # the entry at `position` is not known
        while until is None or position < until:
            events, end, at = await asyncio.to_thread(self._read, position)
            if end == position:  # the log ends here
                break
            stored: dict[Any, int] = {}
            missing = []
            for event in events:
                if event.account_id not in stored:
                    stored[event.account_id] = await self._stored_version(js, event)
                if stored[event.account_id] < event.version:
                    missing.append(event)
            await self._publish_all(js, missing)
            self._at, position = at, end
        return position

    async def _stored_version(self, js: JetStreamContext, event: AccountEvent) -> int:
        """The account's last version in the stream, as far as `event` needs to know: whether
        it is stored.

        The account's last message says, when it is the publisher's. When it is not (someone
        published on the account's subjects), the last message of the event's own type says:
        an account's events go out in version order, each after the one before is stored, so
        the event is stored exactly when that message's version reaches it. When that one is
        not the publisher's either, nothing says: the event is published again (a copy, if it
        was stored), never skipped."""
        prefix = self.stream.subject_prefix
        for pattern in (f"{prefix}.{event.account_id}.*", subject(event, prefix)):
            try:
                msg = await js.get_last_msg(self.stream.name, pattern)
            except NotFoundError:
                return 0
            version = _publishers_version(msg.headers or {}, event.account_id)
            if version is not None:
                return version
        log.warning(
            "the last %s message of account %s in stream %s is not the publisher's: "
            "publishing version %d (again, if it was stored)",
            type_name(type(event)),
            event.account_id,
            self.stream.name,
            event.version,
        )
        return 0


class LogRewritten(Exception):
    """The event log does not hold what the stream was published from: it ends before, or
    holds another entry at a position published. The store was restored from a backup, or is
    another store than the stream's: events stored from now on would take positions, and
    `<account id>:<version>` ids, that subscribers already hold for other events."""

    def __init__(self, stream: str, position: int, found: str, held: str | None = None) -> None:
        was = f"held {held} there" if held else "went on past it"
        super().__init__(
            f"stream {stream} was published from an event log that {was}, at position "
            f"{position}, and the log now has {found}: the store was restored from a backup, "
            "or is not the one the stream was published from. Nothing is published: "
            "publishing would give subscribers other events under ids they already hold. "
            "Delete the stream (and tell its subscribers to start again) to publish the "
            "store's events afresh (docs/DEPLOY.md, Backup and restore)"
        )


def _entry(notification: Notification) -> str:
    """A log entry as the publisher's record names it: `<originator id>:<version>`."""
    return f"{notification.originator_id}:{notification.originator_version}"


class OtherSubjects(Exception):
    """The stream of the name exists and takes other subjects than the events'."""

    def __init__(self, stream: str, subjects: list[str], wanted: str) -> None:
        super().__init__(
            f"stream {stream} takes subjects {', '.join(subjects) or 'none'}, not {wanted}: "
            f"add {wanted} to them (`nats stream edit {stream} --subjects`), or name another "
            "stream in CRM_NATS_STREAM"
        )


def _takes_every(given: str, wanted: str) -> bool:
    """Whether the subject filter `given` takes every subject `wanted` (ending in `>`) does."""
    want = wanted.split(".")
    for i, token in enumerate(given.split(".")):
        if token == ">":
            return True
        if i >= len(want) - 1 or token not in ("*", want[i]):
            return False  # narrower than `wanted`'s `>`, or another subject
    return False  # a filter of fixed length takes none of `>`'s longer subjects


def _refusal(what: str, error: APIError) -> str:
    return f"{what}: {error.description} (JetStream error {error.err_code})"


class TakenId(Exception):
    """JetStream refused an event as a duplicate of a message that is not the event."""

    def __init__(self, event: AccountEvent, stream: str, seq: int) -> None:
        super().__init__(
            f"stream {stream} refused event {event.id} as a duplicate of its message {seq}, "
            "which is not that event (someone else published under its Nats-Msg-Id, or it was "
            "deleted): publishing it again until the duplicate window has passed"
        )


def _publishers_version(headers: dict[str, str], account_id: Any) -> int | None:
    """The version a message of the publisher's about the account carries; None for any other
    message (no position, or a `Nats-Msg-Id` that is not `<account id>:<version>`)."""
    if not headers.get(POSITION_HEADER, "").isdigit():
        return None
    account, _, version = headers.get("Nats-Msg-Id", "").rpartition(":")
    if account != str(account_id) or not (version.isascii() and version.isdigit()):
        return None
    return int(version)


async def check_broker(nats_url: str) -> None:
    """Raises ServerTooOld when the broker lacks what the publisher needs. A broker that does
    not answer is only logged: commands do not wait for it, and the publisher publishes once
    it answers."""

    async def quietly(_error: Exception) -> None:  # nats-py logs each attempt with a traceback
        pass

    try:
        nc = await nats.connect(
            nats_servers(nats_url),
            connect_timeout=2,
            max_reconnect_attempts=1,  # 0 would mean: for ever
            reconnect_time_wait=0.5,
            error_cb=quietly,
        )
    except (NoServersError, OSError, TimeoutError, nats.errors.Error) as exc:
        log.warning("NATS does not answer (%s); events wait in the log", type(exc).__name__)
        return
    try:
        check_server(nc)
    finally:
        await nc.close()


def nats_servers(url: str) -> list[str]:
    """CRM_NATS_URL may list a cluster's members, comma-separated."""
    return [part.strip() for part in url.split(",") if part.strip()]


def check_server(nc: Any) -> None:
    server = nc.connected_server_version
    version = (server.major, server.minor, server.patch)
    problems = []
    if version < MIN_SERVER:
        problems.append(
            f"nats-server {'.'.join(map(str, version))} is older than "
            f"{'.'.join(map(str, MIN_SERVER))}: it cannot look up an account's last message by a "
            "wildcard subject, which the publisher needs to resume exactly"
        )
    if not nc._server_info.get("jetstream"):
        problems.append("JetStream is not enabled on the server (start it with -js)")
    if problems:
        raise ServerTooOld("; ".join(problems))


async def _unless_stopped(stop: asyncio.Event, connecting: Awaitable[T]) -> T | None:
    """What `connecting` gives, or None (and it is cancelled) if `stop` is set first."""
    task = asyncio.ensure_future(connecting)
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if task.done():
        return task.result()
    task.cancel()
    # Bounded: on Python 3.11 a cancel that races a connect attempt's own timeout can be lost.
    await asyncio.wait((task,), timeout=2)
    if task.done() and not task.cancelled() and task.exception() is None:
        with contextlib.suppress(Exception):
            await task.result().close()  # connected just as the stop came
    return None


async def _sleep_unless(stop: asyncio.Event, seconds: float, *others: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in (stop, *others)]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
