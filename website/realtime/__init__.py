"""Socket.IO: rooms per job and snippet (join first, then read), and pushes."""

from __future__ import annotations

from flask import Flask

from shared.protocol import browser_contract


def init_app(app: Flask) -> None:
    """Attach the connect and subscribe handlers to the bound Socket.IO server,
    and give the templates the names the page scripts use."""
    from website.realtime import relay, sockets
    sockets.register()
    relay.init_app(app)  # states the worker's fallback stored -> open pages
    app.add_template_global(browser_contract, "browser_contract")
