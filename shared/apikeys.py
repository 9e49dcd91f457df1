"""API keys and tenants: who a job counts against, for quotas and fair share.

A *tenant* is the string a job is recorded with (field ``tenant``) and that
quotas and fair queueing are keyed by:

* ``k-<key id>``: an API key (``Authorization: Bearer <key>``, created by an
  operator with ``POST /api/keys``);
* ``s-<session owner id>``: a browser session (or an API client that keeps
  the session cookie);
* ``a-<address>``: an API client without either, by its address (an IPv6
  address by its /64, as the rate limiter keys it);
* ``ops``: an operator (no quota);
* ``batch:<batch id>``: the one job that cancels a batch (its own turn, so it
  never waits behind the batch it cancels);
* ``''``: the site's own jobs (a batch's ``onComplete`` inherits its batch's).

An API key is stored hashed, in the hash :func:`key_record` with the fields
``name``, ``hash`` (SHA-256 of the key, hex), ``created_at``, ``revoked_at``
(absent while valid), and optional per-key quota overrides ``quota_jobs``,
``quota_bytes``, ``quota_snippets``, ``rate`` (an integer each); ids are listed
in the set :data:`KEY_IDS`, and the hash :data:`KEY_BY_HASH` maps a key's hash to its id.
"""

from __future__ import annotations

import redis

from shared.keys import PREFIX

KEY_TENANT_PREFIX = "k-"
SESSION_TENANT_PREFIX = "s-"
ADDRESS_TENANT_PREFIX = "a-"
OPERATOR_TENANT = "ops"
KEY_IDS = f"{PREFIX}:apikeys"
KEY_BY_HASH = f"{PREFIX}:apikeys:by-hash"
QUOTA_FIELDS = ("quota_jobs", "quota_bytes", "quota_snippets", "rate")


def key_record(key_id: str) -> str:
    """Hash of one API key (see the module)."""
    return f"{PREFIX}:apikey:{key_id}"


def key_tenant(key_id: str) -> str:
    """The tenant (and owner) of the jobs an API key starts."""
    return KEY_TENANT_PREFIX + key_id


def batch_tenant(batch_id: str) -> str:
    """The tenant of the job that cancels batch ``batch_id``."""
    return f"batch:{batch_id}"


def key_quota(client: redis.Redis, key_id: str) -> dict[str, int]:
    """The key's own quota overrides (``quota_jobs``… ``rate``), those it sets."""
    values: list[str | None] = client.hmget(key_record(key_id), list(QUOTA_FIELDS))  # type: ignore[assignment]
    return {name: int(value) for name, value in zip(QUOTA_FIELDS, values, strict=True)
            if value}
