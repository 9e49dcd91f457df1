"""A lean Socket.IO client over a raw websocket (asyncio + wsproto).

python-socketio's clients cost a few threads or an aiohttp session each; to
hold thousands of connections from one process the benchmark speaks the wire
protocol itself: Engine.IO v4 over the ``websocket`` transport (``0`` open,
``2`` ping, ``3`` pong, ``4`` message) carrying Socket.IO v5 packets (``0``
connect, ``2`` event, ``4`` connect error) on the default namespace. It counts
the bytes, HTTP requests and websocket messages it sends and receives, and stamps each event with
``time.perf_counter()`` (CLOCK_MONOTONIC, comparable across processes) and
``time.time()`` at the moment the data was read, before any parsing.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

# on_event(connection, event_name, data, perf_counter_at_read, wall_time_at_read)
EventHandler = Callable[["SocketIOConnection", str, Any, float, float], None]


class SocketIOConnection(asyncio.Protocol):
    """One Socket.IO connection on the default namespace, websocket transport only."""

    def __init__(self, host: str, port: int, on_event: EventHandler | None = None,
                 query: dict[str, str] | None = None) -> None:
        self.host = host
        self.port = port
        self.on_event = on_event
        self.query = query or {}
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.bytes_in = 0
        self.bytes_out = 0
        self.requests = 0  # HTTP requests sent (the websocket upgrade)
        self.messages_in = 0  # websocket text messages received
        self.messages_out = 0  # websocket text messages sent (connect, pongs)
        self.status: int | None = None  # HTTP status when the handshake was refused
        self._partial = ""

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the websocket upgrade request."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        params = {"EIO": "4", "transport": "websocket", **self.query}
        target = "/socket.io/?" + urlencode(params)
        self.requests += 1
        self._send(self.ws.send(Request(host=f"{self.host}:{self.port}", target=target)))

    def data_received(self, data: bytes) -> None:
        """Stamp, count and parse what arrived."""
        stamp, wall = time.perf_counter(), time.time()
        self.bytes_in += len(data)
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, TextMessage):
                self._partial += event.data
                if event.message_finished:
                    self.messages_in += 1
                    text, self._partial = self._partial, ""
                    self._engineio(text, stamp, wall)
            elif isinstance(event, Ping):
                self._send(self.ws.send(event.response()))
            elif isinstance(event, RejectConnection):
                self.status = event.status_code
                self._fail(ConnectionRefusedError(f"handshake refused: {event.status_code}"))
                self.close()
            elif isinstance(event, CloseConnection):
                self._send(self.ws.send(event.response()))
                self.close()
            elif isinstance(event, AcceptConnection):
                self.status = 101

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail a pending connect."""
        self._fail(ConnectionError(f"connection lost: {exc}"))
        self.transport = None

    # Engine.IO / Socket.IO
    def _engineio(self, text: str, stamp: float, wall: float) -> None:
        kind, body = text[:1], text[1:]
        if kind == "0":  # open: connect to the default namespace
            self._send_text("40")
        elif kind == "2":  # ping
            self._send_text("3")
        elif kind == "4":
            self._socketio(body, stamp, wall)
        elif kind == "1":
            self.close()

    def _socketio(self, packet: str, stamp: float, wall: float) -> None:
        kind, body = packet[:1], packet[1:]
        if kind == "0":
            if not self.ready.done():
                self.ready.set_result(True)
        elif kind == "4":
            self._fail(ConnectionRefusedError(f"connect refused: {body}"))
            self.close()
        elif kind == "2" and self.on_event is not None:
            name, *args = json.loads(body)
            self.on_event(self, name, args[0] if args else None, stamp, wall)

    def _send_text(self, text: str) -> None:
        self.messages_out += 1
        self._send(self.ws.send(TextMessage(data=text)))

    def _send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.bytes_out += len(data)
            self.transport.write(data)

    def _fail(self, exc: Exception) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc)
            self.ready.exception()  # mark retrieved: callers may not await it

    def close(self) -> None:
        """Close the TCP connection (no closing handshake: the server copes)."""
        if self.transport is not None:
            self.transport.close()


async def connect(host: str, port: int, on_event: EventHandler | None = None,
                  query: dict[str, str] | None = None,
                  timeout: float = 10.0) -> SocketIOConnection:
    """Open a connection and wait for the Socket.IO connect ack.

    Raises ``ConnectionRefusedError`` (e.g. 503 from the connection cap),
    ``ConnectionError`` or ``TimeoutError``.
    """
    loop = asyncio.get_running_loop()
    conn = SocketIOConnection(host, port, on_event, query)
    try:
        await asyncio.wait_for(loop.create_connection(lambda: conn, host, port), timeout)
        await asyncio.wait_for(asyncio.shield(conn.ready), timeout)
    except BaseException:
        conn.close()
        raise
    return conn
