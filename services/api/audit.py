"""Endpoints for auditors beyond single accounts: checkpoints and the whole-store export."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.openapi.datastructures import ResponseSpec
from litestar.response import Stream

from contracts.audit import CheckpointView
from services.api.auth import Permission
from services.api.command_meta import CommandHeaders
from services.api.documentation import NO_STORE_PROBLEM, download_name
from services.api.problems import problem_response
from services.api.read_models import ExportFormat, attachment
from services.api.views import checkpoint_view
from services.audit import EXPORT_FIELDS, EXPORT_HASHED, Audit
from services.exporting import as_text

# What the reads that vouch for the record answer when its latest checkpoint does not verify.
CHECKPOINT_ALTERED = problem_response(
    "The latest checkpoint, or the full checkpoint it records changes since, is not what was "
    "recorded (rule `checkpoint_intact`, each problem in `problems`)."
)


def audit_download(records: Iterator[dict[str, Any]], fmt: str, name: str) -> Stream:
    return attachment(as_text(records, fmt, EXPORT_FIELDS, EXPORT_HASHED), fmt, name)  # type: ignore[arg-type]


@post(
    "/audit/checkpoints",
    opt={"permission": Permission.AUDIT},
    sync_to_thread=True,
    tags=["audit"],
    summary="Record a checkpoint of every account chain now (201), or answer the latest when "
    "no account changed since (200)",
    status_code=201,
    responses={
        200: ResponseSpec(
            CheckpointView,
            description="No account changed: the latest.",
            generate_examples=False,
        ),
        409: problem_response(
            "An account's chain is broken (rule `chain_intact`), or the latest checkpoint is "
            "not what was recorded (rule `checkpoint_intact`)."
        ),
    },
)
def create_checkpoint(
    audit: NamedDependency[Audit], command_headers: NamedDependency[CommandHeaders]
) -> Response[CheckpointView]:
    before = audit.latest_checkpoint()
    entry = audit.checkpoint(command_headers.meta(None))
    new = before is None or entry.number != before.number
    return Response(checkpoint_view(entry), status_code=201 if new else 200)


@get(
    "/audit/checkpoints/latest",
    opt={"permission": Permission.AUDIT},
    sync_to_thread=True,
    tags=["audit"],
    summary="The latest checkpoint: its root hash and the log position it covers",
    responses={
        404: problem_response("No checkpoint has been recorded yet."),
        409: CHECKPOINT_ALTERED,
    },
)
def latest_checkpoint(audit: NamedDependency[Audit]) -> CheckpointView:
    # Checked whole, so that it never shows a root its own heads do not give.
    entry = audit.check_checkpoints(latest_only=True).intact().latest
    if entry is None:
        raise NotFoundException("No checkpoint has been recorded yet.")
    return checkpoint_view(entry)


@get(
    "/audit/export",
    opt={"permission": Permission.AUDIT, NO_STORE_PROBLEM: True},
    # The latest checkpoint is checked before the body starts: over a million accounts that
    # hashes every head for seconds, which on the event loop would hold up every request.
    sync_to_thread=True,
    tags=["audit"],
    summary="Every account's events with their chain hashes, and the latest checkpoint",
    media_type="application/x-ndjson",
    responses={409: CHECKPOINT_ALTERED},
    response_headers=[download_name("ledger.jsonl")],
)
def export_all(audit: NamedDependency[Audit], format: ExportFormat = "jsonl") -> Stream:
    return audit_download(audit.export_records(), format, "ledger")


AUDIT_HANDLERS = [create_checkpoint, latest_checkpoint, export_all]
