"""Section 15: each web process hears only its rooms (``shared/roomqueue.py``).

* (a) a web process whose clients are in none of the busy rooms, while events
  flow to another process's rooms: its CPU, with a channel per room
  (``SOCKETIO_SUBSCRIPTIONS=rooms``) and with python-socketio's one channel
  (``all``, the way before);
* (b) a callback's CPU with the message queue against without it (the site
  alone), 100 watched jobs, closed loop;
* (c) three processes, each with clients in its own rooms, events to all of
  them: CPU per delivered event per process, and the model of the cluster's
  events/s at 2, 4, 8 and 16 processes (docs/scaling.md).

The events are published by the bench process through the same write-only
manager a worker uses (``shared.push.queue_emitter``), paced in 10 ms slices.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import psutil

from bench.report import Row
from bench.stack import BenchStack, Web, measured_load, settle
from bench.swarm import Swarm
from shared.protocol import room_for
from shared.push import SOCKETIO_CHANNEL
from shared.roomqueue import RoomQueueManager

Log = Callable[[str], None]
CLIENTS = 100  # busy rooms (one client each) per process
PAYLOAD = {"jobId": "", "state": "running", "progress": 50, "message": "bench event " + "x" * 120,
           "kind": "demo", "updatedAt": 1_700_000_000.0, "seq": 1}
NOTE = ("Rooms (15): web processes started for the section, all on the bench's Redis as "
        "their message queue; events are `updateProgress` of about 250 bytes, published by "
        "the bench process through the worker's write-only manager at a fixed rate (10 ms "
        "slices) to rooms with one client each (`bench/swarm.py`). CPU is each gunicorn "
        "worker's user+system time over the window. (a) compares `SOCKETIO_SUBSCRIPTIONS="
        "rooms` (a channel per room) with `all` (one channel: every process decodes every "
        "event); (c) gives the inputs of the cluster model written in docs/scaling.md "
        "(\"Each process hears only its rooms\").")


class OneChannel(RoomQueueManager):
    """The bench's publisher for ``SOCKETIO_SUBSCRIPTIONS=all``: every emit on the one
    channel, as python-socketio's ``RedisManager`` sends it, in batches as for ``rooms``."""

    def channel_for(self, room: object) -> str:
        """The common channel, whatever the room."""
        return str(self.channel)


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


@contextlib.contextmanager
def _webs(stack: BenchStack, mode: str, names: list[str]) -> Iterator[list[Web]]:
    webs = [stack.start_web(name, SOCKETIO_MESSAGE_QUEUE=stack.redis.url,
                            SOCKETIO_SUBSCRIPTIONS=mode) for name in names]
    try:
        yield webs
    finally:
        for web in webs:
            web.proc.stop()
            stack.webs.remove(web)


def _publish(url: str, mode: str, jobs: list[str], rate: int, seconds: float) -> int:
    """Emit ``rate`` events/s round the rooms of ``jobs`` for ``seconds``; how many."""
    emitter = (OneChannel if mode == "all" else RoomQueueManager)(
        url, SOCKETIO_CHANNEL, write_only=True)
    rooms = [room_for(job) for job in jobs]
    per_slice = max(1, round(rate / 100))
    sent = 0
    start = time.perf_counter()
    while (now := time.perf_counter()) - start < seconds:
        due = int((now - start) * rate) + per_slice
        with emitter.batch():  # a slice's events in one round trip
            while sent < due:
                emitter.emit("updateProgress", dict(PAYLOAD, jobId=jobs[sent % len(jobs)]),
                             namespace="/", room=rooms[sent % len(rooms)])
                sent += 1
        time.sleep(max(0.0, start + sent / rate - time.perf_counter()))  # pacing
    return sent


def _window(stack: BenchStack, webs: list[Web], swarms: list[Swarm], mode: str,
            jobs: list[str], rate: int, seconds: float) -> dict:
    """Publish for ``seconds``; each web's CPU share and per-event CPU, each swarm's events."""
    procs = [web.worker_process() for web in webs]
    redis_proc = psutil.Process(stack.redis.pid)
    before = [_cpu(p) for p in procs]
    redis_before = _cpu(redis_proc)
    got_before = [s.call("counts")["events"] for s in swarms]
    started = time.perf_counter()
    sent = _publish(stack.redis.url, mode, jobs, rate, seconds)
    elapsed = time.perf_counter() - started
    settle(0.5)
    cpu = [_cpu(p) - b for p, b in zip(procs, before, strict=True)]
    delivered = [s.call("counts")["events"] - g for s, g in zip(swarms, got_before, strict=True)]
    return {"sent": sent, "rate": sent / elapsed, "seconds": elapsed,
            "share": [c / elapsed for c in cpu], "cpu": cpu, "delivered": delivered,
            "redis_us": 1e6 * (_cpu(redis_proc) - redis_before) / max(1, sent)}


