"""Background jobs (bulk imports, policy applies): their progress is recorded as events, so a
job that a restart interrupted is found and run again. Every job is safe to run again: what it
already did changes nothing the second time."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.account import Attribution
from domain.chain import AppliedOrUnreadable
from domain.errors import JobEnded

RUNNING, FINISHED, FAILED, CANCELLED = "running", "finished", "failed", "cancelled"


class Job(Aggregate):
    class Event(AppliedOrUnreadable, Aggregate.Event):
        actor: str
        reason: str | None
        request_id: str | None

    class Started(Event, Aggregate.Created):
        kind: str
        params: dict[str, Any]

    class Progressed(Event):
        done: int
        total: int

        def apply(self, job: Job) -> None:
            job.done, job.total = self.done, self.total

    class Finished(Event):
        result: dict[str, Any]

        def apply(self, job: Job) -> None:
            job.result = self.result
            if self.result.get("refused"):
                # Recorded before a refused file ended its job with Refused: read as it ends now.
                job.status, job.error = FAILED, self.result["refused"]
                return
            job.status = FINISHED
            if job.total is None:  # recorded before a job with nothing to do said so (0 of 0)
                job.total = job.done

    class Failed(Event):
        error: str

        def apply(self, job: Job) -> None:
            job.status, job.error = FAILED, self.error

    class Refused(Event):
        """The job's input was refused as a whole (a file with a column missing, say) and
        nothing of it was stored: a failure with its reason, and what was found on the way."""

        error: str
        result: dict[str, Any]

        def apply(self, job: Job) -> None:
            job.status, job.error, job.result = FAILED, self.error, self.result

    class Cancelled(Event):
        """Someone stopped the job: what it stored stays, and it stores nothing more."""

        def apply(self, job: Job) -> None:
            job.status = CANCELLED

    class Stopped(Event):
        """The process running a cancelled job stopped it, with `done` of its work done: more
        than it had recorded as its progress, which it records only now and then."""

        done: int

        def apply(self, job: Job) -> None:
            job.done = self.done

    def __init__(
        self,
        *,
        kind: str,
        params: dict[str, Any],
        actor: str,
        reason: str | None,
        request_id: str | None,
    ) -> None:
        self.kind = kind
        self.params = params
        self.actor = actor
        self.status = RUNNING
        self.done = 0
        self.total: int | None = None  # until the job knows its work: 0 would say it has none
        self.result: dict[str, Any] | None = None
        self.error: str | None = None

    @classmethod
    def start(cls, job_id: UUID, kind: str, params: dict[str, Any], by: Attribution) -> Job:
        return cls._create(cls.Started, id=job_id, kind=kind, params=params, **by.event_fields())

    def progress(self, done: int, total: int, by: Attribution) -> None:
        self._running()
        self.trigger_event(self.Progressed, done=done, total=total, **by.event_fields())

    def finish(self, result: dict[str, Any], by: Attribution) -> None:
        self._running()
        self.trigger_event(self.Finished, result=result, **by.event_fields())

    def fail(self, error: str, by: Attribution) -> None:
        self._running()
        self.trigger_event(self.Failed, error=error, **by.event_fields())

    def refuse(self, error: str, result: dict[str, Any], by: Attribution) -> None:
        self._running()
        self.trigger_event(self.Refused, error=error, result=result, **by.event_fields())

    def cancel(self, by: Attribution) -> None:
        if self.status == CANCELLED:
            return  # cancelled already: nothing changes
        if self.status != RUNNING:
            raise JobEnded(f"The job has ended ({self.status}): only a running job is cancelled.")
        self.trigger_event(self.Cancelled, **by.event_fields())

    def stopped(self, done: int, by: Attribution) -> None:
        """Records how much of its work a cancelled job had done when it stopped."""
        if self.status != CANCELLED:
            raise JobEnded(f"The job is {self.status}, not cancelled.")
        if done > self.done:
            self.trigger_event(self.Stopped, done=done, **by.event_fields())

    def _running(self) -> None:
        if self.status != RUNNING:
            raise JobEnded(f"The job has ended ({self.status}): it records nothing more.")
