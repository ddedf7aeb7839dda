"""Endpoints that read across accounts: the account list, the leaderboard and the reports."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID
from weakref import WeakKeyDictionary

import anyio.to_thread
import msgspec
from litestar import MediaType, Response, get
from litestar.di import NamedDependency
from litestar.params import PathParameter, QueryParameter
from litestar.response import Stream
from litestar.response.base import ASGIResponse
from prometheus_client import Counter
from sqlalchemy import Connection

from contracts.accounts import (
    COUNTRY_CODES,
    LINE_PATTERN,
    STORED_INT_MAX,
    TEXT_RULES,
    AbmStageName,
    FunnelStateName,
)
from contracts.instants import NoOffset, OutOfRange, parse_instant, written
from contracts.read_models import (
    LeaderboardEntry,
    LeaderboardPage,
    ObjectiveResult,
    Report,
    ReportGroup,
)
from domain.objectives import METRIC_STATES, Target
from projections import accounts, objectives, transitions
from projections.account_queries import BadCursor, Filters, Page, cursor_key, leaderboard
from projections.database import ReadModelDatabase, from_micros
from projections.reports import Window, report
from services.api.auth import PAST_READS, Permission
from services.api.documentation import READ_POSITION, STALE, download_name
from services.api.page_cache import Answer, PageCache
from services.api.problems import invalid_field, problem_response, retry_shortly
from services.exporting import render
from services.projector import Projector

PAGE_MAX = 200
REPORTS = Counter(
    "crm_reports",
    "Reports answered: made by this process, or shared with a request for the same report",
    ["answer"],
)
PAGE_PROBLEMS = {400: problem_response("A parameter or the cursor is invalid.")}

Limit = Annotated[int, QueryParameter(ge=1, le=PAGE_MAX, description="Page size.")]
Cursor = Annotated[
    str | None, QueryParameter(max_length=4000, description="From the previous page.")
]


def _instant(description: str, name: str | None = None) -> Any:
    # Taken as text and read by `instant`: Litestar would also take a number of seconds.
    return QueryParameter(
        name=name, description=description, max_length=64, schema_extra={"format": "date-time"}
    )


AsOf = Annotated[str | None, _instant("An RFC 3339 instant, e.g. 2026-01-31T12:00:00Z.")]
MinPosition = Annotated[
    int | None,
    QueryParameter(
        ge=0, le=STORED_INT_MAX, description="Wait briefly until the data reflects this position."
    ),
]


def text_query(description: str = "") -> Any:
    """A free-text query parameter: what it is, then the rules its text follows. (Litestar
    reads the first QueryParameter of an Annotated type, so a description cannot be added to
    `Text` by wrapping it.)"""
    rules = TEXT_RULES[LINE_PATTERN]
    return QueryParameter(
        min_length=1,
        max_length=200,
        pattern=LINE_PATTERN,
        description=f"{description} {rules[0].upper()}{rules[1:]}." if description else rules,
    )


Text = Annotated[str | None, text_query()]
Stages = Annotated[
    list[AbmStageName] | None,
    QueryParameter(
        description="ABM stages: accounts in any of them. Repeat it for several "
        "(`?stage=outreach&stage=warm_up`)."
    ),
]
Country = Annotated[
    str | None,
    QueryParameter(
        min_length=2,
        max_length=2,
        description="ISO 3166-1 alpha-2, e.g. DE (whatever its letter case).",
    ),
]


def stage_filter(stages: list[str] | None) -> tuple[str, ...]:
    """The stages a `stage` filter names, each once and in one order: a page asked for with
    them in another order or repeated is the same page (and the same kept answer)."""
    return tuple(sorted(set(stages))) if stages else ()


def country_filter(value: str | None) -> str | None:
    """The code a `country` filter names, in capitals as stored. A code ISO 3166-1 does not
    assign is refused: it matches no account, and an empty page would hide the typo."""
    if value is None:
        return None
    code = value.upper()
    if not (value.isascii() and code in COUNTRY_CODES):  # "ß".upper() is "SS"
        raise invalid_field("country", f"{value!r} is not an ISO 3166-1 alpha-2 code", 400)
    return code


@dataclass
class Flight:
    """A report waiting for its turn or being made, and how many requests wait to share it."""

    answer: asyncio.Future[Any]
    began: float = field(default_factory=time.monotonic)  # it reads the store after this
    sharing: int = 0


@dataclass(frozen=True)
class Reads:
    """What the read endpoints read with: the projector's read models, how long a read with
    `min_position` may wait, the answers kept until the read models change, and how long a
    report may wait for its turn."""

    projector: Projector
    wait_seconds: float
    pages: PageCache
    report_wait_seconds: float
    # A report is seconds of Python at a million accounts, holding the interpreter lock most
    # of that time: several at once finish no sooner than one after another, and meanwhile
    # slow every other request of the process (BENCHMARKS.md). So a process makes one at a
    # time.
    reports: anyio.CapacityLimiter = field(default_factory=lambda: anyio.CapacityLimiter(1))
    # The reports waiting for their turn or being made, by what was asked: the same report
    # asked meanwhile (a team opening one dashboard) shares the answer rather than queueing to
    # make it again.
    flights: dict[Hashable, Flight] = field(default_factory=dict)

    async def report(
        self, asked: Hashable, make: Callable[[], Any], fresh: Callable[[Any], bool]
    ) -> Any:
        """The answer to the report `asked` for: that of the same report waiting for its turn
        or being made, if it began after this request came or `fresh(answer)`, else
        `make()`'s."""
        came = time.monotonic()
        while (flight := self.flights.get(asked)) is not None:
            flight.sharing += 1
            try:
                answer = await asyncio.shield(flight.answer)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not flight.answer.cancelled() or (task and task.cancelling()):
                    raise  # this request was cancelled, not the one it waited for
                continue
            if flight.began >= came or fresh(answer):
                REPORTS.labels("shared").inc()
                return answer
            # Made before this request came, it may not show what this one waited for: the
            # one being made next (if another asked meanwhile) began after, and does.
        return await self._make(asked, make)

    async def _make(self, asked: Hashable, make: Callable[[], Any]) -> Any:
        # Found by the requests that ask the same from now on (none is being made: see report)
        flight = self.flights[asked] = Flight(asyncio.get_running_loop().create_future())
        try:
            await self._turn()
            try:
                answer = await anyio.to_thread.run_sync(make)
            finally:
                self.reports.release()
        except Exception as error:
            flight.answer.set_exception(error)
            flight.answer.exception()  # retrieved: asyncio would log it if nobody shared it
            raise
        except BaseException:
            flight.answer.cancel()
            raise
        else:
            flight.answer.set_result(answer)
            REPORTS.labels("made").inc()
            return answer
        finally:
            del self.flights[asked]

    async def _turn(self) -> None:
        """Once this process makes no other report; a 503 `busy` if none finished within
        `report_wait_seconds`."""
        try:
            self.reports.acquire_nowait()
        except anyio.WouldBlock:
            with anyio.move_on_after(self.report_wait_seconds) as waiting:
                await self.reports.acquire()
            if waiting.cancelled_caught:
                raise retry_shortly(
                    f"Another report is being made, and has taken more than "
                    f"{self.report_wait_seconds:g} s; retry shortly."
                ) from None

    async def page(
        self, key: Hashable, name: str, min_position: int | None, render: Render
    ) -> Response[Any]:
        """The answer `render(reached)` gives, kept while `name` and the others do not move;
        a read that waits for `min_position` is answered afresh."""
        if min_position is None:
            answer = await self.pages.answer(key, lambda: render(None))
        else:

            def waited() -> Answer:
                return render(
                    wait_for_position(self.projector, (name,), min_position, self.wait_seconds)
                )

            answer = await anyio.to_thread.run_sync(waited)
        return KeptResponse(answer)

    async def listed(
        self,
        name: str,
        query: Callable[..., Page],
        filters: Hashable,
        limit: int,
        cursor: str | None,
        min_position: int | None,
        page_type: type[msgspec.Struct],
        item: Callable[[dict[str, Any]], Any],
        as_of: datetime | None = None,
    ) -> Response[Any]:
        """A page of a list that read model `name` answers by `query` (a read model's page
        function, taking the filters, the limit and the cursor, and `as_of` when one is
        given), each row made an item of `page_type` by `item`."""
        past = () if as_of is None else (as_of,)

        def render(reached: bool | None) -> Answer:
            page = read_page(self.projector, query, filters, limit, cursor, *past)
            # Only a list that can look back has `as_of`; it says so when a page does.
            shown = {} if page.as_of is None else {"as_of": page.as_of}
            body = page_type(
                items=[item(row) for row in page.rows],
                position=page.position,
                next_cursor=page.next_cursor,
                min_position_reached=reached,
                **shown,
            )
            return Answer(msgspec.json.encode(body), position_headers(page.position, reached))

        key = (name, filters, limit, cursor, as_of)
        return await self.page(key, name, min_position, render)


