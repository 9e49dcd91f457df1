"""Completion webhooks, the worker's part: deliver one (an RQ job the site enqueues
when a job ends; RQ's ``Retry`` with ``WEBHOOK_BACKOFF`` retries it).

The delivery state is kept on the job's hash (``webhook_state`` pending,
retrying, delivered, failed or refused; ``webhook_attempts``; ``webhook_status``,
the last HTTP status), and ``GET /api/jobs/<id>`` shows it.
"""

from __future__ import annotations

import json
import logging

import redis
import requests
from rq import get_current_job

from shared import keys
from shared.config import WORKER, Config
from shared.errors import Unavailable
from shared.store import JobState
from shared.webhooks import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    WebhookRefused,
    check_url,
    payload,
    sign,
)
from worker.boundary import mark_reported

log = logging.getLogger(__name__)
TIMEOUT = 10.0


class DeliveryFailed(Unavailable):
    """The receiver did not answer 2xx (RQ retries the delivery)."""


def deliver(job_id: str, delivery: str) -> str:
    """POST the ended job's webhook once; raise :class:`DeliveryFailed` to be retried."""
    cfg = Config(role=WORKER)
    client = redis.Redis.from_url(cfg.REDIS_URL, decode_responses=True)
    key = keys.job_key(job_id)
    data: dict[str, str] = client.hgetall(key)  # type: ignore[assignment]
    if not data.get("webhook"):
        return "no webhook (or the job expired)"
    try:
        url = check_url(data["webhook"], cfg.WEBHOOK_ALLOWED_HOSTS)
    except WebhookRefused as exc:
        client.hset(key, "webhook_state", "refused")
        log.warning("job %s: webhook refused: %s", job_id, exc)
        return "refused"
    body = json.dumps(payload(JobState.from_hash(job_id, data)), separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "jobcast-webhook/1",
               SIGNATURE_HEADER: sign(cfg.WEBHOOK_SECRET, body), DELIVERY_HEADER: delivery}
    attempts = int(client.hincrby(key, "webhook_attempts", 1))  # type: ignore[arg-type]
    try:
        resp = requests.post(url, data=body, headers=headers, timeout=TIMEOUT,
                             allow_redirects=False)
        status, problem = resp.status_code, "" if resp.ok else f"HTTP {resp.status_code}"
    except requests.RequestException as exc:
        status, problem = 0, type(exc).__name__
    if not problem:
        client.hset(key, mapping={"webhook_state": "delivered", "webhook_status": status})
        log.info("job %s: webhook delivered (%s, attempt %s)", job_id, status, attempts)
        return "delivered"
    rq_job = get_current_job()
    last = rq_job is None or not rq_job.retries_left
    client.hset(key, mapping={"webhook_state": "failed" if last else "retrying",
                              "webhook_status": status})
    log.warning("job %s: webhook attempt %s failed (%s)%s", job_id, attempts, problem,
                "; giving up" if last else "; will retry")
    failure = DeliveryFailed(f"webhook of job {job_id}: {problem}")
    mark_reported(failure)  # recorded on the job: the worker's failure handler leaves it be
    raise failure
