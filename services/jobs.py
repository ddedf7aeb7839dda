"""Runs background jobs in threads of the serving process, and resumes the unfinished ones at
start-up. Jobs are safe to run again from the start: an import stores nothing for a row that
changes nothing, and a policy apply records nothing for an account whose outcome stands."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from domain.account import Account
from domain.errors import JobEnded
from domain.jobs import RUNNING, Job
from domain.ledger import AccountLedger, CommandMeta, Outcome
from domain.screening_policy import ScreeningDecision
from services.importing import import_rows
from services.leadership import RETRY_SECONDS, Leadership
from services.settings import PRIVATE, Settings
from services.store import database_unavailable, first_line

log = logging.getLogger("crm.jobs")

IMPORT, APPLY_POLICY = "import", "apply_policy"
PROGRESS_SECONDS = 1.0  # how often a running job records its progress
APPLY_CHUNK = 200
STOP_SECONDS = 5.0  # how long a stopping process waits for its jobs to reach a safe point
# An import holds its file and its decoded text in memory (a 50 MiB upload, several times
# that): a process receives at most this many uploads, and runs this many imports, at once.
UPLOADS_AT_ONCE = 4
IMPORTS_AT_ONCE = 2
# Imports a process accepts and has not finished (running or waiting their turn): each keeps its
# file on disk and a thread until it ends.
IMPORTS_HELD = 8


class Interrupted(Exception):
    """The process is stopping: the job stays running, and the next start resumes it."""


class LockLost(Exception):
    """The job's lock is no longer this process's (the database connection that held it was
    cut): another process may run the job now, so this one stops, and takes it again if it is
    free."""


class InputRefused(Exception):
    """The job's input is refused as a whole: the job fails with the reason, having stored
    nothing, rather than finish as though it had done its work."""

    def __init__(self, reason: str, result: dict[str, Any]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.result = result


class JobRunner:
    def __init__(self, ledger: AccountLedger, settings: Settings) -> None:
        self.ledger = ledger
        self.settings = settings
        self.uploads = settings.data_dir / "imports"
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        # Taken by the API while it receives an upload (a 503 `busy` when none is free), and
        # by an import job for its run (a job waits its turn, running at 0 rows).
        self.receiving = threading.BoundedSemaphore(UPLOADS_AT_ONCE)
        self.importing = threading.BoundedSemaphore(IMPORTS_AT_ONCE)
        # Taken by the API for an upload it accepts, given back when its job ends (a 503
        # `busy` when none is free); a job resumed at start takes none.
        self.held = threading.BoundedSemaphore(IMPORTS_HELD)
        self._holding: set[UUID] = set()
        # Jobs cancelled through this process: one running here stops before its next chunk.
        # One running in another process stops at its next record of progress.
        self._cancelled: set[UUID] = set()

    def stop(self) -> None:
        """Stops the running jobs at their next progress point, before the ledger closes: a job
        cut off by a closed ledger could be recorded as failed, though it only stopped."""
        self._stopping.set()
        deadline = time.monotonic() + STOP_SECONDS
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))

    def submit_import(
        self,
        data: bytes,
        meta: CommandMeta,
        strict: bool,
        screen_with: int | None,
        charset: str | None = None,
        *,
        holding: bool = False,
        dry_run: bool = False,
    ) -> Outcome[Job]:
        """Starts an import job (a dry run: one that stores no account event); a retry with
        the same idempotency key gets the first job. `holding`: the caller took a place in
        `held`, which the job gives back when it ends."""
        if screen_with is not None:
            self.ledger.policy(screen_with)  # PolicyNotFound now, not once the rows are stored
        if (answered := self.ledger.answered(meta)) is not None:
            return Outcome(answered, replayed=True)  # nothing kept, no job started
        job_id = uuid4()
        self.settings.make_data_dir()
        self.uploads.mkdir(mode=PRIVATE, exist_ok=True)
        path = self.uploads / f"{job_id}.csv"
        params = {
            "file": str(path),
            "strict": strict,
            "screen_with": screen_with,
            "charset": charset,
            "dry_run": dry_run,
            "reason": meta.reason,
            "request_id": meta.request_id,
        }
        try:
            path.write_bytes(data)  # kept before the job exists, so a resumed job finds its file
            if holding:
                self._holding.add(job_id)  # the job gives back `held` when it ends
            started = self._start(IMPORT, params, meta, job_id)
        except BaseException:
            self._holding.discard(job_id)
            self._discard_unless_started(path, job_id)
            raise
        if started.replayed:  # a retry with the same key started its job first
            self._holding.discard(job_id)
            path.unlink(missing_ok=True)
        return started

    def _discard_unless_started(self, path: Path, job_id: UUID) -> None:
        """Removes the upload of a job that was not started (another upload took its
        Idempotency-Key first, the store refused the save). A save whose answer was lost may
        have stored the job all the same: unless the store says it has no such job, the file
        stays for the job to find when it is resumed."""
        try:
            if self.ledger.job(job_id) is not None:
                return
        except Exception:
            log.warning("job %s may be stored: its upload is kept", job_id, exc_info=True)
            return
        path.unlink(missing_ok=True)

    def submit_apply(self, version: int, account_ids: list[UUID], meta: CommandMeta) -> Job:
        params = {
            "version": version,
            "account_ids": [str(a) for a in account_ids],
            "reason": meta.reason,
            "request_id": meta.request_id,
        }
        return self._start(APPLY_POLICY, params, meta).value

    def cancel(self, job_id: UUID, meta: CommandMeta) -> Job:
        """Records that the job is cancelled (JobEnded if it has ended otherwise); it stores
        nothing more, and what it stored stays. The job as it stands once its thread here, if
        it runs here, has stopped (with how far it got)."""
        job = self.ledger.record_job(job_id, lambda j, by: j.cancel(by), meta)
        self._cancelled.add(job_id)
        running_here = [t for t in self._threads if t.name == f"job-{job_id}"]
        if not running_here:
            return job
        deadline = time.monotonic() + STOP_SECONDS
        for thread in running_here:
            thread.join(max(0.0, deadline - time.monotonic()))
        return self.ledger.job(job_id) or job

    def resume(self) -> int:
        """Runs again every job that a stop interrupted, or that was started while it
        stopped; returns how many. A runner resumed after a stop runs new jobs again. The
        uploads of jobs that ended while no process here ran them (cancelled) are removed."""
        self._stopping.clear()
        self._remove_ended_uploads()
        jobs = self.ledger.unfinished_jobs()
        for job in jobs:
            log.info("resuming %s job %s", job.kind, job.id)
            self._spawn(job.id, takeover=True)
        return len(jobs)

    def _remove_ended_uploads(self) -> None:
        for path in self.uploads.glob("*.csv"):
            try:
                job = self.ledger.job(UUID(path.stem))
            except ValueError:
                continue  # not an upload's name
            if job is not None and job.status != RUNNING:
                log.info("removing the upload of job %s, which has ended (%s)", job.id, job.status)
                path.unlink(missing_ok=True)

    def wait(self, timeout: float | None = None) -> None:
        for thread in list(self._threads):
            thread.join(timeout)

    def _start(
        self, kind: str, params: dict[str, Any], meta: CommandMeta, job_id: UUID | None = None
    ) -> Outcome[Job]:
        started = self.ledger.start_job(kind, params, meta, job_id)
        if not started.replayed:
            self._spawn(started.value.id)
        return started

    def _spawn(self, job_id: UUID, takeover: bool = False) -> None:
        if self._stopping.is_set():
            # Recorded as running: the next start resumes it. No thread gives its place back.
            self._give_back(job_id)
            return
        thread = threading.Thread(
            target=self.run, args=(job_id, takeover), name=f"job-{job_id}", daemon=True
        )
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    def run(self, job_id: UUID, takeover: bool = False) -> None:
        """Runs the job if its lock is free. `takeover`: the job may have run in a process
        that has lost its lock and not learnt it yet (a resumed job, or one run again)."""
        # Every replica resumes the unfinished jobs it finds at start: the job's own lock
        # keeps a job that runs in another process (or already here) from running twice, and
        # one that ended between the listing and the lock is left as it ended.
        try:
            while True:
                try:
                    self._claim_and_run(job_id, takeover)
                    return
                except LockLost:
                    log.warning(
                        "job %s lost its lock; it runs again here in %g s unless another "
                        "process runs it",
                        job_id,
                        RETRY_SECONDS,
                    )
                except Exception as exc:
                    if self._stopping.is_set():
                        log.info("job %s stopped with the process (%r)", job_id, exc)
                        return  # the next start resumes it
                    if not (database_unavailable(exc) or isinstance(exc, OSError)):
                        raise
                    # The store (or the lock's file) did not answer: the job is run again
                    # once it does, as a start would resume it, rather than left running with
                    # no thread to end it.
                    log.warning(
                        "job %s: the store does not answer (%s); trying again in %g s",
                        job_id,
                        first_line(exc),
                        RETRY_SECONDS,
                    )
                takeover = True  # whether this run went on before it stopped is unknown
                if self._stopping.wait(RETRY_SECONDS):
                    return
        finally:
            self._give_back(job_id)

    def _give_back(self, job_id: UUID) -> None:
        """Gives back the place in `held` that an accepted upload's job holds, if it does."""
        if job_id in self._holding:
            self._holding.discard(job_id)
            self.held.release()

    def _claim_and_run(self, job_id: UUID, takeover: bool) -> None:
        claim = Leadership(self.settings, f"jobs/{job_id}")
        if not claim.try_acquire():
            log.info("job %s runs in another process", job_id)
            return
        try:
            if takeover and not claim.settle(self._stopping.is_set):
                return  # stopping: the next start resumes it
            job = self.ledger.job(job_id)
            if job is None or job.status != RUNNING:
                log.info("job %s has ended already", job_id)
            elif (upload := self._upload(job)) is None and job.kind == IMPORT:
                # Received by another replica, whose data directory this one does not share:
                # failed here, the job would be lost while its upload is still kept there.
                log.warning(
                    "import job %s: its upload is not in %s: left running for the process "
                    "that received it (share CRM_DATA_DIR between replicas to resume it here)",
                    job_id,
                    self.uploads,
                )
                return
            else:
                self._run(job, upload, claim)
        finally:
            claim.release()
        claim.discard()  # nobody takes an ended job's lock again

    def _run(self, job: Job, upload: Path | None, claim: Leadership) -> None:
        """Runs a job to its end, or until the process stops or `claim`, its lock, is lost;
        `upload`: an import's file."""
        job_id = job.id
        # Everything the job stores is attributed to the request that started it.
        meta = CommandMeta(
            job.actor, reason=job.params.get("reason"), request_id=job.params.get("request_id")
        )
        progress = _Progress(
            self.ledger,
            job_id,
            meta,
            self._stopping,
            claim,
            lambda: job_id in self._cancelled,
            done_before=job.done,
        )
        earlier = _EarlierRun(self.ledger, job, meta)
        try:
            if job.kind == IMPORT:
                self._wait_for_turn(job_id, progress.check)
                try:
                    assert upload is not None  # an import without its file is not run
                    result = self._import(job, upload, meta, progress, earlier)
                finally:
                    self.importing.release()
            else:
                result = self._apply(job, meta, progress, earlier)
        except Interrupted:
            log.info("job %s stopped with the process; the next start resumes it", job_id)
            return
        except LockLost:
            raise  # neither ended nor failed here: another process may be running it
        except JobEnded:
            log.info("job %s was cancelled: it stops, %d done", job_id, progress.done)
            self._record_stop(job_id, meta, progress)
        except InputRefused as refusal:
            reason, found = refusal.reason, refusal.result
            log.info("job %s refused its input: %s", job_id, reason)
            self._end(job_id, lambda j, by: j.refuse(reason, found, by), meta, progress)
        except Exception as exc:
            if self._stopping.is_set():
                # The ledger closed under a job that outlasted the stop's wait: the job did
                # not fail, it was stopped, and the next start resumes it.
                log.info(
                    "job %s stopped with the process (%r); the next start resumes it", job_id, exc
                )
                return
            if database_unavailable(exc):
                raise  # the job did not fail: it is run again once the store answers
            log.exception("job %s failed", job_id)
            error = type(exc).__name__  # the log has the details; a job view shows no paths
            self._end(job_id, lambda j, by: j.fail(error, by), meta, progress)
        else:
            self._end(job_id, lambda j, by: j.finish(result, by), meta, progress)
        # An ended job is never run again: its upload, the people and companies of a target
        # list, is kept no longer than it is needed (kept, every upload would fill the disk).
        if upload is not None:
            upload.unlink(missing_ok=True)

    def _end(
        self,
        job_id: UUID,
        change: Callable[[Job, Any], None],
        meta: CommandMeta,
        progress: _Progress,
    ) -> None:
        """Records how the job ended (`change`), or, when it was cancelled meanwhile, how far
        it got."""
        try:
            self.ledger.record_job(job_id, change, meta)
        except JobEnded:
            log.info("job %s was cancelled before it ended", job_id)
            self._record_stop(job_id, meta, progress)

    def _record_stop(self, job_id: UUID, meta: CommandMeta, progress: _Progress) -> None:
        """Records how far a cancelled job got when it stopped here."""
        done = progress.done
        try:
            self.ledger.record_job(job_id, lambda j, by: j.stopped(done, by), meta)
        except JobEnded:  # not cancelled: ended by another process that ran it meanwhile
            log.info("job %s has ended in another process", job_id)

    def _upload(self, job: Job) -> Path | None:
        """Where this process finds an import's upload, if it does (None for another kind of
        job): in its own uploads
        directory (a volume the replicas share may be mounted elsewhere in each), or where the
        process that received it kept it."""
        if job.kind != IMPORT:
            return None
        for path in (self.uploads / f"{job.id}.csv", Path(job.params["file"])):
            if path.is_file():
                return path
        return None

    def _wait_for_turn(self, job_id: UUID, check: Callable[[], None]) -> None:
        """Until fewer than IMPORTS_AT_ONCE imports run here; `check` raises meanwhile on a
        stop, a lost lock or a cancellation."""
        if self.importing.acquire(blocking=False):
            return
        log.info("import %s waits for its turn: %d run at once", job_id, IMPORTS_AT_ONCE)
        while not self.importing.acquire(timeout=0.2):
            check()

    def _import(
        self, job: Job, upload: Path, meta: CommandMeta, progress: _Progress, earlier: _EarlierRun
    ) -> dict[str, Any]:
        data = upload.read_bytes()
        report = import_rows(
            self.ledger,
            data,
            meta,
            job.params["strict"],
            progress,
            job.params.get("charset"),  # recorded since charsets were read; UTF-8 before
            earlier.row,
            dry_run=job.params.get("dry_run", False),
        )
        result: dict[str, Any] = {
            "registered": report.registered,
            "updated": report.updated,
            "unchanged": report.unchanged,
            "rejected": report.rejected,
            "refused": report.refused,
            "errors": [
                {"line": e.line, "column": e.column, "reason": e.reason} for e in report.errors
            ],
            "errors_total": report.error_count,
        }
        if job.params.get("dry_run"):
            result["dry_run"] = True
            result["changes"] = [
                {
                    "line": c.line,
                    "account_id": str(c.account_id),
                    "domain": c.domain,
                    "outcome": c.outcome,
                    "fields": {f: {"before": b, "after": a} for f, (b, a) in c.fields.items()},
                }
                for c in report.changes
            ]
        if report.refused:
            # `refused` stays in the result too: clients read the reason there before a
            # refusal failed the job.
            raise InputRefused(report.refused, result)
        if (version := job.params.get("screen_with")) and report.account_ids:
            ids = report.account_ids
            decisions = self._screen(version, ids, meta, lambda _: progress.check())
            result["screened"] = sum(earlier.screened(d, version) for d in decisions)
        return result

    def _apply(
        self, job: Job, meta: CommandMeta, progress: _Progress, earlier: _EarlierRun
    ) -> dict[str, Any]:
        version, ids = job.params["version"], [UUID(a) for a in job.params["account_ids"]]
        applied = overridden = skipped = 0
        progress(0, len(ids))  # the total is known now, before the first chunk is screened
        for d in self._screen(version, ids, meta, lambda done: progress(done, len(ids))):
            if earlier.screened(d, version):
                applied += 1
            else:
                overridden += d.overridden
                skipped += d.skipped
        return {
            "accounts": len(ids),
            "applied": applied,
            "overridden": overridden,
            "skipped": skipped,
        }

    def _screen(
        self, version: int, ids: list[UUID], meta: CommandMeta, done: Callable[[int], None]
    ) -> Iterator[ScreeningDecision]:
        """Each account's decision, screening a chunk at a time; `done` learns how many are
        screened after each chunk, where a stopping process stops the job."""
        for start in range(0, len(ids), APPLY_CHUNK):
            yield from self.ledger.apply_policy(version, ids[start : start + APPLY_CHUNK], meta)
            done(min(start + APPLY_CHUNK, len(ids)))