def idle_process(stack: BenchStack, rate: int, seconds: float, log: Log) -> tuple[
        list[Row], dict[str, float]]:
    """(a): the CPU of a process with no client in the busy rooms, rooms against all."""
    rows = []
    per_event: dict[str, float] = {}
    for mode in ("rooms", "all"):
        with _webs(stack, mode, [f"web-{mode}-busy", f"web-{mode}-idle"]) as (busy, idle), \
                Swarm("127.0.0.1", busy.port) as on_busy, \
                Swarm("127.0.0.1", idle.port) as on_idle:
            jobs = stack.create_jobs(CLIENTS)
            on_busy.connect(CLIENTS, jobs)
            on_idle.connect(10, stack.create_jobs(10))  # clients, in quiet rooms
            settle(1.0)
            got = _window(stack, [busy, idle], [on_busy, on_idle], mode, jobs, rate, seconds)
            log(f"  15a {mode}: {got}")
        share = got["share"][1]
        per_event[mode] = 1e6 * got["cpu"][1] / max(1, got["sent"])
        rows.append(Row(
            "15", f"a web process with no client in the busy rooms, while "
                  f"{got['rate']:.0f} events/s go to another process's rooms "
                  f"(SOCKETIO_SUBSCRIPTIONS={mode})",
            f"{share:.1%} of a core ({per_event[mode]:.1f} µs per event flowing); the busy "
            f"process {got['share'][0]:.0%}, {got['delivered'][0]} of {got['sent']} delivered",
            "≤ 2% of a core" if mode == "rooms" else "",
            (share <= 0.02 and got["rate"] >= 0.9 * rate) if mode == "rooms" else None))
    return rows, per_event


def callback_cpu(stack: BenchStack, seconds: float, log: Log) -> list[Row]:
    """(b): a watched callback's CPU with the message queue (rooms, all) against without."""
    watched = stack.create_jobs(CLIENTS)
    results: dict[str, float] = {}
    with _webs(stack, "all", ["web-all-callbacks"]) as (web_all,):
        for label, web in (("site alone", stack.a), ("message queue, rooms", stack.b),
                           ("message queue, all", web_all)):
            with Swarm("127.0.0.1", web.port) as swarm:
                swarm.connect(CLIENTS, watched)
                settle(0.5)
                measured_load(web, "/api/progress", 1.0, 32, jobs=watched, tag="warm")
                got = measured_load(web, "/api/progress", seconds, 32, jobs=watched,
                                    tag="callback")
                log(f"  15b {label}: {got}")
                results[label] = got["cpu_us"]
    alone = results["site alone"]
    rows = []
    for label in ("message queue, rooms", "message queue, all"):
        ratio = results[label] / alone if alone else 0.0
        rows.append(Row("15", f"a watched callback's CPU ({label}) against the site alone",
                        f"{results[label]:.0f} µs against {alone:.0f} µs",
                        "≤ 1.2×" if label.endswith("rooms") else "",
                        ratio <= 1.2 if label.endswith("rooms") else None,
                        floor=f"site alone {alone:.0f} µs", ratio=f"{ratio:.2f}×"))
    return rows


def three_processes(stack: BenchStack, rate: int, seconds: float, foreign: dict[str, float],
                    log: Log) -> list[Row]:
    """(c): CPU per delivered event in each of three processes; the cluster model."""
    names = ["web-rooms-1", "web-rooms-2", "web-rooms-3"]
    with _webs(stack, "rooms", names) as webs, contextlib.ExitStack() as swarms_cm:
        swarms = [swarms_cm.enter_context(Swarm("127.0.0.1", web.port)) for web in webs]
        jobs: list[str] = []
        for swarm in swarms:
            own = stack.create_jobs(CLIENTS)
            swarm.connect(CLIENTS, own)
            jobs += own
        settle(1.0)
        interleaved = [jobs[i + CLIENTS * k] for i in range(CLIENTS) for k in range(3)]
        got = _window(stack, webs, swarms, "rooms", interleaved, rate, seconds)
        log(f"  15c: {got}")
    per = [1e6 * cpu / max(1, n) for cpu, n in zip(got["cpu"], got["delivered"], strict=True)]
    deliver = sum(per) / len(per)
    model = {n: cluster_rate(n, deliver, foreign["rooms"]) for n in (2, 4, 8, 16)}
    model_all = {n: cluster_rate(n, deliver, foreign["all"]) for n in (2, 4, 8, 16)}
    linear8 = 8 * 1e6 / deliver
    rows = [
        Row("15", f"three web processes, {got['rate']:.0f} events/s to their 300 rooms: CPU "
                  "per delivered event in each",
            ", ".join(f"{us:.0f} µs ({share:.0%} of a core, {n} delivered)"
                      for us, share, n in zip(per, got["share"], got["delivered"],
                                              strict=True))
            + f"; Redis {got['redis_us']:.1f} µs per event"),
        Row("15", "model: cluster events/s at 2 / 4 / 8 / 16 processes (a core each), "
                  "rooms against all",
            " / ".join(f"{model[n]:,.0f}" for n in model) + " against "
            + " / ".join(f"{model_all[n]:,.0f}" for n in model_all),
            "≥ 0.8× linear at 8", model[8] >= 0.8 * linear8,
            floor=f"linear at 8: {linear8:,.0f}/s",
            ratio=f"{model[8] / linear8:.2f}× linear at 8 (all: {model_all[8] / linear8:.2f}×)"),
    ]
    return rows


def cluster_rate(processes: int, deliver_us: float, foreign_us: float) -> float:
    """Events/s ``processes`` web processes (a core each) deliver, each event to a room on
    one of them: each delivers its share and pays ``foreign_us`` for every other one it
    receives (docs/scaling.md)."""
    return processes * 1e6 / (deliver_us + (processes - 1) * foreign_us)


def run(stack: BenchStack, rate: int, seconds: float, log: Log) -> list[Row]:
    """Section 15's rows."""
    rows, foreign = idle_process(stack, rate, seconds, log)
    rows += callback_cpu(stack, seconds, log)
    rows += three_processes(stack, rate, seconds, foreign, log)
    return rows
