"""The worker's Redis connection rides out a Redis restart.

RQ retries its own wait for jobs forever, but nothing else: a heartbeat, a
registry update or a job's end that meets Redis down raises out of
``Worker.work`` once redis-py's default retries (about 3 s) are spent, and
the worker quits (under ``make run``, honcho then stops everything). The
connection made here retries every command through redis-py's public
``Retry`` for up to ``REDIS_RETRY_SECONDS``, so RQ's bookkeeping, the work
horse's and the scheduler's (they inherit the connection's settings) wait for
Redis to come back instead. A longer outage still raises, as before.
"""

from __future__ import annotations

import logging

import redis
from redis.backoff import AbstractBackoff
from redis.retry import Retry

from shared.config import Config

log = logging.getLogger(__name__)

FIRST_WAIT = 0.05  # seconds before the first retry; doubled up to MAX_WAIT
MAX_WAIT = 1.0
FIRST_WARNING = 1.0  # seconds of outage before the first warning (one failed try is a reconnect)
LOG_EVERY = 5.0  # seconds of outage between two warnings


def wait_before(failures: int) -> float:
    """Seconds to wait after the ``failures``-th failure in a row."""
    return min(MAX_WAIT, FIRST_WAIT * 2 ** (failures - 1))


def waited_before(failures: int) -> float:
    """Seconds already waited when the ``failures``-th failure in a row happens."""
    return sum(wait_before(n) for n in range(1, failures))


def retries_for(seconds: float) -> int:
    """The number of retries whose waits add up to at least ``seconds``."""
    retries = 0
    while waited_before(retries + 1) < seconds:
        retries += 1
    return retries


class OutageBackoff(AbstractBackoff):
    """Exponential backoff (50 ms doubling to 1 s) that says, now and then, that it waits.

    Stateless apart from its settings: redis-py shares one backoff between the
    pool's connections and the threads that use them.
    """

    def __init__(self, budget: float) -> None:
        self.budget = budget

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OutageBackoff) and other.budget == self.budget

    def __hash__(self) -> int:
        return hash((OutageBackoff, self.budget))

    def compute(self, failures: int) -> float:
        """The wait after ``failures`` failures in a row; warns after 1 s, then every 5 s."""
        waited, before = waited_before(failures), waited_before(failures - 1)
        if (before < FIRST_WARNING <= waited
                or int(waited // LOG_EVERY) > int(before // LOG_EVERY)):
            log.warning("Redis has not answered for %.0f s; retrying for up to %g s",
                        waited, self.budget)
        return wait_before(failures)


def outage_retry(seconds: float) -> Retry:
    """A redis-py ``Retry`` that keeps trying a command for about ``seconds``."""
    return Retry(OutageBackoff(seconds), retries_for(seconds))


def worker_redis(cfg: Config) -> redis.Redis:
    """The RQ worker's connection: ``REDIS_URL`` retried for ``REDIS_RETRY_SECONDS``."""
    return redis.Redis.from_url(cfg.REDIS_URL, retry=outage_retry(cfg.REDIS_RETRY_SECONDS))
