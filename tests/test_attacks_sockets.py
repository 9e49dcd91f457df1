"""Issue #26, section 3: a few addresses must not lock every watcher out of
Socket.IO, and re-subscribing must not replay a job's log again and again.

Each test starts its own gunicorn web process (a real Socket.IO server) on one
real Redis, with a small cap so the attacks stay quick. Clients are real
python-socketio clients, or bare Engine.IO requests sent from other loopback
addresses (127.0.0.2, ...) or, behind ``TRUSTED_PROXIES``, with an IPv6
``X-Forwarded-For``.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import socketio

from shared.protocol import JOB_LOG, LOG_START, SUBSCRIBE, UPDATE_PROGRESS
from tests.support import (
    EventRecorder,
    Process,
    RedisServer,
    auth,
    free_port,
    stack_env,
    start_job,
    start_web,
    wait_until,
)

CAP = 10  # SOCKETIO_MAX_CONNECTIONS
PER_CLIENT = 3  # SOCKETIO_MAX_PER_CLIENT
WATCHER_SHARE = 50  # percent of CAP kept for connections that watch a room
REPLAY_BYTES = 20_000  # SOCKETIO_REPLAY_BYTES


@pytest.fixture(scope="module")
def redis_for_sockets(log_dir: Path,
                      tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One Redis for this module's web processes."""
    server = RedisServer(log_dir, tmp_path_factory.mktemp("sockets-redis")).start()
    yield server
    server.stop()


Site = Callable[..., str]


@pytest.fixture
def site(redis_for_sockets: RedisServer, log_dir: Path,
         request: pytest.FixtureRequest) -> Iterator[Site]:
    """Start a web process with a small Socket.IO cap (and the given settings); its URL."""
    procs: list[Process] = []

    def start(**settings: str) -> str:
        env = stack_env(redis_for_sockets.url, free_port(), RATE_LIMIT="0", TRUSTED_PROXIES="1",
                        SOCKETIO_MAX_CONNECTIONS=str(CAP),
                        SOCKETIO_MAX_PER_CLIENT=str(PER_CLIENT),
                        SOCKETIO_WATCHER_SHARE=str(WATCHER_SHARE), **settings)
        procs.append(start_web(env, log_dir, name=f"web-{request.node.name}"))
        return env["SITE_URL"]

    yield start
    for proc in procs:
        proc.stop()


def handshake(url: str, source: str = "127.0.0.1", connect: bool = False,
              headers: dict[str, str] | None = None, query: str = "") -> tuple[int, str]:
    """A bare Engine.IO polling handshake from ``source`` (a loopback address), with
    ``headers`` and extra ``query``; with ``connect``, then the Socket.IO CONNECT
    packet (and no room). The handshake's status and the session id."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10,
                                      source_address=(source, 0))
    try:
        conn.request("GET", f"/socket.io/?EIO=4&transport=polling{query}",
                     headers=headers or {})
        resp = conn.getresponse()
        body = resp.read().decode()
        if resp.status != 200:
            return resp.status, ""
        sid = str(json.loads(body[1:])["sid"])
        if connect:
            conn.request("POST", f"/socket.io/?EIO=4&transport=polling&sid={sid}", body="40",
                         headers={"Content-Type": "text/plain;charset=UTF-8", **(headers or {})})
            posted = conn.getresponse()
            posted.read()
            assert posted.status == 200
        return resp.status, sid
    finally:
        conn.close()


def log_lines(url: str, job_id: str, lines: list[str]) -> None:
    """Append ``lines`` to the job's log through the progress callback."""
    for start in range(0, len(lines), 100):
        resp = requests.post(url + "/api/progress", headers=auth(), timeout=10, json={
            "jobId": job_id, "progress": 10, "state": "running",
            "log": lines[start:start + 100]})
        assert resp.status_code == 204, resp.text


def recorder(url: str, query: str = "", forwarded_for: str = ""
             ) -> tuple[socketio.Client, list[tuple[str, Any]]]:
    """A connected websocket client and the events it records; with ``forwarded_for``,
    a client of that address behind the (trusted) proxy."""
    events: list[tuple[str, Any]] = []
    client = socketio.Client(reconnection=False)
    client.on("*", lambda event, data=None: events.append((event, data)))
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    client.connect(url + query, transports=["websocket"], headers=headers, wait_timeout=10)
    return client, events


