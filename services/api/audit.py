"""Endpoints for auditors beyond single accounts: checkpoints and the whole-store export."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from litestar import get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.response import Stream

from contracts.audit import CheckpointView
from services.api.auth import Permission
from services.api.command_meta import CommandHeaders
from services.api.read_models import MEDIA_TYPES, ExportFormat
from services.api.views import checkpoint_view
from services.audit import EXPORT_FIELDS, Audit
from services.exporting import as_text


def audit_download(records: Iterator[dict[str, Any]], fmt: str, name: str) -> Stream:
    return Stream(
        as_text(records, fmt, EXPORT_FIELDS),  # type: ignore[arg-type]
        media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'},
    )


@post(
    "/audit/checkpoints",
    opt={"permission": Permission.AUDIT},
    sync_to_thread=True,
    tags=["audit"],
    summary="Record a checkpoint of every account chain now (the latest, if nothing changed)",
    status_code=201,
)
def create_checkpoint(
    audit: NamedDependency[Audit], command_headers: NamedDependency[CommandHeaders]
) -> CheckpointView:
    return checkpoint_view(audit.checkpoint(command_headers.meta(None)))


@get(
    "/audit/checkpoints/latest",
    opt={"permission": Permission.AUDIT},
    sync_to_thread=True,
    tags=["audit"],
    summary="The latest checkpoint: its root hash and the log position it covers",
)
def latest_checkpoint(audit: NamedDependency[Audit]) -> CheckpointView:
    entry = audit.latest_checkpoint()
    if entry is None:
        raise NotFoundException("No checkpoint has been recorded yet.")
    return checkpoint_view(entry)


@get(
    "/audit/export",
    opt={"permission": Permission.AUDIT},
    sync_to_thread=False,
    tags=["audit"],
    summary="Every account's events with their chain hashes, and the latest checkpoint",
    media_type="application/x-ndjson",
)
def export_all(audit: NamedDependency[Audit], format: ExportFormat = "jsonl") -> Stream:
    return audit_download(audit.export_records(), format, "ledger")


AUDIT_HANDLERS = [create_checkpoint, latest_checkpoint, export_all]
