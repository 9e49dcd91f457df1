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

A key's text is :data:`KEY_PREFIX` and 43 random URL-safe characters; it is shown
once, when created, and only its hash is kept. Revoking a key removes its hash
from :data:`KEY_BY_HASH` (so it is refused at once) and keeps its record, with
``revoked_at``, so its name still labels the jobs it started. Keys never expire.
Creating, verifying, listing and revoking are here; the site's routes
(``website/keys``) only parse HTTP, and ``website/auth/owners.py`` makes a key
the owner of what it starts.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from shared.errors import Invalid, NotFound
from shared.keys import PREFIX
from shared.protocol import iso_time

log = logging.getLogger(__name__)

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


# -- the keys themselves: create, verify, list, revoke ----------------------------------
# An API key is ``jc_`` and 43 URL-safe characters (``secrets.token_urlsafe(32)``): the
# prefix tells it apart from the other bearer tokens (``controlToken``, ``OPS_TOKEN``,
# the worker tokens) without a lookup, so only a token that has it is looked up.
KEY_PREFIX = "jc_"
KEY_TEXT_MAX = 200  # longer bearer tokens are no key: never hashed nor looked up
KEY_ID_PATTERN = re.compile(r"[0-9a-f]{12}")
NAME_MAX = 64
QUOTA_MAX = 2**53 - 1  # an integer every JSON client reads exactly
# The quota overrides as the API names them (``"quota": {"jobs": ...}``) -> their fields.
QUOTA_NAMES = {"jobs": "quota_jobs", "bytes": "quota_bytes", "snippets": "quota_snippets",
               "rate": "rate"}


@dataclass(frozen=True)
class ApiKey:
    """A stored API key (never the key itself, nor its hash)."""

    key_id: str
    name: str
    created_at: float
    revoked_at: float | None = None
    quota: dict[str, int] = field(default_factory=dict)  # fields of QUOTA_FIELDS it sets

    @property
    def tenant(self) -> str:
        """The owner (and tenant) of what the key starts."""
        return key_tenant(self.key_id)

    def to_json(self) -> dict[str, Any]:
        """The key as ``GET /api/keys`` lists it."""
        by_field = {fld: name for name, fld in QUOTA_NAMES.items()}
        return {"id": self.key_id, "name": self.name, "owner": self.tenant,
                "createdAt": iso_time(self.created_at), "revoked": self.revoked_at is not None,
                "revokedAt": iso_time(self.revoked_at) if self.revoked_at is not None else None,
                "quota": {by_field[fld]: value for fld, value in self.quota.items()}}


def is_key_text(token: object) -> bool:
    """True for a bearer token shaped like an API key (its prefix): the only ones looked up."""
    return isinstance(token, str) and token.startswith(KEY_PREFIX) and len(token) <= KEY_TEXT_MAX


def hash_key(key: str) -> str:
    """The SHA-256 of a key, hex: what is stored (the key is random, so no salt or slow
    hash is needed: 256 bits cannot be guessed from it)."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def check_name(raw: object) -> str:
    """A key's name, stripped; :class:`Invalid` naming ``name``."""
    if not isinstance(raw, str) or not raw.strip():
        raise Invalid("name must be a non-empty text", {"name": "is required (text)"})
    name = raw.strip()
    if len(raw) > NAME_MAX or not name.isprintable():
        raise Invalid(f"name must be at most {NAME_MAX} printable characters",
                      {"name": f"at most {NAME_MAX} printable characters"})
    return name


