"""Per-owner quotas: no one owner fills the store's shared caps (issue #26, part 1).

**Who pays.** What is stored counts against its *tenant* (``shared/apikeys.py``
names the forms): an API key (``k-``), a browser session (``s-``), or a
cookieless client's address (``a-``, an IPv6 address by its /64). Operators
(``ops``) and the site's own jobs (``''``) have no quota. Everything anonymous
from one address counts against that address (``a-``), whose quotas are
``QUOTA_ADDRESS_FACTOR`` times an owner's; a session also counts against itself,
with an owner's quotas (:func:`quota_tenants`). So a stranger who starts a
fresh session (or drops the cookie) for every request is still bounded by
their address, and one session cannot take all of its address's allowance.

**What counts.** Three counters per tenant:

* ``jobs``: jobs stored. A start counts 1; a batch of N counts N (plus 1 for its
  ``onComplete``), checked before anything is stored. A retry renews a job's
  life without counting it again (retries are rate-limited).
* ``snippets``: snippets stored.
* ``bytes``: what its jobs and snippets store: arguments, uploads (given back
  when the upload is deleted), files a job saves (csv_import's ``cleaned.csv``),
  results, log lines, snippet sources and highlighted HTML at their real size.

Limits: ``QUOTA_JOBS``, ``QUOTA_BYTES``, ``QUOTA_SNIPPETS`` (``0``: none); an API
key's own ``quota_jobs``, ``quota_bytes``, ``quota_snippets``
(:func:`shared.apikeys.key_quota`) replace them for that key (``0``: none).

**How it is counted, without scans.** A counter is a Redis hash
``<keys.QUOTA_PREFIX><tenant>:<resource>`` of amounts by *expiry bucket*: an
amount is added to the field ``floor(expires_at / BUCKET_SECONDS)``, the hour in
which what it counts expires (now + ``JOB_TTL`` or ``SNIPPET_TTL``, or the
record's own expiry for what a worker adds later). A bucket counts until its
hour is over, then it is dropped: counts fall as the data expires, at most an
hour late, and a counter holds at most TTL / ``BUCKET_SECONDS`` + 1 fields (169
for a week). The hash expires with its newest bucket.

* A start checks and takes in one Lua run (``shared/lua/quota_take.lua``): every
  counter of every payer, all or nothing, before anything is stored. Over a
  limit it raises :class:`QuotaReached` (429) naming the quota, whose it is, and
  in how many seconds enough of it expires (``Retry-After``).
* What workers store later (results, log lines, files, highlighted HTML) cannot
  be refused: the store's Lua scripts count it as they store it, against the
  record's ``tenant`` and ``tenant_address`` fields (``shared/lua/lib/quota.lua``),
  so the owner's *next* start is refused.
* Batches also pay for their items per minute (:class:`BatchTooFast`, 429):
  ``BATCH_ITEMS_PER_MINUTE`` on average per tenant (its address: the factor
  times that). Each tenant has a "paid until" moment that each batch moves on by
  its items' worth; up to a minute may be owed, and a batch worth more than a
  minute is taken when nothing is owed (so a big batch is never refused for its
  size alone, and the next one waits).

Flask-Limiter counts requests in fixed windows; these are amounts that must
stay counted exactly as long as the data lives, hence this small mechanism.
The global caps (``shared/capacity.py``) stay the last line, checked first.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from shared import keys, scripts
from shared.apikeys import (
    ADDRESS_TENANT_PREFIX,
    KEY_TENANT_PREFIX,
    OPERATOR_TENANT,
    SESSION_TENANT_PREFIX,
    key_quota,
)
from shared.errors import TooMany

BUCKET_SECONDS = 3600
JOBS, BYTES, SNIPPETS = "jobs", "bytes", "snippets"  # BYTES is written as such in the Lua too
SETTINGS = {JOBS: "QUOTA_JOBS", BYTES: "QUOTA_BYTES", SNIPPETS: "QUOTA_SNIPPETS"}
KEY_FIELDS = {JOBS: "quota_jobs", BYTES: "quota_bytes", SNIPPETS: "quota_snippets"}
NOUNS = {JOBS: "stored jobs", BYTES: "of stored data", SNIPPETS: "stored snippets"}
RATE_TOLERANCE = 60.0  # seconds of batch items a tenant may owe
ADDRESS_WHO = "this address (its sessions and cookieless requests together)"
EXEMPT = frozenset({"", OPERATOR_TENANT})
# What the store's scripts that count (lib/quota.lua) read from their JSON argument.
LUA_FIELDS: dict[str, Any] = {"quota_prefix": keys.QUOTA_PREFIX, "quota_bucket": BUCKET_SECONDS,
                              "quota_exempt": {OPERATOR_TENANT: True}}


def counter_key(tenant: str, resource: str) -> str:
    """The hash counting ``resource`` for ``tenant`` (amounts by expiry bucket)."""
    return f"{keys.QUOTA_PREFIX}{tenant}:{resource}"


def rate_key(tenant: str) -> str:
    """The moment until which ``tenant``'s batch items are paid for."""
    return f"{keys.QUOTA_PREFIX}{tenant}:batch-items"


