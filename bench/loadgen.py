"""An HTTP/1.1 load generator on raw asyncio streams (keep-alive, like wrk).

``python -m bench.loadgen --port P --path /api/progress --jobs a,b,c ...``
POSTs progress callbacks (each with a fresh message, so each one is applied
and emitted) over ``--concurrency`` keep-alive connections, either as fast as
the server answers (closed loop) or at ``--rate`` requests per second (open
loop). It prints one JSON line: requests, seconds, rate, statuses, latency.
A client this lean keeps the load generator from being the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import Counter


def callback_body(job_id: str, message: str, progress: int = 50, lines: int = 0) -> bytes:
    """The JSON body of one progress callback (with ``lines`` log lines)."""
    body: dict = {"jobId": job_id, "progress": progress, "state": "running", "message": message}
    if lines:
        body["log"] = [f"{message} line {i}: a typical log line of some sixty characters"
                       for i in range(lines)]
    return json.dumps(body).encode()


def post_request(host: str, port: int, path: str, token: str, body: bytes) -> bytes:
    """The bytes of one keep-alive POST with a JSON body and a bearer token."""
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def get_request(host: str, port: int, path: str) -> bytes:
    """The bytes of one keep-alive GET asking for JSON."""
    return (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Accept: application/json\r\n\r\n").encode()


class HTTPConnection:
    """One keep-alive connection; reconnects when the server closed it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.bytes_out = 0
        self.bytes_in = 0

    async def request(self, data: bytes) -> tuple[int, bytes]:
        """Send ``data`` (a whole request); the status and body of the answer."""
        for attempt in (1, 2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            assert self.reader is not None
            try:
                self.writer.write(data)
                self.bytes_out += len(data)
                head = await self.reader.readuntil(b"\r\n\r\n")
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt == 2:
                    raise
                continue
            status = int(head[9:12])
            length = 0
            close = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            body = await self.reader.readexactly(length) if length else b""
            self.bytes_in += len(head) + len(body)
            if close:
                self.close()
            return status, body
        raise ConnectionError("unreachable")

    def close(self) -> None:
        """Drop the connection."""
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def run_load(host: str, port: int, path: str, token: str, jobs: list[str],
                   duration: float, concurrency: int, rate: float = 0.0,
                   tag: str = "bg", lines: int = 0, batch: int = 0) -> dict:
    """POST callbacks for ``duration`` seconds; a summary of what happened."""
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    counter = iter(range(10**12))
    start = time.perf_counter()
    end = start + duration

    async def client(k: int) -> None:
        conn = HTTPConnection(host, port)
        sent = 0
        try:
            while True:
                if rate:
                    due = start + (sent * concurrency + k) / rate
                    pause = due - time.perf_counter()
                    if pause > 0:
                        await asyncio.sleep(pause)
                now = time.perf_counter()
                if now >= end:
                    return
                n = next(counter)
                if batch and jobs:  # one request carrying ``batch`` updates, one job each
                    body = b"[" + b",".join(
                        callback_body(jobs[(n * batch + i) % len(jobs)], f"{tag} {n}.{i}")
                        for i in range(batch)) + b"]"
                else:
                    body = (callback_body(jobs[n % len(jobs)], f"{tag} {n}", lines=lines)
                            if jobs else b"{}")
                status, _ = await conn.request(post_request(host, port, path, token, body))
                latencies.append(time.perf_counter() - now)
                statuses[status] += 1
                sent += 1
        finally:
            conn.close()

    await asyncio.gather(*(client(k) for k in range(concurrency)))
    elapsed = time.perf_counter() - start
    total = sum(statuses.values())
    ordered = sorted(latencies)
    return {
        "requests": total, "seconds": elapsed, "rate": total / elapsed if elapsed else 0.0,
        "statuses": {str(k): v for k, v in statuses.items()},
        "p50_ms": 1000 * statistics.median(ordered) if ordered else None,
        "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))] if ordered else None,
    }


def main(argv: list[str] | None = None) -> None:
    """Command line entry point; prints the summary as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/api/progress")
    parser.add_argument("--token", default="")
    parser.add_argument("--jobs", default="", help="comma-separated job ids")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=0.0, help="0: as fast as possible")
    parser.add_argument("--tag", default="bg")
    parser.add_argument("--lines", type=int, default=0, help="log lines per callback")
    parser.add_argument("--batch", type=int, default=0, help="updates per request (an array)")
    args = parser.parse_args(argv)
    jobs = [j for j in args.jobs.split(",") if j]
    result = asyncio.run(run_load(args.host, args.port, args.path, args.token, jobs,
                                  args.duration, args.concurrency, args.rate, args.tag,
                                  args.lines, args.batch))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