class KeptResponse(Response[Any]):
    """An answer of the page cache, sent as the ASGI response made when it was kept."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.body, media_type=MediaType.JSON, headers=answer.headers)
        self.answer = answer

    def to_asgi_response(self, app: Any, request: Any, **kwargs: Any) -> ASGIResponse:
        if any(kwargs.get(name) for name in ("headers", "cookies", "background")):
            return super().to_asgi_response(app, request, **kwargs)  # a layer adds its own
        return self.answer.asgi


Render = Callable[[bool | None], Answer]


# A time whose offset lost its `+`: a query string's `+` is a space (…T12:00:00 01:00).
_PLUS_AS_SPACE = re.compile(r"\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)? \d{2}:\d{2}$")


def instant(value: str | None, field: str) -> datetime | None:
    """An RFC 3339 instant given as a query parameter, in UTC; a 400 naming `field` for text
    that is not one (a number of seconds, a time without its offset)."""
    if value is None:
        return None
    try:
        return parse_instant(value)
    except NoOffset:
        raise invalid_field(
            field, f"{field} needs a UTC offset, e.g. 2026-01-31T12:00Z.", 400
        ) from None
    except OutOfRange:
        raise invalid_field(field, f"{field} is {OutOfRange.said}.", 400) from None
    except ValueError:
        detail = f"{field} must be an RFC 3339 instant, e.g. 2026-01-31T12:00:00Z."
        if _PLUS_AS_SPACE.search(value):
            detail += " A + in a query string is read as a space: send +01:00 as %2B01:00."
        raise invalid_field(field, detail, 400) from None


def wait_for_position(
    projector: Projector, names: tuple[str, ...], min_position: int | None, wait: float
) -> bool | None:
    """Whether the read models `names` reached `min_position` within `wait` seconds. A
    position beyond the last event stored (which no command answered) is not waited for: the
    wait would hold a thread for an answer known at once."""
    if min_position is None:
        return None
    if min_position > (projector.ledger.recorder.max_notification_id() or 0):
        return False
    deadline = time.monotonic() + wait
    return all(
        projector.wait_for(name, min_position, deadline - time.monotonic()) >= min_position
        for name in names
    )


def read_page(projector: Projector, query, *args) -> Page:  # type: ignore[no-untyped-def]
    try:
        with projector.database.read() as conn:
            return query(conn, *args, key=_cursor_key(projector.database, conn))
    except BadCursor as exc:
        raise invalid_field("cursor", str(exc), 400) from None


_cursor_keys: WeakKeyDictionary[ReadModelDatabase, bytes] = WeakKeyDictionary()


def _cursor_key(database: ReadModelDatabase, conn: Connection) -> bytes:
    """The read models' cursor key, read once a process (it never changes)."""
    key = _cursor_keys.get(database)
    if key is None:
        key = _cursor_keys[database] = cursor_key(conn)
    return key


