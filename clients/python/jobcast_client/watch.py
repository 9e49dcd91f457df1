"""Following one job live over Socket.IO, across dropped connections.

The connection names the job in its handshake (``?jobId=``, so the site joins
it to the job's room before it sends anything) and says the last log line it
has (``lastLogId`` in the handshake's ``auth``): the site replies with the lines
stored after that line, then the job's state, then pushes each change. Every
``jobLog`` batch names the line before it, so :class:`LogFollower` takes each
line once and in order. A dropped connection is made again with the last line
taken, so the replay brings exactly what was missed.

Reconnecting is done here rather than by python-socketio's own ``reconnection``:
that one does not reconnect after a disconnect the server initiated, and the
watch must stop trying at its deadline and turn a refusal (unknown job, revoked
key) into an exception.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Iterator
from typing import Any, Protocol

import socketio

from jobcast_client.errors import InvalidArguments, JobcastError, NotFound, Unauthorized, WaitTimeout
from jobcast_client.models import Job, LogFollower, LogLine

log = logging.getLogger(__name__)

GAP_WAIT = 1.0  # seconds a batch may wait for the lines before it, then they are read over HTTP
RECONNECT_FIRST, RECONNECT_MAX = 0.25, 5.0  # seconds between attempts, doubling
KEY_REFUSED = "This API key is unknown or was revoked."  # website/auth/owners.py


class Source(Protocol):
    """What a watch uses of its :class:`~jobcast_client.client.Client`."""

    base_url: str
    api_key: str | None

    def token_for(self, job_id: str) -> str | None:
        """The bearer token that may read ``job_id``."""

    def log(self, job_id: str, after: str = ...) -> list[LogLine]:
        """The job's log lines after the line id ``after``."""


class Watch:
    """One :meth:`Client.watch`: a Socket.IO client feeding a queue, read by :meth:`events`."""

    def __init__(self, client: Source, job_id: str, timeout: float | None) -> None:
        self.client = client
        self.job_id = job_id.lower()
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.follower = LogFollower()
        self.inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.refusal: str | None = None
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("updateProgress", lambda data: self.inbox.put(("progress", data)))
        self.sio.on("jobLog", lambda data: self.inbox.put(("log", data)))
        self.sio.on("disconnect", self._dropped)
        self.sio.on("connect_error", self._refused)

    def _dropped(self, reason: Any = None) -> None:
        if reason != socketio.Client.reason.CLIENT_DISCONNECT:  # not our own disconnect()
            self.inbox.put(("dropped", reason))

    def _refused(self, data: Any = None) -> None:
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            self.refusal = data["message"]

    def _remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def _timed_out(self) -> WaitTimeout:
        return WaitTimeout(f"job {self.job_id} did not end in time")

    def _auth(self) -> dict[str, str]:
        auth = {"lastLogId": self.follower.last}
        token = self.client.token_for(self.job_id)
        if token:
            auth["controlToken"] = token
        return auth

    def _connect(self) -> None:
        """Connect (again), resuming after the last line taken; retry until the deadline."""
        pause = RECONNECT_FIRST
        headers = {}
        if self.client.api_key:
            headers["Authorization"] = f"Bearer {self.client.api_key}"
        while True:
            self.refusal = None
            try:
                self.sio.connect(f"{self.client.base_url}?jobId={self.job_id}", headers=headers,
                                 auth=self._auth, wait_timeout=10)
                return
            except socketio.exceptions.ConnectionError as exc:
                refused = self.refusal
                if refused is not None and refused.startswith("unknown job"):
                    raise NotFound(refused, 404) from None
                if refused == KEY_REFUSED:
                    raise Unauthorized(refused, 401) from None
                if refused is not None and "must be" in refused:
                    raise InvalidArguments(refused, 400) from None
                log.info("watch %s: cannot connect (%s); trying again", self.job_id, refused or exc)
            remaining = self._remaining()
            if remaining is not None and remaining <= 0:
                raise self._timed_out()
            time.sleep(pause if remaining is None else max(0.0, min(pause, remaining)))
            pause = min(pause * 2, RECONNECT_MAX)

    def _fill(self) -> list[LogLine]:
        """The lines after the last one taken, read over HTTP (a replay cut short, a gap)."""
        lines = self.client.log(self.job_id, after=self.follower.last)
        raw = [{"id": line.id, "at": line.at, "text": line.text} for line in lines]
        taken = self.follower.feed(self.follower.last, raw)
        self.follower.pending.clear()  # everything up to now came over HTTP
        return taken

    def events(self) -> Iterator[Job | LogLine]:
        """See :meth:`Client.watch`."""
        self._connect()
        try:
            while True:
                remaining = self._remaining()
                if remaining is not None and remaining <= 0:
                    raise self._timed_out()
                wait = remaining
                if self.follower.waiting:
                    wait = GAP_WAIT if wait is None else min(wait, GAP_WAIT)
                try:
                    what, data = self.inbox.get(timeout=wait)
                except queue.Empty:
                    if self.follower.waiting:
                        yield from self._fill()
                    continue
                if what == "log" and isinstance(data, dict):
                    yield from self.follower.feed(str(data.get("after", "0-0")),
                                                  list(data.get("lines") or []))
                    if data.get("more"):
                        yield from self._fill()
                elif what == "progress" and isinstance(data, dict):
                    job = Job.from_payload(data, self.client.token_for(self.job_id))
                    if job.ended:  # lines stored with the end are in the log by now
                        yield from self._fill()
                        yield job
                        return
                    yield job
                elif what == "dropped":
                    log.info("watch %s: connection dropped (%s); reconnecting", self.job_id, data)
                    self._disconnect()
                    self._connect()
        finally:
            self._disconnect()

    def _disconnect(self) -> None:
        try:
            self.sio.disconnect()
        except (JobcastError, socketio.exceptions.SocketIOError, OSError) as exc:
            log.debug("watch %s: disconnect: %s", self.job_id, exc)
