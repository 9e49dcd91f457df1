"""Job kinds in a real Chromium: the generated forms, the live console, the CSV import."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from playwright.sync_api import Page, expect

from shared.protocol import ProgressUpdate, new_id
from shared.store import JobStore
from tests.conftest import Stack, start_stack, stop_stack
from tests.support import TEST_PROGRESS_TOKEN, auth, start_web, wait_until

JOB_URL = re.compile(r"/jobs/[0-9a-f-]{36}$")
HOSTILE_NAME = "<img src=x onerror=alert(1)>"
HOSTILE_EMAIL = "</div><script>alert(2)</script>"


@pytest.fixture(scope="module")
def kinds_site(browser: Any, log_dir: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack that also runs the test module's kinds (a fast-logging one among them)."""
    running = start_stack(log_dir, tmp_path_factory.mktemp("e2e-kinds-redis"),
                          JOB_KINDS="tests.kinds_example", JOB_TIMEOUT="120",
                          JOB_LOG_MAX="5000", RATE_LIMIT="0")
    yield running
    stop_stack(running)


def console_lines(page: Page) -> list[str]:
    return page.locator("#console > div").all_text_contents()


def test_the_console_reads_lines_it_was_never_pushed(kinds_site: Stack, page: Page) -> None:
    """Lines stored without a push (a relay message missed, no reconnect) leave a gap
    before the next pushed batch: the page reads them from the log API, in order."""
    site = kinds_site
    store = JobStore(redis.Redis.from_url(site.redis.url, decode_responses=True))
    job_id = new_id()
    store.create(job_id, kind="demo")

    def report(lines: list[str]) -> None:
        resp = requests.post(site.url + "/api/progress", timeout=5, headers=auth(
            TEST_PROGRESS_TOKEN), json={"jobId": job_id, "state": "running", "progress": 10,
                                        "log": lines})
        assert resp.status_code == 204, resp.text

    page.goto(f"{site.url}/jobs/{job_id}")
    expect(page.locator("#connection")).to_have_attribute("data-status", "live")
    report(["one"])
    wait_until(lambda: console_lines(page) == ["one"], timeout=10, what="the pushed line")
    store.apply(ProgressUpdate.from_json(
        {"jobId": job_id, "state": "running", "progress": 20, "log": ["two", "three"]}))
    report(["four"])  # pushed, but it starts after "three", which the page never got
    wait_until(lambda: console_lines(page) == ["one", "two", "three", "four"], timeout=10,
               interval=0.1, what="the gap filled from the log API")
    assert page.locator("#connection").get_attribute("data-status") == "live"  # no reconnect


def test_console_follows_a_fast_log_and_catches_up_after_a_restart(
        kinds_site: Stack, page: Page) -> None:
    site = kinds_site
    total = 2000
    resp = requests.post(site.url + "/api/jobs", timeout=5, json={
        "kind": "chatty", "args": {"lines": total, "per_second": 400}})
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    page.goto(f"{site.url}/jobs/{job_id}")
    expect(page.locator("#connection")).to_have_attribute("data-status", "live")
    wait_until(lambda: len(console_lines(page)) >= 300, timeout=30, interval=0.1,
               what="300 lines in the console")

    site.web.stop()
    expect(page.locator("#connection")).to_have_attribute("data-status", "reconnecting")
    site.web = start_web(site.env, site.log_dir)

    expect(page.locator("#state")).to_have_text("succeeded", timeout=60_000)
    wait_until(lambda: len(console_lines(page)) >= total, timeout=30, interval=0.1,
               what="every line in the console")
    assert console_lines(page) == [f"line {n:06d}" for n in range(total)]
    expect(page.locator("#counts")).to_have_text("")  # chatty reports no "n of total"
    expect(page.locator("#result")).to_have_text(str(total))


def test_demo_form_shows_n_of_total_and_the_result(kinds_site: Stack, page: Page) -> None:
    page.goto(kinds_site.url + "/")
    page.get_by_label("Steps").fill("3")
    page.get_by_role("button", name="Start a new job").click()
    page.wait_for_url(JOB_URL)
    expect(page.locator("#state")).to_have_text("succeeded")
    expect(page.locator("#counts")).to_have_text(" (3 of 3)")
    expect(page.locator("#result")).to_contain_text('"steps": 3')
    expect(page.locator("#console > div")).to_have_count(3)


