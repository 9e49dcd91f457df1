"""The dashboard's keys panel: create a key (shown once, on the answer page) and revoke
one. Forms, so they carry the CSRF token like every form; operators only."""

from __future__ import annotations

import re

from flask import Blueprint, Response, redirect, render_template, request, url_for

from shared.apikeys import QUOTA_NAMES, check_key, create_key, revoke_key
from shared.errors import Invalid
from website.auth.operators import ops_allowed, ops_challenge
from website.extensions import core
from website.keys.api import no_store

bp = Blueprint("keys_pages", __name__)
_WHOLE = re.compile(r"[0-9]{1,16}")


@bp.before_request
def _operators_only() -> Response | None:
    return None if ops_allowed() else ops_challenge()


def read_form(form: dict[str, str]) -> tuple[str, dict[str, int | None]]:
    """The form's name and quota (numbers; empty: the default), checked: one
    :class:`Invalid` naming every bad field."""
    quota: dict[str, int | None] = {}
    errors: dict[str, str] = {}
    for name in QUOTA_NAMES:
        raw = form.get(name, "").strip()
        if raw and not _WHOLE.fullmatch(raw):
            errors[f"quota.{name}"] = "must be a whole number from 1 (or empty: the default)"
        else:
            quota[name] = int(raw) if raw else None
    check_key(form.get("name"), quota, errors)
    return form.get("name", ""), quota


@bp.post("/dashboard/keys")
def create() -> Response | tuple[str, int]:
    """The panel's form: the new key's page (its text shown once), or the form again with
    what is wrong (400)."""
    values = {name: request.form.get(name, "") for name in ("name", *QUOTA_NAMES)}
    try:
        name, quota = read_form(values)
        key, text = create_key(core.client, name, quota)
    except Invalid as exc:
        return render_template("apikey.html", key=None, text="", error=exc,
                               values=values), 400
    return no_store(Response(render_template("apikey.html", key=key, text=text, error=None,
                                             values={})))


@bp.post("/dashboard/keys/<key_id>/revoke")
def revoke(key_id: str) -> Response:
    """The panel's Revoke button: 303 back to the panel."""
    revoke_key(core.client, key_id)
    return redirect(url_for("dashboard.dashboard") + "#api-keys", code=303)  # type: ignore[return-value]
