"""Extensions, created unbound and bound to an app in ``create_app``."""

from __future__ import annotations

from typing import Any

import redis
from flask import Flask, current_app
from flask_socketio import SocketIO
from rq import Queue

from shared.jobquery import JobQuery
from shared.snippets import SnippetStore
from shared.store import JobStore

socketio = SocketIO()


class RedisExtension:
    """One Redis connection pool per app, plus the job/snippet stores and RQ queue on it."""

    name = "jobcast.redis"

    def init_app(self, app: Flask) -> None:
        """Create the app's Redis clients from ``REDIS_URL``."""
        cfg = app.config
        text = redis.Redis(connection_pool=_pool(cfg, decode_responses=True))
        raw = redis.Redis(connection_pool=_pool(cfg))  # RQ wants bytes
        app.extensions[self.name] = {
            "client": text,
            "store": JobStore(text, ttl=app.config["JOB_TTL"],
                              max_stored=app.config["MAX_STORED_JOBS"],
                              log_max=app.config["JOB_LOG_MAX"],
                              lease_seconds=app.config["LEASE_SECONDS"]),
            "queue": Queue(app.config["QUEUE_NAME"], connection=raw),
            "query": JobQuery(text),
            "snippets": SnippetStore(text, ttl=app.config["SNIPPET_TTL"],
                                     html_max=app.config["SNIPPET_HTML_MAX"],
                                     max_stored=app.config["MAX_STORED_SNIPPETS"]),
        }

    @property
    def client(self) -> redis.Redis:
        """The current app's Redis client (str responses)."""
        return current_app.extensions[self.name]["client"]  # type: ignore[no-any-return]

    @property
    def store(self) -> JobStore:
        """The current app's job store."""
        return current_app.extensions[self.name]["store"]  # type: ignore[no-any-return]

    @property
    def query(self) -> JobQuery:
        """Filters over the current app's job indexes."""
        return current_app.extensions[self.name]["query"]  # type: ignore[no-any-return]

    @property
    def snippets(self) -> SnippetStore:
        """The current app's snippet store."""
        return current_app.extensions[self.name]["snippets"]  # type: ignore[no-any-return]

    @property
    def queue(self) -> Queue:
        """The current app's RQ queue."""
        return current_app.extensions[self.name]["queue"]  # type: ignore[no-any-return]


def _pool(cfg: Any, **options: Any) -> redis.BlockingConnectionPool:
    """A pool of at most ``REDIS_POOL_SIZE`` connections where a request that finds
    none free waits (green under eventlet/gevent) up to ``REDIS_POOL_TIMEOUT``
    seconds instead of failing at once (many claims or callbacks arriving together);
    after that redis-py raises ``ConnectionError`` and the site answers 503. Under
    eventlet or gevent its connections check for unread data without a trip round
    the event loop (``website/http/redisconn.py``)."""
    from website.http.redisconn import connection_class  # website.http imports this module

    return redis.BlockingConnectionPool.from_url(
        cfg["REDIS_URL"], max_connections=cfg["REDIS_POOL_SIZE"],
        timeout=cfg["REDIS_POOL_TIMEOUT"], health_check_interval=30,
        **connection_class(cfg["REDIS_URL"]), **options)


redis_ext = RedisExtension()
