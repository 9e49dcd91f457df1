"""The snippet highlighter in a real Chromium against the real stack."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Dialog, Page, expect

from tests.conftest import Stack

SNIPPET_URL = re.compile(r"/snippets/[0-9a-f-]{36}$")
PYTHON_SOURCE = "def greet(name):\n    return 'hello ' + name\n"
HOSTILE_SOURCE = (
    '<script>window.__pwned = "script"; alert("script")</script>\n'
    '<img src=x onerror="window.__pwned = \'img\'; alert(\'img\')">\n'
    '"><svg onload="window.__pwned = \'svg\'; alert(\'svg\')">\n'
)
HOSTILE_PARTS = ("<script>", "<img src=x onerror=", "<svg onload=")
ACTIVE = "#code script, #code img, #code svg, #code iframe"


def watch_dialogs(page: Page) -> list[str]:
    """Record (and dismiss) every alert/confirm/prompt the page opens."""
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    return dialogs


def submit(page: Page, site: Stack, source: str, language: str) -> None:
    """Paste ``source`` into the form, pick ``language`` and press "Highlight"."""
    page.goto(site.url + "/snippets")
    page.get_by_label("Source").fill(source)
    page.get_by_label("Language").select_option(language)
    page.get_by_role("button", name="Highlight").click()
    page.wait_for_url(SNIPPET_URL)


def test_submitted_snippet_is_highlighted_without_reload(
        site: Stack, page: Page, paused_worker: Callable[[], None]) -> None:
    submit(page, site, PYTHON_SOURCE, "python")
    page.evaluate("window.__sameDocument = true")
    expect(page.locator("#state")).to_have_text("queued")
    expect(page.locator("#language")).to_have_text("python")
    expect(page.locator("#code pre")).to_contain_text("def greet(name):")
    expect(page.locator("#code .highlight")).to_have_count(0)

    paused_worker()
    expect(page.locator("#code .highlight")).to_be_visible()
    expect(page.locator("#state")).to_have_text("highlighted")
    expect(page.locator("#code .highlight .k").first).to_have_text("def")
    expect(page.locator("#code .highlight .nf").first).to_have_text("greet")
    expect(page.locator("#code")).to_contain_text("return 'hello ' + name")
    expect(page.locator("#language")).to_have_text("Python")  # the lexer used, live
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded"


@pytest.mark.parametrize("language", ["html", "auto"])
def test_hostile_snippet_text_stays_text(site: Stack, page: Page,
                                         paused_worker: Callable[[], None],
                                         language: str) -> None:
    dialogs = watch_dialogs(page)
    submit(page, site, HOSTILE_SOURCE, language)
    for part in HOSTILE_PARTS:  # the escaped source, before highlighting
        expect(page.locator("#code")).to_contain_text(part)
    assert page.locator(ACTIVE).count() == 0

    paused_worker()
    expect(page.locator("#code .highlight")).to_be_visible()
    expect(page.locator("#language")).to_have_text("HTML")  # chosen, or detected for auto
    for part in HOSTILE_PARTS:  # the highlighted HTML shows the same text
        expect(page.locator("#code")).to_contain_text(part)
    assert page.locator(ACTIVE).count() == 0
    page.reload()  # the stored, server-rendered highlight too
    expect(page.locator("#code .highlight")).to_be_visible()
    assert page.locator(ACTIVE).count() == 0

    page.goto(site.url + "/snippets")  # the list shows the first line as a title
    expect(page.locator("#recent-snippets")).to_contain_text("<script>")
    assert page.locator("#recent-snippets script, #recent-snippets img").count() == 0
    assert page.evaluate("window.__pwned") is None
    assert dialogs == []


def test_snippet_page_without_javascript_reaches_highlighted(
        site: Stack, new_page: Callable[..., Page], paused_worker: Callable[[], None]) -> None:
    page = new_page(java_script_enabled=False)
    loads: list[str] = []
    page.on("request", lambda req: loads.append(req.url) if req.is_navigation_request() else None)
    submit(page, site, PYTHON_SOURCE, "python")
    expect(page.locator("#state")).to_have_text("queued")
    before = len(loads)

    paused_worker()
    expect(page.locator("#code .highlight .k").first).to_have_text("def")
    expect(page.locator("#state")).to_have_text("highlighted")
    assert len(loads) > before, "the page should have refreshed itself"
    assert page.locator('meta[http-equiv="refresh"]').count() == 0
