"""The `jobs` read model: every background job (an import, a policy apply) as it stands, newest
first, for the list of jobs a client has lost the id of.

A job is an aggregate of its own in the event store; found there only by reading the whole log
for its first event, it is kept here as one row, changed by the job's later events as the job
itself is (each event's own `apply`), without its result: a row keeps the result's counts, and
`GET /jobs/{id}` the whole of it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, bindparam, text

from contracts.accounts import STORED_INT_MAX
from domain.jobs import RUNNING, Job
from projections.account_queries import BadCursor, Page, encode_cursor, signed_state
from projections.batch import Entry
from projections.database import insert_rows, to_micros
from projections.generations import Generation, live_generation

NAME = "jobs"

log = logging.getLogger("crm.projector")

# The events it applies.
READS = (
    Job.Started,
    Job.Progressed,
    Job.Finished,
    Job.Failed,
    Job.Refused,
    Job.Cancelled,
    Job.Stopped,
)
# A job's events are the job runner's record of its work, not the accounts': one that cannot
# be read, or whose values no job can have (edited behind the ledger's back, which the audit
# names), is passed over with a warning, rather than hold up every read model until it is put
# right, as an account's must (their rows would be wrong without it).
PASSES_UNREADABLE = True
UNAPPLIABLE = (ValueError, TypeError, KeyError, AttributeError)
# What a job was started with that a list shows: an import's options, a policy apply's version
# (and, apart, how many accounts it was given). Not the upload's path on the server's disk, nor
# the request's reason and id, which its events carry.
OPTIONS = ("strict", "screen_with", "dry_run", "charset", "version")
ORDER = (("position", "DESC"),)  # newest first: the position of each job's first event


def table(gen: Generation) -> str:
    return gen.table("rows")


@dataclass
class Row:
    """A job as listed; `apply` of the job's events changes it as it changes the job."""

    job_id: str
    position: int  # of the job's first event
    kind: str
    actor: str
    options: str  # JSON
    started_at: int
    status: str = RUNNING
    done: int = 0
    total: int | None = None
    counts: str | None = None  # JSON: the whole numbers of the job's result
    error: str | None = None
    ended_at: int | None = None
    result: dict[str, Any] | None = None  # set by an event of this batch; not stored


COLUMNS = tuple(Row.__dataclass_fields__)[:-1]


def create_tables(conn: Connection, gen: Generation, *, query_indexes: bool = True) -> None:
    conn.execute(
        text(f"""
        CREATE TABLE IF NOT EXISTS {table(gen)} (
            job_id TEXT PRIMARY KEY,
            position BIGINT NOT NULL,
            kind TEXT NOT NULL,
            actor TEXT NOT NULL,
            options TEXT NOT NULL,
            started_at BIGINT NOT NULL,
            status TEXT NOT NULL,
            done BIGINT NOT NULL,
            total BIGINT,
            counts TEXT,
            error TEXT,
            ended_at BIGINT
        )""")
    )
    if query_indexes:
        complete_tables(conn, gen)


def complete_tables(conn: Connection, gen: Generation) -> None:
    t = table(gen)
    conn.execute(text(f"CREATE INDEX IF NOT EXISTS {t}_position ON {t} (position)"))


def analyze(conn: Connection, gen: Generation) -> None:
    conn.execute(text(f"ANALYZE {table(gen)}"))


def drop_tables(conn: Connection, gen: Generation) -> None:
    conn.execute(text(f"DROP TABLE IF EXISTS {table(gen)}"))


