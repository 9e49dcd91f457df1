"""Floors: what this machine does with no application work, measured in the same run.

Absolute figures differ by about 2.7× between machines here while the ratios
hold, so every latency row is also given as a ratio to a bare HTTP round trip
to the same web process (and to a Redis PING round trip), and throughput rows
as a ratio to the bare endpoint's rate. Targets are judged on those ratios.

The targets were set in milliseconds on the machine of the run of
2026-11-23 12:19 UTC (``docs/benchmarks.md`` at commit c1da4b8). That run
recorded one floor, the bare endpoint (3,124 req/s at 100% server CPU, 320 µs
of CPU per request), but no single round trip. Its round trip is estimated
from that: a bare HTTP round trip over the bare endpoint's CPU per request is
a pure number (both scale with the machine's speed; the CPU per request, unlike
the rate, does not drop when a busy machine keeps the server from saturating),
measured on this machine in the floor step of several runs
(``HTTP_RTT_PER_BARE_CPU``). So the reference HTTP floor is
``HTTP_RTT_PER_BARE_CPU × 320 µs`` and a target of ``x`` ms becomes
``x / reference floor`` times the floor. Throughput targets in jobs/s become
ratios to the bare capacity (1 / CPU per request: 3,125 req/s there).
"""

from __future__ import annotations

import http.client
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bench.report import Row, ms, p50_p99, percentile
from bench.stack import BenchStack, measured_load, settle
from bench.webapp import BARE_PATH
from tests.support import TEST_PROGRESS_TOKEN

REFERENCE_RUN = "2026-11-23 12:19 UTC"
REFERENCE_BARE_CPU = 320e-6  # s of server CPU per bare request (3,124 req/s at 100%)
REFERENCE_CAPACITY = 1 / REFERENCE_BARE_CPU  # bare requests/s one saturated core serves
# bare HTTP round trip / bare CPU per request in nine floor steps on this machine on
# 2026-11-25 while other work shared it: 2.37, 2.70, 2.76, 3.42, 3.43, 3.46, 3.46, 3.87,
# 3.93; the median
HTTP_RTT_PER_BARE_CPU = 3.4
REFERENCE_HTTP_FLOOR = HTTP_RTT_PER_BARE_CPU * REFERENCE_BARE_CPU  # seconds


@dataclass(frozen=True)
class Floors:
    """The floors of one run."""

    http: list[float]  # bare HTTP round trips, seconds
    ping: list[float]  # Redis PING round trips, seconds
    bare: dict  # the bare endpoint under closed-loop load (see ``measured_load``)

    @property
    def http_p50(self) -> float:
        """Median bare HTTP round trip, seconds."""
        return statistics.median(self.http)

    @property
    def ping_p50(self) -> float:
        """Median Redis PING round trip, seconds."""
        return statistics.median(self.ping)

    @property
    def capacity(self) -> float:
        """Bare requests per second of server CPU (1 / CPU per request)."""
        return 1e6 / float(self.bare["cpu_us"])

    def latency_floor(self) -> str:
        """The latency floors, for the floor column."""
        return f"HTTP {ms(self.http_p50)}, PING {ms(self.ping_p50)}"

    def latency_ratios(self, samples: Sequence[float]) -> tuple[float, float]:
        """p50 and p99 of ``samples`` over the HTTP floor's p50."""
        return (statistics.median(samples) / self.http_p50,
                percentile(samples, 99) / self.http_p50)

    def latency_ratio(self, samples: Sequence[float]) -> str:
        """``samples`` as ratios to the floors, for the ratio column."""
        if not samples:
            return ""
        p50, p99 = self.latency_ratios(samples)
        ping = statistics.median(samples) / self.ping_p50
        return f"p50 {p50:.1f}× · p99 {p99:.1f}× HTTP; p50 {ping:.0f}× PING"

    def rate_floor(self) -> str:
        """The throughput floor, for the floor column."""
        return f"bare {self.capacity:.0f} req/s per core"

    def rows(self) -> list[Row]:
        """The floors themselves, as section 0 of the table."""
        bare = self.bare
        return [
            Row("0", "floor: bare HTTP round trip (POST /api/bench/bare, keep-alive, web A, "
                "one at a time)", p50_p99(self.http), ratio="1×"),
            Row("0", "floor: Redis PING round trip (redis-py, one at a time)",
                p50_p99(self.ping), ratio=f"{self.ping_p50 / self.http_p50:.2f}× HTTP"),
            Row("0", "floor: bare endpoint rate (web A, 32 connections, closed loop)",
                f"{bare['rate']:.0f} req/s at {bare['server_cpu']:.0%} server CPU; "
                f"{bare['cpu_us']:.0f} µs CPU per request = {self.capacity:.0f} req/s per "
                "core", ratio=f"HTTP p50 / CPU per request = "
                f"{self.http_p50 * self.capacity:.1f} (estimate used for the reference: "
                f"{HTTP_RTT_PER_BARE_CPU:.1f})"),
        ]


