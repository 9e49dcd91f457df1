"""Callback → client latency as seen by a real python-socketio client.

:class:`LatencyProbe` watches one job with ``socketio.Client`` (websocket
transport) and, for each sample, POSTs a callback with a unique message on a
keep-alive ``http.client`` connection; the latency runs from just before the
POST is written to the moment the client's thread receives the event.

:meth:`LatencyProbe.open_loop` samples on a fixed schedule instead: probe ``i``
is due at ``start + i × interval`` whether or not the earlier ones have been
answered (several keep-alive connections, opened as needed), and its latency
runs from the moment it was due, so a slow period is sampled as often as a
quick one and a probe held up behind it counts the wait.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import socketio

from bench.floors import CALLBACK_HEADERS, BareRoundTrip
from bench.loadgen import HTTPConnection, callback_body, post_request
from shared.protocol import UPDATE_PROGRESS
from tests.support import TEST_PROGRESS_TOKEN


@dataclass
class OpenLoop:
    """What an open-loop run measured."""

    latencies: list[float]  # arrival minus due time, seconds, for probes that arrived
    scheduled: int  # probes due in the run
    lost: int  # probes whose event never arrived (or whose POST failed)
    send_lag: list[float]  # how late each POST was written against its due time
    connections: int  # keep-alive connections the sender needed


class LatencyProbe:
    """One python-socketio client watching ``job_id``, and a callback poster."""

    def __init__(self, base_url: str, port: int, job_id: str) -> None:
        self.job_id = job_id
        self.port = port
        self._expected = ""
        self._arrived = threading.Event()
        self._stamp = 0.0
        self.client = socketio.Client(reconnection=False)
        self.client.on(UPDATE_PROGRESS, self._on_update)
        self.client.connect(f"{base_url}?jobId={job_id}", transports=["websocket"],
                            wait_timeout=10)
        self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self._n = 0
        self._open: dict[str, float] = {}  # open-loop message -> arrival
        self._lock = threading.Lock()

    def _on_update(self, data: Any) -> None:
        message = data.get("message") if isinstance(data, dict) else None
        if message == self._expected:
            self._stamp = time.perf_counter()
            self._arrived.set()
        elif isinstance(message, str) and message.startswith("open "):
            stamp = time.perf_counter()
            with self._lock:
                self._open[message] = stamp

    def sample(self, timeout: float = 5.0) -> float:
        """One callback; seconds until the event arrived (raises on timeout)."""
        self._n += 1
        message = f"latency {self._n}"
        body = json.dumps({"jobId": self.job_id, "progress": 50, "state": "running",
                           "message": message})
        self._expected = message
        self._arrived.clear()
        for attempt in (1, 2):
            start = time.perf_counter()
            try:
                self.http.request("POST", "/api/progress", body=body, headers=CALLBACK_HEADERS)
                resp = self.http.getresponse()
                resp.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # gunicorn closes a keep-alive connection idle for 2 s: open a new one
                self.http.close()
                if attempt == 2:
                    raise
        if resp.status != 204:
            raise RuntimeError(f"callback answered {resp.status}")
        if not self._arrived.wait(timeout):
            raise TimeoutError(f"event {message!r} did not arrive in {timeout}s")
        return self._stamp - start

    def samples(self, count: int, pause: float = 0.005) -> list[float]:
        """``count`` samples, ``pause`` seconds apart (a few warm-ups are dropped)."""
        return self.paired(count, pause)[0]

    def paired(self, count: int, pause: float = 0.005,
               floor_path: str | None = None) -> tuple[list[float], list[float]]:
        """``count`` samples, ``pause`` seconds apart, each preceded (with ``floor_path``)
        by one bare HTTP round trip to that path on a keep-alive connection of its own:
        the samples and the floor measured beside them, in the same seconds."""
        trip = BareRoundTrip(self.port, floor_path, self.job_id) if floor_path else None
        out: list[float] = []
        floor: list[float] = []
        try:
            for i in range(count + 3):
                if trip is not None:
                    took = trip()
                    if i >= 3:
                        floor.append(took)
                    time.sleep(pause)
                sample = self.sample()
                if i >= 3:  # warm-ups dropped
                    out.append(sample)
                time.sleep(pause)
        finally:
            if trip is not None:
                trip.close()
        return out, floor

    def open_loop(self, duration: float, interval: float, grace: float = 5.0) -> OpenLoop:
        """Probes every ``interval`` s for ``duration`` s, independent of the answers."""
        with self._lock:
            self._open.clear()
        due, lag, statuses, conns = asyncio.run(self._send_open(duration, interval))
        deadline = time.perf_counter() + grace
        while time.perf_counter() < deadline:
            with self._lock:
                if len(self._open) >= len(due):
                    break
            time.sleep(0.01)
        with self._lock:
            arrived = dict(self._open)
        latencies = [arrived[m] - t for m, t in due.items()
                     if m in arrived and statuses.get(m) == 204]
        return OpenLoop(latencies, len(due), len(due) - len(latencies), lag, conns)

    async def _send_open(self, duration: float, interval: float) -> tuple[
            dict[str, float], list[float], dict[str, int], int]:
        free: list[HTTPConnection] = []
        opened = [0]
        due: dict[str, float] = {}
        lag: list[float] = []
        statuses: dict[str, int] = {}

        async def send(message: str, at: float) -> None:
            if free:
                conn = free.pop()
            else:
                conn = HTTPConnection("127.0.0.1", self.port)
                opened[0] += 1
            lag.append(time.perf_counter() - at)
            try:
                status, _ = await conn.request(self._post(message))
            except (ConnectionError, asyncio.IncompleteReadError):
                conn.close()
                status = 0
            statuses[message] = status
            free.append(conn)

        # warm keep-alive connections first, as the closed-loop probe has one
        for i in range(4):
            conn = HTTPConnection("127.0.0.1", self.port)
            opened[0] += 1
            await conn.request(self._post(f"warm {i}"))
            free.append(conn)
        tasks = []
        start = time.perf_counter()
        count = int(duration / interval)
        for i in range(count):
            at = start + i * interval
            pause = at - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            message = f"open {self._n} {i}"
            due[message] = at
            tasks.append(asyncio.create_task(send(message, at)))
        await asyncio.gather(*tasks)
        for conn in free:
            conn.close()
        self._n += 1
        return due, lag, statuses, opened[0]

    def _post(self, message: str) -> bytes:
        return post_request("127.0.0.1", self.port, "/api/progress", TEST_PROGRESS_TOKEN,
                            callback_body(self.job_id, message))

    def close(self) -> None:
        """Disconnect."""
        self.http.close()
        self.client.disconnect()
