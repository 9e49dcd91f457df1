"""Extensions, created unbound and bound to an app in ``create_app``.

``socketio`` is Flask-SocketIO. ``core`` is the current app's core (:func:`init_core`):
its Redis clients, the job kinds of ``JOB_KINDS`` and one
:class:`~shared.lifecycle.Lifecycle` (every job starts there, every change is reacted
to there), which pushes through this process's Socket.IO server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import redis
from flask import Flask, current_app
from flask_socketio import SocketIO
from werkzeug.local import LocalProxy

from shared.config import Config
from shared.jobquery import JobQuery
from shared.kinds import JobKind, load_kinds
from shared.kinds.highlight.snippets import SnippetStore
from shared.lifecycle import Lifecycle
from shared.push import ServerPush
from shared.redisconn import web_pool
from shared.store import JobStore

socketio = SocketIO()
CORE = "jobcast.core"


@dataclass(frozen=True)
class Core:
    """The core of one app: its Redis client, kinds and lifecycle (``core`` below)."""

    config: Config
    client: redis.Redis  # str replies
    kinds: dict[str, JobKind]  # the kinds people start here: JOB_KINDS but the hidden ones
    lifecycle: Lifecycle  # every start and every change goes through it
    query: JobQuery  # filters over the job indexes
    snippets: SnippetStore

    @property
    def store(self) -> JobStore:
        """The job store (for reading)."""
        return self.lifecycle.store

    @property
    def pusher(self) -> ServerPush:
        """The pusher (this process's Socket.IO server)."""
        return self.lifecycle.pusher  # type: ignore[return-value]


def init_core(app: Flask, config: Config) -> Core:
    """Create the app's Redis clients from ``REDIS_URL``, load ``JOB_KINDS`` and build
    its lifecycle (its store coalesces the reports that arrive together)."""
    text = redis.Redis(connection_pool=web_pool(config, decode_responses=True))
    raw = redis.Redis(connection_pool=web_pool(config))  # RQ wants bytes
    kinds = load_kinds(config.JOB_KINDS)
    store = JobStore(text, ttl=config.JOB_TTL, max_stored=config.MAX_STORED_JOBS,
                     log_max=config.JOB_LOG_MAX, lease_seconds=config.LEASE_SECONDS,
                     coalesce=True)
    pusher = ServerPush(socketio, text, lambda name: _kind_events(kinds, name),
                        message_queue=bool(config.SOCKETIO_MESSAGE_QUEUE))
    bound = Core(config, text, {name: kind for name, kind in kinds.items() if not kind.hidden},
                 Lifecycle(config, text, raw, kinds, pusher, store=store), JobQuery(text),
                 SnippetStore(text, ttl=config.SNIPPET_TTL, html_max=config.SNIPPET_HTML_MAX,
                              max_stored=config.MAX_STORED_SNIPPETS))
    app.extensions[CORE] = bound
    return bound


def _kind_events(kinds: dict[str, JobKind], name: str) -> Any:
    kind = kinds.get(name)
    return kind.events if kind is not None else None


# The current app's core, unbound at import (werkzeug's proxy to the app context).
core = cast(Core, LocalProxy(lambda: current_app.extensions[CORE]))
