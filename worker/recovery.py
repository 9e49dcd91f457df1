"""No job stays "running" after its worker died: the RQ worker classes Jobcast runs.

Three ways a job can lose its process, and who notices:

* The work horse (the forked child running the job) is killed, for example by
  the OOM killer: its parent notices at once (``handle_work_horse_killed``) and
  reports the job ``failed``.
* The whole worker is killed (SIGKILL, machine lost): every live worker holds a
  *lease* key in Redis, refreshed with each heartbeat, that expires
  ``ABANDONED_AFTER - beat`` seconds after the last one. Every ``beat`` seconds
  one free worker (``run_maintenance_tasks``) or busy fork worker
  (``maintain_heartbeats``) scans the queue's ``StartedJobRegistry``; a job
  whose worker has no lease is abandoned: RQ's own registry cleanup moves it to
  the failed registry (or retries it if it has retries left) and the job's
  state is reported ``failed`` through the callback, so watching pages see it.
  Bound: ``ABANDONED_AFTER`` seconds, given a live worker on the queue.
* A worker restarted under the same ``--name`` fails its predecessor's jobs
  as soon as it starts.

Beats are ``ABANDONED_AFTER // 4`` seconds (at least 1): busy fork workers
heartbeat that often (``job_monitoring_interval``), idle ones block on the
queue that long (``worker_ttl``). A ``SimpleWorker`` cannot heartbeat while it
runs a job in-process, so its lease covers the job's timeout too. Workers that
are not Jobcast's (plain ``rq worker``, no lease) are left to RQ's own cleanup.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis
from rq import Queue, SimpleWorker, Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.utils import as_text, parse_composite_key

from shared import keys
from shared.config import Config
from shared.protocol import FAILED
from shared.reporter import ProgressReporter, ReportError
from worker.reporting import make_reporter

log = logging.getLogger(__name__)

LEASE_FIELD = "jobcast_lease"  # in RQ's worker hash: marks a worker that keeps a lease
LOST_MESSAGE = "The worker running this job stopped unexpectedly."


@dataclass(frozen=True)
class Timing:
    """Heartbeat period and lease length derived from ``ABANDONED_AFTER``."""

    abandoned_after: int

    @property
    def beat(self) -> int:
        """Seconds between heartbeats, and between scans for abandoned jobs."""
        return max(1, self.abandoned_after // 4)

    @property
    def lease(self) -> int:
        """Seconds a worker stays alive after its last heartbeat."""
        return max(1, self.abandoned_after - self.beat)

    def worker_kwargs(self) -> dict[str, int]:
        """RQ worker arguments that make it heartbeat every ``beat`` seconds."""
        # RQ blocks on the queue for worker_ttl - 15 seconds between heartbeats.
        return {"job_monitoring_interval": self.beat, "worker_ttl": self.beat + 15,
                "maintenance_interval": self.beat}


def fail_job(cfg: Config, job_id: str, message: str, retry_seconds: float) -> None:
    """Report ``job_id`` failed through the callback (Redis directly if the site is down)."""
    reporter: ProgressReporter = make_reporter(cfg)
    reporter.retry_seconds = min(retry_seconds, cfg.REPORT_RETRY_SECONDS)
    try:
        reporter.report(job_id, 0, FAILED, message)
    except ReportError as exc:
        log.warning("could not report job %s failed: %s", job_id, exc)


class RecoveryMixin:
    """Leases, abandoned-job scans and horse-death reports for an RQ worker class."""

    connection: redis.Redis
    name: str
    key: str
    queues: list[Queue]
    log: logging.Logger

    def __init__(self, *args: Any, cfg: Config, **kwargs: Any) -> None:
        self.cfg = cfg
        self.timing = Timing(cfg.ABANDONED_AFTER)
        self.incarnation = uuid.uuid4().hex
        self._busy_extra = 0
        self._next_scan = 0.0
        self._lease_refreshed = (0.0, 0)  # (monotonic time, lease seconds) of the last SET
        wanted = self.timing.worker_kwargs()
        # A longer worker_ttl (WORKER_TTL) would make idle workers scan too rarely.
        wanted["worker_ttl"] = min(kwargs.pop("worker_ttl", None) or wanted["worker_ttl"],
                                   wanted["worker_ttl"])
        super().__init__(*args, **{**wanted, **kwargs})

    # -- lease ---------------------------------------------------------------
    def lease_seconds(self) -> int:
        """How long this worker counts as alive after a heartbeat."""
        return self.timing.lease + self._busy_extra

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """RQ's heartbeat, plus the lease, refreshed at most once a second.

        RQ heartbeats several times per job; the lease lasts many seconds, so
        one SET a second keeps it (and a longer lease for a starting job is
        always written at once).
        """
        super().heartbeat(timeout, pipeline)  # type: ignore[misc]
        now, lease = time.monotonic(), self.lease_seconds()
        last_time, last_lease = self._lease_refreshed
        if now - last_time < 1.0 and lease <= last_lease:
            return
        conn = pipeline if pipeline is not None else self.connection
        conn.set(keys.worker_lease_key(self.name), self.incarnation, ex=lease)
        self._lease_refreshed = (now, lease)

    def register_birth(self) -> None:
        """Take over from a dead predecessor of the same name, then register."""
        self._wait_for_predecessor()
        super().register_birth()  # type: ignore[misc]
        self.connection.hset(self.key, LEASE_FIELD, self.timing.lease)
        self.connection.set(keys.worker_lease_key(self.name), self.incarnation,
                            ex=self.lease_seconds())

    def register_death(self) -> None:
        """Register death and drop the lease, so leftovers are found at once."""
        super().register_death()  # type: ignore[misc]
        self.connection.delete(keys.worker_lease_key(self.name))

    def _wait_for_predecessor(self) -> None:
        lease_key = keys.worker_lease_key(self.name)
        deadline = time.monotonic() + self.timing.lease + self.timing.beat
        while self._predecessor_alive():
            if time.monotonic() > deadline:
                return  # really alive: RQ refuses the duplicate name
            self.log.info("worker %s: waiting for the lease of a previous worker of this name",
                          self.name)
            time.sleep(min(1.0, max(0.1, (self.connection.pttl(lease_key) or 100) / 1000)))
        if self.connection.exists(self.key) and not self.connection.hexists(self.key, "death"):
            self.log.warning("worker %s: a previous worker of this name died; taking over",
                             self.name)
            self.connection.hset(self.key, "death", "lost")
        self._fail_abandoned(only_worker=self.name)

    def _predecessor_alive(self) -> bool:
        return bool(self.connection.exists(keys.worker_lease_key(self.name))
                    and self.connection.exists(self.key)
                    and not self.connection.hexists(self.key, "death"))

    # -- abandoned jobs --------------------------------------------------------
    def run_maintenance_tasks(self) -> None:
        """RQ's maintenance, then the scan for abandoned jobs."""
        super().run_maintenance_tasks()  # type: ignore[misc]
        self._scan_if_due()

    def maintain_heartbeats(self, job: Job) -> None:
        """Busy fork workers scan too, so one long job does not delay recovery."""
        super().maintain_heartbeats(job)  # type: ignore[misc]
        self._scan_if_due()

    def _scan_if_due(self) -> None:
        now = time.monotonic()
        if now < self._next_scan:
            return
        self._next_scan = now + self.timing.beat
        for queue in self.queues:
            lock = keys.abandoned_check_lock(queue.name)
            if self.connection.set(lock, self.name, nx=True, px=self.timing.beat * 1000):
                self._fail_abandoned(queues=[queue])

    def worker_alive(self, worker_name: str) -> bool:
        """False when ``worker_name`` is a Jobcast worker without a lease, or gone."""
        if self.connection.exists(keys.worker_lease_key(worker_name)):
            return True
        info = self.connection.hmget(f"rq:worker:{worker_name}", ["death", LEASE_FIELD, "birth"])
        death, lease, birth = info
        if birth is None or death is not None:
            return False
        return lease is None  # a worker without leases is RQ's business

    def _fail_abandoned(self, queues: list[Queue] | None = None,
                        only_worker: str | None = None) -> list[str]:
        """Fail the started jobs whose worker is dead; their ids."""
        failed: list[str] = []
        for queue in queues or self.queues:
            registry = StartedJobRegistry(queue=queue)
            entries: list[bytes] = self.connection.zrange(registry.key, 0, -1)  # type: ignore[assignment]
            for raw in entries:
                entry = as_text(raw)
                job_id, _execution = parse_composite_key(entry)
                owner = self.connection.hget(f"rq:execution:{entry}", "worker_name")
                owner_name = as_text(owner) if owner is not None else ""
                if only_worker is not None:
                    if owner_name != only_worker:
                        continue
                elif owner_name and self.worker_alive(owner_name):
                    continue
                if self._abandon(registry, queue, entry, job_id, owner_name):
                    failed.append(job_id)
        return failed

    def _abandon(self, registry: StartedJobRegistry, queue: Queue, entry: str, job_id: str,
                 owner: str) -> bool:
        # Through RQ's own cleanup path: score 0 marks exactly this entry expired.
        if not self.connection.zadd(registry.key, {entry: 0}, xx=True):
            if self.connection.zscore(registry.key, entry) is None:
                return False  # another worker handled it meanwhile
        registry.cleanup(timestamp=0)
        try:
            status = Job.fetch(job_id, connection=self.connection).get_status()
        except NoSuchJobError:
            status = JobStatus.FAILED  # RQ's job data expired; our state still needs an end
        self.log.warning("job %s abandoned by worker %s: %s", job_id, owner or "?", status)
        if status != JobStatus.FAILED:
            return False  # retried by RQ: it will report again
        fail_job(self.cfg, job_id, LOST_MESSAGE, retry_seconds=self.timing.beat)
        return True

    # -- the work horse --------------------------------------------------------
    def handle_work_horse_killed(self, job: Job, retpid: int, ret_val: int,
                                 rusage: Any) -> None:
        """The job's process died without reporting: report the job failed now."""
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)  # type: ignore[misc]
        how = (f"killed by signal {os.WTERMSIG(ret_val)}" if ret_val and os.WIFSIGNALED(ret_val)
               else f"exited with status {ret_val}")
        fail_job(self.cfg, job.id, f"The job's process was {how}.",
                 retry_seconds=self.timing.beat)


class JobcastWorker(RecoveryMixin, Worker):
    """RQ's forking worker with Jobcast's recovery."""


class JobcastSimpleWorker(RecoveryMixin, SimpleWorker):
    """RQ's in-process worker with Jobcast's recovery (lease covers the running job)."""

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run the job in-process; the lease covers its timeout meanwhile."""
        self._busy_extra = max(0, int(job.timeout or 0))
        try:
            super().execute_job(job, queue)
        finally:
            self._busy_extra = 0
