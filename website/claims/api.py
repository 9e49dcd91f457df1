"""The external workers' API: claim a job, keep its lease (docs/workers.md).

Who may do this: a worker holding ``WORKER_TOKEN`` (``Authorization: Bearer``);
anything else gets 401. A claimed job comes with its per-job token, which
names the attempt, for ``POST /api/progress``.
"""

from __future__ import annotations

import _socket
import hmac
import logging
import random
import re
import socket
import time
from typing import Any

import redis
from flask import Blueprint, Response, current_app, jsonify, request

from shared.claimqueue import Claim, Renewal
from shared.errors import Invalid
from shared.protocol import RUNNING, is_uuid
from shared.signing import parse_bearer, sign_job_token
from shared.tracing import stored_context
from website.claims.notifier import NOTIFIER, Notifier
from website.extensions import core
from website.http.answers import error_response
from website.http.body import read_json_body
from website.ops.fleet import fleet

log = logging.getLogger(__name__)
bp = Blueprint("workers", __name__, url_prefix="/api/workers")

WAIT_MAX = 30  # seconds a claim may wait for a job
WAIT_SPREAD = 0.1  # a claim gives up after 90-100% of its wait, picked at random
RETRY_AFTER_SECONDS = 5  # told to a claim refused because too many wait already
HEARTBEAT_MAX_JOBS = 100
HEARTBEAT_NAMES_NOTED = 4  # names one heartbeat (without a worker) notes at most
BODY_MAX_BYTES = 16 * 1024
WORKER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")


Answer = Response | tuple[Response | str, int] | tuple[Response | str, int, dict[str, str]]


def client_gone(environ: dict[str, Any]) -> bool:
    """True when the client of a waiting claim has closed its connection.

    Peeks at gunicorn's client socket without blocking, through a plain
    ``_socket.socket`` on its file descriptor: eventlet's and gevent's sockets
    would wait for data instead of saying there is none. False when that cannot be
    told (no gunicorn socket).
    """
    sock = environ.get("gunicorn.socket")
    try:
        fd = sock.fileno() if sock is not None else -1
    except OSError:
        return True  # closed already
    if not isinstance(fd, int) or fd < 0:
        return False
    try:
        peek = _socket.socket(fileno=fd)
    except OSError:
        return True
    try:
        return peek.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False  # open, nothing sent: still waiting for our answer
    except OSError:
        return True
    finally:
        peek.detach()  # the descriptor stays gunicorn's


def _authorised() -> bool:
    token = parse_bearer(request.headers.get("Authorization"))
    expected = current_app.config["WORKER_TOKEN"]
    return bool(token and expected and hmac.compare_digest(token.encode(), expected.encode()))


def _read_claim(body: object) -> tuple[list[str], str, float]:
    if not isinstance(body, dict):
        raise Invalid("body must be a JSON object")
    wanted = body.get("kinds")
    if not isinstance(wanted, list) or not wanted or len(wanted) > 20 \
            or not all(isinstance(k, str) for k in wanted):
        raise Invalid("kinds must be a list of 1 to 20 kind names")
    known = core.kinds
    for name in wanted:
        kind = known.get(name)
        if kind is None or not kind.external:
            raise Invalid(f"{name[:40]!r} is not an external kind of this site")
    worker = body.get("worker")
    if not isinstance(worker, str) or not WORKER_NAME.match(worker):
        raise Invalid("worker must be a name of 1 to 64 letters, digits and ._:@-")
    wait = body.get("wait", 0)
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) \
            or wait != wait or not 0 <= wait <= WAIT_MAX:
        raise Invalid(f"wait must be a number of seconds from 0 to {WAIT_MAX}")
    return list(dict.fromkeys(wanted)), worker, float(wait)


@bp.post("/claim")
def claim() -> Answer:
    """Give the oldest waiting job of ``kinds`` to the worker: 200 with the job,
    204 when none came within ``wait`` seconds, 503 (``Retry-After``) when none was
    queued and ``CLAIM_MAX_WAITING`` claims wait in this process already."""
    if not _authorised():
        return error_response(401, "missing or invalid worker token")
    wanted, worker, wait = _read_claim(read_json_body(BODY_MAX_BYTES))
    notifier: Notifier = current_app.extensions[NOTIFIER]
    notifier.ensure_started()
    got = take(wanted, worker)
    seen(worker, wanted, got)
    if got is None and wait > 0:
        if notifier.full:
            log.warning("claim by %s: %s claims wait already, the most this process takes",
                        worker, notifier.limit)
            busy, status = error_response(503, "too many claims are waiting on this web "
                                               "process; retry later")
            return busy, status, {"Retry-After": str(RETRY_AFTER_SECONDS)}
        got = _wait_for_job(notifier, wanted, worker, wait)
        if got is not None:
            seen(worker, wanted, got)
    if got is None:
        return Response(status=204)
    cfg = current_app.config
    # traceparent/tracestate: the job's trace context, when it was started with tracing
    # on; a worker continues the trace with it (shared/tracing.py, docs/workers.md).
    return jsonify({"jobId": got.job_id, "kind": got.kind, "args": got.args,
                    "attempt": got.attempt, "leaseSeconds": cfg["LEASE_SECONDS"],
                    "token": sign_job_token(cfg["SECRET_KEY"], got.job_id, got.attempt),
                    **stored_context(got.state.extra)})


