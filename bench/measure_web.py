"""Measurements of the web process: latency, fan-out, throughput, connections,
Redis commands per callback."""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import statistics
import time
from collections.abc import Callable

from bench import measure_loaded
from bench.commands import count_commands
from bench.floors import Floors, LatencyTarget
from bench.probe import LatencyProbe
from bench.report import NOISE, Row, ms, p50_p99
from bench.stack import BenchStack, measured_load, settle
from bench.swarm import Swarm
from bench.webapp import BARE_PATH
from shared.config import Config
from tests.support import TEST_PROGRESS_TOKEN
from worker.boundary import make_reporter

Log = Callable[[str], None]

QUIET_WHY = (
    "one callback at a time is a chain of hops between processes (the HTTP request, the "
    "Redis round trip, the websocket frame to the client), each paid at the speed of a "
    "process woken from idle: 1.9-2.4× the bare HTTP round trip measured beside it in every "
    "run so far (see the ratio). The target is that of the reference machine as a multiple "
    "of its round trip, which was inferred from this same row (see how the figures are "
    "measured): a miss means this row took more round trips than it used to. " + NOISE)
THROUGHPUT_WHY = (
    "the bare endpoint is a Flask view that returns 204 at once: it measures the HTTP "
    "server, Flask and the site's app-wide layers alone (about 400 µs of CPU per request "
    "on the shared 2-core machine, through the same `/api/` hooks as the callback). A "
    "callback adds, by a profile of the eventlet worker (docs/scaling.md, \"Where a "
    "callback's CPU goes\"): one Redis round trip for the Lua update (about 200 µs: "
    "redis-py's layers and its pre-command connection check, the send and receive system calls, "
    "the green thread's wait), the "
    "Socket.IO push to the watching client (about 55 µs: packet encoding, engine.io's "
    "writer, a websocket frame; with the message queue a PUBLISH per event and, in every "
    "web process, receiving and re-emitting it), reading and checking the report (about "
    "60 µs: body, JSON, validation, token) and metrics, headers and event payloads (about "
    "40 µs): about 2× the bare endpoint's CPU, with no single hot spot; three loopback "
    "sends (answer, Redis, websocket) against bare's one are a large share. 0.85× would "
    "leave under 70 µs for all of it. The ways to more callbacks per second are more web "
    "processes on the message queue, gevent, or `WORKER_EMIT=direct`, which takes the "
    "callback off the web processes entirely.")


def redis_commands(stack: BenchStack, count: int) -> list[Row]:
    """Redis commands per applied callback: site alone, with the queue, direct emit.

    Counted with MONITOR, by the connections of the process that sends them (the
    web process's gunicorn worker, or this process for the direct reporter).
    """
    rows = []
    direct_cfg = Config(environ=stack.b.env, WORKER_EMIT="direct")
    direct = make_reporter(direct_cfg)
    here = os.getpid()
    cases: list[tuple[str, int, Callable[[str, str], object]]] = [
        ("callback, site alone", stack.a.worker_process().pid,
         lambda job, msg: stack.a.post_progress(job, msg)),
        ("callback, with message queue", stack.b.worker_process().pid,
         lambda job, msg: stack.b.post_progress(job, msg)),
        ("worker emitting direct (WORKER_EMIT=direct)", here,
         lambda job, msg: direct.report(job, 50, message=msg)),
    ]
    for label, pid, send in cases:
        job = stack.create_jobs(1)[0]
        send(job, "warm-up")

        def work(send: Callable[[str, str], object] = send, job: str = job) -> None:
            for i in range(count):
                send(job, f"commands {i}")

        got = count_commands(stack.redis.url, stack.redis.port, pid, work)
        sent = sum(got.sent.values()) / count
        breakdown = ", ".join(f"{k} {v / count:.2f}" for k, v in sorted(got.sent.items()))
        inside = ", ".join(f"{k} {v / count:.2f}" for k, v in sorted(got.scripted.items()))
        rows.append(Row("6", f"Redis commands per {label}",
                        f"{sent:.2f} sent ({breakdown or 'none'}); inside the Lua script: "
                        f"{inside or 'none'}; other clients meanwhile: {got.others}",
                        "≤ 3 sent", sent <= 3))
    return rows


