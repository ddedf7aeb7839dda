"""A receipt for an idempotent command, saved in the same transaction as the command's events.

Because a receipt's id is derived from who sent the command and its key, a retry finds the
first receipt (or collides with it on save), so a command is never applied twice.
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
        fingerprint: str
        account_id: UUID
        account_version: int
        actor: str
        request_id: str | None

    def __init__(
        self,
        *,
        fingerprint: str,
        account_id: UUID,
        account_version: int,
        actor: str,
        request_id: str | None,
    ) -> None:
        self.fingerprint = fingerprint
        self.account_id = account_id
        self.account_version = account_version

    @classmethod
    def issue(
        cls,
        receipt_id: UUID,
        fingerprint: str,
        account_id: UUID,
        account_version: int,
        by: Attribution,
    ) -> CommandReceipt:
        return cls._create(
            cls.Issued,
            id=receipt_id,
            fingerprint=fingerprint,
            account_id=account_id,
            account_version=account_version,
            actor=by.actor,
            request_id=by.request_id,
            timestamp=by.at,
        )