@dataclass(frozen=True)
class LatencyTarget:
    """A latency target set in ms on the reference machine, judged as a ratio to the
    HTTP floor of the run."""

    p50_ms: float | None = None
    p99_ms: float | None = None
    label: str = ""  # what p50 stands for, e.g. "median"

    @property
    def p50_ratio(self) -> float | None:
        """The p50 target over the reference HTTP floor."""
        return None if self.p50_ms is None else round(self.p50_ms / 1000 / REFERENCE_HTTP_FLOOR,
                                                       1)

    @property
    def p99_ratio(self) -> float | None:
        """The p99 target over the reference HTTP floor."""
        return None if self.p99_ms is None else round(self.p99_ms / 1000 / REFERENCE_HTTP_FLOOR,
                                                       1)

    def text(self) -> str:
        """``p50 ≤ 2.9× HTTP floor (2 ms there)`` and the like."""
        parts = []
        for name, ratio, value in ((self.label or "p50", self.p50_ratio, self.p50_ms),
                                   ("p99", self.p99_ratio, self.p99_ms)):
            if ratio is not None:
                parts.append(f"{name} ≤ {ratio:.1f}× HTTP floor ({value:g} ms)")
        return ", ".join(parts)

    def met(self, floors: Floors, samples: Sequence[float]) -> bool:
        """Whether ``samples`` meet the ratio targets against this run's floors."""
        if not samples:
            return False
        p50, p99 = floors.latency_ratios(samples)
        return ((self.p50_ratio is None or p50 <= self.p50_ratio)
                and (self.p99_ratio is None or p99 <= self.p99_ratio))


def http_round_trips(port: int, path: str, count: int, pause: float = 0.005) -> list[float]:
    """``count`` POSTs of a callback-sized body, one at a time on a keep-alive connection;
    seconds from writing each until its answer is read (a few warm-ups dropped)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": f"Bearer {TEST_PROGRESS_TOKEN}",
               "Content-Type": "application/json"}
    body = json.dumps({"jobId": "0" * 32, "progress": 50, "state": "running",
                       "message": "floor"})
    out: list[float] = []
    try:
        for i in range(count + 3):
            for attempt in (1, 2):
                start = time.perf_counter()
                try:
                    conn.request("POST", path, body=body, headers=headers)
                    conn.getresponse().read()
                    break
                except (http.client.RemoteDisconnected, BrokenPipeError,
                        ConnectionResetError):
                    conn.close()  # gunicorn drops keep-alive connections idle for 2 s
                    if attempt == 2:
                        raise
            if i >= 3:
                out.append(time.perf_counter() - start)
            time.sleep(pause)
    finally:
        conn.close()
    return out


def measure(stack: BenchStack, samples: int, seconds: float) -> Floors:
    """The floors, on web A and the stack's Redis."""
    http_rtt = http_round_trips(stack.a.port, BARE_PATH, samples)
    assert stack.client is not None
    ping = []
    for i in range(samples + 3):
        start = time.perf_counter()
        stack.client.ping()
        if i >= 3:
            ping.append(time.perf_counter() - start)
        time.sleep(0.002)
    bare = measured_load(stack.a, BARE_PATH, seconds, 32, tag="floor")
    settle(0.5)
    return Floors(http_rtt, ping, bare)


NOTE = (
    "Floors (0): measured first in every run, on the same processes and the same "
    "(shared) machine as everything after them: a bare HTTP round trip is a POST of a "
    "callback-sized JSON body to `POST /api/bench/bare` (a Flask view answering 204, under "
    "the same `/api/` hooks as the callback) on a keep-alive `http.client` connection to "
    "web A, one at a time, as the latency probe sends its callbacks; a Redis PING round "
    "trip is redis-py's `PING` on the bench's own connection; the bare rate is "
    "`bench/loadgen.py` closed-loop on that endpoint. Latency ratios divide by the HTTP "
    "floor's p50 (both the p50 and the p99 of a row), and by the PING floor's p50 for the "
    "PING ratio. Targets: the millisecond targets were set on the machine of the run of "
    f"{REFERENCE_RUN}, which recorded the bare endpoint (3,124 req/s at 100% server CPU, "
    f"{REFERENCE_BARE_CPU * 1e6:.0f} µs of CPU per request) but no round trip. Its HTTP "
    "floor is estimated as the bare round trip over the bare CPU per request measured on "
    f"this machine ({HTTP_RTT_PER_BARE_CPU:.1f}: the median of nine floor steps, 2.4-3.9, "
    "while other work shared the machine; each run shows its own in section 0) times "
    f"{REFERENCE_BARE_CPU * 1e6:.0f} µs = "
    f"{ms(REFERENCE_HTTP_FLOOR)}, so a target of x ms there is x / "
    f"{ms(REFERENCE_HTTP_FLOOR)} times the HTTP floor. This is an estimate: waiting for a "
    "busy CPU lengthens a round trip more than it adds CPU time, so on a quiet machine the "
    "factor is likely lower, the reference floor shorter and the ratio targets looser than "
    "stated; the targets err on the strict side. Worker throughput targets in jobs/s "
    f"are divided by that run's bare capacity ({REFERENCE_CAPACITY:,.0f} req/s per core) "
    "and judged against this run's (1 / the bare CPU per request).")
