"""Completion webhooks, the site's part: check the URL a job names, and hand the
delivery to the RQ worker when the job ends (``shared.webhooks``, ``worker.webhooks``).

Who may do this: whoever may start a job may name a webhook, but only to hosts
the operator listed in ``WEBHOOK_ALLOWED_HOSTS``; the request never calls it.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import redis
from flask import current_app
from rq import Retry

from shared import keys
from shared.webhooks import WebhookRefused, check_url
from website.extensions import redis_ext
from website.jobs.submit import Rejected

log = logging.getLogger(__name__)
DELIVER_JOB = "worker.webhooks.deliver"


def read_webhook(rest: dict[str, Any], kind: str) -> str | None:
    """The submission's ``webhook`` URL, checked; None when it names none."""
    url = rest.get("webhook")
    if url is None:
        return None
    cfg = current_app.config
    if not cfg["WEBHOOK_SECRET"]:
        raise Rejected(400, "webhooks are off on this site (WEBHOOK_SECRET is not set)",
                       {"webhook": "webhooks are off"}, kind)
    try:
        return check_url(url, cfg["WEBHOOK_ALLOWED_HOSTS"])
    except WebhookRefused as exc:
        raise Rejected(400, str(exc), {"webhook": str(exc)}, kind) from None


def job_ended(job_id: str) -> None:
    """Enqueue the completion webhook of an ended job, once (when it names one)."""
    client = redis_ext.client
    delivery = str(uuid.uuid4())
    try:
        if not client.hget(keys.job_key(job_id), "webhook"):
            return
        if not client.hsetnx(keys.job_key(job_id), "webhook_delivery", delivery):
            return  # already handed over
        backoff = list(current_app.config["WEBHOOK_BACKOFF"])
        redis_ext.queue.enqueue(DELIVER_JOB, job_id, delivery, job_timeout=60,
                                retry=Retry(max=len(backoff), interval=backoff),
                                result_ttl=current_app.config["JOB_TTL"],
                                failure_ttl=current_app.config["JOB_TTL"])
    except redis.RedisError as exc:
        log.warning("job %s: could not enqueue its webhook: %s", job_id, exc)
        return
    log.info("job %s: webhook delivery %s enqueued", job_id, delivery)
