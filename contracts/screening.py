"""HTTP bodies of screening policies (ABM stage 1): versions, dry runs and applies."""

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from msgspec import Meta, Struct

from contracts.accounts import (
    AbmStageName,
    Amount,
    Body,
    CountryCode,
    CurrencyCode,
    Name,
    Reason,
    ScreeningOutcomeName,
)

Names = Annotated[list[Name], Meta(max_length=200)]
Countries = Annotated[list[CountryCode], Meta(max_length=250)]
Headcount = Annotated[int, Meta(ge=0, le=10_000_000)]


class PolicyCriteria(Body):
    """Exclusion criteria; a field left empty does not screen."""

    industries_included: Names = []
    industries_excluded: Names = []
    headcount_min: Headcount | None = None
    headcount_max: Headcount | None = None
    revenue_min: Amount | None = None
    revenue_max: Amount | None = None
    revenue_currency: CurrencyCode | None = None
    countries_included: Countries = []
    countries_excluded: Countries = []
    regions_included: Names = []
    growth_rate_min: Annotated[float, Meta(ge=-100, le=100_000)] | None = None


class CreatePolicy(PolicyCriteria, frozen=True, forbid_unknown_fields=True):
    reason: Reason | None = None


class PolicyView(Struct, frozen=True):
    version: int
    created_at: datetime
    criteria: PolicyCriteria


class PolicyList(Struct, frozen=True):
    items: list[PolicyView]


class ScreenAccounts(Body):
    """Which accounts: the named ones, or (when absent) every account in stage 1."""

    account_ids: Annotated[list[UUID], Meta(max_length=10_000)] | None = None
    reason: Reason | None = None


class OverrideScreening(Body):
    outcome: ScreeningOutcomeName
    # Required by the account (409 `reason_required`), as every decision that needs one.
    reason: Reason | None = None


class DecisionView(Struct, frozen=True):
    account_id: UUID
    name: str
    abm_stage: AbmStageName
    current_outcome: ScreeningOutcomeName | None
    outcome: ScreeningOutcomeName
    failed_criteria: list[str]
    changes: bool  # whether applying the policy would change the account (never when skipped)
    overridden: bool
    skipped: str | None  # why the policy leaves the account alone, if it does


class ScreeningRun(Struct, frozen=True):
    """The outcome of a dry run (nothing stored) or an apply (`applied` events written)."""

    version: int
    dry_run: bool
    qualified: int
    excluded: int
    changes: int
    applied: int
    overridden: int
    skipped: int
    decisions: list[DecisionView]
    omitted: Annotated[
        int,
        Meta(
            description="Decisions counted in the totals but not listed: a run lists at most "
            "10,000, those that change first."
        ),
    ] = 0


JobStatus = Literal["running", "finished", "failed", "cancelled"]
JobKind = Literal["import", "apply_policy"]


class JobView(Struct, frozen=True):
    """A background job: a bulk import or a policy apply. Poll it until `status` is not
    `running`: `finished` when it did its work, `failed` when it did not (`error` says why; an
    import whose file was refused as a whole stored nothing, and its `result` still holds what
    the file showed, such as its bad rows)."""

    id: UUID
    kind: JobKind
    status: JobStatus
    done: Annotated[
        int,
        Meta(
            description="Rows of an import done (registered, updated or unchanged), or"
            " accounts of a policy apply screened."
        ),
    ]
    total: Annotated[
        int | None,
        Meta(
            description="What `done` counts up to: the file's rows but the bad ones, or the"
            " accounts. Null until the job knows it (an import knows it once its file is read,"
            " before it stores a row), and for a file refused as a whole."
        ),
    ]
    started_at: datetime
    result: Annotated[
        dict[str, Any] | None,
        Meta(
            description="What the job did, once it ended. An import's: `registered`, `updated`,"
            " `unchanged`, `rejected`, `errors` (each `line`, `column`, `reason`; the first"
            " 1,000), `errors_total`, `refused` and, with `screen_with`, `screened`; a dry run's"
            " also `dry_run` and `changes` (each `line`, `account_id`, `domain`, `outcome`,"
            " `fields`: per field its `before` and `after`). A policy apply's: `accounts`,"
            " `applied`, `overridden`, `skipped`."
        ),
    ] = None
    error: Annotated[
        str | None, Meta(description="Why a failed job failed: for a refused file, the reason.")
    ] = None


class JobSummary(Struct, frozen=True):
    """A job as the list of jobs shows it: its progress, what it was started with, and the
    counts of its result (`GET /jobs/{id}` has the whole result)."""

    id: UUID
    kind: JobKind
    status: JobStatus
    done: int
    total: int | None
    actor: Annotated[str, Meta(description="Who started it: the API key's name.")]
    options: Annotated[
        dict[str, Any],
        Meta(
            description="What it was started with, those given: an import's `strict`,"
            " `screen_with`, `dry_run` and `charset`; a policy apply's `version` and `accounts`"
            " (how many it was given)."
        ),
    ]
    started_at: datetime
    ended_at: datetime | None = None
    counts: Annotated[
        dict[str, int] | None,
        Meta(
            description="Once it ended, the counts of its result: an import's `registered`,"
            " `updated`, `unchanged`, `rejected`, `errors_total` (and `screened`); a policy"
            " apply's `accounts`, `applied`, `overridden`, `skipped`."
        ),
    ] = None
    error: str | None = None


class JobPage(Struct, frozen=True):
    items: list[JobSummary]
    position: int
    next_cursor: str | None = None
    min_position_reached: bool | None = None