QUIET = LatencyTarget(p50_ms=2, p99_ms=5, hops=True)
FAN_OUT = LatencyTarget(p50_ms=100, label="median")


def latency(stack: BenchStack, swarm: Swarm, floors: Floors, counts: list[int], probes: int,
            background: float, log: Log) -> tuple[list[Row], list[str], Floors]:
    """Callback → client latency with 1, 100, 1000 clients, then under load."""
    web = stack.a
    rows = []
    probe = LatencyProbe(web.url, web.port, stack.create_jobs(1)[0])
    watched = stack.create_jobs(max(counts))
    connected = 1
    local = floors
    try:
        for count in counts:
            if count > connected:
                res = swarm.connect(count - connected, watched[connected - 1:count - 1])
                connected += res["connected"]
                log(f"  {connected} clients connected ({res})")
            settle(0.5)
            samples, beside = probe.paired(probes, floor_path=BARE_PATH)
            local = dataclasses.replace(floors, http=beside)  # the floor of the same seconds
            who = "1 client" if connected == 1 else f"{connected} clients"
            rows.append(Row("1", f"callback → client latency, {who} connected, no other load",
                            p50_p99(samples), QUIET.text(local), QUIET.met(local, samples),
                            why=QUIET_WHY, floor=local.latency_floor() + " (interleaved)",
                            ratio=local.latency_ratio(samples)))
        # The same share of the machine under load, probed two ways (bench/measure_loaded.py).
        rows += measure_loaded.loaded(web, probe, watched[:connected - 1] or watched, floors,
                                      local, background, log)
    finally:
        probe.close()
    notes = [
        "Latency (1): a python-socketio client (websocket transport) watches one job; the "
        "bench POSTs a callback for that job on a keep-alive connection and measures from "
        "just before the request is written until the client's thread has the event; with "
        "no other load one probe at a time (the next 5 ms after the previous one arrived), "
        "each preceded by a bare HTTP round trip (`POST /api/bench/bare`, its own keep-alive "
        "connection, 5 ms before): these rows' ratios are to that floor, measured in the "
        "same seconds as the probes (the floor of section 0, taken minutes earlier, drifts "
        "by up to 2× on a shared virtual machine: a bare round trip is either about 0.5 ms "
        "or about 1.3 ms here for minutes at a time); the loaded rows and the fan-out row "
        "show their ratios to the floor interleaved with the last quiet row's probes. "
        "Other clients are raw websocket Socket.IO clients (`bench/wsclient.py`) in a "
        "separate process, each watching its own job.",
        measure_loaded.NOTE,
    ]
    return rows, notes, local


