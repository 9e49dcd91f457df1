"""Socket.IO: rooms per job and snippet (join first, then read), and pushes."""

from __future__ import annotations

from flask import Flask

from website.realtime import sockets


def init_app(app: Flask) -> None:
    """Attach the connect and subscribe handlers to the bound Socket.IO server."""
    sockets.register()
