"""The worker process's lifecycle: how the worker, the tick and the bulk kind change jobs.

The worker's fallback (the site cannot be reached) and its direct reports
(``WORKER_EMIT=direct``), the bulk kind's cancels and retries, and the tick's
scheduled starts all go through the same :class:`~shared.lifecycle.Lifecycle`
as the site, so they react alike (push, a batch's ``onComplete``, webhooks).
Their pushes travel through the Socket.IO message queue when there is one,
else through the web processes' relays (``shared/push.py``).
"""

from __future__ import annotations

import os

from shared import redisconn
from shared.config import Config
from shared.events import KindEvents
from shared.kinds import JobKind, load_kinds
from shared.lifecycle import Lifecycle
from shared.push import Pusher, QueuePush, RelayPush

_BUILT: dict[tuple[int, str], Lifecycle] = {}


def lifecycle(cfg: Config) -> Lifecycle:
    """This process's lifecycle for settings like ``cfg``'s (one per process and settings:
    a forked work horse builds its own, so no connection is shared across a fork)."""
    key = (os.getpid(), repr(sorted(cfg.as_dict().items())))
    built = _BUILT.get(key)
    if built is None:
        if len(_BUILT) > 8:
            _BUILT.clear()
        built = _BUILT[key] = _build(cfg)
    return built


def _build(cfg: Config) -> Lifecycle:
    client = redisconn.connect(cfg.REDIS_URL, decode_responses=True)
    raw = redisconn.connect(cfg.REDIS_URL)
    kinds = load_kinds(cfg.JOB_KINDS)
    pusher: Pusher = (QueuePush(cfg.SOCKETIO_MESSAGE_QUEUE, client,
                                lambda name: _events(kinds, name), cfg.SOCKETIO_SUBSCRIPTIONS)
                      if cfg.SOCKETIO_MESSAGE_QUEUE else RelayPush(client))
    return Lifecycle(cfg, client, raw, kinds, pusher)


def _events(kinds: dict[str, JobKind], name: str) -> KindEvents | None:
    kind = kinds.get(name)
    return kind.events if kind is not None else None
