"""Background jobs over HTTP: CSV uploads for bulk import, and the progress of any job."""

from __future__ import annotations

import codecs
import hashlib
import json
from typing import Annotated, Any
from uuid import UUID

import anyio
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import PathParameter, QueryParameter

from contracts.screening import JobKind, JobPage, JobStatus, JobSummary, JobView
from domain.errors import JobNotFound
from domain.jobs import RUNNING, Job
from domain.ledger import AccountLedger
from projections import jobs as listed_jobs
from projections.database import from_micros
from services.api.auth import Permission
from services.api.command_meta import IDEMPOTENT, CommandHeaders, sent_twice
from services.api.documentation import (
    JOB_LOCATION,
    JOB_POSITION,
    RAW_BODY,
    READ_POSITION,
    REPLAYED,
    STALE,
)
from services.api.problems import (
    KEY_REUSED,
    invalid_field,
    problem,
    problem_response,
    retry_shortly,
    unreadable,
    unreadable_response,
)
from services.api.read_models import (
    PAGE_PROBLEMS,
    Cursor,
    Limit,
    MinPosition,
    Reads,
)
from services.importing import UnknownCharset, text_codec
from services.jobs import IMPORTS_HELD, UPLOADS_AT_ONCE, JobRunner

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
# The whole of an upload, which holds one of the few places a process receives uploads in:
# 50 MiB at 90 kB/s. (Each pause is bounded too: services/request_head.py.)
UPLOAD_SECONDS = 600.0
# A CSV file as clients label it: none, its own type, and what browsers give a .csv file
# (Windows with Excel installed says it is Excel's; some say it is plain text).
CSV_MEDIA_TYPES = ("text/csv", "", "application/csv", "application/vnd.ms-excel", "text/plain")


def job_view(job: Job) -> JobView:
    return JobView(
        id=job.id,
        kind=job.kind,
        status=job.status,
        done=job.done,
        total=job.total,
        started_at=job.created_on,
        result=job.result,
        error=job.error,
    )


