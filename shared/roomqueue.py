"""The Socket.IO message queue with a channel per room: each web process hears only its rooms.

python-socketio's ``RedisManager`` publishes every emit on one channel, so every
web process receives and decodes every event, even for rooms where it has no
client: the cluster's events/s stays near what one process can take in.
:class:`RoomQueueManager` is the same manager with the "dynamic" subscription mode
of Socket.IO's Redis adapter for Node (``subscriptionMode: "dynamic"``):

* an emit to a room goes out on ``<channel>#<room>`` (or, with ``groups``, on one of
  ``groups`` channels the rooms are hashed into); everything else (an emit to no
  room or to several, to another process's connection, the manager's own
  messages: disconnect, enter/leave/close a room, callbacks) on ``<channel>``,
  which every process hears;
* a web process subscribes to a room's channel when the room gets its first local
  connection and unsubscribes when the last one leaves (a leave, a disconnect, a
  closed room);
* an emit to one of this process's own connections (its state when it joins) is
  sent here and never published: no other process has that connection.

**Joins stay race-free across processes.** A page joins a room, then reads the
stored state (``website/realtime/sockets.py``). :meth:`RoomQueueManager.enter_room`
returns only once Redis has confirmed this process's ``SUBSCRIBE`` for the room's
channel (the confirmation arrives on the subscribing connection, in order with its
messages), so an event another process publishes for the room is either published
after the subscription (and received) or before it, and then the state it
reflects was stored before the read that follows the join. Without a
confirmation within ``confirm_timeout`` the join fails with
:class:`redis.TimeoutError` (the handlers answer "state store unavailable").

**After an outage, a resync.** Events published while the subscribing connection
was down (a Redis restart or failover: the listener subscribes again after 1 s,
2 s, 4 s ...) are lost for this process's rooms. So when a subscription other
than the first one (or redis-py's own reconnect of it) has been confirmed for
every channel, :attr:`RoomQueueManager.on_resubscribed` is started as a
background task with the process's rooms; the site pushes their stored state to
its own clients (``website/realtime/resync.py``). The manager knows nothing of
what is stored.

It is built on python-socketio's pub/sub manager through the methods the
manager interface defines (``emit``, ``enter_room``, ``basic_enter_room`` /
``basic_leave_room``, ``_publish``, ``_listen``): the one subscribing connection is
read by the manager's own listener task, green under eventlet/gevent and a thread
in the threading mode; ``SUBSCRIBE`` and ``UNSUBSCRIBE`` are written on it from the
joining task (redis-py reads a pub/sub connection without holding its lock).
Every writer must use the same mode: the site (``shared.push.ServerPush`` through
its server), the worker and the tick (``shared.push.QueuePush``, write-only).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import redis
import socketio
from redis.client import PubSub

from shared.redisconn import connection_class, message_queue

log = logging.getLogger(__name__)

CONFIRM_TIMEOUT = 5.0  # seconds a join waits for Redis to confirm its subscription
MAX_RETRY_WAIT = 30.0  # seconds between two attempts to subscribe again after an error


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RoomQueueManager(socketio.RedisManager):  # type: ignore[misc]
    """A Redis client manager whose process subscribes only to its own rooms' channels.

    ``groups``: 0 for a channel per room, or the number of channels the rooms are
    hashed into (fewer channels, some events for rooms that are not here).
    """

    name = "redis-rooms"

    def __init__(self, url: str, channel: str, write_only: bool = False, groups: int = 0,
                 confirm_timeout: float = CONFIRM_TIMEOUT) -> None:
        url, options = _connection(url)
        super().__init__(url, channel=channel, write_only=write_only, redis_options=options)
        self.connected: bool = False  # RedisManager's: its publishing client is up
        self.groups = groups
        self.confirm_timeout = confirm_timeout
        self._lock = threading.RLock()  # green once eventlet/gevent patched threading
        self._users: dict[str, int] = {}  # room channel -> local rooms on it
        self._pending: dict[str, int] = {self.channel: 1}  # SUBSCRIBEs not yet confirmed
        self._waiters: dict[str, list[Any]] = {}  # channel -> events of joins waiting
        self._sub: PubSub | None = None  # the subscribing connection, once the listener has one
        self._own: bytes | None = None  # how this process's own messages end
        self._batches: dict[int, list[tuple[str, str]]] = {}  # task -> messages held back
        # Called (as a background task) with this process's rooms, ``{namespace: [room]}``,
        # once Redis confirmed a subscription that follows an outage of the listener:
        # events published meanwhile were lost for those rooms (the site pushes their
        # stored state, website/realtime/resync.py).
        self.on_resubscribed: Callable[[dict[str, list[str]]], Any] | None = None
        self._listened = False  # a subscription was made once: the next ones follow a gap
        self._resync: set[str] | None = None  # channels to be confirmed before the resync

    # -- where an emit travels -----------------------------------------------------------

    def channel_for(self, room: object) -> str:
        """The channel of an emit to ``room``: the room's (or its group's), or the common one."""
        if not isinstance(room, str):
            return self.channel  # no room (everyone), several rooms, a callback's
        if self.groups:
            return f"{self.channel}#{zlib.crc32(room.encode()) % self.groups}"
        return f"{self.channel}#{room}"

    def emit(self, event: str, data: Any, namespace: str | None = None, room: Any = None,
             skip_sid: Any = None, callback: Any = None, to: Any = None, **kwargs: Any) -> Any:
        """Emit as python-socketio's pub/sub manager does, except that an emit to one of
        this process's own connections is sent here only (no other process has it)."""
        room = to or room
        namespace = namespace or "/"
        if (callback is None and not kwargs.get("ignore_queue") and isinstance(room, str)
                and self.is_sid_room(namespace, room)):
            kwargs["ignore_queue"] = True
        return super().emit(event, data, namespace=namespace, room=room, skip_sid=skip_sid,
                            callback=callback, **kwargs)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Publish the messages the calling task emits in the block in one round trip, at
        its end (a change's events: one ``PUBLISH`` each, one write; measured in
        docs/scaling.md). This process's own clients get them at once, as before."""
        task = threading.get_ident()  # the green thread under eventlet/gevent
        if task in self._batches:
            yield
            return
        self._batches[task] = []
        try:
            yield
        finally:
            messages = self._batches.pop(task)
            if messages:
                self._send_published(messages)

    def _publish(self, data: dict[str, Any]) -> Any:
        """Publish a manager message: an emit to one room on the room's channel, the rest
        on the common one."""
        channel = (self.channel_for(data.get("room")) if data.get("method") == "emit"
                   else self.channel)
        message = (channel, self.json.dumps(data))
        batch = self._batches.get(threading.get_ident()) if self._batches else None
        if batch is not None:
            batch.append(message)
            return None
        return self._send_published([message])

    def _send_published(self, messages: list[tuple[str, str]]) -> Any:
        """PUBLISH each ``(channel, body)`` in one round trip (two attempts, as
        ``RedisManager`` does)."""
        for attempt in (1, 2):
            try:
                if not self.connected:
                    self._redis_connect()
                if len(messages) == 1:
                    return self.redis.publish(*messages[0])
                pipe = self.redis.pipeline(transaction=False)
                for channel, body in messages:
                    pipe.publish(channel, body)
                return pipe.execute()
            except redis.RedisError as exc:
                self.connected = False
                log.error("cannot publish to the message queue (%s attempt): %s",
                          "first" if attempt == 1 else "last", exc)
        return None

    # -- which channels this process hears --------------------------------------------

    def basic_enter_room(self, sid: str, namespace: str, room: Any,
                         eio_sid: str | None = None) -> None:
        """Enter the room; its first local connection subscribes the process to its channel."""
        new = (isinstance(room, str) and room != sid
               and room not in self.rooms.get(namespace, {}))
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        if new:
            self._acquire(self.channel_for(room))

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        """Leave the room; when its last local connection left, drop its channel."""
        had = isinstance(room, str) and room != sid and room in self.rooms.get(namespace, {})
        super().basic_leave_room(sid, namespace, room)
        if had and room not in self.rooms.get(namespace, {}):
            self._release(self.channel_for(room))

    def enter_room(self, sid: str, namespace: str, room: Any, eio_sid: str | None = None) -> None:
        """Enter the room and, for a connection of this process, return once Redis has
        confirmed the subscription to the room's channel (the join is then race-free)."""
        super().enter_room(sid, namespace, room, eio_sid=eio_sid)
        if (self.write_only or not isinstance(room, str) or room == sid
                or not (self.is_connected(sid, namespace)
                        or self.is_pre_connected(sid, namespace))):
            return
        if not self._confirmed(self.channel_for(room)):
            self.basic_leave_room(sid, namespace, room)
            raise redis.TimeoutError(f"the message queue did not confirm room {room[:80]!r}")

    def subscribed_channels(self) -> set[str]:
        """The room channels this process wants (for tests and the bench)."""
        with self._lock:
            return set(self._users)

    def _acquire(self, channel: str) -> None:
        with self._lock:
            count = self._users.get(channel, 0)
            self._users[channel] = count + 1
            if count:
                return
            self._pending[channel] = self._pending.get(channel, 0) + 1
            if self._sub is not None:
                self._send(self._sub.subscribe, channel)

    def _release(self, channel: str) -> None:
        with self._lock:
            count = self._users.get(channel, 0) - 1
            if count > 0:
                self._users[channel] = count
                return
            self._users.pop(channel, None)
            if self._sub is not None:
                self._send(self._sub.unsubscribe, channel)

    def _send(self, command: Any, channel: str) -> None:
        """(UN)SUBSCRIBE on the listener's connection; an error is the listener's to mend
        (its read fails too, and it subscribes everything wanted again)."""
        try:
            command(channel)
        except redis.RedisError as exc:
            log.warning("message queue: could not (un)subscribe %s: %s", channel[:120], exc)

    def _confirmed(self, channel: str) -> bool:
        """Wait until no SUBSCRIBE to ``channel`` awaits Redis's confirmation; False after
        ``confirm_timeout``."""
        with self._lock:
            if not self._pending.get(channel):
                return True
            event = self.server.eio.create_event()
            self._waiters.setdefault(channel, []).append(event)
        if event.wait(self.confirm_timeout):
            return True
        with self._lock:
            waiting = self._waiters.get(channel, [])
            if event in waiting:
                waiting.remove(event)
            return not self._pending.get(channel)

    def _on_confirm(self, channel: str) -> None:
        """Redis confirmed a SUBSCRIBE: wake the joins once none is left; a channel nobody
        here wants any more (left meanwhile, or resubscribed by redis-py) is dropped."""
        with self._lock:
            left = self._pending.get(channel, 0) - 1
            if left > 0:
                self._pending[channel] = left
            else:
                self._pending.pop(channel, None)
                for event in self._waiters.pop(channel, []):
                    event.set()
            if (channel != self.channel and channel not in self._users
                    and self._sub is not None):
                self._send(self._sub.unsubscribe, channel)

    def _on_reconnect(self, _connection: Any) -> None:
        """redis-py reconnected the listener's connection and subscribed again to what it
        held: confirmations sent on the old connection will never come, and what was
        published while it was down is lost (a resync once Redis confirmed them)."""
        with self._lock:
            if self._sub is not None:
                channels = {_text(channel) for channel in self._sub.channels}
                for channel in channels:
                    self._pending[channel] = 1
                self._resync = channels | (self._resync or set())

    def _on_subscribed(self, channel: str) -> None:
        """A SUBSCRIBE is confirmed: wake its joins, and once every channel of a
        subscription after an outage is confirmed, start :attr:`on_resubscribed`."""
        self._on_confirm(channel)
        with self._lock:
            if self._resync is None:
                return
            self._resync.discard(channel)
            if self._resync:
                return
            self._resync = None
        hook = self.on_resubscribed
        if hook is not None:
            rooms = self.local_rooms()
            log.info("message queue: subscribed again after an outage; resyncing %d room(s)",
                     sum(len(names) for names in rooms.values()))
            self.server.start_background_task(hook, rooms)

    def local_rooms(self) -> dict[str, list[str]]:
        """The named rooms with a connection of this process, by namespace (no
        connection's own room)."""
        found: dict[str, list[str]] = {}
        for namespace, rooms in list(self.rooms.items()):
            names = [room for room, members in list(rooms.items())
                     if isinstance(room, str) and members and room not in members]
            if names:
                found[namespace] = names
        return found

    # -- the listener --------------------------------------------------------------------

    def _subscribe_all(self) -> PubSub:
        """A new subscribing connection, on the common channel and every wanted room's."""
        with self._lock:
            if not self.connected:
                self._redis_connect()
            sub = self.redis.pubsub()
            wanted = [self.channel, *self._users]
            self._pending = dict.fromkeys(wanted, 1)
            # the first subscription has nothing to catch up with; any later one does
            self._resync = set(wanted) if self._listened else None
            try:
                sub.subscribe(*wanted)
            except redis.RedisError:
                sub.close()
                raise
            sub.connection.register_connect_callback(self._on_reconnect)
            self._sub = sub
            self._listened = True
            return sub

    def _drop_listener(self) -> None:
        with self._lock:
            sub, self._sub = self._sub, None
            self.connected = False
        if sub is not None:
            if sub.connection is not None:
                sub.connection.deregister_connect_callback(self._on_reconnect)
            try:
                sub.close()
            except redis.RedisError:
                pass

    def _listen(self) -> Iterator[bytes]:
        """The messages of the channels this process hears (its own emits left out: it
        sent them to its clients already), subscribing again after any Redis error."""
        if self._own is None:
            self._own = self.json.dumps({"host_id": self.host_id})[1:].encode()
        wait = 1.0
        while True:
            try:
                sub = self._subscribe_all()
                wait = 1.0
                for message in sub.listen():
                    kind = message["type"]
                    if kind == "message":
                        data = message["data"]
                        if not data.endswith(self._own):
                            yield data
                    elif kind == "subscribe":
                        self._on_subscribed(_text(message["channel"]))
            except redis.RedisError as exc:
                log.error("message queue: cannot receive (%s); subscribing again in %.0f s",
                          exc, wait)
            self._drop_listener()
            self.server.sleep(wait)
            wait = min(MAX_RETRY_WAIT, wait * 2)