def _wait_for_job(notifier: Notifier, wanted: list[str], worker: str,
                  wait: float) -> Claim | None:
    """Try again each time the notifier wakes us, until a job came or ``wait`` passed
    (None then, or at once when the client went away: nobody would read the job).
    The wait ends after 90-100% of ``wait``, at random: workers that started
    together (a deploy, a restart of the site) come back spread out, not as one burst.

    A claim woken for a job passes the wake-up on: to the next claim once it took a
    job (more may be queued), and to another one when it leaves with a wake-up it
    did not use (its client has gone, or it was woken while taking another job).
    """
    deadline = time.monotonic() + wait * random.uniform(1 - WAIT_SPREAD, 1)
    event = notifier.new_event(wanted)
    woken = False
    try:
        while True:
            event.clear()
            got = take(wanted, worker)  # after registering: a job queued meanwhile wakes us
            if got is not None:
                if woken:
                    notifier.pass_on(wanted)
                return got
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            poll = notifier.poll_interval
            woken = bool(event.wait(remaining if poll is None else min(remaining, poll)))
            if client_gone(request.environ):
                log.info("claim by %s: the client went away while waiting", worker)
                return None
    finally:
        notifier.forget(event)
        if event.is_set():  # woken, but leaving without taking: another claim tries
            notifier.pass_on(wanted)


def take(wanted: list[str], worker: str) -> Claim | None:
    """One try at a job for ``worker`` (``Lifecycle.claim``: it sweeps first only when a
    lease has lapsed, and pushes the claimed job's new state)."""
    return core.lifecycle.claim(wanted, worker)


def seen(worker: str, kinds: list[str], got: Claim | None) -> None:
    """Note the claim for the dashboard's workers (``shared/fleet.py``): who, which
    kinds, the job given. A Redis error here loses the note, not the claim."""
    try:
        fleet().claiming(worker, kinds, got.job_id if got is not None else "")
    except redis.RedisError as exc:
        log.warning("claim by %s: could not note it for the dashboard: %s", worker, exc)


def _read_worker(body: object) -> str | None:
    """The heartbeat's optional ``worker`` name (None: the name its jobs were claimed with)."""
    worker = body.get("worker") if isinstance(body, dict) else None
    if worker is None:
        return None
    if not isinstance(worker, str) or not WORKER_NAME.match(worker):
        raise Invalid("worker must be a name of 1 to 64 letters, digits and ._:@-")
    return worker


def _read_heartbeat(body: object) -> list[tuple[str, int | None]]:
    if not isinstance(body, dict) or not isinstance(body.get("jobIds"), list):
        raise Invalid('body must be {"jobIds": [...]}')
    items: list[Any] = body["jobIds"]
    if len(items) > HEARTBEAT_MAX_JOBS:
        raise Invalid(f"at most {HEARTBEAT_MAX_JOBS} jobIds per heartbeat")
    jobs: list[tuple[str, int | None]] = []
    for item in items:
        job_id, attempt = (item, None) if not isinstance(item, dict) else (
            item.get("jobId"), item.get("attempt"))
        if not is_uuid(job_id):
            raise Invalid("each of jobIds must be a job id, or {jobId, attempt}")
        if attempt is not None and (isinstance(attempt, bool) or not isinstance(attempt, int)
                                    or not 1 <= attempt < 2**31):
            raise Invalid("attempt must be a whole number from 1")
        jobs.append((str(job_id).lower(), attempt))
    return jobs


@bp.post("/heartbeat")
def heartbeat() -> Response | tuple[Response | str, int]:
    """Renew the leases of the worker's jobs; each job's state and current attempt
    (a job that was cancelled says so here; one asked to stop has ``cancelRequested``).
    Only jobs of external kinds answer: any other job is as unknown (state and attempt
    null, not held). A heartbeat is no report: it does not keep a job from stalling."""
    if not _authorised():
        return error_response(401, "missing or invalid worker token")
    body = read_json_body(BODY_MAX_BYTES)
    jobs = _read_heartbeat(body)
    worker = _read_worker(body)
    core.lifecycle.sweep()
    answers: list[dict[str, Any]] = []
    renewals = core.lifecycle.external.renew_many(jobs)
    for (job_id, _attempt), renewal in zip(jobs, renewals, strict=True):
        if renewal is None or not renewal.external:  # a job RQ runs is none of theirs
            answers.append({"jobId": job_id, "state": None, "attempt": None, "held": False})
        else:
            answer = {"jobId": job_id, "state": renewal.state, "attempt": renewal.attempt,
                      "held": renewal.held}
            if renewal.cancel_requested and renewal.state == RUNNING:  # stop, then report
                answer["cancelRequested"] = True
            answers.append(answer)
    _heartbeat_seen(worker, [r for r in renewals if r is not None and r.external])
    return jsonify({"jobs": answers, "leaseSeconds": current_app.config["LEASE_SECONDS"]})


def _heartbeat_seen(worker: str | None, renewals: list[Renewal]) -> None:
    """Note the heartbeat for the dashboard: by ``worker``, or (without one) by the name
    each held job was claimed with; the jobs still held."""
    held: dict[str, list[str]] = {}
    for renewal in renewals:
        name = worker or renewal.worker
        if name and renewal.held and renewal.state == RUNNING:
            held.setdefault(name, []).append(renewal.job_id)
        elif name:
            held.setdefault(name, [])
    try:
        for name, job_ids in list(held.items())[:HEARTBEAT_NAMES_NOTED]:
            fleet().heartbeat(name, job_ids)
    except redis.RedisError as exc:
        log.warning("heartbeat: could not note it for the dashboard: %s", exc)