def test_sessions_that_join_nothing_do_not_lock_out_a_new_watcher(site: Site) -> None:
    """The reproduced attack: many addresses each connect and join no room, until the
    cap is full; every new watcher used to get 503 for about a minute."""
    url = site(SOCKETIO_IDLE_JOIN_SECONDS="60", SOCKETIO_CONNECT_TIMEOUT="60")
    job_id = start_job(url)
    held = 0
    statuses: list[int] = []
    for n in range(2 * CAP):  # from ever more addresses, PER_CLIENT each
        status, _ = handshake(url, f"127.0.0.{n // PER_CLIENT + 2}", connect=True)
        statuses.append(status)
        held += status == 200
    assert 503 in statuses, statuses  # they filled what they may

    # A new watcher still gets in at once, and so do more (each its own client),
    # as many as the share kept for watchers.
    watchers: list[socketio.Client] = []
    try:
        for n in range(CAP * WATCHER_SHARE // 100):
            client, events = recorder(url, f"?jobId={job_id}", forwarded_for=f"198.51.100.{n}")
            watchers.append(client)
            wait_until(lambda events=events: any(name == UPDATE_PROGRESS for name, _ in events),
                       what="the state on connect")
        # those in no room had only the rest, and the cap as a whole still holds
        assert held == CAP - CAP * WATCHER_SHARE // 100, statuses
        assert handshake(url, "127.0.1.1", query=f"&jobId={job_id}")[0] == 503
    finally:
        for client in watchers:
            client.disconnect()


def test_sessions_of_one_ipv6_network_share_the_per_client_cap(site: Site) -> None:
    """Behind a trusted proxy, each session from its own /128 of one /64."""
    url = site(SOCKETIO_IDLE_JOIN_SECONDS="60")
    statuses = [handshake(url, connect=True,
                          headers={"X-Forwarded-For": f"2001:db8:26:3::{n + 1:x}"})[0]
                for n in range(PER_CLIENT + 1)]
    assert statuses == [200] * PER_CLIENT + [429], statuses
    # the 429 says why, and another /64 is not affected
    assert handshake(url, headers={"X-Forwarded-For": "2001:db8:26:4::1"})[0] == 200
    assert handshake(url, headers={"X-Forwarded-For": "2001:db8:26:3:ffff::9"})[0] == 429


def test_a_connection_that_joins_no_room_is_closed_after_the_idle_join_time(
        site: Site) -> None:
    url = site(SOCKETIO_IDLE_JOIN_SECONDS="1")
    job_id = start_job(url)
    watcher = EventRecorder(url, job_id)
    idle, _ = recorder(url)
    try:
        wait_until(lambda: not idle.connected, timeout=6, interval=0.1,
                   what="the connection that joined nothing to be closed")
        assert watcher.client.connected  # a connection watching a room stays
        # and its slot is free again: the address may hold PER_CLIENT sessions again
        statuses = [handshake(url, connect=True)[0] for _ in range(PER_CLIENT - 1)]
        assert statuses == [200] * (PER_CLIENT - 1)
    finally:
        idle.disconnect()
        watcher.close()


def test_resubscribing_to_the_same_job_does_not_replay_its_log_again(site: Site) -> None:
    url = site()
    job_id = start_job(url)
    log_lines(url, job_id, [f"line {n}" for n in range(50)])
    client, events = recorder(url, f"?jobId={job_id}&lastLogId={LOG_START}")
    try:
        wait_until(lambda: [data for name, data in events if name == JOB_LOG],
                   what="the replay on connect")
        for _ in range(3):
            ack = client.call(SUBSCRIBE, {"jobId": job_id, "lastLogId": LOG_START},
                              timeout=10)
            assert ack == {"ok": True}
        # each subscribe still sends the state (it is sent before the ack) ...
        wait_until(lambda: sum(name == UPDATE_PROGRESS for name, _ in events) == 4,
                   what="the state on every subscribe")
        # ... but the log was replayed once
        replays = [data for name, data in events if name == JOB_LOG]
        assert len(replays) == 1 and len(replays[0]["lines"]) == 50
    finally:
        client.disconnect()


def test_log_replay_is_limited_by_bytes_per_connection(site: Site) -> None:
    url = site(SOCKETIO_REPLAY_BYTES=str(REPLAY_BYTES))
    jobs = [start_job(url) for _ in range(2)]
    for job_id in jobs:
        log_lines(url, job_id, [f"{n:03d} " + "x" * 900 for n in range(100)])
    client, events = recorder(url)
    try:
        replays: list[dict[str, Any]] = []
        for job_id in jobs:
            ack = client.call(SUBSCRIBE, {"jobId": job_id, "lastLogId": LOG_START}, timeout=10)
            assert ack == {"ok": True}
            replays.append(wait_until(
                lambda job_id=job_id: next((data for name, data in events
                                            if name == JOB_LOG and data["jobId"] == job_id),
                                           None),
                what="the replay"))
        first, second = replays
        # the replay stops within the budget and says there is more ...
        assert 0 < len(first["lines"]) < 100
        assert sum(len(line["text"]) for line in first["lines"]) <= REPLAY_BYTES
        assert first["more"] is True
        # ... which the log API has, after the last line sent
        rest = requests.get(f"{url}/api/jobs/{jobs[0]}/log",
                            params={"after": first["lines"][-1]["id"]}, timeout=10).json()
        assert len(first["lines"]) + len(rest["lines"]) == 100
        # the budget is spent: the next replay sends nothing, only the marker
        assert second["lines"] == [] and second["more"] is True
        assert second["after"] == LOG_START
    finally:
        client.disconnect()
    # the budget is per connection: another connection gets its own
    other, other_events = recorder(url, f"?jobId={jobs[1]}&lastLogId={LOG_START}")
    try:
        wait_until(lambda: [data for name, data in other_events
                            if name == JOB_LOG and data["lines"]], what="a replay")
    finally:
        other.disconnect()
