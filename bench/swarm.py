"""Many raw Socket.IO connections in one asyncio process, driven over a pipe.

Run as ``python -m bench.swarm HOST PORT``; it reads one JSON command per
line on stdin and answers one JSON line on stdout:

* ``{"cmd": "connect", "count": N, "jobs": [...] | null, "concurrency": C}``
  opens N connections (connection i watches ``jobs[i % len(jobs)]``);
* ``{"cmd": "take"}`` returns and forgets the arrival stamps of events whose
  message starts with ``probe`` (``{message: [perf_counter, ...]}``);
* ``{"cmd": "counts"}``: events received, open connections, bytes;
* ``{"cmd": "close"}`` closes every connection; ``{"cmd": "exit"}`` ends.

:class:`Swarm` is the parent's handle on such a process.
"""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from bench.wsclient import SocketIOConnection, connect

ROOT = Path(__file__).resolve().parent.parent


class SwarmState:
    """The connections of this process and what they received."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.conns: list[SocketIOConnection] = []
        self.events = 0
        self.arrivals: dict[str, list[float]] = {}

    def on_event(self, conn: SocketIOConnection, name: str, data: Any, stamp: float,
                 wall: float) -> None:
        """Count every event; keep the stamps of probe messages."""
        self.events += 1
        message = data.get("message", "") if isinstance(data, dict) else ""
        if message.startswith("probe"):
            self.arrivals.setdefault(message, []).append(stamp)

    async def connect(self, count: int, jobs: list[str] | None, concurrency: int) -> dict:
        """Open ``count`` connections, ``concurrency`` at a time."""
        started = time.perf_counter()
        results = {"connected": 0, "refused": 0, "failed": 0}
        next_index = iter(range(count))

        async def opener() -> None:
            for i in next_index:
                query = {"jobId": jobs[i % len(jobs)]} if jobs else None
                try:
                    conn = await connect(self.host, self.port, self.on_event, query)
                except ConnectionRefusedError:
                    results["refused"] += 1
                except (OSError, TimeoutError):
                    results["failed"] += 1
                else:
                    self.conns.append(conn)
                    results["connected"] += 1

        await asyncio.gather(*(opener() for _ in range(max(1, concurrency))))
        return {**results, "seconds": time.perf_counter() - started}

    def take(self) -> dict:
        """The probe arrivals so far, then forget them."""
        out, self.arrivals = self.arrivals, {}
        return out

    def counts(self) -> dict:
        """Events received, open connections and bytes moved."""
        open_conns = [c for c in self.conns if c.transport is not None]
        return {"events": self.events, "open": len(open_conns),
                "bytes_in": sum(c.bytes_in for c in self.conns),
                "bytes_out": sum(c.bytes_out for c in self.conns)}

    async def close(self) -> dict:
        """Close every connection."""
        closed = len(self.conns)
        for conn in self.conns:
            conn.close()
        self.conns = []
        await asyncio.sleep(0.2)
        return {"closed": closed}


async def serve(host: str, port: int) -> None:
    """Answer commands from stdin until ``exit`` or end of input."""
    state = SwarmState(host, port)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        command = json.loads(line)
        cmd = command.get("cmd")
        if cmd == "connect":
            answer = await state.connect(command["count"], command.get("jobs"),
                                         command.get("concurrency", 100))
        elif cmd == "take":
            answer = state.take()
        elif cmd == "counts":
            answer = state.counts()
        elif cmd == "close":
            answer = await state.close()
        elif cmd == "exit":
            await state.close()
            break
        else:
            answer = {"error": f"unknown command {cmd!r}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def main() -> None:
    """Entry point: ``python -m bench.swarm HOST PORT``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(serve(sys.argv[1], int(sys.argv[2])))


class Swarm:
    """Parent-side handle on a ``python -m bench.swarm`` process."""

    def __init__(self, host: str, port: int, log: IO[bytes] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.swarm", host, str(port)], cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)

    def call(self, cmd: str, **args: Any) -> dict:
        """Send one command; its answer."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps({"cmd": cmd, **args}) + "\n").encode())
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"swarm exited ({self.proc.poll()}) during {cmd}")
        return json.loads(line)  # type: ignore[no-any-return]

    def connect(self, count: int, jobs: list[str] | None = None,
                concurrency: int = 100) -> dict:
        """Open ``count`` connections (watching ``jobs`` round robin)."""
        return self.call("connect", count=count, jobs=jobs, concurrency=concurrency)

    def stop(self) -> None:
        """Close the connections and end the process."""
        if self.proc.poll() is None:
            try:
                self.call("exit")
            except (RuntimeError, BrokenPipeError, ValueError):
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> Swarm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    main()
