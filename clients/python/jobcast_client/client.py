"""The caller's side: start jobs, read them, cancel and retry them, watch them live."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from jobcast_client import tracing
from jobcast_client.errors import WaitTimeout
from jobcast_client.http import Http
from jobcast_client.models import LOG_START, Job, LogLine
from jobcast_client.watch import Watch


class Client:
    """A program's connection to one Jobcast site.

    ``api_key`` (``jc_…``, from an operator: docs/api-keys.md) owns the jobs this client
    starts, so it may read, cancel and retry them; without one, the client keeps
    each started job's ``controlToken`` and uses it for that job. Not thread-safe:
    use one client per thread.
    """

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.http = Http(self.base_url, api_key, timeout)
        self._tokens: dict[str, str] = {}  # job id -> controlToken, for a client without a key

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connections."""
        self.http.close()

    def token_for(self, job_id: str) -> str | None:
        """The bearer token that may control ``job_id``: the API key, else its controlToken."""
        return self.api_key or self._tokens.get(job_id.lower())

    def _headers(self, job_id: str) -> dict[str, str]:
        token = None if self.api_key else self._tokens.get(job_id.lower())
        return {"Authorization": f"Bearer {token}"} if token else {}

    def start(self, kind: str, args: dict[str, Any] | None = None, *,
              after: Sequence[str] | None = None, priority: str | None = None,
              webhook: str | None = None, run_at: datetime | str | None = None,
              delay_seconds: float | None = None) -> Job:
        """Start a job of ``kind`` with ``args``; the job as stored (``queued``,
        ``scheduled`` with ``run_at``/``delay_seconds``, ``waiting`` with ``after``).

        ``run_at`` is an aware datetime or ISO 8601 text with a zone. A kind's unique
        arguments that match a job not yet ended give that job back (``raw["deduplicated"]``).
        Raises :class:`InvalidArguments` naming each refused field, :class:`Forbidden`
        (a priority above the kind's, for a non-operator), :class:`QuotaExceeded`,
        :class:`RateLimited`, :class:`Unauthorized` (a revoked key).
        """
        body: dict[str, Any] = {"kind": kind, "args": dict(args or {})}
        if after:
            body["after"] = list(after)
        if priority is not None:
            body["priority"] = priority
        if webhook is not None:
            body["webhook"] = webhook
        if run_at is not None:
            body["runAt"] = run_at.isoformat() if isinstance(run_at, datetime) else run_at
        if delay_seconds is not None:
            body["delaySeconds"] = delay_seconds
        with tracing.span("jobcast.start", kind=kind):
            answer = self.http.call("POST", "/api/jobs", json=body).json()
        token = answer.get("controlToken")
        if isinstance(token, str):
            self._tokens[str(answer["id"]).lower()] = token
        payload = {**answer.get("state", {}), "deduplicated": bool(answer.get("deduplicated"))}
        return Job.from_payload(payload, control_token=token)

    def get(self, job_id: str) -> Job:
        """The job's current state (:class:`NotFound` for an unknown or expired id)."""
        resp = self.http.call("GET", f"/api/jobs/{job_id}", headers=self._headers(job_id))
        return Job.from_payload(resp.json(), self._tokens.get(job_id.lower()))

    def cancel(self, job_id: str) -> Job:
        """Cancel the job (a running one is asked to stop); :class:`Conflict` once it ended,
        :class:`Forbidden` when this client does not own it."""
        resp = self.http.call("POST", f"/api/jobs/{job_id}/cancel", headers=self._headers(job_id))
        return Job.from_payload(resp.json()["state"], self._tokens.get(job_id.lower()))

    def retry(self, job_id: str) -> Job:
        """Run a failed or cancelled job again (:class:`Conflict` for any other state)."""
        resp = self.http.call("POST", f"/api/jobs/{job_id}/retry", headers=self._headers(job_id))
        return Job.from_payload(resp.json()["state"], self._tokens.get(job_id.lower()))

    def log(self, job_id: str, after: str = LOG_START) -> list[LogLine]:
        """Every line of the job's log stored after the line ``after`` (the whole log
        without it), following the pages."""
        lines: list[LogLine] = []
        while True:
            page = self.http.call("GET", f"/api/jobs/{job_id}/log", params={"after": after},
                                  headers=self._headers(job_id)).json()
            lines.extend(LogLine.from_json(raw) for raw in page["lines"])
            after = str(page["next"])
            if not page.get("more"):
                return lines

    def watch(self, job_id: str, timeout: float | None = None) -> Iterator[Job | LogLine]:
        """The job's events, live over Socket.IO, until it ends: a :class:`Job` per
        ``updateProgress`` (the last one is the final state) and a :class:`LogLine` per
        log line, from the first. A dropped connection is made again, resuming after
        the last line seen (``lastLogId``): no line is lost or repeated.

        :class:`NotFound` for an unknown job, :class:`WaitTimeout` after ``timeout``
        seconds (None: no limit).
        """
        return Watch(self, job_id, timeout).events()

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Wait until the job ends; its final state, with ``result`` when it succeeded.
        :class:`WaitTimeout` after ``timeout`` seconds (the job goes on)."""
        for event in self.watch(job_id, timeout):
            if isinstance(event, Job) and event.ended:
                return self.get(job_id) if event.result is None and event.succeeded else event
        raise WaitTimeout(f"job {job_id} did not end")  # (watch raises it at its deadline)
