"""Why the ledger refuses a command. The HTTP edge maps each class to a status code."""

from uuid import UUID


class LedgerError(Exception):
    """Base of every refusal; `detail` is written for the person who sent the command."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class RuleViolation(LedgerError):
    """A business rule refused the command; `rule` is a stable machine-readable name."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(detail)
        self.rule = rule


class InvalidValue(LedgerError):
    """A value the domain cannot accept (the contracts normally catch these first)."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field


class NotFound(LedgerError):
    """What the command or read names does not exist; `title` says what it is."""

    title = "Not found"


class AccountNotFound(NotFound):
    title = "Account not found"

    def __init__(self, account_id: UUID) -> None:
        super().__init__(f"No account has id {account_id}.")
        self.account_id = account_id


class ContactNotFound(NotFound):
    title = "Contact not found"

    def __init__(self, contact_id: UUID) -> None:
        super().__init__(f"The account has no contact with id {contact_id}.")
        self.contact_id = contact_id


class DomainAlreadyRegistered(LedgerError):
    def __init__(self, domain: str, account_id: UUID) -> None:
        super().__init__(f"The web domain {domain} is already registered as account {account_id}.")
        self.domain = domain
        self.account_id = account_id


class VersionMismatch(LedgerError):
    """The caller's expected version is not the current version (of the account, or of what
    `subject` names)."""

    def __init__(self, expected: int | None, actual: int, subject: str = "The account is") -> None:
        if expected is None:  # any version would do, and there is none
            super().__init__(f"{subject} at version {actual}: none is written yet.")
        else:
            super().__init__(f"{subject} at version {actual}, not {expected}.")
        self.expected = expected
        self.actual = actual


class IdempotencyKeyReused(LedgerError):
    def __init__(self) -> None:
        super().__init__("This Idempotency-Key was already used for a different request.")


class Contention(LedgerError):
    """Other writers kept changing what the command changes (an account, a period's
    objectives, the screening policy…) while it was being applied."""

    def __init__(self, what: str) -> None:
        said = f"{what[0].upper()}{what[1:]}"
        super().__init__(f"{said} is changing too fast to apply the command; retry.")
        self.what = what


class PolicyNotFound(NotFound):
    title = "Policy not found"

    def __init__(self, version: int) -> None:
        super().__init__(f"There is no screening policy version {version}.")
        self.version = version


class ObjectivesNotFound(NotFound):
    def __init__(self, period: str) -> None:
        super().__init__(f"No objectives are set for {period}: there is no target to remove.")
        self.period = period


class JobNotFound(NotFound):
    def __init__(self, job_id: UUID) -> None:
        super().__init__(f"No job has id {job_id}.")
        self.job_id = job_id


class JobEnded(RuleViolation):
    """The job has ended (finished, failed or cancelled): it records nothing more."""

    def __init__(self, detail: str) -> None:
        super().__init__("job_ended", detail)


class ChainBroken(LedgerError):
    """A stored chain no longer matches what was written, so no checkpoint can vouch for it."""

    def __init__(self, originator_id: UUID, version: int, problem: str) -> None:
        super().__init__(
            f"The hash chain of {originator_id} breaks: {problem}. "
            "`crm audit verify` lists every break."
        )
        self.originator_id = originator_id
        self.version = version


class CheckpointAltered(LedgerError):
    """The checkpoint log or a checkpoint is not what was recorded, so nothing can be verified
    against it, nor a new checkpoint built on it."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(
            f"The audit checkpoints are not what was recorded: {'; '.join(problems)}. "
            "`crm audit verify` lists every problem."
        )
        self.problems = problems


class EventUnreadable(LedgerError):
    """A stored event can no longer be read (its state was changed behind the ledger's back),
    so nothing built from it can be answered; `crm audit verify` reports it too."""

    def __init__(self, originator_id: UUID, version: int, reason: str) -> None:
        super().__init__(
            f"Version {version} of {originator_id} can no longer be read: {reason}. "
            "`crm audit verify` lists every break."
        )
        self.originator_id = originator_id
        self.version = version
        self.reason = reason