def fan_out(stack: BenchStack, swarm: Swarm, floors: Floors, subscribers: int, events: int,
            log: Log) -> list[Row]:
    """Time for one event to reach every subscriber of one room."""
    web = stack.a
    job = stack.create_jobs(1)[0]
    res = swarm.connect(subscribers, [job])
    log(f"  {res['connected']} subscribers of one room ({res})")
    settle(1.0)
    swarm.call("take")
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=10)
    headers = {"Authorization": f"Bearer {TEST_PROGRESS_TOKEN}",
               "Content-Type": "application/json"}
    starts: dict[str, float] = {}
    arrivals: dict[str, list[float]] = {}
    for i in range(events):
        message = f"probe fan-out {i}"
        body = json.dumps({"jobId": job, "progress": 50, "state": "running",
                           "message": message})
        starts[message] = time.perf_counter()
        conn.request("POST", "/api/progress", body=body, headers=headers)
        conn.getresponse().read()
        time.sleep(0.3)
        for msg, stamps in swarm.call("take").items():
            arrivals.setdefault(msg, []).extend(stamps)
    settle(1.0)
    for msg, stamps in swarm.call("take").items():
        arrivals.setdefault(msg, []).extend(stamps)
    conn.close()
    last, half, complete = [], [], 0
    for msg, start in starts.items():
        stamps = sorted(arrivals.get(msg, []))
        if len(stamps) >= res["connected"]:
            complete += 1
        if stamps:
            last.append(stamps[-1] - start)
            half.append(stamps[len(stamps) // 2] - start)
    met = complete == events and FAN_OUT.met(floors, last)
    return [Row("1", f"one event to {res['connected']} subscribers of one room: time until "
                "the last has it", f"{p50_p99(last)}; half had it after "
                f"{ms(statistics.median(half)) if half else '-'}; {complete}/{events} "
                "events reached everyone", FAN_OUT.text(floors), met,
                floor=floors.latency_floor() + " (interleaved, from the latency rows)",
                ratio=floors.latency_ratio(last), why=(
                    "one process encodes the event once but writes 1000 websocket frames "
                    "one after the other; the 1000 receiving clients run in one process on "
                    "the same machine. " + NOISE))]


def throughput(stack: BenchStack, duration: float, concurrency: int, watchers: int,
               log: Log) -> tuple[list[Row], list[str]]:
    """Callbacks/s accepted and fanned out, against the bare endpoint, per web process."""
    rows = []
    watched = stack.create_jobs(watchers)
    unwatched = stack.create_jobs(watchers)
    for web, label, target in ((stack.a, "eventlet, site alone", 0.85),
                               (stack.b, "eventlet, Redis message queue", 0.45),
                               (stack.g, "gevent, site alone", 0.85)):
        with Swarm("127.0.0.1", web.port) as swarm:
            swarm.connect(watchers, watched)
            settle(0.5)
            results = {}
            for kind, path, jobs in (("bare", BARE_PATH, watched),
                                     ("callback", "/api/progress", watched),
                                     ("unwatched", "/api/progress", unwatched)):
                events_before = swarm.call("counts")["events"]
                result = measured_load(web, path, duration, concurrency, jobs=jobs, tag=kind)
                settle(0.5)
                result["delivered"] = swarm.call("counts")["events"] - events_before
                results[kind] = result
                log(f"  {web.name} {kind}: {result}")
        bare, cb, quiet = results["bare"], results["callback"], results["unwatched"]
        # Capacity ratio from CPU time per request: robust when the shared machine
        # keeps the server from being saturated; the measured rates are shown too.
        ratio = bare["cpu_us"] / cb["cpu_us"] if cb["cpu_us"] else 0.0
        rate_ratio = cb["rate"] / bare["rate"] if bare["rate"] else 0.0
        ok_statuses = all(r["statuses"].get("204", 0) == r["requests"] for r in (cb, quiet))
        errors = "" if ok_statuses else f"; ERRORS {cb['statuses']} {quiet['statuses']}"
        rows.append(Row("2", f"bare Flask endpoint ({label})",
                        f"{bare['rate']:.0f} req/s at {bare['server_cpu']:.0%} server CPU; "
                        f"{bare['cpu_us']:.0f} µs CPU per request",
                        ratio="the floor of the next row"))
        rows.append(Row(
            "2", f"callbacks accepted and pushed to a client ({label})",
            f"{1e6 / cb['cpu_us']:.0f}/s per core ({cb['cpu_us']:.0f} µs CPU per request); "
            f"measured {cb['rate']:.0f}/s at {cb['server_cpu']:.0%} server CPU; "
            f"{cb['delivered']} of {cb['requests']} pushed{errors}; nobody watching: "
            f"{quiet['cpu_us']:.0f} µs", f"≥ {target}× bare",
            ratio >= target and ok_statuses, why=THROUGHPUT_WHY,
            floor=f"bare {1e6 / bare['cpu_us']:.0f} req/s per core, {bare['rate']:.0f} "
                  "measured",
            ratio=f"{ratio:.2f}× by CPU per request; {rate_ratio:.2f}× measured rate"))
    notes = [
        f"Throughput (2): `bench/loadgen.py` (raw asyncio HTTP/1.1, keep-alive) runs "
        f"closed-loop with {concurrency} connections for {duration:.0f} s against "
        "`POST /api/bench/bare` (a Flask view answering 204 at once, added to the same app by "
        "`bench/webapp.py`), then against `POST /api/progress` for jobs watched by "
        f"{watchers} connected clients (each callback carries a new message, so it is "
        "applied and pushed), then for jobs nobody watches. Server CPU is the gunicorn "
        "worker's CPU time over the run: near 100% means the server, not the load "
        "generator, was the limit; µs per request is that CPU time over the requests. The "
        "ratio is bare's CPU per request over the callback's (the rate ratio a saturated "
        "server would show); the measured rate ratio is given beside it.",
    ]
    return rows, notes


def idle_connections(stack: BenchStack, floors: Floors, count: int, hold: float,
                     log: Log) -> tuple[list[Row], list[str]]:
    """How many idle Socket.IO connections one web process holds, and their memory."""
    web = stack.start_web("web-idle")  # fresh: no memory left over from other runs
    job, watched = stack.create_jobs(2)
    with Swarm("127.0.0.1", web.port) as swarm:
        swarm.connect(10)  # warm up: first connections load code and fill caches
        web.post_progress(job, "warm-up")
        swarm.call("close")
        settle(1.0)
        base = web.rss()
        # Each watches a job that gets no events, as an open job page does: a connection
        # in no room is closed after SOCKETIO_IDLE_JOIN_SECONDS (and may hold only part
        # of the cap, SOCKETIO_WATCHER_SHARE).
        res = swarm.connect(count, [watched], concurrency=200)
        log(f"  idle: {res}; holding them {hold:.0f} s")
        settle(3.0 + hold)  # past a ping interval (25 s) the pongs have been exchanged
        rss = web.rss()
        held = swarm.call("counts")["open"]
        timings = []
        for i in range(20):
            start = time.perf_counter()
            status = web.post_progress(job, f"while full {i}")
            timings.append(time.perf_counter() - start)
            assert status == 204, status
    web.proc.stop()
    per = (rss - base) / max(1, res["connected"])
    rows = [
        Row("3", "idle Socket.IO connections one web process holds",
            f"{held} held ({res['connected']} opened in {res['seconds']:.0f} s, "
            f"{res['refused']} refused, {res['failed']} failed); /api/progress meanwhile "
            f"{p50_p99(timings)} (a new connection each)", "≥ 10,000",
            held >= 10000 if count >= 10000 else None,
            why="see the refused/failed counts and the web process's log in var/bench-logs",
            floor=floors.latency_floor(), ratio=floors.latency_ratio(timings)),
        Row("3", "memory per idle connection (web worker RSS delta / connections)",
            f"{per / 1024:.0f} KB (RSS {base / 2**20:.0f} → {rss / 2**20:.0f} MiB)",
            "≤ 80 KB", per <= 80 * 1024,
            why="Engine.IO and Socket.IO session state, a green thread and socket buffers "
                "per connection"),
    ]
    notes = [
        f"Connections (3): one process of raw websocket Socket.IO clients opens {count} "
        f"connections (200 at a time, each watching one job that gets no events, `?jobId=`) "
        "to a fresh eventlet web process (`WORKER_CONNECTIONS="
        "11000`, `SOCKETIO_MAX_CONNECTIONS=10500`) and keeps them open, answering pings, for "
        f"{hold + 3:.0f} s; "
        "memory is the gunicorn worker's RSS before and after (psutil), and 20 callbacks "
        "are timed while the connections are held.",
    ]
    return rows, notes
