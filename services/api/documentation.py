"""What routes declare for the OpenAPI document beyond their parameters and `responses=`: the
headers of their success answers (`response_headers=`), and handler opts that
services/api/openapi.py reads. A leaf module, so that any route module can import it."""

from __future__ import annotations

from litestar.datastructures import ResponseHeader

# A handler opt: the operation never answers 503 for the store, as it does not use it, or
# answers for it in its own body (/metrics), or streams (an outage cuts the stream short).
NO_STORE_PROBLEM = "no_store_problem"
# A handler opt: the request body the handler reads itself, unparsed, as (media type,
# description). Litestar documents only the bodies it decodes into `data`.
RAW_BODY = "raw_body"


def _header(
    name: str, description: str, example: str | int, required: bool = False
) -> ResponseHeader:
    # `value` is never sent (documentation only); Litestar takes the header's schema from its
    # type: an int for a position, which a client reads as a number.
    return ResponseHeader(
        name=name,
        value=example,
        description=description,
        documentation_only=True,
        required=required,
        example=example,
    )


# The headers of success answers, as routes list them in `response_headers=`.
ETAG = _header("ETag", 'The account\'s version, which If-Match takes back: "3".', '"3"', True)
OBJECTIVES_ETAG = _header(
    "ETag", 'The objectives\' version, which If-Match takes back: "3".', '"3"', True
)
COMMAND_POSITION = _header(
    "CRM-Position",
    "The event log position at which the read models reflect the command: a read with this "
    "min_position sees it (when the command changed nothing, or was replayed, the log's "
    "position when it was answered).",
    42,
    True,
)
READ_POSITION = _header(
    "CRM-Position",
    "The event log position the read models had reached for this answer.",
    42,
    True,
)
STALE = _header(
    "CRM-Stale",
    '"true" when the read models had not reached min_position in time: the answer may not '
    "reflect it yet.",
    "true",
)
REPLAYED = _header(
    "Idempotent-Replayed",
    '"true" when the Idempotency-Key and body were sent before: the answer repeats the first '
    "one, and nothing was stored again.",
    "true",
)


def download_name(file: str, *, always: bool = True) -> ResponseHeader:
    """The Content-Disposition of a download, `file` its example name; `always` when every
    answer of the route is one (else only some formats are)."""
    return _header(
        "Content-Disposition",
        "An attachment, with the name to save it under."
        + ("" if always else " Sent with format=csv or jsonl."),
        f'attachment; filename="{file}"',
        always,
    )


ACCOUNT_LOCATION = _header("Location", "The registered account.", "/accounts/{account_id}", True)
POLICY_LOCATION = _header("Location", "The new policy version.", "/screening-policies/2", True)
JOB_LOCATION = _header("Location", "The job, to follow its progress.", "/jobs/{job_id}", True)
JOB_POSITION = _header(
    "CRM-Position",
    "Once the job has ended (finished or failed): an event log position at or after every "
    "event it stored, so a read with this min_position sees all the job did. Not sent while "
    "the job runs.",
    42,
)