class _EarlierRun:
    """What a resumed job's first run stored. The job goes over its work again from the start
    and finds that done: a row it registered is unchanged now, an account it screened needs no
    screening. Counted as that run did them, its result says what the job did, as a run that
    no restart cut short would. A job that recorded no progress has stored nothing."""

    def __init__(self, ledger: AccountLedger, job: Job, meta: CommandMeta) -> None:
        self.ledger = ledger
        self.job = job
        self.meta = meta
        self.ran = job.total is not None

    def row(self, outcome: str, account_id: UUID) -> str:
        """What an imported row counts as, given what storing it did now."""
        if outcome == "registered" or not self.ran:
            return outcome
        kinds = {type(e) for e in self._caused(account_id)}
        if Account.Registered in kinds:
            return "registered"
        return "updated" if Account.FirmographicsUpdated in kinds else outcome

    def screened(self, decision: ScreeningDecision, version: int) -> bool:
        """Whether the job screened the account by the policy `version`, now or before."""
        if decision.applies or not self.ran:
            return decision.applies
        return any(
            isinstance(e, Account.Screened) and e.policy_version == version
            for e in self._caused(decision.account_id)
        )

    def _caused(self, account_id: UUID) -> list[Account.Event]:
        return self.ledger.caused_since(account_id, self.meta, self.job.created_on)