def test_bad_argument_is_shown_next_to_its_field(kinds_site: Stack, page: Page) -> None:
    page.goto(kinds_site.url + "/")
    page.get_by_label("Steps").fill("500")
    page.get_by_role("button", name="Start a new job").click()
    expect(page.locator("#f-demo-steps-error")).to_contain_text("500 is greater than")
    expect(page.locator("#f-demo-steps")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-demo-steps")).to_have_value("500")


def csv_upload(page: Page, site: Stack, data: bytes, columns: str) -> None:
    page.goto(site.url + "/")
    page.locator("#f-csv_import-columns").fill(columns)
    page.locator("#f-csv_import-file").set_input_files(
        files=[{"name": "people.csv", "mimeType": "text/csv", "buffer": data}])
    page.get_by_role("button", name="Start CSV import").click()


def test_csv_import_with_hostile_text_stays_text(kinds_site: Stack, page: Page,
                                                 tmp_path: Path) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    rows = ["name,email", f'"{HOSTILE_NAME}",ann@example.org', f"Bob,{HOSTILE_EMAIL}",
            "Cy,cy@example.org"]
    csv_upload(page, kinds_site, ("\n".join(rows) + "\n").encode(), "name, email:email")
    page.wait_for_url(JOB_URL)
    expect(page.locator("#state")).to_have_text("succeeded")
    expect(page.locator("#counts")).to_have_text(" (3 of 3)")
    expect(page.locator("#result")).to_contain_text('"rejected": 1')
    expect(page.locator("#console")).to_contain_text("line 3: email is not an email address")
    assert HOSTILE_EMAIL in page.locator("#console").inner_text()
    assert page.locator("#console img, #console script").count() == 0
    link = page.get_by_role("link", name="Download cleaned.csv")
    with page.expect_download() as download:
        link.click()
    saved = tmp_path / "cleaned.csv"
    download.value.save_as(saved)
    assert saved.read_text() == f'name,email\n{HOSTILE_NAME},ann@example.org\nCy,cy@example.org\n'
    page.reload()  # the finished page, rendered by the server, is as safe
    assert HOSTILE_EMAIL in page.locator("#console").inner_text()
    assert page.locator("#console img, #console script").count() == 0
    assert dialogs == []


def test_csv_upload_that_is_not_utf8_is_refused_at_the_field(kinds_site: Stack,
                                                             page: Page) -> None:
    csv_upload(page, kinds_site, "name,email\nÄnne,a@example.org\n".encode("utf-16"),
               "name, email:email")
    expect(page.locator("#f-csv_import-file-error")).to_contain_text("UTF-8")
    assert not JOB_URL.search(page.url)


def test_console_puts_batches_in_order_once_whatever_order_they_arrive_in(
        kinds_site: Stack, page: Page) -> None:
    """The console's merge rule, driven directly: early, replayed and late batches."""
    import redis

    from shared.protocol import new_id
    from shared.store import JobStore

    job_id = new_id()
    JobStore(redis.Redis.from_url(kinds_site.env["REDIS_URL"], decode_responses=True)).create(
        job_id, kind="external")
    page.goto(f"{kinds_site.url}/jobs/{job_id}")
    expect(page.locator("#connection")).to_have_attribute("data-status", "live")

    def line(n: int, text: str) -> dict[str, str]:
        return {"id": f"9000000000000-{n}", "text": text}

    batches = [
        {"after": "9000000000000-1", "lines": [line(2, "c")]},  # live, ahead of the replay
        {"after": "0-0", "lines": [line(0, "a"), line(1, "b"), line(2, "c")]},  # the replay
        {"after": "9000000000000-0", "lines": [line(1, "b")]},  # late duplicate
        {"after": "9000000000000-2", "lines": [line(3, "<b>d</b>")]},
    ]
    for batch in batches:
        page.evaluate("b => window.JobcastLog.feed(b)", {"jobId": job_id, **batch})
    assert console_lines(page) == ["a", "b", "c", "<b>d</b>"]
    assert page.locator("#console b").count() == 0
