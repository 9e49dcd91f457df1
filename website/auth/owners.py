"""Who owns a job, and who may control or read it.

A job belongs to whoever created it:

* a browser: the session that posted the form remembers the ids of its
  newest jobs (Flask's signed session cookie, at most ``SESSION_JOBS``), and
  owns every job recorded with its owner id (below);
* an API client: the 202 answer that started the job (``POST /api/jobs``,
  and the features that start jobs of their own) carries a ``controlToken``
  signed for that job alone,
  sent back as ``Authorization: Bearer <controlToken>`` (a Socket.IO client
  may pass it as ``auth={"controlToken": ...}``).

Each browser session (and each API client that keeps the session cookie)
has a stable opaque owner id (``u-`` and 16 hex digits, kept in the signed
session), recorded on every job it creates and indexed, so operators can
filter by it (``GET /api/jobs?owner=``). Only an operator may name another
owner (``"owner"`` in the body of ``POST /api/jobs``).

A batch belongs to the session that created it (its owner id) and to the
holder of its ``controlToken`` (the 202 of ``POST /api/batches``; signed
like a job's but for ``batch:<id>``, so neither stands in for the other).

A program may instead present an API key an operator created
(``Authorization: Bearer jc_...``, ``shared/apikeys.py``): the key is then the owner
(``k-<key id>``) of every job, batch and snippet it starts, and may cancel, retry
and read them, wherever it presents itself (as the bearer token, or where a
Socket.IO client may pass a ``controlToken``). Only a token with the key prefix is
looked up; an unknown or revoked one is refused with 401 (:func:`refused_key`).

Operators (``OPS_TOKEN`` as a bearer token or Basic password) may control
every job and batch. A *watch token* (:func:`watch_token`, asked for by whoever may
control the job) lets its holder read that job's state and log and watch it, with
``JOB_VISIBILITY=owner`` too, and nothing else: only the reads that pass it on
(``watch_token=``) look at it (docs/embedding.md). Reading a job's state needs only its id, unless
``JOB_VISIBILITY=owner``: then only the owner and operators may, and others
get the same 404 as for an unknown id. See docs/security.md.

What a request starts counts against its *tenant* (:func:`request_tenant`,
quotas and fair share: ``shared/quotas.py``): its API key, an operator, the
session whose owner id its cookie brought, else its client's address, keyed
as the rate limiter keys it (:func:`request_address`); a session's address
pays too, so new sessions do not multiply a quota.
"""

from __future__ import annotations

import secrets

from flask import current_app, g, has_request_context, request, session

from shared import keys
from shared.apikeys import (
    ADDRESS_TENANT_PREFIX,
    OPERATOR_TENANT,
    SESSION_TENANT_PREFIX,
    find_key_id,
    is_key_text,
    key_tenant,
)
from shared.config import VISIBILITY_OWNER
from shared.errors import NotFound
from shared.jobstate import JobState
from shared.protocol import is_uuid
from shared.signing import (
    control_token_allows,
    parse_bearer,
    same_text,
    sign_control_token,
    sign_watch_token,
    watch_token_allows,
)
from website.auth.operators import is_operator
from website.extensions import core
from website.http.ratelimit import client_key

SESSION_JOBS = 40  # newest job ids a browser session remembers (cookie stays < 2 KB)
_SESSION_KEY = "jobs"
_OWNER_KEY = "owner"
OWNER_PREFIX = "u-"  # session owner ids; the site's own owners are "operator", "batch:<id>"...
OWNER_MAX = 100  # characters of an owner an operator may name (the filter's limit)
KEY_REFUSED = "This API key is unknown or was revoked."
_KEY_CACHE = "jobcast_api_key"  # flask.g: the request's key id (None: none), looked up once
_SITE_TOKENS = ("OPS_TOKEN", "PROGRESS_TOKEN", "WORKER_TOKEN")


def session_owner() -> str:
    """The opaque owner id of this browser session (made and kept in the signed
    session on first use, so the answer sets the cookie)."""
    owner = session.get(_OWNER_KEY)
    if not isinstance(owner, str) or not owner.startswith(OWNER_PREFIX):
        owner = OWNER_PREFIX + secrets.token_hex(8)
        session[_OWNER_KEY] = owner
        g.jobcast_new_owner = owner  # made now: the request did not bring it
    return owner


