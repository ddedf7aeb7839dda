"""A receipt for an idempotent command, saved in the same transaction as the command's events.

Because a receipt's id is derived from who sent the command and its key, a retry finds the
first receipt (or collides with it on save), so a command is never applied twice. A receipt
names the aggregate the command wrote and the version it left it at, from which the first
answer is given again.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.account import Attribution

RECEIPT_NAMESPACE = uuid5(NAMESPACE_URL, "urn:abm-crm:command-receipt")


@dataclass(frozen=True)
class IdempotencyKey:
    key: str
    fingerprint: str  # a digest of the request, to tell a retry from a different request

    def receipt_id(self, actor: str) -> UUID:
        return uuid5(RECEIPT_NAMESPACE, f"{actor}\n{self.key}")


class CommandReceipt(Aggregate):
    class Issued(Aggregate.Created):
        """The receipt of an account command as first stored; kept to read those receipts."""

        fingerprint: str
        account_id: UUID
        account_version: int
        actor: str
        request_id: str | None

    class Recorded(Aggregate.Created):
        """The receipt of a command on any aggregate: an account, the policies, objectives, a
        job."""

        fingerprint: str
        subject_id: UUID
        subject_version: int
        actor: str
        request_id: str | None

    def __init__(
        self,
        *,
        fingerprint: str,
        actor: str,
        request_id: str | None,
        account_id: UUID | None = None,
        account_version: int | None = None,
        subject_id: UUID | None = None,
        subject_version: int | None = None,
    ) -> None:
        self.fingerprint = fingerprint
        # The aggregate the command wrote, and its version once written.
        self.subject_id: UUID = subject_id or account_id  # type: ignore[assignment]
        self.subject_version: int = subject_version or account_version  # type: ignore[assignment]

    @classmethod
    def record(
        cls,
        receipt_id: UUID,
        fingerprint: str,
        subject_id: UUID,
        subject_version: int,
        by: Attribution,
    ) -> CommandReceipt:
        return cls._create(
            cls.Recorded,
            id=receipt_id,
            fingerprint=fingerprint,
            subject_id=subject_id,
            subject_version=subject_version,
            actor=by.actor,
            request_id=by.request_id,
            timestamp=by.at,
        )
