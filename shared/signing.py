"""Per-job callback tokens: a worker holding one may report only that job."""

from __future__ import annotations

import hmac

from itsdangerous import BadSignature, URLSafeSerializer

_SALT = "jobcast.job-token"


def sign_job_token(secret: str, job_id: str, attempt: int = 1) -> str:
    """A token that authorises progress reports for ``job_id`` (its run ``attempt``) only."""
    return URLSafeSerializer(secret, salt=_SALT).dumps({"job": job_id, "attempt": attempt})


def job_token_attempt(secret: str, token: str, job_id: str) -> int | None:
    """The attempt ``token`` was signed for, when signed with ``secret`` for ``job_id``.

    ``0`` for an older token that names no attempt; None when it does not allow ``job_id``.
    """
    try:
        signed = URLSafeSerializer(secret, salt=_SALT).loads(token)
    except BadSignature:
        return None
    if isinstance(signed, str):
        return 0 if hmac.compare_digest(signed, job_id) else None
    if not isinstance(signed, dict):
        return None
    signed_for, attempt = signed.get("job"), signed.get("attempt")
    if not isinstance(signed_for, str) or not hmac.compare_digest(signed_for, job_id):
        return None
    return attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else None


def job_token_allows(secret: str, token: str, job_id: str) -> bool:
    """True when ``token`` was signed with ``secret`` for exactly ``job_id``."""
    return job_token_attempt(secret, token, job_id) is not None


def parse_bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not header or not header.startswith("Bearer "):
        return None
    token = header[len("Bearer "):].strip()
    return token or None


def is_authorised(shared_token: str, secret: str, token: str | None, job_id: str) -> bool:
    """True for the shared progress token, or a per-job token for ``job_id``."""
    if not token:
        return False
    if shared_token and hmac.compare_digest(token.encode(), shared_token.encode()):
        return True
    return job_token_allows(secret, token, job_id)