def bucket_of(expires_at: float) -> str:
    """The bucket (a hash field) of something that expires at ``expires_at``."""
    return str(int(expires_at // BUCKET_SECONDS))


def quota_tenants(tenant: str, address: str = "") -> list[str]:
    """Who pays for what ``tenant`` stores: nobody for operators and the site, a
    session and its client's address (``address``, ``a-…``) for a session, else the
    tenant alone (an API key; an address, for everything anonymous from it)."""
    if tenant in EXEMPT:
        return []
    if (tenant.startswith(SESSION_TENANT_PREFIX) and address.startswith(ADDRESS_TENANT_PREFIX)):
        return [tenant, address]
    return [tenant]


def tenant_fields(tenant: str, tenants: list[str]) -> dict[str, str]:
    """The fields that record a job's tenant (quotas, fair share) and, for a session,
    the address that pays with it (the store's scripts count what workers add)."""
    fields = {"tenant": tenant} if tenant else {}
    if len(tenants) > 1:
        fields["tenant_address"] = tenants[1]
    return fields


def amount_text(amount: int, resource: str) -> str:
    """``5,000 stored jobs``, ``15.9 MB of stored data``."""
    if resource == BYTES:
        size = (f"{amount / 1024 / 1024:.1f} MB" if amount >= 1024 * 1024
                else f"{amount / 1024:.1f} KB" if amount >= 1024
                else f"{amount} byte{'' if amount == 1 else 's'}")
        return f"{size} {NOUNS[resource]}"
    noun = NOUNS[resource]
    return f"{amount:,} {noun.removesuffix('s') if amount == 1 else noun}"


def duration_text(seconds: int) -> str:
    """``45 s``, ``12 min``, ``3 h 20 min``, ``6 d 23 h``."""
    if seconds < 60:
        return f"{seconds} s"
    minutes = -(-seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


class QuotaReached(TooMany):
    """An owner's quota would be passed: nothing was stored (429; ``Retry-After`` when
    waiting helps)."""

    def __init__(self, message: str, tenant: str, resource: str,
                 retry_after: int | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.tenant = tenant
        self.resource = resource


class BatchTooFast(TooMany):
    """An owner's batch items per minute would be passed: nothing was stored (429)."""


@dataclass(frozen=True)
class Usage:
    """What a start stores: jobs, their bytes (they expire with ``JOB_TTL``), snippets,
    theirs (``SNIPPET_TTL``), and a batch's items (its rate)."""

    jobs: int = 0
    job_bytes: int = 0
    snippets: int = 0
    snippet_bytes: int = 0
    batch_items: int = 0


@dataclass(frozen=True)
class Payer:
    """A tenant that pays for a start, with its limits (0: none) and how to name it."""

    tenant: str
    who: str
    limits: dict[str, int] = field(default_factory=dict)
    batch_rate: int = 0  # items per minute (0: no limit)
    sources: dict[str, str] = field(default_factory=dict)  # where each limit comes from


class Quotas:
    """The quotas of one Redis (a client with ``decode_responses=True``), by ``cfg``."""

    def __init__(self, cfg: Any, client: redis.Redis) -> None:
        self.cfg = cfg
        self.client = client
        self._take = scripts.register(client, "quota_take")

    def payers(self, tenant: str, address: str = "") -> list[Payer]:
        """Who pays for what ``tenant`` starts (:func:`quota_tenants`), with their limits."""
        cfg = self.cfg
        found = []
        for payer in quota_tenants(tenant, address):
            if payer.startswith(ADDRESS_TENANT_PREFIX):  # everything anonymous from it
                factor = cfg.QUOTA_ADDRESS_FACTOR
                found.append(Payer(payer, ADDRESS_WHO,
                                   {r: getattr(cfg, name) * factor
                                    for r, name in SETTINGS.items()},
                                   cfg.BATCH_ITEMS_PER_MINUTE * factor,
                                   {r: f"{name} × QUOTA_ADDRESS_FACTOR"
                                    for r, name in SETTINGS.items()}))
            else:
                limits, sources = self._limits(payer)
                found.append(Payer(payer, _who(payer), limits, cfg.BATCH_ITEMS_PER_MINUTE,
                                   sources))
        return found

    def _limits(self, tenant: str) -> tuple[dict[str, int], dict[str, str]]:
        limits = {resource: int(getattr(self.cfg, name)) for resource, name in SETTINGS.items()}
        sources = dict(SETTINGS)
        if tenant.startswith(KEY_TENANT_PREFIX):
            own = key_quota(self.client, tenant.removeprefix(KEY_TENANT_PREFIX))
            for resource, name in KEY_FIELDS.items():
                if name in own:
                    limits[resource], sources[resource] = own[name], "set for this API key"
        return limits, sources

    def take(self, payers: list[Payer], usage: Usage, now: float | None = None) -> None:
        """Check every payer's quotas (and batch rate) for ``usage`` and take it, all or
        nothing; :class:`QuotaReached` or :class:`BatchTooFast` when one is passed."""
        self._run(payers, usage, time.time() if now is None else now, check=True)

    def count(self, tenants: Iterable[str], usage: Usage, now: float | None = None) -> None:
        """Count ``usage`` against ``tenants`` (the exempt ones skipped) without checking."""
        payers = [Payer(tenant, _who(tenant)) for tenant in tenants if tenant not in EXEMPT]
        self._run(payers, usage, time.time() if now is None else now, check=False)

    def _adds(self, usage: Usage, now: float) -> dict[str, list[tuple[str, int]]]:
        jobs_at = bucket_of(now + self.cfg.JOB_TTL)
        snippets_at = bucket_of(now + self.cfg.SNIPPET_TTL)
        adds = {JOBS: [(jobs_at, usage.jobs)], SNIPPETS: [(snippets_at, usage.snippets)],
                BYTES: [(jobs_at, usage.job_bytes), (snippets_at, usage.snippet_bytes)]}
        merged: dict[str, list[tuple[str, int]]] = {}
        for resource, pairs in adds.items():
            by_bucket: dict[str, int] = {}
            for bucket, amount in pairs:
                if amount > 0:
                    by_bucket[bucket] = by_bucket.get(bucket, 0) + amount
            if by_bucket:
                merged[resource] = sorted(by_bucket.items())
        return merged

    def _run(self, payers: list[Payer], usage: Usage, now: float, check: bool) -> None:
        run_keys: list[str] = []
        counters: list[dict[str, Any]] = []
        counted: list[tuple[Payer, str, int]] = []
        for payer in payers:
            for resource, adds in self._adds(usage, now).items():
                amount = sum(n for _, n in adds)
                run_keys.append(counter_key(payer.tenant, resource))
                counters.append({"limit": payer.limits.get(resource, 0) if check else 0,
                                 "amount": amount,
                                 "adds": [{"field": f, "amount": n} for f, n in adds]})
                counted.append((payer, resource, amount))
        rated = [payer for payer in payers if check and usage.batch_items and payer.batch_rate]
        rates = [{"cost": usage.batch_items * 60.0 / payer.batch_rate,
                  "tolerance": RATE_TOLERANCE} for payer in rated]
        run_keys += [rate_key(payer.tenant) for payer in rated]
        if not counters and not rates:
            return
        result = scripts.pairs(scripts.run(self._take, run_keys, {
            "now": now, "bucket": BUCKET_SECONDS, "counters": counters, "rates": rates}))
        code = int(result["code"])
        if code == 1:
            return
        if code == 2:
            payer, retry = rated[int(result["index"]) - 1], int(result["retry"])
            raise BatchTooFast(
                f"Too many batch items: {payer.who} may start {payer.batch_rate:,} a minute "
                f"(BATCH_ITEMS_PER_MINUTE), and this batch has {usage.batch_items:,}. "
                f"Try again in {duration_text(retry)}.", retry_after=retry)
        payer, resource, amount = counted[int(result["index"]) - 1]
        used, limit = int(result["used"]), payer.limits[resource]
        if code == -1:
            raise QuotaReached(
                f"Quota too small for this: it needs {amount_text(amount, resource)}, more than "
                f"the whole quota of {payer.who}, {amount_text(limit, resource)}. Send less "
                "at once (a batch of fewer items).", payer.tenant, resource)
        retry = max(1, int(result["retry"]))
        raise QuotaReached(
            f"Quota reached: {payer.who} has {amount_text(used, resource)}, and its quota is "
            f"{amount_text(limit, resource)} ({payer.sources.get(resource, '')}); this would add "
            f"{amount_text(amount, resource)}. Nobody else is affected. Room frees up as they "
            f"expire: try again in {duration_text(retry)}.", payer.tenant, resource, retry)


def _who(tenant: str) -> str:
    if tenant.startswith(KEY_TENANT_PREFIX):
        return "this API key"
    if tenant.startswith(SESSION_TENANT_PREFIX):
        return "this session"
    if tenant.startswith(ADDRESS_TENANT_PREFIX):
        return ADDRESS_WHO
    return f"the owner {tenant!r}"


def count_for_job(client: redis.Redis, job_id: str, amount: int,
                  now: float | None = None) -> bool:
    """Count ``amount`` bytes a worker stored for ``job_id`` (a file it saved) against the
    job's owners, in the bucket of the job's expiry; False when there is nobody to count."""
    stamp = time.time() if now is None else now
    script = scripts.register(client, "quota_count")
    return bool(scripts.run(script, [keys.job_key(job_id)], {
        "amount": amount, "resource": BYTES, "now": repr(stamp), **LUA_FIELDS}))
