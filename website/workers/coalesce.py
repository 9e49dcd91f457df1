"""Reports that arrive together share one Redis round trip.

Each progress report is one run of the update script. One web process applies
them one round trip at a time: while a round trip is out, the reports that
arrive queue up, and the next round trip takes all of them (up to
``max_batch``) through one pipeline, each still its own atomic script run
(``JobStore.apply_each``). A lone report goes at once, alone, as before; under
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import redis
from flask import current_app
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from shared.protocol import ProgressUpdate
from shared.store import JobState, JobStore, StaleAttempt, UnknownJob, UpdateAnswer

EXTENSION = "jobcast.reports.coalescer"
Call = tuple[ProgressUpdate, int | None, float]
RunMany = Callable[[list[Call]], list[UpdateAnswer | redis.RedisError]]


def coalescer() -> ReportCoalescer:
    """The current app's coalescer."""
    return current_app.extensions[EXTENSION]  # type: ignore[no-any-return]


class SenderGone(RuntimeError):
    """The report that was sending a batch stopped before its answers came."""


@dataclass(eq=False)
class _Slot:
    call: Call
    woken: threading.Event | None = None  # made only for a report that waits
    answer: UpdateAnswer | redis.RedisError | None = None
    failure: BaseException | None = None
    batch: list[_Slot] | None = None  # set when this slot is to send a batch

    def outcome(self) -> tuple[JobState | None, str]:
        if self.failure is not None:
            raise self.failure
        if isinstance(self.answer, (LookupError, redis.RedisError)):
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

    def apply(self, update: ProgressUpdate, attempt: int | None,
              now: float) -> tuple[JobState | None, str]:
        """What ``JobStore.apply_or_state(update, now, attempt)`` returns or raises."""
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


def run_on(store: JobStore) -> RunMany:
    """``store``'s update script for a batch of calls: alone, the plain call (no
    pipeline); several, one pipeline (``JobStore.apply_each``)."""
    def run(calls: list[Call]) -> list[UpdateAnswer | redis.RedisError]:
        if len(calls) != 1:
            return store.apply_each(calls)
        update, attempt, now = calls[0]
        try:
            return [store.apply_or_state(update, now, attempt)]
        except (UnknownJob, StaleAttempt) as exc:
            return [exc]
    return run


class RoundTrips(Collector):
    """``/metrics``: reports applied one at a time, and the round trips they took."""

    def __init__(self, coalescer: ReportCoalescer) -> None:
        self.coalescer = coalescer

    def collect(self) -> Iterator[CounterMetricFamily]:
        """Yield the two counters (their quotient is the mean batch)."""
        yield CounterMetricFamily("jobcast_report_round_trips",
                                  "Redis round trips that applied single progress reports",
                                  value=self.coalescer.round_trips)
        yield CounterMetricFamily("jobcast_report_applies",
                                  "single progress reports applied through those round trips",
                                  value=self.coalescer.reports)
