"""The site icon: every page links one that exists, and /favicon.ico is not a 404."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

from tests.support import TEST_OPS_TOKEN, auth

ICON_LINK = re.compile(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">')


def test_favicon_ico_answers_with_the_svg_icon(client: FlaskClient) -> None:
    resp = client.get("/favicon.ico")
    assert resp.status_code == 200
    assert resp.mimetype == "image/svg+xml"
    assert resp.data.lstrip().startswith(b"<svg") and b"</svg>" in resp.data
    assert "max-age=" in resp.headers["Cache-Control"]
    assert client.head("/favicon.ico").status_code == 200


def test_every_page_links_an_icon_that_exists(client: FlaskClient) -> None:
    icons = set()
    for path, status in (("/", 200), ("/snippets", 200), ("/dashboard", 200),
                         ("/jobs/not-a-job", 404)):
        resp = client.get(path, headers=auth(TEST_OPS_TOKEN))  # /dashboard is the operator's
        assert resp.status_code == status, path
        match = ICON_LINK.search(resp.get_data(as_text=True))
        assert match is not None, f"{path} links no icon"
        icons.add(match.group(1))
    assert icons == {"/static/favicon.svg"}
    icon = client.get("/static/favicon.svg")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
    assert icon.data == client.get("/favicon.ico").data
