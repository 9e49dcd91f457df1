"""A job's live log and "n of total": stored with the update, paged, pushed, replayed."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import socketio
from flask.testing import FlaskClient

from shared.joblog import LogFollower, id_key
from shared.protocol import LOG_START, RESULT_MAX_BYTES, new_id
from shared.store import JobStore
from tests.conftest import Stack
from tests.support import auth, wait_until


def new_job(client: FlaskClient) -> str:
    resp = client.post("/api/jobs")
    assert resp.status_code == 202
    return str(resp.get_json()["id"])


def report(client: FlaskClient, body: dict[str, Any]) -> Any:
    return client.post("/api/progress", json=body, headers=auth())


def log_page(client: FlaskClient, job_id: str, after: str = LOG_START, limit: int = 1000) -> Any:
    resp = client.get(f"/api/jobs/{job_id}/log?after={after}&limit={limit}")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()


# -- the follower: gapless and duplicate-free, whatever order batches come in ------------

def batch(after: str, *ids: str) -> dict[str, Any]:
    return {"after": after, "lines": [{"id": i, "text": f"line {i}"} for i in ids]}


def test_follower_takes_batches_in_order() -> None:
    f = LogFollower()
    f.feed(batch("0-0", "1-0", "1-1"))
    f.feed(batch("1-1", "2-0"))
    assert [line.id for line in f.lines] == ["1-0", "1-1", "2-0"]


def test_follower_holds_a_batch_that_came_early_and_drops_duplicates() -> None:
    f = LogFollower()
    assert f.feed(batch("1-1", "2-0")) == []  # live batch before the replay
    assert f.waiting
    f.feed(batch("0-0", "1-0", "1-1", "2-0"))  # the replay, which already has 2-0
    f.feed(batch("1-0", "1-1"))  # a late duplicate
    assert [line.id for line in f.lines] == ["1-0", "1-1", "2-0"]
    assert not f.waiting


# -- the callback: n of total, results, log lines ----------------------------------------

def test_current_and_total_give_progress(client: FlaskClient) -> None:
    job_id = new_job(client)
    resp = report(client, {"jobId": job_id, "state": "running", "current": 3, "total": 10})
    assert resp.status_code == 204
    state = client.get(f"/api/jobs/{job_id}").get_json()
    assert (state["progress"], state["current"], state["total"]) == (30, 3, 10)


@pytest.mark.parametrize("body", [
    {"current": 11, "total": 10},
    {"current": 3},
    {"current": -1, "total": 10},
    {"current": 1.5, "total": 10},
    {"current": True, "total": 10},
])
def test_bad_counts_are_400_and_change_nothing(client: FlaskClient, body: dict[str, Any]) -> None:
    job_id = new_job(client)
    resp = report(client, {"jobId": job_id, "state": "running", **body})
    assert resp.status_code == 400 and "error" in resp.get_json()
    assert client.get(f"/api/jobs/{job_id}").get_json()["state"] == "queued"


def test_progress_stays_monotonic_with_counts(client: FlaskClient) -> None:
    job_id = new_job(client)
    report(client, {"jobId": job_id, "state": "running", "current": 5, "total": 10})
    report(client, {"jobId": job_id, "state": "running", "current": 2, "total": 10})
    assert client.get(f"/api/jobs/{job_id}").get_json()["progress"] == 50


def test_result_is_stored_returned_and_final(client: FlaskClient) -> None:
    job_id = new_job(client)
    result = {"rows": 3, "names": ["<b>a</b>", "ü"], "nested": {"ok": None}}
    resp = report(client, {"jobId": job_id, "state": "succeeded", "result": result})
    assert resp.status_code == 204
    assert client.get(f"/api/jobs/{job_id}").get_json()["result"] == result


def test_result_over_64_kb_is_413_and_stores_nothing(client: FlaskClient) -> None:
    job_id = new_job(client)
    big = "x" * RESULT_MAX_BYTES
    resp = report(client, {"jobId": job_id, "state": "succeeded", "result": big})
    assert resp.status_code == 413 and "result" in resp.get_json()["error"]
    state = client.get(f"/api/jobs/{job_id}").get_json()
    assert state["state"] == "queued" and "result" not in state


def test_result_just_under_the_limit_is_taken(client: FlaskClient) -> None:
    job_id = new_job(client)
    result = "x" * (RESULT_MAX_BYTES - 2)  # the two quotes make it exactly the limit
    assert report(client, {"jobId": job_id, "state": "succeeded", "result": result}).status_code == 204


def test_result_goes_only_with_succeeded(client: FlaskClient) -> None:
    job_id = new_job(client)
    resp = report(client, {"jobId": job_id, "state": "running", "progress": 5, "result": 1})
    assert resp.status_code == 400


def test_log_lines_are_kept_in_order_and_paged(client: FlaskClient) -> None:
    job_id = new_job(client)
    for start in range(0, 30, 10):
        lines = [f"line {n}" for n in range(start, start + 10)]
        assert report(client, {"jobId": job_id, "state": "running", "progress": 1,
                               "log": lines}).status_code == 204
    first = log_page(client, job_id, limit=25)
    assert [x["text"] for x in first["lines"]] == [f"line {n}" for n in range(25)]
    assert first["more"] is True
    rest = log_page(client, job_id, after=first["next"])
    assert [x["text"] for x in rest["lines"]] == [f"line {n}" for n in range(25, 30)]
    assert rest["more"] is False
    ids = [x["id"] for x in first["lines"] + rest["lines"]]
    assert ids == sorted(ids, key=id_key) and len(set(ids)) == 30


def test_only_the_newest_lines_are_kept(app: Any, client: FlaskClient) -> None:
    app.extensions["jobcast.core"].lifecycle.store.log_max = 50
    job_id = new_job(client)
    for start in range(0, 120, 40):
        report(client, {"jobId": job_id, "state": "running", "progress": 1,
                        "log": [str(n) for n in range(start, start + 40)]})
    texts = [x["text"] for x in log_page(client, job_id)["lines"]]
    assert texts == [str(n) for n in range(70, 120)]


def test_long_lines_are_cut_to_2_kb_and_too_many_lines_are_400(client: FlaskClient) -> None:
    job_id = new_job(client)
    report(client, {"jobId": job_id, "state": "running", "progress": 1, "log": ["é" * 3000]})
    text = log_page(client, job_id)["lines"][0]["text"]
    assert len(text.encode()) <= 2048 and set(text) == {"é"}
    resp = report(client, {"jobId": job_id, "state": "running", "progress": 2,
                           "log": ["x"] * 101})
    assert resp.status_code == 400
    assert len(log_page(client, job_id)["lines"]) == 1


def test_a_dropped_update_appends_no_lines(client: FlaskClient) -> None:
    job_id = new_job(client)
    report(client, {"jobId": job_id, "state": "succeeded", "log": ["done"]})
    resp = report(client, {"jobId": job_id, "state": "running", "progress": 5, "log": ["late"]})
    assert resp.headers["X-Jobcast-Applied"] == "0"
    assert [x["text"] for x in log_page(client, job_id)["lines"]] == ["done"]


@pytest.mark.parametrize("query", ["after=abc", "after=1-x", "limit=0", "limit=1001", "limit=x"])
def test_bad_log_queries_are_400(client: FlaskClient, query: str) -> None:
    job_id = new_job(client)
    resp = client.get(f"/api/jobs/{job_id}/log?{query}")
    assert resp.status_code == 400 and "error" in resp.get_json()


def test_log_of_unknown_job_is_404(client: FlaskClient) -> None:
    assert client.get(f"/api/jobs/{new_id()}/log").status_code == 404
    assert client.get("/api/jobs/nope/log").status_code == 404


# -- on the real site: late joiners and reconnects see every line once, in order ------

class LogClient:
    """A python-socketio client following one job's log with a LogFollower."""

    def __init__(self, url: str, job_id: str) -> None:
        self.url, self.job_id = url, job_id
        self.follower = LogFollower()
        self.lock = threading.Lock()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("jobLog", self._on_log)

    def _on_log(self, payload: dict[str, Any]) -> None:
        with self.lock:
            self.follower.feed(payload)

    def connect(self) -> None:
        with self.lock:
            last = self.follower.last
        self.sio.connect(f"{self.url}?jobId={self.job_id}&lastLogId={last}",
                         transports=["websocket"], wait_timeout=10)

    def texts(self) -> list[str]:
        with self.lock:
            return [line.text for line in self.follower.lines]


