"""The web process's quick idle check on Redis connections (shared/redisconn.py):
the same answers as redis-py's own check, on a real Redis, and a guard that fails
when redis-py changes what the check relies on."""

from __future__ import annotations

import inspect
import select
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis

from shared.redisconn import QuickCheck, QuickCheckConnection
from tests.support import ROOT, RedisServer, wait_until


@pytest.fixture
def quick(redis_server: RedisServer) -> Iterator[QuickCheckConnection]:
    """A connected quick-check connection using this (unpatched) process's poll."""
    saved = QuickCheck._poll
    QuickCheck._poll = staticmethod(select.poll)  # type: ignore[assignment]
    conn = QuickCheckConnection(port=redis_server.port)
    conn.connect()
    yield conn
    conn.disconnect()
    QuickCheck._poll = saved


def _wait_readable(conn: redis.Connection) -> None:
    sock = conn._sock
    assert sock is not None
    wait_until(lambda: select.select([sock], [], [], 0)[0], timeout=5, what="Redis to answer")


def test_redis_py_still_has_what_the_quick_check_relies_on(redis_server: RedisServer) -> None:
    theirs = inspect.signature(redis.Connection.can_read)
    assert str(theirs) == "(self, timeout: float = 0) -> bool", "redis-py changed can_read"
    conn = redis.Connection(port=redis_server.port)
    conn.connect()
    try:
        assert conn._sock is not None and conn._sock.fileno() >= 0
        reader = getattr(conn._parser, "_reader", None)  # hiredis: the web's parser
        assert reader is not None and reader.has_data() is False
    finally:
        conn.disconnect()
    assert issubclass(QuickCheckConnection, redis.Connection)


def test_an_idle_connection_has_nothing_to_read(quick: QuickCheckConnection) -> None:
    quick.send_command("PING")
    assert quick.read_response() in (b"PONG", "PONG")
    assert quick.can_read() is False


def test_a_reply_left_unread_is_seen(quick: QuickCheckConnection) -> None:
    quick.send_command("PING")  # the answer is never read: a desynchronised connection
    _wait_readable(quick)
    assert quick.can_read() is True


def test_a_reply_left_in_the_parser_is_seen(quick: QuickCheckConnection) -> None:
    quick.send_packed_command(quick.pack_commands([("PING",), ("ECHO", "left over")]))
    both = len(b"+PONG\r\n$9\r\nleft over\r\n")
    sock = quick._sock
    assert sock is not None
    # both answers in the socket: the first read takes them together
    wait_until(lambda: len(sock.recv(both, socket.MSG_PEEK)) >= both, timeout=5,
               what="both answers on the socket")
    assert quick.read_response() in (b"PONG", "PONG")
    assert quick._parser._reader.has_data()  # type: ignore[union-attr]
    assert quick.can_read() is True  # buffered above the socket
    assert quick.read_response() in (b"left over", "left over")
    assert quick.can_read() is False


def test_a_connection_the_server_closed_is_not_idle(
        quick: QuickCheckConnection, redis_server: RedisServer) -> None:
    admin = redis.Redis(port=redis_server.port)
    quick.send_command("CLIENT", "ID")
    client_id = quick.read_response()
    admin.client_kill_filter(_id=str(client_id))
    admin.close()
    _wait_readable(quick)
    try:
        assert quick.can_read() is True
    except redis.ConnectionError:
        pass  # redis-py's own way of saying the same: the pool reconnects


GREEN = """
import sys
if sys.argv[1] == "eventlet":
    import eventlet
    eventlet.monkey_patch()
else:
    from gevent import monkey
    monkey.patch_all()
import redis
from redis.maint_notifications import MaintNotificationsConfig
from shared.redisconn import QuickCheckConnection, connection_class

url = sys.argv[2]
chosen = connection_class(url)
assert chosen == {"connection_class": QuickCheckConnection}, chosen
# redis-py ignores what the check finds while maintenance notifications are on
# (its default, "auto"); off, the pool acts on it, which is what this proves
pool = redis.BlockingConnectionPool.from_url(
    url, max_connections=2, maint_notifications_config=MaintNotificationsConfig(enabled=False),
    **chosen)
client = redis.Redis(connection_pool=pool)
for _ in range(50):
    assert client.ping()
conn = pool.get_connection()
conn.send_command("PING")  # returned to the pool with an answer unread
assert conn.can_read(timeout=5)  # the answer has arrived (a green wait)
pool.release(conn)
assert client.echo("fresh") == b"fresh"  # not the stale PONG: the pool noticed
print("ok")
"""


@pytest.mark.parametrize("library", ["eventlet", "gevent"])
def test_green_processes_use_the_quick_check_and_still_catch_stale_replies(
        redis_server: RedisServer, library: str) -> None:
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", GREEN, library,
                          redis_server.url], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_without_a_green_library_redis_py_chooses() -> None:
    from shared.redisconn import connection_class

    assert connection_class("redis://127.0.0.1:6379/0") == {}
