"""Reports that arrive together share one Redis round trip.

Each progress report is one run of the update script. One web process applies
them one round trip at a time: while a round trip is out, the reports that
arrive queue up, and the next round trip takes all of them (up to
``max_batch``) through one pipeline, each still its own atomic script run
(the store's own round trip). A lone report goes at once, alone, as before; under
load the round trips, and the time the event loop spends on each, are shared.
The busier the process, the larger the batches, so a backlog drains faster
instead of slower (the tail of ``make bench``'s loaded row, docs/scaling.md).

There is no background thread: the report that finds nobody sending sends, and
when its round trip is back it hands the queued reports to the first of them,
which sends them. Green threads under eventlet and gevent (the primitives are
the patched ones), real threads under the development server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import redis
from redis.connection import AbstractConnection

from shared.errors import JobcastError
from shared.jobstate import Applied, UpdateAnswer
from shared.protocol import ProgressUpdate

Call = tuple[ProgressUpdate, int | None, float]
RunMany = Callable[[list[Call]], list[UpdateAnswer | redis.RedisError]]
RunOn = Callable[[AbstractConnection, list[Call]], list[UpdateAnswer | redis.RedisError]]


class SenderGone(JobcastError):
    """The report that was sending a batch stopped before its answers came."""


@dataclass(eq=False)
class _Slot:
    call: Call
    woken: threading.Event | None = None  # made only for a report that waits
    answer: UpdateAnswer | redis.RedisError | None = None
    failure: BaseException | None = None
    batch: list[_Slot] | None = None  # set when this slot is to send a batch

    def outcome(self) -> Applied:
        if self.failure is not None:
            raise self.failure
        if isinstance(self.answer, (JobcastError, redis.RedisError)):
            raise self.answer
        if self.answer is None:
            raise SenderGone("a report's batch ended without an answer")
        return self.answer


class ReportCoalescer:
    """Applies reports one round trip at a time, each round trip taking every
    report queued meanwhile (see the module)."""

    def __init__(self, run_many: RunMany, max_batch: int = 64) -> None:
        self._run_many = run_many
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._queued: list[_Slot] = []
        self._sending = False
        self.round_trips = 0
        self.reports = 0

    def apply(self, update: ProgressUpdate, attempt: int | None, now: float) -> Applied:
        """What ``JobStore.apply(update, now, attempt)`` returns or raises."""
        slot = _Slot((update, attempt, now))
        with self._lock:
            if self._sending:
                slot.woken = threading.Event()
                self._queued.append(slot)
                batch = None
            else:
                self._sending = True
                batch = [slot]
        if slot.woken is not None:
            slot.woken.wait()
            batch = slot.batch
        if batch is not None:
            self._send(batch)
        return slot.outcome()

    def _send(self, batch: list[_Slot]) -> None:
        following: list[_Slot] = []
        try:
            answers = self._run_many([slot.call for slot in batch])
            for slot, answer in zip(batch, answers, strict=True):
                slot.answer = answer
        except redis.RedisError as exc:  # each report of the batch answers it (503)
            for slot in batch:
                slot.failure = exc
        finally:
            self.round_trips += 1
            self.reports += len(batch)
            with self._lock:
                following = self._queued[:self.max_batch]
                del self._queued[:self.max_batch]
                if not following:
                    self._sending = False
            for slot in batch[1:]:
                if slot.woken is not None:
                    slot.woken.set()
            if following and following[0].woken is not None:
                following[0].batch = following
                following[0].woken.set()


class OwnConnection:
    """The coalescer's round trips, on a Redis connection of their own.

    The coalescer sends one round trip at a time, so this connection is never
    shared: no pool to take it from and give it back to, no per-command checks,
    the script calls written at once (``run_on``: the store's); about 30 µs less
    CPU per round trip under eventlet than a pooled ``EVALSHA``. It is made from
    the pool's own settings, so it counts as one connection beside the pool's
    ``REDIS_POOL_SIZE``. Like the pool, it opens the connection again when Redis
    closed it while idle; a connection error while sending disconnects it and is
    retried as redis-py retries a pooled command (the connection's ``retry``), then
    raised.
    """

    def __init__(self, run_on: RunOn, pool: redis.ConnectionPool) -> None:
        self.run_on = run_on
        self.pool = pool
        self._connection: AbstractConnection | None = None

    def __call__(self, calls: list[Call]) -> list[UpdateAnswer | redis.RedisError]:
        """Apply ``calls`` in one round trip; their answers in order."""
        if self._connection is None:
            self._connection = self.pool.connection_class(**self.pool.connection_kwargs)
        connection = self._connection
        try:  # closed by Redis while idle (a restart, a kill)? As the pool does before
            stale = connection.can_read()  # handing a connection out: open it again
        except (redis.ConnectionError, OSError):
            stale = True
        if stale:
            connection.disconnect()
        return connection.retry.call_with_retry(  # type: ignore[no-any-return]
            lambda: self.run_on(connection, calls),
            lambda _error: connection.disconnect())
