"""Callback → client latency under background load, measured two ways.

Both rows run the same scenario: one web process with 1000 clients connected,
``bench/loadgen.py`` POSTing callbacks open-loop to the jobs they watch, and
the latency probe's own callbacks on top. They differ in how the probes are
sent:

- one at a time, each 10 ms after the previous one's event arrived (closed
  loop): how the reference run of 2026-11-23 measured the row when its target
  was set and met. A probe is never sent while an earlier one is held up, so
  slow periods are sampled less often than quick ones;
- one due every 10 ms whatever became of the earlier ones (open loop, since
  2026-11-25), each timed from the moment it was due: slow periods are sampled
  as often as quick ones. The same target is stricter measured this way.

``python -m bench.reference`` runs the scenario the same two ways on the
reference run's code and on today's, on one machine, alternating.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TypeVar

from bench.floors import REFERENCE_CAPACITY, Floors, LatencyTarget
from bench.probe import LatencyProbe
from bench.report import NOISE, Row, ms, p50_p99, percentile
from bench.stack import Web, start_loadgen

REFERENCE_LOAD = 1000  # callbacks/s of the loaded rows on the reference machine
LOADED = LatencyTarget(p99_ms=25)
PROBE_INTERVAL = 0.01  # 100 probes a second (open loop), or 10 ms between (closed loop)
WARM_UP = 1.0  # seconds of load before the probes start

WHY = ("at that rate one web process is busy most of the time (see the CPU per callback in "
       "2) and a probe waits behind the callbacks and pushes queued before it in the single "
       "event loop; the load generator, the 1000 clients and the probe share the other "
       "core. The tail shrinks with more cores, with gevent (less CPU per callback) or by "
       "spreading the load over several web processes on the message queue. The same code "
       "met this target measured as the reference run measured it (the closed-loop row); "
       "the reference run's own code, measured this open-loop way beside today's on one "
       "machine, had a p99 several times today's (docs/scaling.md, \"The loaded row and "
       "the reference run's code\"). " + NOISE)

NOTE = (
    "Latency under load (1): `bench/loadgen.py` POSTs callbacks open-loop over 32 keep-alive "
    "connections to the jobs the 1000 clients watch, so each one is applied and pushed to a "
    "client, at 1000/s scaled by the run's bare capacity against the reference run's (3,124 "
    "req/s per core on 2026-11-23, where 1000/s was set): the same share of the machine on a "
    "slower or faster one (before 2026-11-25 it was 1000/s on every machine). The scenario "
    "runs twice, with the probe's callbacks sent two ways. Closed loop, as the reference run "
    f"measured the row when its target was set: one probe at a time, {PROBE_INTERVAL * 1000:.0f}"
    " ms after the previous one's event arrived, each timed from just before it was written; "
    "a probe is never sent while an earlier one is held up, so slow periods are sampled less "
    f"often than quick ones. Open loop: one probe due every {PROBE_INTERVAL * 1000:.0f} ms "
    "whatever happened to the earlier ones (sent on as many keep-alive connections as are "
    "needed), each timed from the moment it was due, so slow periods are sampled as often as "
    "quick ones and a probe held up counts its wait; a probe that never arrives counts as "
    "lost and fails the target. `python -m bench.reference` runs both ways on the reference "
    "run's code (commit c1da4b8, its own virtualenv) and today's, beside each other on one "
    "machine, alternating.")

Log = Callable[[str], None]
T = TypeVar("T")


def asked_rate(floors: Floors) -> int:
    """The background load: 1000/s on the reference machine, scaled to this one."""
    return round(REFERENCE_LOAD * floors.capacity / REFERENCE_CAPACITY)


def closed_loop(probe: LatencyProbe, seconds: float) -> list[float]:
    """Probes one at a time for ``seconds``, each ``PROBE_INTERVAL`` after the last arrived."""
    samples = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        samples.append(probe.sample())
        time.sleep(PROBE_INTERVAL)
    return samples


def loaded(web: Web, probe: LatencyProbe, watched: list[str], floors: Floors,
           local: Floors, seconds: float, log: Log) -> list[Row]:
    """The two loaded rows (see the module): closed-loop probes, then open-loop ones.

    ``floors`` sets the load; ``local`` (the floor interleaved with the last quiet
    row's probes) is what the rows' ratios are to.
    """
    asked = asked_rate(floors)
    clients = len(watched) + 1
    load_text = (f"{clients} clients connected, under {{rate:.0f}} callbacks/s background "
                 f"load (asked {asked}/s: 1000/s on the reference machine × this run's bare "
                 f"capacity {floors.capacity:.0f}/{REFERENCE_CAPACITY:.0f} req/s per core)")
    target = LOADED.text(local) + " at 1000/s there"
    floor = local.latency_floor() + " (interleaved, last quiet row)"
    rows = []

    log(f"  under {asked}/s: probes one at a time (closed loop)")
    samples, load = under_load(web, watched, asked, seconds,
                                lambda: closed_loop(probe, seconds))
    rows.append(Row(
        "1", f"callback → client latency, {load_text.format(rate=load['rate'])}, probes one "
        f"at a time, {PROBE_INTERVAL * 1000:.0f} ms after the previous one arrived (closed "
        "loop, as the reference run measured this row)",
        p50_p99(samples), target,
        LOADED.met(local, samples) and load["rate"] >= 0.95 * asked,
        floor=floor, ratio=local.latency_ratio(samples), why=WHY))

    log(f"  under {asked}/s: probes due every {PROBE_INTERVAL * 1000:.0f} ms (open loop)")
    got, load = under_load(web, watched, asked, seconds,
                            lambda: probe.open_loop(seconds, PROBE_INTERVAL))
    samples = got.latencies
    lost = f"; {got.lost} of {got.scheduled} lost" if got.lost else ""
    rows.append(Row(
        "1", f"callback → client latency, {load_text.format(rate=load['rate'])}, probes sent "
        f"open-loop every {PROBE_INTERVAL * 1000:.0f} ms",
        f"{p50_p99(samples)}{lost}; probes written p99 {ms(percentile(got.send_lag, 99))} "
        f"after they were due, over {got.connections} connections", target,
        LOADED.met(local, samples) and load["rate"] >= 0.95 * asked and not got.lost,
        floor=floor, ratio=local.latency_ratio(samples), why=WHY))
    return rows


def under_load(web: Web, watched: list[str], rate: int, seconds: float,
                probes: Callable[[], T]) -> tuple[T, dict]:
    """Run ``probes`` while the load generator sends ``rate`` callbacks/s to ``watched``."""
    duration = seconds + WARM_UP + 1.0
    loadgen = start_loadgen(web, "/api/progress", duration, 32, float(rate), watched,
                            tag="bg")
    try:
        time.sleep(WARM_UP)
        samples = probes()
    finally:
        out, _ = loadgen.communicate(timeout=duration + 60)
    return samples, json.loads(out)