def position_headers(position: int, reached: bool | None) -> dict[str, str]:
    headers = {"CRM-Position": str(position)}
    if reached is False:
        headers["CRM-Stale"] = "true"
    return headers


@get(
    "/leaderboards/bant",
    opt={PAST_READS: True},
    tags=["read models"],
    responses=PAGE_PROBLEMS,
    response_headers=[READ_POSITION, STALE],
    summary="Accounts ranked by BANT score",
)
async def bant_leaderboard(
    reads: NamedDependency[Reads],
    stage: Stages = None,
    funnel: Annotated[FunnelStateName | None, QueryParameter()] = None,
    industry: Text = None,
    country: Country = None,
    limit: Limit = 50,
    cursor: Cursor = None,
    as_of: AsOf = None,
    min_position: MinPosition = None,
) -> Response[LeaderboardPage]:
    filters = Filters(
        stages=stage_filter(stage),
        funnel=funnel,
        industry=industry,
        country=country_filter(country),
    )
    return await account_rows(
        reads,
        leaderboard,
        LeaderboardPage,
        lambda rank, r: LeaderboardEntry(
            rank=rank,
            account_id=UUID(r["account_id"]),
            name=r["name"],
            score=r["score"],
            budget=r["budget"],
            authority=r["authority"],
            need=r["need"],
            timing=r["timing"],
            abm_stage=r["abm_stage"],
            funnel_state=r["funnel_state"],
            industry=r["industry"],
            country=r["country"],
            scored_at=from_micros(r["scored_at"]),
        ),
        filters,
        limit,
        cursor,
        as_of,
        min_position,
    )


