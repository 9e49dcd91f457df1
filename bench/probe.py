"""Callback → client latency as seen by a real python-socketio client.

:class:`LatencyProbe` watches one job with ``socketio.Client`` (websocket
transport) and, for each sample, POSTs a callback with a unique message on a
keep-alive ``http.client`` connection; the latency runs from just before the
POST is written to the moment the client's thread receives the event.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from typing import Any

import socketio

from shared.protocol import UPDATE_PROGRESS
from tests.support import TEST_PROGRESS_TOKEN


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
        self.headers = {"Authorization": f"Bearer {TEST_PROGRESS_TOKEN}",
                        "Content-Type": "application/json"}
        self._n = 0

    def _on_update(self, data: Any) -> None:
        if isinstance(data, dict) and data.get("message") == self._expected:
            self._stamp = time.perf_counter()
            self._arrived.set()

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
                self.http.request("POST", "/api/progress", body=body, headers=self.headers)
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
        for _ in range(3):
            self.sample()
        out = []
        for _ in range(count):
            out.append(self.sample())
            time.sleep(pause)
        return out

    def close(self) -> None:
        """Disconnect."""
        self.http.close()
        self.client.disconnect()
