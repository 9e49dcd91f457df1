"""Signed tokens: the per-job callback token and the owner's control token.

* A **job token** authorises progress reports for one *attempt* of one job:
  it signs ``[job_id, attempt]`` with a timestamp, so a retry (a new attempt)
  gets a new token, a token of an earlier attempt is told apart (409), and
  every token expires after ``max_age`` seconds.
* A **control token** lets the API client that created a job cancel or retry
  it (and read it when ``JOB_VISIBILITY=owner``); it signs the job id alone.
* A **watch token** lets its holder read one job's state and log, and watch it
  over Socket.IO (the embeddable progress element, docs/embedding.md); nothing
  else. It signs the job id, expires after ``WATCH_TOKEN_SECONDS``.

Each kind has its own salt, so one can never stand in for the other. Ids are
compared as UTF-8 bytes (``hmac.compare_digest`` refuses non-ASCII ``str``).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from functools import lru_cache

from itsdangerous import BadSignature, URLSafeTimedSerializer

_JOB_SALT = "jobcast.job-token.v2"
_CONTROL_SALT = "jobcast.control-token"
_WATCH_SALT = "jobcast.watch-token"
ANY_ATTEMPT = 0  # what the shared PROGRESS_TOKEN stands for: no attempt check
# What WORKER_TOKEN stands for: no attempt check, and only jobs of external kinds (the
# store script refuses any other job as unknown: shared/lua/update_job.lua).
ANY_EXTERNAL_ATTEMPT = -1


def same_text(a: str, b: str) -> bool:
    """Constant-time comparison of two strings (any characters)."""
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"),
                               b.encode("utf-8", "surrogatepass"))


@lru_cache(maxsize=8)
def _job_serializer(secret: str) -> URLSafeTimedSerializer:
    # Building one costs more than signing with it (it probes its JSON module).
    return URLSafeTimedSerializer(secret, salt=_JOB_SALT)


def sign_job_token(secret: str, job_id: str, attempt: int = 1) -> str:
    """A token that authorises progress reports for attempt ``attempt`` of ``job_id``."""
    return _job_serializer(secret).dumps([job_id, attempt])


@dataclass(frozen=True)
class JobGrant:
    """What a valid callback token allows: reports for ``job_id``, one attempt or any."""

    job_id: str
    # ANY_ATTEMPT for PROGRESS_TOKEN, ANY_EXTERNAL_ATTEMPT for WORKER_TOKEN
    attempt: int


def read_job_token(secret: str, token: str, max_age: int) -> JobGrant | None:
    """The job and attempt a per-job token was signed for, or None (bad or expired)."""
    try:
        signed = _job_serializer(secret).loads(token, max_age=max_age)
    except BadSignature:  # SignatureExpired is a BadSignature
        return None
    if (isinstance(signed, list) and len(signed) == 2 and isinstance(signed[0], str)
            and isinstance(signed[1], int) and not isinstance(signed[1], bool)
            and signed[1] >= 1):
        return JobGrant(signed[0], signed[1])
    return None


def job_token_attempt(token: str | None) -> int | None:
    """The attempt named in a job token, read *without* checking the signature.

    For the worker's own use (it holds no secret): its direct-to-Redis paths
    still apply only to the attempt they were started for.
    """
    if not token:
        return None
    _ok, payload = URLSafeTimedSerializer("unverified", salt=_JOB_SALT).loads_unsafe(token)
    if isinstance(payload, list) and len(payload) == 2 and isinstance(payload[1], int):
        return int(payload[1])
    return None


def parse_bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not header or not header.startswith("Bearer "):
        return None
    token = header[len("Bearer "):].strip()
    return token or None


def sign_control_token(secret: str, job_id: str) -> str:
    """The ``controlToken`` handed to the API client that created ``job_id``."""
    return URLSafeTimedSerializer(secret, salt=_CONTROL_SALT).dumps(job_id)


def control_token_allows(secret: str, token: str | None, job_id: str, max_age: int) -> bool:
    """True when ``token`` is a control token for exactly ``job_id``, not older than ``max_age``."""
    if not token:
        return False
    try:
        signed = URLSafeTimedSerializer(secret, salt=_CONTROL_SALT).loads(token, max_age=max_age)
    except BadSignature:
        return False
    return isinstance(signed, str) and same_text(signed, job_id)


def sign_watch_token(secret: str, job_id: str) -> str:
    """A read-only token for ``job_id`` (state, log, Socket.IO), timestamped now."""
    return URLSafeTimedSerializer(secret, salt=_WATCH_SALT).dumps(job_id)


def watch_token_allows(secret: str, token: object, job_id: str, max_age: int) -> bool:
    """True when ``token`` is a watch token for exactly ``job_id``, not older than ``max_age``."""
    if not isinstance(token, str) or not token:
        return False
    try:
        signed = URLSafeTimedSerializer(secret, salt=_WATCH_SALT).loads(token, max_age=max_age)
    except BadSignature:  # SignatureExpired is a BadSignature
        return False
    return isinstance(signed, str) and same_text(signed, job_id)
