"""Completion webhooks: which URLs a job may name, and what is sent to them.

``POST /api/jobs`` may carry ``"webhook": "<url>"``. When the job ends, the
site enqueues a delivery on the webhooks' own RQ queue (:func:`queue_name`),
which the webhooks worker runs (``python -m worker --webhooks``,
``worker/deliver.py``; never the request, never a job worker): a POST of
:func:`payload` signed with ``WEBHOOK_SECRET`` (``X-Jobcast-Signature:
sha256=<hex HMAC of the body>``) and a delivery id (``X-Jobcast-Delivery``, the
same for every retry), within ``WEBHOOK_DEADLINE`` seconds, retried with the
``WEBHOOK_BACKOFF`` intervals. Only hosts in ``WEBHOOK_ALLOWED_HOSTS`` are
allowed (``*``: any public host); a host that resolves to a private, loopback,
link-local or otherwise special address is refused unless it is listed by name.
The check runs when the job is submitted and again before each delivery.

Rebinding: a delivery resolves the host once (:func:`target`), checks every
address, and connects to the checked address only, sending the URL's host as
``Host`` and as the TLS name (``worker/deliver.py``); the name is never resolved
again. Addresses that carry an IPv4 address inside IPv6 (:data:`EMBEDDING_IPV4`:
``::ffff:``, IPv4-compatible, NAT64, 6to4, Teredo) are refused whatever they
embed, since Python counts some of them as global.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

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


def queue_name(jobs_queue: str) -> str:
    """The RQ queue of webhook deliveries, beside ``QUEUE_NAME``'s (user jobs)."""
    return f"{jobs_queue}-webhooks"


class WebhookRefused(Invalid):
    """A webhook URL that may not be called (the message says why)."""


# IPv6 forms that carry an IPv4 address (a gateway or the kernel may reach that
# address): refused outright, whatever they embed.
EMBEDDING_IPV4 = tuple(ipaddress.IPv6Network(net) for net in (
    "::ffff:0:0/96",    # IPv4-mapped
    "::ffff:0:0:0/96",  # IPv4-translated (RFC 2765)
    "::/96",            # IPv4-compatible (deprecated): [::127.0.0.1]
    "64:ff9b::/96",     # NAT64, well-known prefix
    "64:ff9b:1::/48",   # NAT64, local-use prefix
    "2002::/16",        # 6to4
    "2001::/32",        # Teredo
))


def _embeds_ipv4(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return isinstance(ip, ipaddress.IPv6Address) and any(ip in net for net in EMBEDDING_IPV4)


def special(address: str) -> bool:
    """True for an address a webhook may not reach unless its host is listed by name:
    private, loopback, link-local, reserved, multicast, or IPv4 inside IPv6."""
    if _embeds_ipv4(address):
        return True
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return not ip.is_global or ip.is_multicast


def resolve(host: str, port: int) -> list[str]:
    """The TCP addresses of ``host`` (in the resolver's order, each once); raises
    :class:`WebhookRefused` when it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        raise WebhookRefused(f"webhook host {host!r} does not resolve") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class Target:
    """A webhook URL resolved once: where to connect and what to send as the host."""

    scheme: str
    host: str  # the URL's host name (the TLS name), without brackets
    port: int
    host_header: str  # the URL's host[:port], as the ``Host`` header
    path: str  # path and query
    addresses: tuple[str, ...]  # checked (unless the host is listed by name)


def _parse(url: object, allowed_hosts: Iterable[str]) -> tuple[SplitResult, str, int, bool]:
    """The URL's parts, its host, port, and whether the host is listed by name."""
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
    return parts, host, port or (443 if parts.scheme == "https" else 80), listed


def _checked(host: str, addresses: list[str]) -> list[str]:
    refused = [address for address in addresses if special(address)]
    if refused:
        how = (" (IPv4 inside IPv6: ::ffff:, IPv4-compatible, NAT64, 6to4 or Teredo)"
               if any(_embeds_ipv4(address) for address in refused) else "")
        raise WebhookRefused(f"webhook host {host!r} is a private or loopback address{how}; "
                             "list it in WEBHOOK_ALLOWED_HOSTS to allow it")
    return addresses


def check_url(url: object, allowed_hosts: Iterable[str]) -> str:
    """``url`` when it may be called; raise :class:`WebhookRefused` otherwise.
    A host listed by name is not resolved (it may resolve only where the worker runs)."""
    _parts, host, port, listed = _parse(url, allowed_hosts)
    if not listed:
        _checked(host, resolve(host, port))
    return str(url)


def target(url: object, allowed_hosts: Iterable[str]) -> Target:
    """``url`` resolved once and checked, for a delivery; :class:`WebhookRefused`
    when it may not be called. Connect to ``addresses`` only: resolving the
    name again could answer another address (DNS rebinding)."""
    parts, host, port, listed = _parse(url, allowed_hosts)
    addresses = resolve(host, port)
    if not listed:
        _checked(host, addresses)
    path = parts.path or "/"
    return Target(scheme=parts.scheme, host=host, port=port,
                  host_header=parts.netloc.rpartition("@")[2],
                  path=f"{path}?{parts.query}" if parts.query else path,
                  addresses=tuple(addresses))


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
