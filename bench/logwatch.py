"""``python -m bench.logwatch``: a Socket.IO client following one job's log, in its own
process, for the log measurements (``bench/measure_log.py``).

``follow``: connect with ``lastLogId=0-0`` and take ``jobLog`` batches until
``--expect`` lines arrived; each line's text carries ``t=<epoch seconds>`` (when
its callback was sent), so the latency of each line is its arrival time less
that. ``late``: ``--rounds`` times, connect a fresh client and time from the
start of the connect until the replay of the stored lines has arrived. Prints
one JSON line.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from typing import Any

import socketio

from shared.joblog import LogFollower

_STAMP = re.compile(r"t=(\d+\.\d+)")


def follow(url: str, job_id: str, expect: int, timeout: float) -> dict[str, Any]:
    """Every line's latency, and whether they came in order, complete and once."""
    follower = LogFollower()
    latencies: list[float] = []
    done = threading.Event()
    lock = threading.Lock()
    client = socketio.Client(reconnection=False)

    def on_log(payload: dict[str, Any]) -> None:
        now = time.time()
        with lock:
            for line in follower.feed(payload):
                stamp = _STAMP.search(line.text)
                if stamp:
                    latencies.append(now - float(stamp.group(1)))
            if len(follower.lines) >= expect:
                done.set()

    client.on("jobLog", on_log)
    client.connect(f"{url}?jobId={job_id}&lastLogId=0-0", transports=["websocket"],
                   wait_timeout=10)
    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    done.wait(timeout)
    client.disconnect()
    numbers = [int(m.group(1)) for line in follower.lines
               if (m := re.search(r"n=(\d+)", line.text))]
    return {"latencies": latencies, "lines": len(follower.lines),
            "in_order": numbers == sorted(numbers) and len(set(numbers)) == len(numbers),
            "first": numbers[0] if numbers else None, "last": numbers[-1] if numbers else None}


def late(url: str, job_id: str, expect: int, rounds: int) -> dict[str, Any]:
    """Seconds from connect to holding the replayed lines, ``rounds`` times."""
    times: list[float] = []
    counts: list[int] = []
    for _ in range(rounds):
        got = threading.Event()
        received: list[int] = []
        client = socketio.Client(reconnection=False)

        def on_log(payload: dict[str, Any], got: threading.Event = got,
                   received: list[int] = received) -> None:
            received.append(len(payload.get("lines") or []))
            if sum(received) >= expect:
                got.set()

        client.on("jobLog", on_log)
        start = time.perf_counter()
        client.connect(f"{url}?jobId={job_id}&lastLogId=0-0", transports=["websocket"],
                       wait_timeout=10)
        got.wait(10)
        times.append(time.perf_counter() - start)
        counts.append(sum(received))
        client.disconnect()
    return {"seconds": times, "lines": counts}


def main(argv: list[str] | None = None) -> int:
    """Parse, run one mode, print its JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.logwatch")
    parser.add_argument("mode", choices=("follow", "late"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--job", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args(argv)
    if args.mode == "follow":
        result = follow(args.url, args.job, args.expect, args.timeout)
    else:
        result = late(args.url, args.job, args.expect, args.rounds)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