def _bearer() -> str | None:
    return parse_bearer(request.headers.get("Authorization"))


def request_key() -> str | None:
    """The id of the valid API key this request carries as its bearer token, or None
    (no token with the key prefix, or not a valid key). Looked up once per request."""
    if not has_request_context():
        return None
    if _KEY_CACHE not in g:
        bearer = _bearer()
        setattr(g, _KEY_CACHE, find_key_id(core.client, bearer) if is_key_text(bearer) else None)
    found: str | None = getattr(g, _KEY_CACHE)
    return found


def _key_of(auth_token: object) -> str | None:
    """The request's key, or the key a Socket.IO client passed as ``auth_token``."""
    return request_key() or (find_key_id(core.client, auth_token)
                             if is_key_text(auth_token) else None)


def _site_token(token: str) -> bool:
    """True when ``token`` is one of the site's own secrets (which may, by chance, start
    with the key prefix): not an API key, and checked where it is used."""
    cfg = current_app.config
    return any(cfg.get(name) and same_text(token, str(cfg[name])) for name in _SITE_TOKENS)


def refused_key(auth_token: object = None) -> str | None:
    """Why the request is refused (401) when it presents a token with the API key prefix
    (its bearer token, or ``auth_token`` from a Socket.IO client) that is no valid key:
    unknown or revoked. None when it presents none, or a valid one."""
    bearer = _bearer()
    if is_key_text(bearer) and request_key() is None and not _site_token(str(bearer)):
        return KEY_REFUSED
    if (is_key_text(auth_token) and find_key_id(core.client, auth_token) is None
            and not _site_token(str(auth_token))):
        return KEY_REFUSED
    return None


def arrived_owner() -> str:
    """The session owner id the request's cookie brought ('' for none: a client
    without the cookie, or one whose owner id this request made)."""
    owner = session.get(_OWNER_KEY)
    if (not isinstance(owner, str) or not owner.startswith(OWNER_PREFIX)
            or g.get("jobcast_new_owner") == owner):
        return ""
    return owner


def request_address() -> str:
    """The client's address as a tenant (``a-<address>``), keyed as the rate limiter
    keys it (an IPv6 address by its /64; behind ``TRUSTED_PROXIES`` the forwarded one)."""
    return ADDRESS_TENANT_PREFIX + client_key()


def api_key_tenant() -> str:
    """The tenant (``k-<key id>``) of the valid API key the request presents as its
    bearer token; '' for none.

    A revoked or unknown key never gets here: it is answered 401 first.
    """
    key_id = request_key()
    return key_tenant(key_id) if key_id else ""


def request_tenant() -> str:
    """Who what this request starts counts against (quotas, fair share;
    ``shared.apikeys`` names the forms): its API key's tenant, ``ops`` for an operator,
    ``s-<owner id>`` when it brought a session owner id in its cookie, else
    ``a-<address>`` (:func:`request_address`). Outside a request: '' (the site's own)."""
    if not has_request_context():
        return ""
    by_key = api_key_tenant()
    if by_key:
        return by_key
    if is_operator():
        return OPERATOR_TENANT
    owner = arrived_owner()
    return SESSION_TENANT_PREFIX + owner if owner else request_address()


def request_owner(asked: object = None) -> str:
    """The owner to record on a job this request creates: the API key's owner
    (``k-<id>``) when it presents one, else the session's owner id; ``asked`` (an
    ``"owner"`` from the body) when the caller is an operator. Outside a request
    (the site's own jobs): ''."""
    if not has_request_context():
        return ""
    if isinstance(asked, str) and asked.strip() and is_operator():
        return asked.strip()[:OWNER_MAX]
    key_id = request_key()
    return key_tenant(key_id) if key_id else session_owner()


def remember_job(job_id: str) -> None:
    """Record in the browser's session that it created ``job_id``."""
    jobs = [j for j in session.get(_SESSION_KEY, []) if isinstance(j, str) and j != job_id]
    session[_SESSION_KEY] = [*jobs, job_id][-SESSION_JOBS:]


