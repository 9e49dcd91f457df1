"""``python -m bench.claimload``: many external workers claiming at once (raw asyncio
HTTP/1.1, keep-alive), for ``bench/measure_external.py``. Prints one JSON line.

Each of ``--workers`` connections loops ``POST /api/workers/claim`` (``wait`` seconds)
until ``--jobs`` claims were answered 200 in all (then the others hang up), or
``--duration`` passed. ``--hold``: idle workers, each claiming again as soon as its
claim answers, for ``--duration`` seconds whatever they get.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from bench.loadgen import HTTPConnection, post_request


async def run(host: str, port: int, token: str, workers: int, jobs: int, wait: float,
              duration: float, hold: bool = False) -> dict:
    """Claim until ``jobs`` were claimed (or, with ``hold``, until ``duration`` passed);
    counts, and the rate up to the last job claimed."""
    claimed = 0
    statuses: dict[str, int] = {}
    start = time.perf_counter()
    last = start
    end = start + duration
    body = json.dumps({"kinds": ["external"], "worker": "bench", "wait": wait}).encode()
    enough = asyncio.Event()

    async def worker() -> None:
        nonlocal claimed, last
        conn = HTTPConnection(host, port)
        try:
            while (hold or claimed < jobs) and time.perf_counter() < end:
                status, _ = await conn.request(
                    post_request(host, port, "/api/workers/claim", token, body))
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                if status == 200:
                    claimed += 1
                    last = time.perf_counter()
                    if claimed >= jobs and not hold:
                        enough.set()
                elif status == 503:  # too many waiting, or no Redis connection free
                    await asyncio.sleep(1.0)
        finally:
            conn.close()

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    everyone: asyncio.Future[Any] = asyncio.ensure_future(
        asyncio.gather(*tasks, return_exceptions=True))
    stop: asyncio.Future[Any] = asyncio.ensure_future(
        asyncio.sleep(duration) if hold else enough.wait())
    await asyncio.wait([everyone, stop], return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:  # hang up on the claims still waiting
        task.cancel()
    await everyone
    stop.cancel()
    elapsed = last - start
    return {"claimed": claimed, "seconds": elapsed, "rate": claimed / elapsed if elapsed else 0,
            "statuses": statuses}


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench.claimload")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--wait", type=float, default=5.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--hold", action="store_true",
                        help="idle workers: claim again on every answer until --duration")
    args = parser.parse_args(argv)
    result = asyncio.run(run("127.0.0.1", args.port, args.token, args.workers, args.jobs,
                             args.wait, args.duration, args.hold))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
