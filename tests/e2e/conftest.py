"""Fixtures for the browser tests: one Chromium for them all, a real stack per module.

Without Chromium these tests skip with the reason shown in the summary;
with ``REQUIRE_BROWSER=1`` (CI) a missing browser is an error instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Stack, start_stack, stop_stack
from tests.e2e.browser import system_chromium
from tests.support import TEST_OPS_TOKEN, start_worker

log = logging.getLogger(__name__)

# How long one page-state expectation may take (ms); the jobs take a few seconds.
EXPECT_TIMEOUT_MS = 20_000


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    """Remember each phase's report on the item, for the failure screenshot."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless: one for all the browser tests of the session.

    Package scope: it is closed once the tests in ``tests/e2e`` are done, so it
    does not stay around (nor keep Playwright's event loop) for the rest of the run.
    """
    with system_chromium(EXPECT_TIMEOUT_MS) as chromium:
        yield chromium


@pytest.fixture
def new_page(browser: Any, request: pytest.FixtureRequest,
             log_dir: Path) -> Iterator[Callable[..., Any]]:
    """Factory: a page in a fresh browser context (``java_script_enabled`` etc. as kwargs).

    On a failed test each page's screenshot is saved next to the process logs.
    """
    contexts: list[Any] = []

    def make(**context_options: Any) -> Any:
        # The operator's password, sent only where the site asks for it (/dashboard).
        context_options.setdefault("http_credentials",
                                   {"username": "operator", "password": TEST_OPS_TOKEN})
        context = browser.new_context(viewport={"width": 1000, "height": 700},
                                      **context_options)
        context.set_default_timeout(EXPECT_TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield make
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for n, context in enumerate(contexts):
        if failed:
            for page in context.pages:
                path = log_dir / f"{request.node.name}-{n}.png"
                page.screenshot(path=str(path), full_page=True)
                log.warning("screenshot of the failed page: %s", path)
        context.close()


@pytest.fixture
def page(new_page: Callable[..., Any]) -> Any:
    """A page with JavaScript on, in its own context."""
    return new_page()


@pytest.fixture(scope="module")
def site(browser: Any, log_dir: Path,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A real stack whose demo job takes about 3 s, so a page sees it run."""
    running = start_stack(log_dir, tmp_path_factory.mktemp("e2e-redis"), DEMO_STEP_DELAY="0.3")
    yield running
    stop_stack(running)


@pytest.fixture
def slow_site(browser: Any, log_dir: Path,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of its own (the test restarts its web process); the job takes ~8 s."""
    running = start_stack(log_dir, tmp_path_factory.mktemp("e2e-slow-redis"),
                          DEMO_STEP_DELAY="0.8", JOB_TIMEOUT="120")
    yield running
    stop_stack(running)


@pytest.fixture
def paused_worker(site: Stack) -> Iterator[Callable[[], None]]:
    """Stop the worker so new jobs wait in the queue; call the result to start it again."""
    site.worker.stop()

    def resume() -> None:
        site.worker = start_worker(site.env, site.log_dir)

    yield resume
    if not site.worker.alive():
        resume()
