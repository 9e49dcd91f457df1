"""Worker throughput: trivial jobs per second (fork vs simple; forking without
preloading through ``bench.coldworker``) and highlight jobs against calling
Pygments directly."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import redis
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry

from bench.floors import REFERENCE_CAPACITY, Floors
from bench.report import Row
from bench.stack import ROOT_DIR, BenchStack
from shared.kinds.highlight import highlight
from shared.kinds.highlight.snippets import HIGHLIGHT_KIND, SnippetStore
from shared.protocol import RUN_KIND_JOB, new_id
from shared.rqconf import SERIALIZER, rq_queue
from shared.signing import sign_job_token
from tests.support import TEST_SECRET_KEY, wait_until

Log = Callable[[str], None]

FORK_WHY = (
    "RQ's forking Worker spends about 9 ms per job beyond the job itself: the fork "
    "(about 1.5 ms for this process), the work horse opening its own Redis connection, "
    "and RQ's bookkeeping split between parent and horse. Preloading matters for job "
    "modules that import heavy code the parent has not loaded (Pygments' lexers and "
    "formatter: about 40 ms a job); the trivial job's module is light and the parent "
    "already holds `requests` and the reporting code, so preload on and off are close "
    "here. `WORKER_CLASS=simple` runs jobs in the worker process, about 3× as many a "
    "second; keep `fork` where a job must not be able to harm the worker.")


def highlight_why(overhead_ms: float, pygments_ms: float, size_kb: float) -> str:
    """Why a highlight job falls short of Pygments alone, and from what size it would not."""
    needed = 7 / 3 * overhead_ms / pygments_ms * size_kb  # P / (P + O) >= 0.7
    return (f"each job carries a fixed {overhead_ms:.1f} ms on top of Pygments' "
            f"{pygments_ms:.1f} ms for a {size_kb:.1f} KB module: RQ's bookkeeping (see the "
            "trivial rows), two progress reports (through the site, or about 0.3 ms each "
            "with `WORKER_EMIT=direct`), reading the snippet and storing the HTML. Pygments' "
            "time grows with the snippet, the overhead does not: at this overhead the ratio "
            f"passes 70% for snippets of about {needed:.0f} KB and more.")
NOOP_JOB = "bench.jobs.noop_job"
TRIVIAL_TARGET = 300  # jobs/s on the reference machine
LANGUAGE = "python"


def snippets() -> list[str]:
    """Real code to highlight: this project's own Python modules (1-10 KB each)."""
    files = sorted(p for d in ("shared", "website", "worker") for p in (ROOT_DIR / d).glob("*.py"))
    return [p.read_text() for p in files if p.stat().st_size > 500]


def run_jobs(stack: BenchStack, name: str, function: str, kwargs: list[dict],
             worker_class: str, preload: bool, ids: list[str] | None = None,
             **env: str) -> dict:
    """Queue the jobs first, then let one worker process run them all.

    The rate is the number of jobs over the time from the first job's start to
    the last one's end, both as RQ recorded them (worker start-up excluded).
    """
    conn = redis.Redis.from_url(stack.redis.url)
    queue = rq_queue(f"bench-{name}", conn)
    ids = ids or [new_id() for _ in kwargs]
    queue.enqueue_many([
        Queue.prepare_data(function, args=(job_id,),
                           kwargs=dict(kw, token=sign_job_token(TEST_SECRET_KEY, job_id)),
                           job_id=job_id, result_ttl=3600, timeout=120)
        for job_id, kw in zip(ids, kwargs, strict=True)])
    env.update(QUEUE_NAME=queue.name, WORKER_CLASS=worker_class)
    # The product's worker always preloads; bench.coldworker is the same worker without it.
    with stack.worker(f"bench-{name}", env=env,
                      module="worker" if preload else "bench.coldworker"):
        wait_until(lambda: FinishedJobRegistry(queue=queue).count
                   + FailedJobRegistry(queue=queue).count >= len(ids),
                   timeout=300, interval=0.1, what=f"{name} jobs to finish")
    jobs = [j for j in Job.fetch_many(ids, connection=conn, serializer=SERIALIZER)
            if j is not None]
    failed = FailedJobRegistry(queue=queue).count
    starts = [j.started_at for j in jobs if j.started_at]
    ends = [j.ended_at for j in jobs if j.ended_at]
    seconds = (max(ends) - min(starts)).total_seconds()
    conn.close()
    return {"jobs": len(ids), "failed": failed, "seconds": seconds,
            "rate": len(ids) / seconds if seconds > 0 else 0.0}


