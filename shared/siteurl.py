"""Where workers reach the site: the callback address the web process announces.

A web process started without ``SITE_URL`` knows only where it listens (its
bind address, which honcho's ``PORT`` or ``make run`` chose). A worker started
beside it gets a ``PORT`` of its own from honcho, so it cannot derive the site's
address. So the web process announces its callback URL in Redis once it listens
(``gunicorn.conf.py``), and a worker that has neither ``SITE_URL`` nor
``PROGRESS_URL`` reads it when a job starts reporting (:class:`CallbackAddress`).
The last web process to start wins: with several web processes, set
``SITE_URL`` or ``PROGRESS_URL`` on the workers instead (docs/deploying.md).

Who may do this: announcing needs the site's Redis, as every other write does.
"""

from __future__ import annotations

import logging
import time

import redis

from shared import keys

log = logging.getLogger(__name__)
PROGRESS_PATH = "/api/progress"
CACHE_SECONDS = 5.0


def announce(client: redis.Redis, site_url: str) -> None:
    """Record ``site_url`` as where workers send their progress callbacks."""
    client.set(keys.SITE_URL, site_url.rstrip("/"))


def announced(client: redis.Redis) -> str | None:
    """The site URL the web process announced, or None."""
    value = client.get(keys.SITE_URL)
    if isinstance(value, bytes):
        value = value.decode()
    return value or None


class CallbackAddress:
    """The progress URL: ``PROGRESS_URL`` when set, else the announced one (cached briefly)."""

    def __init__(self, configured: str, client: redis.Redis | None) -> None:
        self.configured = configured
        self.client = client
        self._cached: tuple[float, str | None] | None = None

    def __call__(self) -> str | None:
        """The URL to post reports to; None while no site has announced one."""
        if self.configured or self.client is None:
            return self.configured or None
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] >= CACHE_SECONDS:
            try:
                site = announced(self.client)
            except redis.RedisError as exc:
                log.warning("could not read the site's announced address: %s", exc)
                site = None
            self._cached = (now, site + PROGRESS_PATH if site else None)
        return self._cached[1]

    def forget(self) -> None:
        """Read the announced address again next time (the last one did not answer)."""
        self._cached = None