def accepted(job: Job, replayed: bool = False) -> Response[JobView]:
    headers = {"Location": f"/jobs/{job.id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(job_view(job), status_code=202, headers=headers)


@post(
    "/imports",
    opt={
        "permission": Permission.WRITE,
        IDEMPOTENT: True,
        RAW_BODY: (
            "text/csv",
            "The target list: a header row and one company a row, comma- or "
            "semicolon-separated, in UTF-8 unless the Content-Type names another charset "
            "(`text/csv; charset=windows-1252`); the columns are described in docs/IMPORT.md. "
            "At most 50 MiB. Sent without a Content-Type, or as the types a browser gives a "
            ".csv file (application/vnd.ms-excel, text/plain, application/csv), it is read "
            "as CSV.",
        ),
    },
    status_code=202,
    request_max_body_size=MAX_UPLOAD_BYTES,
    tags=["screening"],
    summary="Upload a CSV target list (see docs/IMPORT.md); answered with the import's job",
    responses={
        400: problem_response(
            "An empty body, a bad parameter, or a Content-Type sent twice or naming its "
            "charset twice."
        ),
        404: problem_response("No such policy version as `screen_with`."),
        413: problem_response("The file is over 50 MiB."),
        408: problem_response("The upload took more than 10 minutes."),
        415: problem_response(
            "The body is not text/csv, its charset is not one known, or it is sent compressed."
        ),
        422: problem_response(f"Refused: {KEY_REUSED}."),
        503: problem_response(
            f"This process is receiving {UPLOADS_AT_ONCE} uploads already, or holds "
            f"{IMPORTS_HELD} imports not finished (`busy`), or the store is unavailable. Retry "
            "after Retry-After."
        ),
    },
    response_headers=[JOB_LOCATION, REPLAYED],
)
async def upload_import(
    request: Request[Any, Any, Any],
    command_headers: NamedDependency[CommandHeaders],
    jobs: NamedDependency[JobRunner],
    strict: Annotated[bool, QueryParameter(description="Refuse the file on a bad row.")] = False,
    screen_with: Annotated[
        int | None, QueryParameter(ge=1, description="Then screen by this policy version.")
    ] = None,
    dry_run: Annotated[
        bool,
        QueryParameter(
            description="Store nothing: the job's result counts what each row would do, and "
            "lists the companies it would register or change, with each field's value before "
            "and after."
        ),
    ] = False,
) -> Response[JobView]:
    media_type, *parameters = _content_type(request).split(";")
    if media_type.strip().lower() not in CSV_MEDIA_TYPES:  # case-insensitive (RFC 9110)
        raise problem(
            415,
            "Unsupported media type",
            "Send the file as text/csv.",
            kind="unsupported-media-type",
        )
    charset = _charset(parameters)
    if dry_run and screen_with is not None:
        detail = "A dry run screens nothing: send screen_with with the import itself."
        raise invalid_field("screen_with", detail, 400)
    if not jobs.held.acquire(blocking=False):
        raise retry_shortly(f"This process holds {IMPORTS_HELD} imports not finished; retry later.")
    if not jobs.receiving.acquire(blocking=False):
        jobs.held.release()
        raise retry_shortly(
            f"This process is receiving {UPLOADS_AT_ONCE} uploads already; retry shortly."
        )
    kept = False  # whether the job started holds the import's place, until it ends
    try:  # until the file is on disk, for its job to read
        try:
            with anyio.fail_after(UPLOAD_SECONDS):
                data = await request.body()
        except TimeoutError:
            detail = f"The upload took more than {UPLOAD_SECONDS:g} s; send it again."
            raise problem(408, "Request Timeout", detail, kind="request-timeout") from None
        if _empty(data):
            raise problem(400, "Empty file", "The CSV file is empty.", kind="empty-file")

        def submit() -> Any:
            # What makes a retry the same request: the file and the options.
            upload = {
                "sha256": hashlib.sha256(data).hexdigest(),
                "strict": strict,
                "screen_with": screen_with,
            }
            # Each only when given, so a retry without it is the same request as before it was
            # taken.
            if charset is not None:
                upload["charset"] = charset
            if dry_run:
                upload["dry_run"] = True
            meta = command_headers.meta(upload)
            return jobs.submit_import(
                data, meta, strict, screen_with, charset, holding=True, dry_run=dry_run
            )

        started = await anyio.to_thread.run_sync(submit)
        kept = not started.replayed
    finally:
        jobs.receiving.release()
        if not kept:
            jobs.held.release()
    return accepted(started.value, started.replayed)


# UTF-32's before UTF-16's, which begin them.
_BYTE_ORDER_MARKS = (
    codecs.BOM_UTF32_LE,
    codecs.BOM_UTF32_BE,
    codecs.BOM_UTF16_LE,
    codecs.BOM_UTF16_BE,
    codecs.BOM_UTF8,
)


def _empty(data: bytes) -> bool:
    """Whether an upload holds nothing: no bytes, a byte-order mark alone, white space (in
    UTF-16 or UTF-32 too, a NUL beside each of its bytes)."""
    for mark in _BYTE_ORDER_MARKS:
        data = data.removeprefix(mark)
    return not data.strip(b" \t\r\n\x00\x0b\x0c")


def _content_type(request: Request[Any, Any, Any]) -> str:
    """The upload's Content-Type; a 400 when it is sent more than once, as two lines or joined
    by a comma (as a proxy joins them; no media type or charset holds one): which one a proxy
    reads is anyone's guess, and so is the charset the file would be read in."""
    sent = request.headers.getall("content-type", [])
    if len(sent) > 1 or any("," in value for value in sent):
        raise sent_twice("Content-Type")
    return sent[0] if sent else ""


def _charset(parameters: list[str]) -> str | None:
    """The `charset` parameter of the Content-Type, if any and not UTF-8, which is read when
    none is named (so an upload that names it is the same request as one that does not; its
    name is case-insensitive and its value may be quoted, RFC 9110); a problem when Python has
    no codec of that name, or when it is named twice (which one counts is anyone's guess)."""
    named = [
        value.strip().strip('"')
        for name, _, value in (parameter.partition("=") for parameter in parameters)
        if name.strip().lower() == "charset"
    ]
    if len(named) > 1:
        detail = f"The Content-Type names a charset {len(named)} times: name it once."
        raise invalid_field("Content-Type", detail, 400, source="header")
    if not named:
        return None
    charset = named[0]
    try:
        codec = text_codec(charset)
    except UnknownCharset:
        raise problem(
            415,
            "Unsupported charset",
            f"The charset {charset!r} is not one the import can read: send the file in"
            " UTF-8, or name its charset as Python does (such as windows-1252 or latin-1).",
            kind="unsupported-charset",
        ) from None
    return None if codec.startswith("utf-8") else charset  # utf-8-sig reads as UTF-8 does


@get(
    "/jobs/{job_id:uuid}",
    sync_to_thread=True,
    tags=["screening"],
    summary="A background job's progress and result",
    responses={404: problem_response("No such job."), 409: unreadable_response("the job")},
    response_headers=[JOB_POSITION],
)
def read_job(
    job_id: Annotated[UUID, PathParameter()], ledger: NamedDependency[AccountLedger]
) -> Response[JobView]:
    job = ledger.job(job_id)
    if job is None:
        raise JobNotFound(job_id)
    headers = {}
    if job.status != RUNNING:
        # The log's head, read after the ended job: at or after every event the job stored,
        # so a client can wait for its reads to show the job's work, as after a command.
        headers["CRM-Position"] = str(ledger.recorder.max_notification_id() or 0)
    return Response(job_view(job), headers=headers)


@post(
    "/jobs/{job_id:uuid}/cancel",
    opt={"permission": Permission.WRITE},
    status_code=200,
    sync_to_thread=True,
    tags=["screening"],
    summary="Cancel a running job",
    description="The job stores nothing more (one running in this process stops before its "
    "next chunk of rows or accounts, and is answered once it has, with its `done`; one "
    "running in another within about a second) and its status is `cancelled`; what it "
    "stored stays. A job cancelled already answers as it stands; its upload is removed.",
    responses={
        404: problem_response("No such job."),
        409: problem_response(
            f"The job has finished or failed (rule `job_ended`), or {unreadable('the job')}."
        ),
    },
)
def cancel_job(
    job_id: Annotated[UUID, PathParameter()],
    jobs: NamedDependency[JobRunner],
    command_headers: NamedDependency[CommandHeaders],
) -> JobView:
    return job_view(jobs.cancel(job_id, command_headers.meta(None)))


@get(
    "/jobs",
    tags=["screening"],
    summary="Background jobs, newest first",
    description="Every upload (`POST /imports`) and every policy apply run as a job, with its "
    "progress and the counts of its result, from the `jobs` read model (as the account list, "
    "it may be a moment behind: `min_position` waits for a position).",
    responses=PAGE_PROBLEMS,
    response_headers=[READ_POSITION, STALE],
)
async def list_jobs(
    reads: NamedDependency[Reads],
    kind: Annotated[JobKind | None, QueryParameter()] = None,
    status: Annotated[JobStatus | None, QueryParameter()] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
    min_position: MinPosition = None,
) -> Response[JobPage]:
    filters = listed_jobs.JobFilters(kind=kind, status=status)
    return await reads.listed(
        listed_jobs.NAME,
        listed_jobs.job_page,
        filters,
        limit,
        cursor,
        min_position,
        JobPage,
        _summary,
    )


def _summary(row: dict[str, Any]) -> JobSummary:
    return JobSummary(
        id=UUID(row["job_id"]),
        kind=row["kind"],
        status=row["status"],
        done=row["done"],
        total=row["total"],
        actor=row["actor"],
        options=json.loads(row["options"]),
        started_at=from_micros(row["started_at"]),
        ended_at=None if row["ended_at"] is None else from_micros(row["ended_at"]),
        counts=None if row["counts"] is None else json.loads(row["counts"]),
        error=row["error"],
    )
