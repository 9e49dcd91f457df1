"""Completion webhooks, the site's part: check the URL a job names, and hand the
delivery to the RQ worker when the job ends (``shared.webhooks``, ``worker.webhooks``).

Who may do this: whoever may start a job may name a webhook, but only to hosts
the operator listed in ``WEBHOOK_ALLOWED_HOSTS``; the request never calls it.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import current_app

from shared.webhooks import WebhookRefused, check_url, hand_over
from website.extensions import redis_ext
from website.jobs.submit import Rejected

log = logging.getLogger(__name__)


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
    cfg = current_app.config
    try:
        delivery = hand_over(redis_ext.client, redis_ext.queue, job_id,
                             cfg["WEBHOOK_BACKOFF"], cfg["JOB_TTL"])
    except redis.RedisError as exc:
        log.warning("job %s: could not enqueue its webhook: %s", job_id, exc)
        return
    if delivery:
        log.info("job %s: webhook delivery %s enqueued", job_id, delivery)