def test_late_joiner_and_reconnecting_client_see_every_line_once(
        stack: Stack, tmp_path: Path) -> None:
    store = JobStore(redis.Redis.from_url(stack.env["REDIS_URL"], decode_responses=True))
    job_id = new_id()
    store.create(job_id, kind="external")
    total, per_batch = 3000, 10
    sent: list[str] = []
    session = requests.Session()

    early = LogClient(stack.url, job_id)
    early.connect()
    reconnecting = LogClient(stack.url, job_id)
    reconnecting.connect()

    def produce() -> None:
        for start in range(0, total, per_batch):
            lines = [f"line {n:05d}" for n in range(start, start + per_batch)]
            resp = session.post(stack.url + "/api/progress", headers=auth(), timeout=10, json={
                "jobId": job_id, "state": "running", "current": start + per_batch,
                "total": total, "log": lines})
            assert resp.status_code == 204, resp.text
            sent.extend(lines)

    producer = threading.Thread(target=produce)
    producer.start()
    wait_until(lambda: len(sent) >= total // 3, timeout=30, what="a third of the lines")
    reconnecting.sio.disconnect()
    wait_until(lambda: len(sent) >= total // 2, timeout=30, what="half of the lines")
    reconnecting.connect()  # catches up from the last line it had (fewer than JOB_LOG_MAX ago)
    wait_until(lambda: len(sent) >= 2 * total // 3, timeout=30, what="two thirds of the lines")
    sent_before_late = len(sent)
    late = LogClient(stack.url, job_id)
    late.connect()  # joins in the middle: replays the newest JOB_LOG_MAX lines, then live
    producer.join(timeout=60)
    assert not producer.is_alive() and len(sent) == total
    for name, who in (("early", early), ("reconnecting", reconnecting)):
        wait_until(lambda who=who: len(who.texts()) >= total, timeout=20,  # type: ignore[misc]
                   what=f"every line at the {name} client")
        assert who.texts() == sent, name
        assert not who.follower.waiting
    wait_until(lambda: late.texts()[-1:] == sent[-1:], timeout=20, what="the last line, late")
    texts = late.texts()
    start = total - len(texts)
    assert texts == sent[start:], "the late joiner's lines are one gapless run to the end"
    assert len(texts) >= 1000 and start <= sent_before_late
    for who in (early, late, reconnecting):
        who.sio.disconnect()
