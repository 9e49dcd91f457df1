"""Position upkeep (13): what keeping the places of queued jobs current costs.

One API client starts a batch of 10,000 demo jobs and no worker runs: one job
waits in RQ's queue, the rest in the client's fair-share held list. N Socket.IO
connections (``bench.swarm``) each watch one of them, spread along the list (so
the position ticker's ``LPOS`` walks it up to its end). The CPU of the web
process is measured over a window twice: with the N connections all watching one
finished job (the connections' own cost, and a ticker with nothing queued to
place), then watching the N queued jobs. The difference is the upkeep: the
ticker's read of the N jobs, the places' pipeline and the comparison, each second
(no place changes meanwhile, so nothing is sent after the first tick). It is given
per watched job and second, as a ratio to the CPU of one bare request. Redis'
own CPU over the second window is shown beside it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psutil
import requests

from bench.floors import Floors
from bench.report import Row
from bench.stack import BenchStack, settle
from bench.swarm import Swarm
from shared import keys
from shared.protocol import SUCCEEDED, new_id
from tests.support import TEST_OPS_TOKEN, wait_until

Log = Callable[[str], None]
TARGET = 1.0  # bare requests' CPU per watched job and second
NOTE = (
    "Position upkeep (13): a batch of demo jobs from one client, no worker running, so one "
    "waits in RQ's queue and the rest in the client's fair-share held list; N Socket.IO "
    "connections each watch one of them, spread along the list. The web process's CPU is "
    "measured over the window with the N connections watching one finished job, then "
    "watching the N queued jobs: the difference is the position ticker's work "
    "(website/realtime/positions.py: one read of the N jobs and one pipeline of their "
    "places a second, LPOS included). Redis' CPU in the second window is shown beside it.")


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _cpu_over(processes: list[psutil.Process], seconds: float) -> list[float]:
    """CPU seconds per second of each process over ``seconds``."""
    before = [_cpu(p) for p in processes]
    time.sleep(seconds)
    return [(_cpu(p) - b) / seconds for p, b in zip(processes, before, strict=True)]


def upkeep(stack: BenchStack, floors: Floors, queued: int, watchers: int, seconds: float,
           log: Log) -> list[Row]:
    """The row: the ticker's CPU per watched queued job and second."""
    web = stack.a
    assert stack.client is not None and stack.redis.proc is not None
    resp = requests.post(f"{web.url}/api/batches", timeout=300,
                         json={"kind": "demo", "items": [{"steps": 2}] * queued})
    resp.raise_for_status()
    batch_id = resp.json()["batchId"]
    ids = [str(i) for i in stack.client.zrange(keys.batch_index(batch_id), 0, -1)]
    step = max(1, len(ids) // watchers)
    watched = ids[::step][:watchers]
    finished = new_id()
    stack.store.create(finished, kind="bench")
    stack.store.finish(finished, SUCCEEDED, "done")
    processes = [web.worker_process(), psutil.Process(stack.redis.proc.pid)]
    with Swarm("127.0.0.1", web.port) as swarm:
        swarm.connect(watchers, [finished])
        settle(2.0)
        idle_web, _ = _cpu_over(processes, seconds)
        swarm.call("close")
        got = swarm.connect(watchers, watched)
        log(f"  {got.get('connected')} connections watch queued jobs")
        before = swarm.call("counts").get("events", 0)
        settle(2.5)  # the first ticks send every place once
        sent = swarm.call("counts").get("events", 0) - before
        busy_web, busy_redis = _cpu_over(processes, seconds)
    upkeep_s = max(0.0, busy_web - idle_web)
    per_job = upkeep_s / watchers
    ratio = per_job / floors.bare_cpu
    log(f"  web CPU {idle_web * 1000:.1f} → {busy_web * 1000:.1f} ms/s; Redis "
        f"{busy_redis * 1000:.1f} ms/s; {sent} events at the first ticks")
    _cancel(stack, batch_id)
    return [Row("13", f"position upkeep: {watchers} watched jobs among {queued} queued "
                      "(one client's batch, held by fair share)",
                f"{upkeep_s * 1000:.1f} ms CPU/s ({per_job * 1e6:.0f} µs per watched job "
                f"and second; Redis {busy_redis * 1000:.1f} ms/s)",
                f"≤ {TARGET:.0f} bare request per watched job and second", ratio <= TARGET,
                floor=f"bare request {floors.bare_cpu * 1e6:.0f} µs CPU",
                ratio=f"{ratio:.2f} bare requests",
                why="the ticker's read and places pipeline cost more per watched job than "
                    "answering a request: look at the LPOS of the held list and the "
                    "pipeline's parsing")]


def _cancel(stack: BenchStack, batch_id: str) -> None:
    """Cancel the batch (its bulk job needs a worker) so later sections find no queue."""
    web = stack.a
    requests.post(f"{web.url}/api/batches/{batch_id}/cancel", timeout=30,
                  headers={"Authorization": f"Bearer {TEST_OPS_TOKEN}"})
    with stack.worker("bench-position", env={"DEMO_STEP_DELAY": "0.01"}):
        wait_until(lambda: requests.get(f"{web.url}/api/batches/{batch_id}",
                                        timeout=10).json()["complete"],
                   timeout=300, interval=0.2, what="the batch to be cancelled")
