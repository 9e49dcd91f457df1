"""In Chromium, the site's pages work under its Content-Security-Policy: no
violation is reported while a job and a snippet run to their end.

Violations are the browser's own ``securitypolicyviolation`` events, recorded
into the page by a script that runs before the page's (``record_csp_violations``).
"""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Page, expect

from tests.conftest import Stack
from tests.e2e.browser import csp_violations, record_csp_violations
from tests.support import wait_until

JOB_URL = re.compile(r"/jobs/[0-9a-f-]{36}$")
SNIPPET_URL = re.compile(r"/snippets/[0-9a-f-]{36}$")


def test_pages_run_without_csp_violations(site: Stack, page: Page) -> None:
    record_csp_violations(page)
    response = page.goto(site.url + "/")
    assert response is not None
    assert "script-src 'self'" in (response.header_value("content-security-policy") or "")
    assert csp_violations(page) == []
    page.get_by_role("button", name="Start a new job").click()
    page.wait_for_url(JOB_URL)
    expect(page.locator("#state")).to_have_text("succeeded")
    expect(page.locator("#connection")).to_have_attribute("data-status", "done")
    assert csp_violations(page) == []

    page.goto(site.url + "/snippets")
    page.get_by_label("Source").fill("def f(x):\n    return x * 2\n")
    page.get_by_label("Language").select_option("python")
    page.get_by_role("button", name="Highlight").click()
    page.wait_for_url(SNIPPET_URL)
    expect(page.locator("#state")).to_have_text("highlighted")
    expect(page.locator("#code .highlight .k").first).to_have_text("def")
    page.wait_for_load_state("networkidle")
    assert csp_violations(page) == []


def test_inline_script_would_be_blocked(site: Stack, page: Page) -> None:
    """The policy is in force and the listener hears it: an injected inline script
    does not run and is reported."""
    record_csp_violations(page)
    page.goto(site.url + "/")
    page.evaluate("""() => {
        const s = document.createElement('script');
        s.textContent = 'window.__inline = 1';
        document.body.appendChild(s);
    }""")
    violations = wait_until(lambda: csp_violations(page), timeout=10,
                            what="Chromium to report the inline script")
    assert any(v.startswith("script-src") for v in violations), violations
    result: Any = page.evaluate("window.__inline")
    assert result is None
