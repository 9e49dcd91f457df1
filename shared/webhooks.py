"""Completion webhooks: which URLs a job may name, and what is sent to them.

``POST /api/jobs`` may carry ``"webhook": "<url>"``. When the job ends, the
site enqueues a delivery that the RQ worker runs (``worker.deliver``; never the
request): a POST of :func:`payload` signed with ``WEBHOOK_SECRET``
(``X-Jobcast-Signature: sha256=<hex HMAC of the body>``) and a delivery id
(``X-Jobcast-Delivery``, the same for every retry), retried with the
``WEBHOOK_BACKOFF`` intervals. Only hosts in ``WEBHOOK_ALLOWED_HOSTS`` are
allowed (``*``: any public host); a host that resolves to a private, loopback,
link-local or otherwise special address is refused unless it is listed by name.
The check runs when the job is submitted and again before each delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import redis

from shared import keys
from shared.errors import Invalid
from shared.protocol import iso_time
from shared.store import JobState

URL_MAX = 2000
SIGNATURE_HEADER = "X-Jobcast-Signature"
DELIVERY_HEADER = "X-Jobcast-Delivery"
ANY_PUBLIC_HOST = "*"
DELIVER_JOB = "worker.deliver.deliver"  # enqueued by dotted name


class WebhookRefused(Invalid):
    """A webhook URL that may not be called (the message says why)."""


def _special(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return not ip.is_global or ip.is_multicast


def check_url(url: object, allowed_hosts: Iterable[str]) -> str:
    """``url`` when it may be called; raise :class:`WebhookRefused` otherwise."""
    if not isinstance(url, str) or not url or len(url) > URL_MAX:
        raise WebhookRefused(f"webhook must be an http(s) URL of at most {URL_MAX} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookRefused(f"webhook is not a URL: {exc}") from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise WebhookRefused("webhook must be an http or https URL with a host")
    if parts.username is not None or parts.password is not None:
        raise WebhookRefused("webhook must not carry a user name or password")
    allowed = {h.strip().lower() for h in allowed_hosts if h.strip()}
    listed = host in allowed
    if not listed and ANY_PUBLIC_HOST not in allowed:
        raise WebhookRefused(f"webhook host {host!r} is not in WEBHOOK_ALLOWED_HOSTS")
    if not listed:
        try:
            infos = socket.getaddrinfo(host, port or (443 if parts.scheme == "https" else 80),
                                       proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):
            raise WebhookRefused(f"webhook host {host!r} does not resolve") from None
        if any(_special(str(info[4][0])) for info in infos):
            raise WebhookRefused(f"webhook host {host!r} is a private or loopback address; "
                                 "list it in WEBHOOK_ALLOWED_HOSTS to allow it")
    return url


def payload(state: JobState) -> dict[str, Any]:
    """The JSON body of a completion webhook."""
    return {"jobId": state.job_id, "kind": state.kind, "state": state.state,
            "result": state.result, "message": state.message,
            "finishedAt": iso_time(state.finished_at or state.updated_at)}


def sign(secret: str, body: bytes) -> str:
    """The ``X-Jobcast-Signature`` value for ``body``: ``sha256=<hex HMAC>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def delivery_state(extra: dict[str, str]) -> dict[str, Any] | None:
    """The webhook part of a job's JSON (None when the job has no webhook)."""
    if not extra.get("webhook"):
        return None
    status = extra.get("webhook_status", "")
    return {"state": extra.get("webhook_state", "pending"),
            "attempts": int(extra.get("webhook_attempts", "0") or 0),
            "lastStatus": int(status) if status.isdigit() else None}


def claim_delivery(client: redis.Redis, job_id: str) -> str | None:
    """A delivery id for an ended job's webhook, once: None when the job names no
    webhook or its delivery was claimed already (``HSETNX`` on the job's hash, so
    whoever ends the job first hands it over). Raises ``redis.RedisError``."""
    key = keys.job_key(job_id)
    if not client.hget(key, "webhook"):
        return None
    delivery = str(uuid.uuid4())
    return delivery if client.hsetnx(key, "webhook_delivery", delivery) else None
