"""Extensions, created unbound and bound to an app in ``create_app``.

``socketio`` is Flask-SocketIO. ``core`` binds the core to the app: its Redis
clients, the job kinds of ``JOB_KINDS`` and one :class:`~shared.lifecycle.Lifecycle`
(every job starts there, every change is reacted to there), which pushes
through this process's Socket.IO server.
"""

from __future__ import annotations

from typing import Any

import redis
from flask import Flask, current_app
from flask_socketio import SocketIO

from shared.config import Config
from shared.jobquery import JobQuery
from shared.kinds import JobKind, load_kinds
from shared.kinds.highlight.snippets import SnippetStore
from shared.lifecycle import Lifecycle
from shared.push import ServerPush
from shared.redisconn import web_pool
from shared.store import JobStore

socketio = SocketIO()


class Core:
    """The core of one app: Redis clients, kinds, the lifecycle; created unbound."""

    name = "jobcast.core"

    def init_app(self, app: Flask, config: Config) -> None:
        """Create the app's Redis clients from ``REDIS_URL``, load ``JOB_KINDS`` and
        build its lifecycle (its store coalesces the reports that arrive together)."""
        text = redis.Redis(connection_pool=web_pool(config, decode_responses=True))
        raw = redis.Redis(connection_pool=web_pool(config))  # RQ wants bytes
        kinds = load_kinds(config.JOB_KINDS)
        store = JobStore(text, ttl=config.JOB_TTL, max_stored=config.MAX_STORED_JOBS,
                         log_max=config.JOB_LOG_MAX, lease_seconds=config.LEASE_SECONDS,
                         coalesce=True)
        pusher = ServerPush(socketio, text, lambda name: _kind_events(kinds, name),
                            message_queue=bool(config.SOCKETIO_MESSAGE_QUEUE))
        app.extensions[self.name] = {
            "config": config,
            "client": text,
            "kinds": {name: kind for name, kind in kinds.items() if not kind.hidden},
            "lifecycle": Lifecycle(config, text, raw, kinds, pusher, store=store),
            "query": JobQuery(text),
            "snippets": SnippetStore(text, ttl=config.SNIPPET_TTL,
                                     html_max=config.SNIPPET_HTML_MAX,
                                     max_stored=config.MAX_STORED_SNIPPETS),
        }

    def _get(self, name: str) -> Any:
        return current_app.extensions[self.name][name]

    @property
    def config(self) -> Config:
        """The current app's settings."""
        return self._get("config")  # type: ignore[no-any-return]

    @property
    def client(self) -> redis.Redis:
        """The current app's Redis client (str responses)."""
        return self._get("client")  # type: ignore[no-any-return]

    @property
    def lifecycle(self) -> Lifecycle:
        """The current app's lifecycle: every start and every change goes through it."""
        return self._get("lifecycle")  # type: ignore[no-any-return]

    @property
    def store(self) -> JobStore:
        """The current app's job store (for reading)."""
        return self.lifecycle.store

    @property
    def kinds(self) -> dict[str, JobKind]:
        """The kinds people start from this site (``JOB_KINDS`` but the hidden ones)."""
        return self._get("kinds")  # type: ignore[no-any-return]

    @property
    def query(self) -> JobQuery:
        """Filters over the current app's job indexes."""
        return self._get("query")  # type: ignore[no-any-return]

    @property
    def snippets(self) -> SnippetStore:
        """The current app's snippet store."""
        return self._get("snippets")  # type: ignore[no-any-return]

    @property
    def pusher(self) -> ServerPush:
        """The current app's pusher (its Socket.IO server)."""
        return self.lifecycle.pusher  # type: ignore[return-value]


def _kind_events(kinds: dict[str, JobKind], name: str) -> Any:
    kind = kinds.get(name)
    return kind.events if kind is not None else None


core = Core()