def check_quota(raw: object) -> dict[str, int]:
    """The quota overrides of ``{"jobs", "bytes", "snippets", "rate"}`` (each a whole
    number from 1, or null for the site's default) as stored fields; :class:`Invalid`
    naming each bad one (``quota.jobs``...)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise Invalid("quota must be an object {\"jobs\", \"bytes\", \"snippets\", \"rate\"}",
                      {"quota": "must be an object"})
    errors: dict[str, str] = {}
    found: dict[str, int] = {}
    for name, value in raw.items():
        where = f"quota.{str(name)[:40]}"
        if name not in QUOTA_NAMES:
            errors[where] = "unknown: jobs, bytes, snippets or rate"
        elif value is None:
            continue
        elif isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= QUOTA_MAX:
            errors[where] = "must be a whole number from 1 (or null: the default)"
        else:
            found[QUOTA_NAMES[name]] = value
    if errors:
        raise Invalid(f"bad quota: {', '.join(sorted(errors))}", errors)
    return found


def check_key(name: object, quota: object, errors: dict[str, str] | None = None
              ) -> tuple[str, dict[str, int]]:
    """A new key's name and quota fields, checked together: one :class:`Invalid` naming
    every bad field (with ``errors`` found before, by the caller, too)."""
    found = dict(errors or {})
    checked_name, checked_quota = "", {}
    try:
        checked_name = check_name(name)
    except Invalid as exc:
        found.update(exc.fields)
    try:
        checked_quota = check_quota(quota)
    except Invalid as exc:
        found.update(exc.fields)
    if found:
        raise Invalid(f"check {', '.join(sorted(found))}", found)
    return checked_name, checked_quota


def create_key(client: redis.Redis, name: object, quota: object = None,
               now: float | None = None) -> tuple[ApiKey, str]:
    """Store a new key named ``name`` with ``quota`` overrides (both checked:
    :class:`Invalid`); the key and its text, which is shown once and never stored."""
    checked_name, checked_quota = check_key(name, quota)
    text = KEY_PREFIX + secrets.token_urlsafe(32)
    created = time.time() if now is None else now
    while True:  # 48 random bits: a clash is all but impossible, but never overwrite one
        key_id = secrets.token_hex(6)
        if client.hsetnx(key_record(key_id), "name", checked_name):
            break
    digest = hash_key(text)
    pipe = client.pipeline(transaction=True)
    pipe.hset(key_record(key_id), mapping={"hash": digest, "created_at": repr(created),
                                           **{k: str(v) for k, v in checked_quota.items()}})
    pipe.sadd(KEY_IDS, key_id)
    pipe.hset(KEY_BY_HASH, digest, key_id)
    pipe.execute()
    log.info("API key %s (%r) created", key_id, checked_name)
    return ApiKey(key_id, checked_name, created, None, checked_quota), text


def find_key_id(client: redis.Redis, text: object) -> str | None:
    """The id of the valid (not revoked) key ``text``, or None: one lookup of its hash."""
    if not is_key_text(text):
        return None
    assert isinstance(text, str)
    found = client.hget(KEY_BY_HASH, hash_key(text))
    return str(found) if found else None


def _read(key_id: str, fields: dict[str, str]) -> ApiKey | None:
    if "name" not in fields or "created_at" not in fields:
        return None
    revoked = fields.get("revoked_at")
    return ApiKey(key_id, fields["name"], float(fields["created_at"]),
                  float(revoked) if revoked else None,
                  {fld: int(fields[fld]) for fld in QUOTA_FIELDS if fields.get(fld)})


def get_key(client: redis.Redis, key_id: str) -> ApiKey | None:
    """The key ``key_id`` (revoked or not), or None for an unknown id."""
    if not KEY_ID_PATTERN.fullmatch(key_id):
        return None
    return _read(key_id, client.hgetall(key_record(key_id)))  # type: ignore[arg-type]


def list_keys(client: redis.Redis) -> list[ApiKey]:
    """Every key, revoked ones too (their names still label their jobs), oldest first."""
    ids: list[str] = sorted(client.smembers(KEY_IDS))  # type: ignore[arg-type]
    pipe = client.pipeline(transaction=False)
    for key_id in ids:
        pipe.hgetall(key_record(key_id))
    found = [_read(key_id, fields) for key_id, fields in zip(ids, pipe.execute(), strict=True)]
    return sorted((key for key in found if key is not None), key=lambda k: k.created_at)


def revoke_key(client: redis.Redis, key_id: str, now: float | None = None) -> ApiKey:
    """Revoke ``key_id`` at once (its hash no longer maps to it) and keep its record with
    ``revoked_at`` (first revocation's time; revoking again changes nothing); the key.
    :class:`NotFound` for an unknown id."""
    key = get_key(client, key_id)
    if key is None:
        raise NotFound("unknown API key id")
    digest = client.hget(key_record(key_id), "hash")
    pipe = client.pipeline(transaction=True)
    pipe.hsetnx(key_record(key_id), "revoked_at", repr(time.time() if now is None else now))
    if digest:
        pipe.hdel(KEY_BY_HASH, str(digest))
    pipe.execute()
    if key.revoked_at is None:
        log.info("API key %s (%r) revoked", key_id, key.name)
    return get_key(client, key_id) or key


def key_names(client: redis.Redis, owners: Iterable[str]) -> dict[str, str]:
    """The names of the keys among ``owners`` (``k-<id>`` -> name); others are left out."""
    wanted = sorted({owner for owner in owners if owner.startswith(KEY_TENANT_PREFIX)
                     and KEY_ID_PATTERN.fullmatch(owner[len(KEY_TENANT_PREFIX):])})
    if not wanted:
        return {}
    pipe = client.pipeline(transaction=False)
    for owner in wanted:
        pipe.hget(key_record(owner[len(KEY_TENANT_PREFIX):]), "name")
    return {owner: str(name) for owner, name in zip(wanted, pipe.execute(), strict=True) if name}
