"""Each web process hears only its own rooms on the message queue (shared/roomqueue.py).

Three real web processes (two eventlet, one gevent) share one Redis as their
Socket.IO message queue; clients are spread across them. Checked with Redis's
own view of the subscriptions (``PUBSUB NUMSUB``).
"""

from __future__ import annotations

import contextlib
import queue
import random
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import socketio

from shared.protocol import new_id, room_for
from shared.push import SOCKETIO_CHANNEL
from shared.roomqueue import RoomQueueManager
from shared.store import JobStore
from tests.support import (
    TEST_OPS_TOKEN,
    EventRecorder,
    Process,
    RedisServer,
    auth,
    final_state_received,
    free_port,
    second_web,
    simulate_work,
    stack_env,
    start_web,
    wait_until,
)


@dataclass
class Trio:
    """One Redis, three web processes on it as their message queue."""

    redis: RedisServer
    client: redis.Redis
    env: dict[str, str]
    urls: list[str]
    procs: list[Process]
    log_dir: Path

    def job(self) -> str:
        """A stored job nobody runs (the test reports for it)."""
        job_id = new_id()
        JobStore(self.client).create(job_id)
        return job_id

    def subscribers(self, room: str) -> int:
        """How many connections Redis has subscribed to ``room``'s channel."""
        return int(dict(self.client.pubsub_numsub(f"{SOCKETIO_CHANNEL}#{room}"))
                   .get(f"{SOCKETIO_CHANNEL}#{room}", 0))


@pytest.fixture(scope="module")
def trio(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trio]:
    """Redis + web processes A, B (eventlet) and C (gevent), with SOCKETIO_MESSAGE_QUEUE."""
    server = RedisServer(log_dir, tmp_path_factory.mktemp("rooms-redis")).start()
    env = stack_env(server.url, free_port(), SOCKETIO_MESSAGE_QUEUE=server.url)
    procs: list[Process] = [server]
    client = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        procs.append(start_web(env, log_dir, name="rooms-a"))
        web_b, url_b = second_web(env, log_dir, "rooms-b")
        procs.append(web_b)
        web_c, url_c = second_web(env, log_dir, "rooms-c", ASYNC_MODE="gevent")
        procs.append(web_c)
        yield Trio(server, client, env, [env["SITE_URL"], url_b, url_c], procs, log_dir)
    finally:
        client.close()
        for proc in reversed(procs):
            proc.stop()


def report(url: str, job_id: str, progress: int) -> None:
    """One progress callback to the web process at ``url``."""
    resp = requests.post(url + "/api/progress", headers=auth(), timeout=5,
                         json={"jobId": job_id, "progress": progress, "state": "running",
                               "seq": progress})
    assert resp.status_code == 204, resp.text


def progress_is(value: int) -> Any:
    def check(events: list[tuple[str, Any]]) -> bool:
        return any(name == "updateProgress" and data.get("progress") == value
                   for name, data in events)
    return check


def test_only_processes_with_a_client_in_the_room_subscribe_and_all_of_them_deliver(
        trio: Trio) -> None:
    a, b, c = trio.urls
    job_id = trio.job()
    room = room_for(job_id)
    assert trio.subscribers(room) == 0
    on_a, on_c = EventRecorder(a, job_id), EventRecorder(c, job_id)
    try:
        # the connect handler joined before it sent the state: Redis has both already
        for rec in (on_a, on_c):
            rec.wait_for(lambda ev: len(ev) >= 1, what="state on connect")
        assert trio.subscribers(room) == 2  # A and C; B has no client in the room
        report(b, job_id, 40)  # B publishes to a room it does not hear
        report(a, job_id, 70)
        for rec in (on_a, on_c):
            rec.wait_for(progress_is(40), what="40, reported to B")
            rec.wait_for(progress_is(70), what="70, reported to A")
    finally:
        on_a.close()
        on_c.close()
    for rec in (on_a, on_c):  # exactly once each: A does not take its own message back
        progress = [p["progress"] for p in rec.payloads("updateProgress")]
        assert progress.count(40) == 1 and progress.count(70) == 1, progress


def test_a_subscribe_is_acknowledged_only_once_redis_confirmed_the_channel(trio: Trio) -> None:
    for url in trio.urls:
        rec = EventRecorder(url)
        try:
            for _ in range(5):
                job_id = trio.job()
                ack = rec.client.call("subscribe", {"jobId": job_id}, timeout=10)
                assert ack == {"ok": True}
                assert trio.subscribers(room_for(job_id)) == 1  # at once: no waiting here
        finally:
            rec.close()


