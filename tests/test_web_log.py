"""The web log stays one entry per line when browsers close their Socket.IO connections.

eventlet writes ``socket shutdown error: [Errno 9] ...`` to ``wsgi.errors``
without a newline when a websocket is closed by the client (a tab closing);
the site turns that stream into log records (website/http/access.py).
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import websocket

from tests.support import Process, RedisServer, free_port, stack_env, start_web, wait_until
from website.http.access import LoggingErrorStream

SHUTDOWN = "socket shutdown error"
RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO website\.http\.access: "
                    r"server=\S+ client=\S+ socket shutdown error: \[Errno 9\] "
                    r"Bad file descriptor$")


@pytest.fixture
def web(log_dir: Path, tmp_path: Path) -> Iterator[Process]:
    """Redis and the gunicorn+eventlet site, with the access log on (lines to glue onto)."""
    server = RedisServer(log_dir, tmp_path / "redis").start()
    env = stack_env(server.url, free_port(), ACCESS_LOG="1", ASYNC_MODE="eventlet")
    proc = start_web(env, log_dir, name=f"web-log-{server.port}")
    yield proc
    proc.stop()
    server.stop()


def open_socket(base_url: str) -> websocket.WebSocket:
    """A raw Engine.IO websocket with a connected Socket.IO session."""
    url = base_url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    ws = websocket.create_connection(url, timeout=5)
    assert ws.recv().startswith("0{")
    ws.send("40")
    assert ws.recv().startswith("40{")
    return ws


def test_closed_tabs_leave_one_log_entry_per_line(web: Process) -> None:
    base = web.env["SITE_URL"]
    for n in range(4):
        ws = open_socket(base)
        if n % 2 == 0:
            ws.close()  # a tab closing: close frame, then the TCP close
        else:
            ws.sock.shutdown(socket.SHUT_RDWR)  # a crash: no close frame
            ws.sock.close()
        assert requests.get(base + "/snippets", timeout=5).status_code == 200
    requests.get(base + "/socket.io/?EIO=4&transport=polling", timeout=5)  # then abandoned

    def logged() -> list[str]:
        requests.get(base + "/", timeout=5)  # a line that would follow a glued notice
        lines = web.log_tail(200_000).splitlines()
        return [line for line in lines if SHUTDOWN in line] if "GET / 200" in lines[-1] else []

    shutdown_lines = wait_until(logged, timeout=15, what="the shutdown notices in the web log")
    for line in shutdown_lines:
        assert RECORD.match(line), f"not a log entry of its own: {line!r}"


def test_error_stream_logs_each_write_as_one_record(caplog: pytest.LogCaptureFixture) -> None:
    stream = LoggingErrorStream()
    with caplog.at_level(logging.INFO, logger="website.http.access"):
        stream.write("x socket shutdown error: [Errno 9] Bad file descriptor")
        stream.write(b"something else broke\n")
        stream.writelines(["\n", "two\n"])
        stream.flush()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "x socket shutdown error: [Errno 9] Bad file descriptor"),
        ("WARNING", "something else broke"),
        ("WARNING", "two"),
    ]
