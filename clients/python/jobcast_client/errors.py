"""What the site refused, as exceptions named for it.

The site answers every refusal under ``/api/`` with a JSON body ``{"error": ...}``
(and ``"fields": {name: problem}`` for refused arguments) and an HTTP status
(``website/http/answers.py``); :func:`error_for` turns that into one of the
classes below. Every one is a :class:`JobcastError`; catch that for all of them.
"""

from __future__ import annotations

from typing import Any

import requests


class JobcastError(Exception):
    """Something the site refused, or could not do: ``message`` says why (the site's
    own text), ``status`` is the HTTP status (0 when there was no answer)."""

    def __init__(self, message: str, status: int = 0, fields: dict[str, str] | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.fields: dict[str, str] = dict(fields or {})
        self.retry_after = retry_after


class InvalidArguments(JobcastError, ValueError):
    """400: a bad argument or body; ``fields`` names each refused field
    (``{"args.n": "must be an integer"}``, ``{"webhook": ...}``), when the site did."""

    def __str__(self) -> str:
        if not self.fields:
            return self.message
        named = "; ".join(f"{name}: {problem}" for name, problem in self.fields.items())
        return f"{self.message} ({named})"


class TooLarge(InvalidArguments):
    """413: the request, an upload or a result is over its size limit."""


class Unauthorized(JobcastError):
    """401: a missing, unknown or revoked API key or worker token."""


class Forbidden(JobcastError):
    """403: the key may not do this to that job (not its owner, not an operator)."""


class NotFound(JobcastError, LookupError):
    """404: no such job (or it expired, or ``JOB_VISIBILITY=owner`` hides it)."""


class Conflict(JobcastError):
    """409: the job's state does not allow this (cancel an ended job, retry a running one)."""


class RateLimited(JobcastError):
    """429: too many requests; ``retry_after`` says in how many seconds to try again."""


class QuotaExceeded(RateLimited):
    """429 for a quota: the key holds as many jobs or bytes as it may (``retry_after``:
    when room frees up, if waiting helps)."""


class Unavailable(JobcastError):
    """503 (the store is full or out of reach, too many waiting claims) or no answer at
    all (the site is down); ``retry_after`` when the site said."""


class WaitTimeout(JobcastError, TimeoutError):
    """:meth:`Client.wait` or :meth:`Client.watch` ran out of time before the job ended."""


_BY_STATUS: dict[int, type[JobcastError]] = {
    400: InvalidArguments, 401: Unauthorized, 403: Forbidden, 404: NotFound,
    409: Conflict, 413: TooLarge, 429: RateLimited, 503: Unavailable}


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After", "")
    try:
        return float(value) if value else None
    except ValueError:
        return None


def error_for(resp: requests.Response) -> JobcastError:
    """The exception for a refused answer (any status of 400 and up)."""
    body: Any = None
    try:
        body = resp.json()
    except ValueError:
        body = None
    message = ""
    fields: dict[str, str] = {}
    if isinstance(body, dict):
        message = str(body.get("error") or "")
        raw = body.get("fields")
        if isinstance(raw, dict):
            fields = {str(k): str(v) for k, v in raw.items()}
    message = message or f"HTTP {resp.status_code} {resp.reason or ''}".strip()
    kind = _BY_STATUS.get(resp.status_code)
    if kind is None:
        kind = Unavailable if resp.status_code >= 500 else JobcastError
    quota = isinstance(body, dict) and isinstance(body.get("quota"), str)
    if kind is RateLimited and quota:  # the site names the quota a 429 is about
        kind = QuotaExceeded
    return kind(message, resp.status_code, fields, _retry_after(resp))
