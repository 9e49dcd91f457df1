"""Completion webhooks, the worker's part: ``python -m worker --webhooks`` serves the
deliveries' own queue (:func:`serve`) and runs :func:`deliver` for each (an RQ job
the site enqueues when a job ends; RQ's ``Retry`` with ``WEBHOOK_BACKOFF`` retries
it). Deliveries never wait behind user jobs, nor hold the worker that runs them.

Where a delivery connects: to an address :func:`shared.webhooks.target` resolved
once and checked, never to the name again (a second lookup could answer
127.0.0.1: DNS rebinding). urllib3's connection pool is opened on that address
with ``server_hostname`` and ``assert_hostname`` set to the URL's host, so TLS
sends that name (SNI) and verifies the certificate against it, and ``Host``
carries the URL's host: the receiver sees the same request as before.

The deadline: the delivery's RQ job timeout is ``WEBHOOK_DEADLINE``. RQ's death
penalty (SIGALRM in the process running the delivery) interrupts whatever blocks
at that moment: a connect, a TLS handshake, or a receiver sending one header
line every few seconds, which no per-read socket timeout ever trips. The attempt
then counts as failed ("no answer within WEBHOOK_DEADLINE") and is retried. It
is RQ's own mechanism, so there is no watchdog thread of ours. The answer's body
is never read (only its status line and headers).

The delivery state is kept on the job's hash (``webhook_state`` pending,
retrying, delivered, failed or refused; ``webhook_attempts``; ``webhook_status``,
the last HTTP status), and ``GET /api/jobs/<id>`` shows it to the job's owner
and operators.
"""

from __future__ import annotations

import json
import logging
import os

import redis
import urllib3
from requests.utils import DEFAULT_CA_BUNDLE_PATH
from rq import SimpleWorker, Worker, get_current_job
from rq.timeouts import JobTimeoutException
from urllib3.exceptions import ConnectTimeoutError, HTTPError

from shared import keys, redisconn, webhooks
from shared.config import WORKER, Config
from shared.errors import Unavailable
from shared.rqconf import SERIALIZER
from shared.store import JobState
from shared.webhooks import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    Target,
    WebhookRefused,
    payload,
    sign,
)
from worker.boundary import mark_reported

log = logging.getLogger(__name__)
READ_TIMEOUT = 10.0  # seconds for the connect and for each read (the deadline bounds the whole)
MAX_ADDRESSES = 4  # checked addresses tried in turn when connecting to one fails


class DeliveryFailed(Unavailable):
    """The receiver did not answer 2xx (RQ retries the delivery)."""


def _ca_bundle() -> tuple[str | None, str | None]:
    """The CAs ``requests`` would trust, as (file, directory): ``REQUESTS_CA_BUNDLE`` or
    ``CURL_CA_BUNDLE`` when set, else its own bundle (certifi)."""
    path = (os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            or DEFAULT_CA_BUNDLE_PATH)
    return (None, path) if os.path.isdir(path) else (path, None)


def _pool(target: Target, address: str, timeout: float) -> urllib3.HTTPConnectionPool:
    limits = urllib3.Timeout(connect=timeout, read=timeout)
    if target.scheme == "https":
        ca_file, ca_dir = _ca_bundle()
        name = target.host.rstrip(".")  # as urllib3 sends and checks a name with its root dot
        return urllib3.HTTPSConnectionPool(
            address, target.port, timeout=limits, retries=False, maxsize=1,
            server_hostname=name, assert_hostname=name,
            cert_reqs="CERT_REQUIRED", ca_certs=ca_file, ca_cert_dir=ca_dir)
    return urllib3.HTTPConnectionPool(address, target.port, timeout=limits, retries=False,
                                      maxsize=1)


def send(target: Target, body: bytes, headers: dict[str, str],
         timeout: float = READ_TIMEOUT) -> int:
    """POST ``body`` to ``target``'s checked addresses (the next one only when connecting
    to one fails); the answer's HTTP status. No proxy is used (it would resolve the
    name again). Raises urllib3's ``HTTPError``."""
    failure: HTTPError | None = None
    for address in target.addresses[:MAX_ADDRESSES]:
        pool = _pool(target, address, timeout)
        try:
            resp = pool.urlopen("POST", target.path, body=body,
                                headers={**headers, "Host": target.host_header},
                                retries=False, redirect=False, preload_content=False,
                                assert_same_host=False)
            resp.close()  # the body is never read
            return int(resp.status)
        except ConnectTimeoutError as exc:  # NewConnectionError too: try the next address
            failure = exc
        finally:
            pool.close()
    raise failure or HTTPError(f"no address for {target.host}")


def deliver(job_id: str, delivery: str) -> str:
    """POST the ended job's webhook once; raise :class:`DeliveryFailed` to be retried."""
    cfg = Config(role=WORKER)
    client = redisconn.connect(cfg.REDIS_URL, decode_responses=True)
    key = keys.job_key(job_id)
    data: dict[str, str] = client.hgetall(key)  # type: ignore[assignment]
    if not data.get("webhook"):
        return "no webhook (or the job expired)"
    try:
        where = webhooks.target(data["webhook"], cfg.WEBHOOK_ALLOWED_HOSTS)
    except WebhookRefused as exc:
        client.hset(key, "webhook_state", "refused")
        log.warning("job %s: webhook refused: %s", job_id, exc)
        return "refused"
    body = json.dumps(payload(JobState.from_hash(job_id, data)), separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "jobcast-webhook/1",
               SIGNATURE_HEADER: sign(cfg.WEBHOOK_SECRET, body), DELIVERY_HEADER: delivery}
    attempts = int(client.hincrby(key, "webhook_attempts", 1))  # type: ignore[arg-type]
    try:
        status = send(where, body, headers, timeout=min(READ_TIMEOUT, cfg.WEBHOOK_DEADLINE))
        problem = "" if 200 <= status < 300 else f"HTTP {status}"
    except HTTPError as exc:
        status, problem = 0, type(exc).__name__
    except JobTimeoutException:  # RQ's job timeout: WEBHOOK_DEADLINE
        status, problem = 0, f"no answer within WEBHOOK_DEADLINE ({cfg.WEBHOOK_DEADLINE} s)"
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


def serve(cfg: Config, conn: redis.Redis, name: str | None, burst: bool = False) -> int:
    """Work the deliveries' queue (``<QUEUE_NAME>-webhooks``) until stopped: RQ's worker
    (a work horse per delivery, or in-process with ``WORKER_CLASS=simple``) with its
    scheduler, which moves the retries onto the queue when they are due."""
    queue = webhooks.queue_name(cfg.QUEUE_NAME)
    worker_class = SimpleWorker if cfg.WORKER_CLASS == "simple" else Worker
    worker = worker_class([queue], connection=conn, name=name, log_job_description=False,
                          worker_ttl=cfg.WORKER_TTL, serializer=SERIALIZER)
    log.info("webhooks worker %s on queue %s (deadline %s s per delivery)",
             worker.name, queue, cfg.WEBHOOK_DEADLINE)
    worker.work(burst=burst, logging_level=cfg.LOG_LEVEL, with_scheduler=True)
    return 0