class _Progress:
    """Records a job's progress at most every PROGRESS_SECONDS, and at its end."""

    def __init__(
        self,
        ledger: AccountLedger,
        job_id: UUID,
        meta: CommandMeta,
        stopping: threading.Event,
        claim: Leadership,
        cancelled: Callable[[], bool],
        done_before: int = 0,
    ) -> None:
        self.ledger = ledger
        self.job_id = job_id
        self.meta = meta
        self.stopping = stopping
        self.claim = claim
        self.cancelled = cancelled
        # A resumed job goes over its work again from the start, changing nothing it did
        # before: what it had done stays done, so a client does not see it fall back to 0.
        self.done_before = done_before
        self.done = done_before  # as a client is shown it, recorded or not
        self.last = 0.0
        self.total: int | None = None

    def check(self) -> None:
        """Raises Interrupted when the process is stopping (the job stops here, to resume),
        LockLost when the job's lock is no longer ours, JobEnded when the job was cancelled
        through this process (one cancelled through another is found at the next record of
        progress). Asked before each chunk of rows or accounts is stored, so a process that
        lost the lock stores nothing more, and one that takes the lock over after
        `Leadership.settle` never works beside it."""
        if self.stopping.is_set():
            raise Interrupted
        if not self.claim.held():
            raise LockLost
        if self.cancelled():
            raise JobEnded("The job was cancelled.")

    def __call__(self, done: int, total: int) -> None:
        self.done = min(max(done, self.done_before), total)
        self.check()
        now = time.monotonic()
        # The first total is recorded at once: a client polling the job learns it before the
        # first chunk is done, however long that takes. A row the store refuses lowers
        # it later, at the pace of the rest (a record per refused row would be an event each).
        if done == total or self.total is None or now - self.last >= PROGRESS_SECONDS:
            self.last, self.total = now, total
            shown = self.done
            self.ledger.record_job(
                self.job_id, lambda j, by: j.progress(shown, total, by), self.meta
            )
