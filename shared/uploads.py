"""A job's uploads, stored once, apart from RQ's job (issue #26, part 1).

A kind's upload arguments (schema properties with ``contentMediaType``, such as
csv_import's ``file``) are not put in RQ's job: :class:`UploadStore` keeps them
in one hash per job (``shared.keys.job_upload_key``), field ``arg:<name>`` with
the text, and RQ's job carries only their names (``uploads=[...]``, beside
``kind_args``); the worker reads them from here when the job starts
(``worker/runner.py``). The job's record shows each upload by its size only.

Lifetime: the hash expires ``JOB_TTL`` after the start, like the job. The
lifecycle deletes it once the job has succeeded or was cancelled; a failed job
keeps it until it expires, so that a retry can run again (a retry renews it for
another ``JOB_TTL``). A retry after it is gone is refused (409).

Accounting: its bytes count against the job's owners' ``bytes`` quota
(``shared/quotas.py``) from the start; the hash remembers whom and in which
bucket (``tenant``, ``tenant_address``, ``field``, ``bytes``), and deleting it
gives the bytes back (``shared/lua/drop_upload.lua``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis

from shared import keys, scripts
from shared.errors import NotFound
from shared.events import Change
from shared.kinds import JobKind
from shared.protocol import CANCELLED, SUCCEEDED
from shared.quotas import BYTES, LUA_FIELDS

log = logging.getLogger(__name__)

ARG_PREFIX = "arg:"


class UploadGone(NotFound):
    """The job's upload was deleted (its job ended) or expired."""


def uploads_of(upload_names: tuple[str, ...], args: dict[str, Any]) -> dict[str, str]:
    """The upload arguments among ``args`` (``upload_names``: the kind's), by name."""
    return {name: value for name, value in args.items()
            if name in upload_names and isinstance(value, str)}


def upload_bytes(uploads: dict[str, str]) -> int:
    """Bytes the uploads take (UTF-8)."""
    return sum(len(text.encode("utf-8", errors="surrogatepass")) for text in uploads.values())


class UploadStore:
    """Jobs' uploads in Redis (a client with ``decode_responses=True``)."""

    def __init__(self, client: redis.Redis, ttl: int) -> None:
        self.client = client
        self.ttl = ttl
        self._drop = scripts.register(client, "drop_upload")

    def put(self, job_id: str, uploads: dict[str, str], tenants: list[str],
            bucket: str | None) -> None:
        """Store ``job_id``'s uploads for ``ttl`` seconds; ``tenants`` and ``bucket`` say
        whom their bytes were counted against, and where (None: not counted)."""
        fields: dict[str, str] = {ARG_PREFIX + name: text for name, text in uploads.items()}
        if bucket is not None and tenants:
            fields.update(tenant=tenants[0], tenant_address=tenants[1] if len(tenants) > 1
                          else "", field=bucket, bytes=str(upload_bytes(uploads)))
        key = keys.job_upload_key(job_id)
        pipe = self.client.pipeline()
        pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
        pipe.expire(key, self.ttl)
        pipe.execute()

    def get(self, job_id: str, names: list[str]) -> dict[str, str]:
        """The uploads ``names`` of ``job_id``; :class:`UploadGone` when one is missing."""
        values: list[str | None] = self.client.hmget(  # type: ignore[assignment]
            keys.job_upload_key(job_id), [ARG_PREFIX + name for name in names])
        if any(value is None for value in values):
            raise UploadGone("the job's upload is gone: it is deleted once the job has "
                             "succeeded or was cancelled, and expires with the job; start a "
                             "new job with the file")
        return dict(zip(names, values, strict=True))  # type: ignore[arg-type]

    def renew(self, job_id: str) -> bool:
        """Keep ``job_id``'s uploads another ``ttl`` seconds (a retry); False when gone."""
        return bool(self.client.expire(keys.job_upload_key(job_id), self.ttl))

    def drop(self, job_id: str) -> int:
        """Delete ``job_id``'s uploads and give their bytes back; the bytes given back."""
        return int(scripts.run(self._drop, [keys.job_upload_key(job_id)],
                               {"resource": BYTES, "quota_prefix": LUA_FIELDS["quota_prefix"]}))


def drop_when_ended(store: UploadStore, kinds: dict[str, JobKind]
                    ) -> Callable[[list[Change]], None]:
    """The lifecycle's reaction: a job with uploads that succeeded or was cancelled has
    them deleted (their bytes given back); a failed one keeps them for a retry."""
    def drop(changes: list[Change]) -> None:
        for change in changes:
            state = change.state
            kind = kinds.get(state.kind)
            if kind is None or not kind.uploads or state.state not in (SUCCEEDED, CANCELLED):
                continue
            try:
                if store.drop(state.job_id):
                    log.info("job %s: its upload was deleted (%s)", state.job_id, state.state)
            except redis.RedisError as exc:
                log.warning("job %s: could not delete its upload: %s", state.job_id, exc)
    return drop