def control_token(job_id: str) -> str:
    """The ``controlToken`` for the API client that created ``job_id``."""
    return sign_control_token(current_app.config["SECRET_KEY"], job_id)


def _token_ok(token: object, job_id: str) -> bool:
    cfg = current_app.config
    return isinstance(token, str) and control_token_allows(
        cfg["SECRET_KEY"], token, job_id, max_age=cfg["JOB_TTL"])


def is_owner(job_id: str, auth_token: object = None) -> bool:
    """True when the request's session created ``job_id`` (one of its newest, or any
    job recorded with its owner id), it carries the job's control token (as a
    bearer token, or ``auth_token`` given by a Socket.IO client), or it presents the
    API key the job was started with (the same two ways)."""
    if job_id in session.get(_SESSION_KEY, []):
        return True
    bearer = _bearer()
    if _token_ok(bearer, job_id) or _token_ok(auth_token, job_id):
        return True
    mine = [owner for owner in (session.get(_OWNER_KEY),)
            if isinstance(owner, str) and owner.startswith(OWNER_PREFIX)]
    key_id = _key_of(auth_token)
    if key_id:
        mine.append(key_tenant(key_id))
    return bool(mine) and core.client.hget(keys.job_key(job_id), "owner") in mine


def may_control(job_id: str, auth_token: object = None) -> bool:
    """True for the job's owner and for operators: they may cancel and retry it."""
    return is_owner(job_id, auth_token) or is_operator()


def bearer_token() -> str | None:
    """The request's ``Authorization: Bearer`` token, or None."""
    return _bearer()


def watch_token(job_id: str) -> str:
    """A read-only watch token for ``job_id`` (the caller checked :func:`may_control`)."""
    return sign_watch_token(current_app.config["SECRET_KEY"], job_id)


def watches(job_id: str, token: object) -> bool:
    """True when ``token`` is a watch token for ``job_id`` that has not expired
    (``WATCH_TOKEN_SECONDS``)."""
    cfg = current_app.config
    return watch_token_allows(cfg["SECRET_KEY"], token, job_id,
                              max_age=cfg["WATCH_TOKEN_SECONDS"])


def may_read(job_id: str, auth_token: object = None, watch_token: object = None) -> bool:
    """True when the caller may read the job's state (always, unless
    ``JOB_VISIBILITY=owner``: then the owner, operators, and the holder of a
    ``watch_token`` for the job, where the caller passes one on)."""
    if current_app.config["JOB_VISIBILITY"] != VISIBILITY_OWNER:
        return True
    return watches(job_id, watch_token) or may_control(job_id, auth_token)


def readable_job(job_id: str, message: str = "unknown job id",
                 watch_token: object = None) -> JobState:
    """The job, when the caller may read it (``watch_token``: a watch token it
    presented, for the reads it may do); :class:`NotFound` with ``message`` for an
    unknown id and for one the caller may not read alike."""
    job_id = job_id.lower()
    state = (core.store.get(job_id)
             if is_uuid(job_id) and may_read(job_id, watch_token=watch_token) else None)
    if state is None:
        raise NotFound(message)
    return state


def _batch_subject(batch_id: str) -> str:
    return f"batch:{batch_id}"


def batch_control_token(batch_id: str) -> str:
    """The ``controlToken`` for the client that created batch ``batch_id``."""
    return sign_control_token(current_app.config["SECRET_KEY"], _batch_subject(batch_id))


def may_control_batch(batch_id: str, owner: str) -> bool:
    """True for the batch's owner (the session whose owner id is ``owner``, the API key
    whose owner it is, or the bearer of the batch's ``controlToken``) and for
    operators: they may cancel it."""
    mine = session.get(_OWNER_KEY)
    if owner and isinstance(mine, str) and mine == owner:
        return True
    key_id = request_key()
    if owner and key_id and key_tenant(key_id) == owner:
        return True
    return _token_ok(_bearer(), _batch_subject(batch_id)) or is_operator()