async def account_rows(
    reads: Reads,
    query: Callable[..., Page],
    page_type: Callable[..., Any],
    entry: Callable[[int, dict[str, Any]], Any],
    filters: Filters,
    limit: int,
    cursor: str | None,
    as_of_text: str | None,
    min_position: int | None,
) -> Response[Any]:
    """A page of `query` over the accounts read model, each row made `entry(rank, row)`."""
    as_of = instant(as_of_text, "as_of")

    def render(reached: bool | None) -> Answer:
        page = read_page(reads.projector, query, filters, limit, cursor, as_of)
        body = page_type(
            items=[entry(page.first_rank + i, r) for i, r in enumerate(page.rows)],
            position=page.position,
            next_cursor=page.next_cursor,
            as_of=page.as_of,
            min_position_reached=reached,
        )
        return Answer(msgspec.json.encode(body), position_headers(page.position, reached))

    key = (query.__name__, filters, limit, cursor, as_of)
    return await reads.page(key, accounts.NAME, min_position, render)


async def _report(
    kind: str,
    reads: Reads,
    start: str | None,
    end: str | None,
    period: Literal["day", "month", "year"],
    group_by: Literal["industry", "country"] | None,
    as_of_text: str | None,
    min_position: int | None,
) -> Response[Report]:
    projector = reads.projector
    as_of = instant(as_of_text, "as_of") or datetime.now(UTC)
    default_start = _year_so_far(as_of, ends_at_as_of=end is None)
    window = Window(
        start=instant(start, "from") or default_start,
        end=instant(end, "to") or as_of,
        as_of=as_of,
        period=period,
        group_by=group_by,
        # Without `to` it runs to `as_of`, taking in what `current` counts; but the year just
        # ended, as of the next one's first instant, ends where that year does.
        through_as_of=end is None and (start is not None or default_start.year == as_of.year),
    )
    if window.end <= window.start:
        # The window's end is `to`, else `as_of`, else now; its start `from`, else 1 January.
        field = "to" if end else "as_of" if as_of_text else "from"
        detail = (
            f"The window is empty: its start, {written(window.start)}, is not earlier than "
            f"its end, {written(window.end)}."
        )
        raise invalid_field(field, detail, 400)
    shown = (
        (transitions.NAME, objectives.NAME) if kind == transitions.STAGE else (transitions.NAME,)
    )
    reached = None
    if min_position is not None:
        reached = await anyio.to_thread.run_sync(
            wait_for_position, projector, shown, min_position, reads.wait_seconds
        )

    def make() -> tuple[Window, dict[str, Any]]:
        with projector.database.read() as conn:
            # The objectives as set at `as_of`, else as they stand: whatever this host's clock
            # reads, another host's may have stamped a target after it.
            return window, report(conn, kind, window, window.as_of if as_of_text else None)

    def fresh(shared: tuple[Window, dict[str, Any]]) -> bool:
        # Made from the read models as they stood before this request waited for its own
        # write, it would not show it.
        return min_position is None or shared[1]["position"] >= min_position

    # Shared with a request that asked the same, its window with it: "now", the default
    # `as_of`, is then the instant that request came.
    asked = (kind, start, end, period, group_by, as_of_text)
    window, figures = await reads.report(asked, make, fresh)
    results = objective_results(figures["targets"], figures["actuals"])
    body = Report(
        kind=kind,
        start=window.start,
        end=window.end,
        as_of=window.as_of,
        period=period,
        group_by=group_by,
        position=figures["position"],
        groups=msgspec.convert(figures["groups"], list[ReportGroup]),
        objectives=results,
        min_position_reached=reached,
    )
    return Response(body, headers=position_headers(figures["position"], reached))


def objective_results(
    targets: dict[str, dict[str, Target]], actuals: dict[str, dict[str, int]]
) -> list[ObjectiveResult]:
    """Each target of each period (by metric) against the accounts that entered its stage in
    the period."""
    results = []
    for period, by_metric in targets.items():
        for target in sorted(by_metric.values(), key=lambda t: t.metric):
            actual = actuals.get(period, {}).get(METRIC_STATES[target.metric], 0)
            results.append(
                ObjectiveResult(
                    period=period,
                    metric=target.metric,
                    actual=actual,  # type: ignore[arg-type]
                    acceptable=target.acceptable,
                    optimal=target.optimal,
                    best=target.best,
                    level=target.level(actual),  # type: ignore[arg-type]
                )
            )
    return results