def test_joins_during_a_publish_get_the_event_or_the_state_after_it(trio: Trio) -> None:
    rng = random.Random(29)
    last = 15
    for round_ in range(12):
        job_id = trio.job()
        publisher = trio.urls[round_ % 3]
        joiners = [url for url in trio.urls if url != publisher]
        recorders: list[EventRecorder] = []

        def publish(job_id: str = job_id, publisher: str = publisher) -> None:
            for progress in range(1, last + 1):
                report(publisher, job_id, progress)

        thread = threading.Thread(target=publish)
        thread.start()
        try:
            for url in joiners:  # each the room's first client on its process
                simulate_work(rng.uniform(0, 0.02))  # a test's jitter, not a wait for a state
                recorders.append(EventRecorder(url, job_id))
            thread.join(30)
            for rec in recorders:
                rec.wait_for(progress_is(last), timeout=10,
                             what=f"round {round_}: the last report, joined mid-publish")
        finally:
            thread.join(30)
            for rec in recorders:
                rec.close()


class DelayingProxy:
    """A TCP proxy to Redis that delays what clients send by ``delay`` seconds (so a
    process's SUBSCRIBE reaches Redis late), for the duration of a ``with`` block."""

    def __init__(self, upstream_port: int, delay: float) -> None:
        self.delay = delay
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closing = False
        self.sockets: list[socket.socket] = [self.listener]

    def __enter__(self) -> DelayingProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.closing = True
        for sock in self.sockets:
            sock.close()

    def _accept(self) -> None:
        while not self.closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.sockets += [client, upstream]
            chunks: queue.Queue[tuple[float, bytes]] = queue.Queue()
            threading.Thread(target=self._read, args=(client, chunks), daemon=True).start()
            threading.Thread(target=self._send_late, args=(chunks, upstream), daemon=True).start()
            threading.Thread(target=self._copy, args=(upstream, client), daemon=True).start()

    def _read(self, source: socket.socket, chunks: queue.Queue[tuple[float, bytes]]) -> None:
        data = b"x"
        while data:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            chunks.put((time.monotonic() + self.delay, data))

    @staticmethod
    def _send_late(chunks: queue.Queue[tuple[float, bytes]], target: socket.socket) -> None:
        while True:
            due, data = chunks.get()
            simulate_work(max(0.0, due - time.monotonic()))  # the delay this proxy is for
            try:
                if not data:
                    target.shutdown(socket.SHUT_WR)
                    return
                target.sendall(data)
            except OSError:
                return

    @staticmethod
    def _copy(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass


def test_a_join_waits_for_a_late_subscription_and_misses_nothing(trio: Trio) -> None:
    """The message queue of process D answers its SUBSCRIBE 0.3 s late; events A
    publishes meanwhile, after D's client read the state, still reach that client."""
    port = int(trio.redis.url.rsplit(":", 1)[1].split("/")[0])
    with DelayingProxy(port, delay=0.3) as proxy:
        web_d, url_d = second_web(trio.env, trio.log_dir, "rooms-d",
                                  SOCKETIO_MESSAGE_QUEUE=f"redis://127.0.0.1:{proxy.port}/0")
        try:
            for round_ in range(3):
                job_id = trio.job()
                room = room_for(job_id)
                report(trio.urls[0], job_id, 1)
                joined = threading.Event()

                def publish(job_id: str = job_id, joined: threading.Event = joined) -> None:
                    joined.wait(10)
                    for progress in range(2, 12):  # over the 0.3 s the SUBSCRIBE takes
                        report(trio.urls[0], job_id, progress)
                        simulate_work(0.03)  # the reports' pace, not a wait for a state

                thread = threading.Thread(target=publish)
                thread.start()
                started = time.monotonic()
                rec = EventRecorder(url_d, job_id)  # joins, waits, reads, sends
                took = time.monotonic() - started
                joined.set()
                try:
                    assert trio.subscribers(room) == 1, "joined before Redis had it"
                    assert took >= 0.3, took
                    rec.wait_for(progress_is(11), what=f"round {round_}: the last report")
                    seen = {p["progress"] for p in rec.payloads("updateProgress")}
                    assert seen >= set(range(2, 12)), f"round {round_}: missed some: {seen}"
                finally:
                    thread.join(30)
                    rec.close()
        finally:
            web_d.stop()


def test_the_last_client_leaving_unsubscribes(trio: Trio) -> None:
    a = trio.urls[0]
    job_id = trio.job()
    room = room_for(job_id)
    first, second = EventRecorder(a, job_id), EventRecorder(a, job_id)
    other = EventRecorder(a)
    try:
        for rec in (first, second):
            rec.wait_for(lambda ev: len(ev) >= 1, what="state on connect")
        assert trio.subscribers(room) == 1  # one channel per process, however many clients
        first.close()
        report(trio.urls[1], job_id, 30)
        second.wait_for(progress_is(30), what="30 to the client still in the room")
        assert trio.subscribers(room) == 1
        second.close()  # the last one: a disconnect leaves the room
        wait_until(lambda: trio.subscribers(room) == 0, timeout=5,
                   what="the channel dropped after the last client left")
        # a room left by an explicit leave (an unknown id, refused) also goes
        ack = other.client.call("subscribe", {"jobId": new_id()}, timeout=10)
        assert ack["ok"] is False
        wait_until(lambda: not any(ch.startswith(f"{SOCKETIO_CHANNEL}#job:")
                                   for ch in trio.client.pubsub_channels()),
                   timeout=5, what="no job channel left")
    finally:
        for rec in (first, second, other):
            rec.close()


def _dashboard_token(url: str) -> str:
    page = requests.get(url + "/dashboard", headers=auth(TEST_OPS_TOKEN), timeout=5)
    assert page.status_code == 200
    match = re.search(r'data-token="([^"]+)"', page.text)
    assert match is not None
    return match.group(1)


def test_the_dashboard_broadcast_reaches_every_process(trio: Trio) -> None:
    watchers = []
    try:
        for url in trio.urls:
            rec = EventRecorder(url)
            watchers.append(rec)
            ack = rec.client.call("watchDashboard", {"token": _dashboard_token(url)}, timeout=10)
            assert ack["ok"] is True
        job_id = trio.job()
        report(trio.urls[1], job_id, 55)
        for rec in watchers:
            rec.wait_for(lambda ev: any(n == "jobChanged" and d.get("jobId") == job_id
                                        for n, d in ev), what="jobChanged on every process")
    finally:
        for rec in watchers:
            rec.close()


def test_subscriptions_come_back_after_redis_drops_them(trio: Trio) -> None:
    job_id = trio.job()
    room = room_for(job_id)
    watchers = [EventRecorder(url, job_id) for url in trio.urls]
    try:
        for rec in watchers:
            rec.wait_for(lambda ev: len(ev) >= 1, what="state on connect")
        assert trio.subscribers(room) == 3
        trio.client.client_kill_filter(_type="pubsub")  # every subscriber's connection
        wait_until(lambda: trio.subscribers(room) == 3, timeout=15,
                   what="the three processes subscribed again")
        report(trio.urls[0], job_id, 80)
        for rec in watchers:
            rec.wait_for(progress_is(80), what="80 after the resubscription")
    finally:
        for rec in watchers:
            rec.close()


def test_a_restarted_process_subscribes_again_for_its_reconnecting_clients(
        trio: Trio) -> None:
    job_id = trio.job()
    room = room_for(job_id)
    web_b = trio.procs[2]
    url_b = trio.urls[1]
    got: list[int] = []
    client = socketio.Client(reconnection=True, reconnection_delay=0.2,
                             reconnection_delay_max=0.5)
    client.on("updateProgress", lambda data: got.append(data.get("progress")))
    client.connect(f"{url_b}?jobId={job_id}", transports=["websocket"], wait_timeout=10)
    try:
        wait_until(lambda: trio.subscribers(room) == 1, what="B subscribed")
        web_b.stop()
        wait_until(lambda: trio.subscribers(room) == 0, what="B's subscription gone with it")
        restarted = start_web(web_b.env, trio.log_dir, name="rooms-b-again")
        trio.procs[2] = restarted
        wait_until(lambda: trio.subscribers(room) == 1, timeout=20,
                   what="the reconnected client's room subscribed again")
        report(trio.urls[0], job_id, 90)
        wait_until(lambda: 90 in got, what="90, reported to A, on restarted B")
    finally:
        client.disconnect()


class CuttableProxy:
    """A TCP proxy to Redis that the test can cut (every connection closed, new ones
    closed as soon as they come) and mend, for the duration of a ``with`` block."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut = threading.Event()
        self.closing = False
        self.lock = threading.Lock()
        self.open: list[socket.socket] = []

    def __enter__(self) -> CuttableProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.closing = True
        self.listener.close()
        self.sever()

    def sever(self) -> None:
        """Cut: close every connection now, and each new one as it comes."""
        self.cut.set()
        with self.lock:
            sockets, self.open = self.open, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def mend(self) -> None:
        """Let connections through again."""
        self.cut.clear()

    def _accept(self) -> None:
        while not self.closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut.is_set():
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self.lock:
                self.open += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=DelayingProxy._copy, args=(source, target),
                                 daemon=True).start()


def test_a_process_whose_listener_was_down_pushes_the_stored_state_to_its_pages(
        trio: Trio) -> None:
    """D's message queue connection is cut while A takes the job's last report (with a
    log line): the event is published while D hears nothing. Once D subscribed again
    its client gets the final state, and a ``jobLog`` naming the newest line (so a
    page reads the lines it missed); A's client, whose process heard the event, gets
    it once (D pushed to its own clients only)."""
    port = int(trio.redis.url.rsplit(":", 1)[1].split("/")[0])
    with CuttableProxy(port) as proxy:
        web_d, url_d = second_web(trio.env, trio.log_dir, "rooms-cut",
                                  SOCKETIO_MESSAGE_QUEUE=f"redis://127.0.0.1:{proxy.port}/0")
        job_id = trio.job()
        room = room_for(job_id)
        report(trio.urls[0], job_id, 10)
        on_d, on_a = EventRecorder(url_d, job_id), EventRecorder(trio.urls[0], job_id)
        try:
            for rec in (on_d, on_a):
                rec.wait_for(progress_is(10), what="the running state on connect")
            assert trio.subscribers(room) == 2
            proxy.sever()
            wait_until(lambda: trio.subscribers(room) == 1, timeout=10,
                       what="D's subscription gone with its connection")
            resp = requests.post(trio.urls[0] + "/api/progress", headers=auth(), timeout=5,
                                 json={"jobId": job_id, "state": "succeeded", "progress": 100,
                                       "log": ["the last line"], "seq": 100})
            assert resp.status_code == 204, resp.text
            on_a.wait_for(final_state_received(), what="the end on A, which heard it")
            last = JobStore(trio.client).get(job_id)
            assert last is not None and last.log_last != "0-0"
            assert not final_state_received()(on_d.events)  # published while D was deaf
            proxy.mend()
            on_d.wait_for(final_state_received(), timeout=20,
                          what="the stored end, pushed by D once it subscribed again")
            assert any(data.get("after") == last.log_last
                       for data in on_d.payloads("jobLog")), on_d.events
            assert trio.subscribers(room) == 2
            ends = [d for d in on_a.payloads("updateProgress") if d["state"] == "succeeded"]
            assert len(ends) == 1, on_a.events  # no re-publish to the other processes
        finally:
            on_d.close()
            on_a.close()
            web_d.stop()


def test_rooms_hashed_into_groups_share_channels(redis_url: str) -> None:
    manager = RoomQueueManager(redis_url, SOCKETIO_CHANNEL, groups=4)
    channels = {manager.channel_for(f"job:{new_id()}") for _ in range(200)}
    assert channels == {f"{SOCKETIO_CHANNEL}#{n}" for n in range(4)}
    assert manager.channel_for(None) == SOCKETIO_CHANNEL
    assert RoomQueueManager(redis_url, SOCKETIO_CHANNEL).channel_for("dashboard") == \
        f"{SOCKETIO_CHANNEL}#dashboard"


def test_the_subscriptions_setting_is_checked() -> None:
    from shared.config import Config, ConfigError

    DEV = {"JOBCAST_ENV": "development"}  # noqa: N806 - the environment, as a constant
    for good in ("rooms", "all", "16"):
        assert Config(DEV, SOCKETIO_SUBSCRIPTIONS=good).SOCKETIO_SUBSCRIPTIONS == good
    for bad in ("some", "0", "-3"):
        with pytest.raises(ConfigError, match="SOCKETIO_SUBSCRIPTIONS"):
            Config(DEV, SOCKETIO_SUBSCRIPTIONS=bad)
