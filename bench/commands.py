"""Count the Redis commands one process sends, with ``MONITOR``.

``MONITOR`` reports every command Redis runs with the client's address
(``127.0.0.1:PORT``), or ``lua`` for commands a script runs inside Redis. The
counter brackets the measured work with two ``ECHO`` markers, then keeps the
commands between them whose address is one of the process's own connections
to Redis (from psutil): commands it sent, counted by name, without having to
know which names a script runs. The script's own commands are counted apart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import psutil
import redis

from shared.protocol import new_id


def redis_addresses(pid: int, redis_port: int) -> set[str]:
    """``ip:port`` of each TCP connection process ``pid`` holds to ``redis_port``."""
    return {f"{c.laddr.ip}:{c.laddr.port}"
            for c in psutil.Process(pid).net_connections(kind="tcp")
            if c.raddr and c.raddr.port == redis_port}


@dataclass
class Counted:
    """Commands seen between the markers."""

    sent: Counter[str]  # by the process's own connections, by command name
    scripted: Counter[str]  # run inside a Lua script (any client's)
    others: int  # sent by other clients (other processes, the bench itself)


def count_commands(url: str, port: int, pid: int, work: Callable[[], object],
                   exclude: set[str] | None = None) -> Counted:
    """Run ``work()`` under MONITOR; the commands process ``pid`` sent meanwhile.

    ``exclude``: addresses of ``pid`` not to count (e.g. the caller's own client
    when ``pid`` is the caller).
    """
    marker = f"bench-monitor-{new_id()}"
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        with client.monitor() as monitor:
            client.echo(f"{marker} start")
            work()
            client.echo(f"{marker} end")
            mine = redis_addresses(pid, port) - (exclude or set())
            seen: list[tuple[str, str]] = []
            started = False
            while True:
                line = monitor.next_command()
                command = str(line["command"])
                if command == f"ECHO {marker} start":
                    started = True
                    continue
                if command == f"ECHO {marker} end":
                    break
                if started:
                    address = ("lua" if line["client_type"] == "lua"
                               else f"{line['client_address']}:{line['client_port']}")
                    seen.append((address, command.split(" ", 1)[0].upper()))
    finally:
        client.close()
    sent: Counter[str] = Counter()
    scripted: Counter[str] = Counter()
    others = 0
    for address, name in seen:
        if address == "lua":
            scripted[name] += 1
        elif address in mine:
            sent[name] += 1
        else:
            others += 1
    return Counted(sent, scripted, others)
