"""Per-job callback tokens: a worker holding one may report only that job."""

from __future__ import annotations

import hmac

from itsdangerous import BadSignature, URLSafeSerializer

_SALT = "jobcast.job-token"


def sign_job_token(secret: str, job_id: str) -> str:
    """A token that authorises progress reports for ``job_id`` only."""
    return URLSafeSerializer(secret, salt=_SALT).dumps(job_id)


def job_token_allows(secret: str, token: str, job_id: str) -> bool:
    """True when ``token`` was signed with ``secret`` for exactly ``job_id``."""
    try:
        signed_for = URLSafeSerializer(secret, salt=_SALT).loads(token)
    except BadSignature:
        return False
    return isinstance(signed_for, str) and hmac.compare_digest(signed_for, job_id)


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