def _year_so_far(as_of: datetime, *, ends_at_as_of: bool) -> datetime:
    """The default window's start, as a strategist looks at it: 1 January of `as_of`'s year, or
    when the window ends at a year's first instant, of the year just ended (which is what a
    report as of then asks for, rather than an empty window)."""
    start = datetime(as_of.year, 1, 1, tzinfo=UTC)
    if ends_at_as_of and start == as_of and as_of.year > 1:
        return datetime(as_of.year - 1, 1, 1, tzinfo=UTC)
    return start


From = Annotated[str | None, _instant("Window start, an RFC 3339 instant.", "from")]
To = Annotated[
    str | None, _instant("Window end (open), an RFC 3339 instant; default `as_of`, included.", "to")
]
PeriodParam = Annotated[Literal["day", "month", "year"], QueryParameter()]
GroupBy = Annotated[Literal["industry", "country"] | None, QueryParameter()]


@get(
    "/reports/{kind:str}",
    opt={PAST_READS: True},
    tags=["read models"],
    responses={
        **PAGE_PROBLEMS,
        503: problem_response(
            "Another report was being made, and this process makes one at a time: it did not "
            "finish within CRM_REPORT_WAIT_SECONDS (`busy`); or the store is unavailable. "
            "Retry after Retry-After."
        ),
    },
    response_headers=[READ_POSITION, STALE],
    summary="ABM stages or See-Think-Do-Care: counts, moves per period, conversion, time in "
    "state, and for stages the win rate and objectives",
)
async def stage_or_funnel_report(
    kind: Annotated[Literal["stages", "funnel"], PathParameter()],
    reads: NamedDependency[Reads],
    start: From = None,
    end: To = None,
    period: PeriodParam = "month",
    group_by: GroupBy = None,
    as_of: AsOf = None,
    min_position: MinPosition = None,
) -> Response[Report]:
    return await _report(
        transitions.STAGE if kind == "stages" else transitions.FUNNEL,
        reads,
        start,
        end,
        period,
        group_by,
        as_of,
        min_position,
    )


ExportFormat = Annotated[Literal["csv", "jsonl"], QueryParameter(description="csv or jsonl.")]
ByteOrderMark = Annotated[
    bool,
    QueryParameter(
        description="CSV only: begin the file with a UTF-8 byte order mark, so that Excel "
        "opens it with a double-click as UTF-8 (accents and non-Latin letters as typed)."
    ),
]
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


def attachment(lines: Iterator[str], fmt: str, name: str) -> Stream:
    """A file to download, `name.fmt`. Its Content-Type goes in as a header: a streamed answer
    takes the route's documented media type over its own (Litestar 2), and one route serves
    several formats."""
    return Stream(
        lines,
        headers={
            "content-type": MEDIA_TYPES[fmt],
            "content-disposition": f'attachment; filename="{name}.{fmt}"',
        },
    )


async def download(
    reads: Reads,
    kind: Literal["accounts", "leaderboard"],
    fmt: str,
    min_position: int | None,
    bom: bool,
) -> Stream:
    """The whole list as a file to open in a spreadsheet (CSV) or to load elsewhere (JSON Lines),
    after waiting, as a page does, for the read models to reach `min_position` (an import's,
    say). `CRM-Position` is where they stood when the file began: it holds every event up to
    there."""
    if bom and fmt != "csv":
        raise invalid_field("bom", "A byte order mark is for CSV only: JSON Lines has none.", 400)
    projector = reads.projector
    reached = await anyio.to_thread.run_sync(
        wait_for_position, projector, (accounts.NAME,), min_position, reads.wait_seconds
    )
    position = await anyio.to_thread.run_sync(projector.position, accounts.NAME)
    stream = attachment(render(projector.database, kind, fmt, bom), fmt, kind)  # type: ignore[arg-type]
    stream.headers.update(position_headers(position, reached))
    return stream


@get(
    "/leaderboards/bant/export",
    # Before the file begins it reads the read models' position: a store away is a 503.
    opt={"permission": Permission.AUDIT},
    tags=["read models"],
    summary="The whole BANT leaderboard as CSV or JSON Lines",
    media_type="text/csv",
    response_headers=[READ_POSITION, STALE, download_name("leaderboard.csv")],
)
async def leaderboard_export(
    reads: NamedDependency[Reads],
    format: ExportFormat = "csv",
    min_position: MinPosition = None,
    bom: ByteOrderMark = False,
) -> Stream:
    return await download(reads, "leaderboard", format, min_position, bom)


READ_MODEL_HANDLERS = [bant_leaderboard, leaderboard_export, stage_or_funnel_report]