def groups_of(mode: str) -> int | None:
    """``SOCKETIO_SUBSCRIPTIONS`` (checked by ``shared.settings``): None for ``all`` (one
    channel), 0 for ``rooms`` (a channel per room), else the number of hashed groups."""
    if mode == "all":
        return None
    return 0 if mode == "rooms" else int(mode)


def queue_manager(url: str, channel: str, mode: str = "rooms",
                  write_only: bool = False) -> socketio.RedisManager:
    """The client manager for ``SOCKETIO_MESSAGE_QUEUE`` ``url`` in ``SOCKETIO_SUBSCRIPTIONS``
    ``mode``: python-socketio's own ``RedisManager`` for ``all``, else this module's."""
    groups = groups_of(mode)
    if groups is None:
        url, options = _connection(url)
        return socketio.RedisManager(url, channel=channel, write_only=write_only,
                                     redis_options=options)
    return RoomQueueManager(url, channel=channel, write_only=write_only, groups=groups)


def _connection(url: str) -> tuple[str, dict[str, Any]]:
    """``(url, redis_options)`` for python-socketio's manager on ``url``: a Sentinel URL in
    the form it reads with its credentials apart (``redisconn.message_queue``), and this
    process's quick connection check."""
    queue_url, options = message_queue(url)
    return queue_url, {**connection_class(url), **options}