def trivial_jobs(stack: BenchStack, floors: Floors, counts: dict[str, int],
                 log: Log) -> list[Row]:
    """Jobs that do nothing, per worker class, and forking without preloading (ratio to
    the bare endpoint's capacity)."""
    rows = []
    target = TRIVIAL_TARGET / REFERENCE_CAPACITY
    cases = (("simple", "simple", True, "SimpleWorker (no fork)"),
             ("fork-preload", "fork", True, "forking Worker, job modules preloaded"),
             ("fork-no-preload", "fork", False,
              "forking Worker, job modules not preloaded (bench.coldworker)"))
    for name, worker_class, preload, label in cases:
        result = run_jobs(stack, name, NOOP_JOB, [{}] * counts[worker_class + (
            "" if preload else "-cold")], worker_class, preload)
        log(f"  trivial {name}: {result}")
        ratio = result["rate"] / floors.capacity
        rows.append(Row("4", f"trivial jobs per second, one worker process: {label}",
                        f"{result['rate']:.0f} jobs/s ({result['jobs']} jobs, "
                        f"{result['failed']} failed)",
                        f"≥ {target:.3f}× bare ({TRIVIAL_TARGET} jobs/s)",
                        ratio >= target and not result["failed"], why=FORK_WHY,
                        floor=floors.rate_floor(), ratio=f"{ratio:.3f}× bare"))
    return rows


def highlight_jobs(stack: BenchStack, count: int, log: Log) -> tuple[list[Row], list[str]]:
    """The site's highlight job through a worker vs Pygments called directly."""
    sources = snippets()
    work = [sources[i % len(sources)] for i in range(count)]
    for source in sources:  # load the lexer and formatter code once, as a worker would
        highlight(source, LANGUAGE)
    start = time.perf_counter()
    for source in work:
        highlight(source, LANGUAGE)
    direct = count / (time.perf_counter() - start)
    assert stack.client is not None
    store = SnippetStore(stack.client)
    rows = []
    size = sum(len(s) for s in sources) / len(sources) / 1024
    queue_url = stack.b.env["SOCKETIO_MESSAGE_QUEUE"]
    for worker_class, emit, label in (
            ("simple", "http", "SimpleWorker, HTTP callback"),
            ("fork", "http", "forking Worker, HTTP callback"),
            ("simple", "direct", "SimpleWorker, WORKER_EMIT=direct")):
        ids, kwargs = [], []
        for source in work:  # what the site's start_highlight stores
            job_id = new_id()
            snippet = store.create(source, LANGUAGE, job_id)
            stack.store.create(job_id, kind=HIGHLIGHT_KIND,
                               args=json.dumps({"snippet": snippet.snippet_id}))
            ids.append(job_id)
            kwargs.append({"kind_name": HIGHLIGHT_KIND,
                           "kind_args": {"snippet": snippet.snippet_id}})
        result = run_jobs(stack, f"highlight-{worker_class}-{emit}", RUN_KIND_JOB, kwargs,
                          worker_class, preload=True, ids=ids, WORKER_EMIT=emit,
                          SOCKETIO_MESSAGE_QUEUE=queue_url)
        log(f"  highlight {worker_class} {emit}: {result} (direct {direct:.0f}/s)")
        ratio = result["rate"] / direct
        overhead = 1000 * (1 / result["rate"] - 1 / direct) if result["rate"] else 0.0
        rows.append(Row("4", f"highlight jobs per second, one worker process ({label}), "
                        "vs Pygments called directly",
                        f"{result['rate']:.0f} jobs/s; {overhead:.1f} ms per job on top of "
                        f"Pygments' {1000 / direct:.1f} ms ({result['failed']} failed)",
                        "≥ 0.70× direct", ratio >= 0.7 and not result["failed"],
                        why=highlight_why(overhead, 1000 / direct, size),
                        floor=f"Pygments direct {direct:.0f}/s",
                        ratio=f"{ratio:.2f}× direct ({ratio:.0%})"))
    notes = [
        "Workers (4): the jobs are queued first, then one worker process is started; the "
        "rate is jobs over the time from the first job's start to the last one's end as RQ "
        "recorded them, so start-up is excluded. Trivial job: `bench.jobs.noop_job`. "
        "Highlight job: the highlight kind (`shared/kinds/highlight`, run by "
        "`worker.runner.run_kind`) on snippets stored "
        "as the site stores them (it reports `running`, reads the snippet, highlights it "
        "with Pygments, stores the HTML, reports `succeeded`); the sources are this "
        f"project's own {len(sources)} Python modules (mean {size:.1f} KB), language "
        "`python`. \"Direct\" calls `shared.kinds.highlight.highlight` on the same sources in a "
        "loop in one process.",
    ]
    return rows, notes
