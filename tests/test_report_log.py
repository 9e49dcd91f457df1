"""``python -m worker.report``: log lines, "n of total" and results from the shell."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import redis
import requests

from shared.protocol import new_id
from shared.store import JobStore
from tests.conftest import Stack
from worker.report import batches

ROOT = Path(__file__).resolve().parent.parent


def test_batches_by_size() -> None:
    stream = io.StringIO("".join(f"{n}\n" for n in range(250)))
    sizes = [len(batch) for batch in batches(stream)]
    assert sizes == [100, 100, 50]


class GatedStream:
    """Lines that arrive when let through: (event to wait for or None, text)."""

    def __init__(self, lines: list[tuple[threading.Event | None, str]]) -> None:
        self.lines = lines
        self.sent_at: list[float] = []

    def __iter__(self) -> Iterator[str]:
        for gate, text in self.lines:
            if gate is not None:
                gate.wait(timeout=10)  # a batching that never flushes by time: sent anyway
            self.sent_at.append(time.monotonic())
            yield text + "\n"


def test_batches_by_time_flush_a_waiting_line_before_the_next_arrives() -> None:
    first_batch_seen = threading.Event()
    stream = GatedStream([(None, "first"), (None, "second"), (first_batch_seen, "late")])
    got: list[tuple[float, list[str]]] = []
    for batch in batches(stream, wait=0.1):  # type: ignore[arg-type]
        got.append((time.monotonic(), batch))
        first_batch_seen.set()  # only now is "late" written
    assert [b for _, b in got] == [["first", "second"], ["late"]]
    assert got[0][0] < stream.sent_at[2]  # sent before "late" was even written


def cli(stack: Stack, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**stack.env, "REPORT_RETRY_SECONDS": "2"}
    return subprocess.run([sys.executable, "-m", "worker.report", *args], env=env, cwd=ROOT,
                          input=stdin, capture_output=True, text=True, timeout=60)


def test_cli_sends_log_lines_counts_and_a_result(stack: Stack) -> None:
    job_id = new_id()
    JobStore(redis.Redis.from_url(stack.env["REDIS_URL"], decode_responses=True)).create(
        job_id, kind="external")
    piped = "".join(f"build step {n}\n" for n in range(250))
    run = cli(stack, job_id, "--current", "1", "--total", "4", "--log-stdin", "--log", "half",
              stdin=piped)
    assert run.returncode == 0, run.stderr
    state = stack.job_state(job_id)
    assert (state["progress"], state["current"], state["total"]) == (25, 1, 4)
    run = cli(stack, job_id, "--state", "succeeded", "--result", '{"artifacts": 3}')
    assert run.returncode == 0, run.stderr
    assert stack.job_state(job_id)["result"] == {"artifacts": 3}
    lines = requests.get(f"{stack.url}/api/jobs/{job_id}/log", timeout=5).json()["lines"]
    assert [x["text"] for x in lines] == [f"build step {n}" for n in range(250)] + ["half"]


def test_cli_refuses_half_counts_and_bad_json(stack: Stack) -> None:
    job_id = new_id()
    assert cli(stack, job_id, "--current", "3").returncode == 2
    assert cli(stack, job_id, "--current", "5", "--total", "3").returncode == 2
    assert cli(stack, job_id, "--result", "{nope").returncode == 2