def apply(conn: Connection, gen: Generation, batch: list[Entry]) -> None:
    events = [(p, j, e) for p, j, e in batch if isinstance(e, Job.Event)]
    if not events:
        return
    t = table(gen)
    started = {j for _, j, e in events if isinstance(e, Job.Started)}
    earlier = sorted({j for _, j, _ in events} - started)
    rows: dict[str, Row] = {}
    if earlier:
        query = text(f"SELECT {', '.join(COLUMNS)} FROM {t} WHERE job_id IN :ids").bindparams(
            bindparam("ids", expanding=True)
        )
        rows = {r[0]: Row(*r) for r in conn.execute(query, {"ids": earlier})}
    for position, job_id, event in events:
        try:
            row = _applied(rows.get(job_id), job_id, position, event)
        except UNAPPLIABLE as error:
            log.warning(
                "passed over event %d of job %s: its values do not apply (%s)",
                event.originator_version,
                job_id,
                error,
            )
            continue
        if row is not None:
            rows[job_id] = row
    if earlier:
        delete = text(f"DELETE FROM {t} WHERE job_id IN :ids").bindparams(
            bindparam("ids", expanding=True)
        )
        conn.execute(delete, {"ids": earlier})
    values = [tuple(getattr(row, c) for c in COLUMNS) for row in rows.values()]
    insert_rows(conn, t, COLUMNS, values)


def _applied(row: Row | None, job_id: str, position: int, event: Job.Event) -> Row | None:
    """The job's row after `event`: made by its first event, changed by the others as they
    change the job (None for a job started before the log this generation read, which cannot
    be). ValueError, or another of UNAPPLIABLE, for values a job cannot have."""
    if isinstance(event, Job.Started):
        row = Row(
            job_id=job_id,
            position=position,
            kind=event.kind,
            actor=event.actor,
            options=json.dumps(_options(event.params)),
            started_at=to_micros(event.timestamp),
        )
    elif row is None:
        return None
    else:
        row = replace(row)  # the row as it was stays, should the event not apply
        event.apply(row)
        if row.result is not None:
            row.counts = json.dumps(_counts(row.result))
        if row.status != RUNNING and row.ended_at is None:  # a cancelled job's stop is after
            row.ended_at = to_micros(event.timestamp)
    texts = (row.kind, row.actor, row.status, row.error or "")
    if not (
        all(isinstance(value, str) and "\x00" not in value for value in texts)
        and _whole(row.done)
        and (row.total is None or _whole(row.total))
    ):
        raise ValueError("values no job can have")
    return row


def _whole(value: Any) -> bool:
    return type(value) is int and 0 <= value <= STORED_INT_MAX


def _options(params: dict[str, Any]) -> dict[str, Any]:
    options = {
        name: params[name]
        for name in OPTIONS
        if params.get(name) is not None and params.get(name) is not False
    }
    if isinstance(params.get("account_ids"), list):
        options["accounts"] = len(params["account_ids"])
    return options


def _counts(result: dict[str, Any]) -> dict[str, int]:
    return {name: value for name, value in result.items() if type(value) is int}


@dataclass(frozen=True)
class JobFilters:
    kind: str | None = None
    status: str | None = None


def job_page(
    conn: Connection, filters: JobFilters, limit: int, cursor: str | None = None, *, key: bytes
) -> Page:
    """Jobs newest first; a cursor goes on after the last job of its page, with the same
    filters."""
    gen = live_generation(conn, NAME)
    if gen is None:
        return Page(rows=[], position=0)
    conditions, params = ["1 = 1"], {"limit": limit + 1}
    if cursor is not None:
        conditions.append("position < :before")
        params["before"] = _before(cursor, key, filters)
    for name in ("kind", "status"):
        if (value := getattr(filters, name)) is not None:
            conditions.append(f"{name} = :{name}")
            params[name] = value
    query = (
        f"SELECT {', '.join(COLUMNS)} FROM {table(gen)} WHERE {' AND '.join(conditions)} "
        f"ORDER BY position DESC LIMIT :limit"
    )
    rows = [dict(r) for r in conn.execute(text(query), params).mappings()]
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        state = {"b": rows[-1]["position"], "f": [filters.kind, filters.status]}
        next_cursor = encode_cursor(key, state, ORDER)
    return Page(rows=rows, position=gen.position, next_cursor=next_cursor)


def _before(cursor: str, key: bytes, filters: JobFilters) -> int:
    state = signed_state(cursor, key, ORDER)
    if not (isinstance(state, dict) and type(state.get("b")) is int and "f" in state):
        raise BadCursor("The cursor is not one this service issued.")
    if state["f"] != [filters.kind, filters.status]:
        raise BadCursor("The cursor was issued for other filters; send it with the same.")
    return state["b"]
