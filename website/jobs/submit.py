"""Reading a job submission: ``{"kind", "args", ...}`` as JSON, or a page's form.

Both end in the same checks: the kind must exist, the arguments must match
its schema (each bad field named), then the kind's own ``check``. Uploads
(schema properties with ``contentMediaType``) come as files in a multipart
form, or as text in JSON ``args``; either way they must be UTF-8 text within
the property's ``maxLength`` bytes. A JSON submission may also name:

* ``webhook``: a URL called when the job ends; only to hosts the operator
  listed in ``WEBHOOK_ALLOWED_HOSTS`` (``shared/webhooks.py``), and only when
  ``WEBHOOK_SECRET`` is set;
* ``after``: ids of jobs it waits for (``waiting`` until they all succeeded;
  ``website/jobs/flow.py`` says whose jobs);
* ``priority``: ``high``, ``normal`` or ``low`` (the kind's default without it;
  only an operator may ask for more than that: ``shared/priority.py``);
* ``runAt`` (ISO 8601 with a zone) or ``delaySeconds``: the job waits,
  ``scheduled``, until then. The time must be in the future and within
  ``JOB_TTL`` (the job's record would expire before it ran). RQ's scheduler
  keeps whole seconds, so a time is rounded up to the next whole second: the
  time stored and shown is the one honoured, and a job never starts before it.

Anything refused raises a ``shared.errors`` error naming the fields at fault
(400, or 413 for an upload too large), before anything is stored.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app, request
from werkzeug.datastructures import FileStorage, ImmutableMultiDict
from werkzeug.exceptions import RequestEntityTooLarge

from shared.errors import Invalid, TooLarge
from shared.kinds import JobKind
from shared.kinds.validate import FORM_ERROR, checked_args, find_kind
from shared.protocol import DEMO_KIND
from shared.webhooks import WebhookRefused, check_url
from website.http.body import read_json_body, size_text
from website.jobs.flow import read_after

JSON_BODY_MAX = 512 * 1024
UPLOAD_DEFAULT_MAX = 1024 * 1024
FORM_OVERHEAD = 256 * 1024  # form fields and multipart framing beside the files
JSON_ARGS_FIELD = "args"  # the home page's JSON field of an external kind without properties


@dataclass(frozen=True)
class Submission:
    """A checked submission: the kind, its arguments, and when and how to run it."""

    kind: JobKind
    args: dict[str, Any]
    webhook: str | None = None
    run_at: datetime | None = None
    owner: object = None  # the body's "owner" (operators may name one)
    after: tuple[str, ...] = ()  # jobs it waits for (website/jobs/flow.py)
    priority: object = None  # the body's "priority" (checked by shared.priority.checked)


def upload_limit(kind: JobKind, name: str) -> int:
    """Bytes an upload argument may have (its schema's ``maxLength``)."""
    spec = kind.args.get("properties", {}).get(name, {})
    return int(spec.get("maxLength", UPLOAD_DEFAULT_MAX))


def largest_upload(kinds: dict[str, JobKind]) -> int:
    """Bytes the largest upload of any kind may have (0 when none has one)."""
    sizes = [upload_limit(k, name) for k in kinds.values() for name in k.uploads]
    return max(sizes, default=0)


def read_submission(kinds: dict[str, JobKind]) -> Submission:
    """The submission of the current request (a form, or a JSON body)."""
    if request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        request.max_content_length = largest_upload(kinds) + FORM_OVERHEAD
        try:
            form, files = request.form, request.files
        except RequestEntityTooLarge:
            raise TooLarge(f"The upload is too large: at most "
                           f"{size_text(largest_upload(kinds))}.") from None
        kind = find_kind(kinds, form.get("kind") or DEMO_KIND)
        return Submission(kind, checked_args(kind, form_args(kind, form, files)))
    body = read_json_body(JSON_BODY_MAX)
    if body is None and request.content_length in (None, 0) and not request.data:
        body = {}
    if not isinstance(body, dict):
        raise Invalid('body must be a JSON object {"kind": ..., "args": {...}}')
    kind = find_kind(kinds, body.get("kind", DEMO_KIND))
    args = body.get("args", {})
    if not isinstance(args, dict):
        raise Invalid("args must be a JSON object", {FORM_ERROR: "must be an object"})
    for name in kind.uploads:
        value = args.get(name)
        if isinstance(value, str) and len(value.encode("utf-8")) > upload_limit(kind, name):
            raise TooLarge(f"{name} is over {upload_limit(kind, name)} bytes",
                           {name: "is too large"})
    owner = body.get("owner")
    if owner is not None and not isinstance(owner, str):  # as the spec says: text
        raise Invalid("owner must be text (and only an operator may name one)",
                      {"owner": "must be text"})
    return Submission(kind, checked_args(kind, args), webhook=read_webhook(body),
                      run_at=read_run_at(body, current_app.config["JOB_TTL"]), owner=owner,
                      after=read_after(body), priority=body.get("priority"))


def read_webhook(body: dict[str, Any]) -> str | None:
    """The submission's ``webhook`` URL, checked; None when it names none."""
    url = body.get("webhook")
    if url is None:
        return None
    cfg = current_app.config
    if not cfg["WEBHOOK_SECRET"]:
        raise Invalid("webhooks are off on this site (WEBHOOK_SECRET is not set)",
                      {"webhook": "webhooks are off"})
    try:
        return check_url(url, cfg["WEBHOOK_ALLOWED_HOSTS"])
    except WebhookRefused as exc:
        raise Invalid(exc.message, {"webhook": exc.message}) from None


def read_run_at(body: dict[str, Any], horizon: int, now: datetime | None = None) -> datetime | None:
    """The UTC time to run at (``runAt`` or ``delaySeconds``), None to run now."""
    now = now or datetime.now(UTC)
    run_at, delay = body.get("runAt"), body.get("delaySeconds")
    if run_at is not None and delay is not None:
        raise Invalid("give runAt or delaySeconds, not both", {"runAt": "not with delaySeconds"})
    if delay is not None:
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 < delay <= horizon:
            raise Invalid(f"delaySeconds must be a number of seconds from 1 to {horizon}",
                          {"delaySeconds": f"must be from 1 to {horizon}"})
        return whole_second(now + timedelta(seconds=delay))
    if run_at is None:
        return None
    if not isinstance(run_at, str):
        raise Invalid("runAt must be an ISO 8601 time with a zone", {"runAt": "must be a string"})
    try:
        when = datetime.fromisoformat(run_at.strip())
    except ValueError:
        raise Invalid(f"runAt is not an ISO 8601 time: {run_at[:40]!r}",
                      {"runAt": "is not an ISO 8601 time"}) from None
    if when.tzinfo is None:
        raise Invalid("runAt needs a zone, e.g. 2030-01-01T09:00:00+01:00 or ...Z",
                      {"runAt": "needs a zone"})
    when = when.astimezone(UTC)
    if when <= now:
        raise Invalid("runAt is in the past", {"runAt": "is in the past"})
    if when - now > timedelta(seconds=horizon):
        raise Invalid(f"runAt is more than {horizon} seconds ahead (JOB_TTL)",
                      {"runAt": "is too far ahead"})
    return whole_second(when)


def whole_second(when: datetime) -> datetime:
    """``when`` rounded up to the next whole second (unchanged when it is one)."""
    return datetime.fromtimestamp(math.ceil(when.timestamp()), UTC)


def form_args(kind: JobKind, form: ImmutableMultiDict[str, str],
              files: ImmutableMultiDict[str, FileStorage]) -> dict[str, Any]:
    """A form's fields as the kind's arguments, converted by the schema's types (an
    external kind with no declared properties takes them whole, as JSON: ``args``)."""
    if kind.external and not kind.args.get("properties"):
        return json_form_args(form.get(JSON_ARGS_FIELD, ""))
    args: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, spec in kind.args.get("properties", {}).items():
        if name in kind.uploads:
            text = _read_upload(kind, name, files.get(name), errors)
            if text is not None:
                args[name] = text
            continue
        kind_of = spec.get("type") if isinstance(spec, dict) else None
        if kind_of == "boolean":
            args[name] = name in form
            continue
        raw = form.get(name, "")
        if raw.strip() == "":
            continue
        try:
            args[name] = int(raw) if kind_of == "integer" else (
                float(raw) if kind_of == "number" else raw)
        except ValueError:
            errors[name] = "must be a whole number" if kind_of == "integer" else "must be a number"
    if errors:
        raise Invalid(f"Check {', '.join(sorted(errors))}.", errors)
    return args


def json_form_args(raw: str) -> dict[str, Any]:
    """The form's JSON ``args`` field as an object ({} when blank); :class:`Invalid`
    naming the field when it is not JSON or not an object."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        where = (f" (line {exc.lineno}, column {exc.colno})"
                 if isinstance(exc, json.JSONDecodeError) else "")
        raise Invalid(f"Check the arguments: they are not valid JSON{where}.",
                      {JSON_ARGS_FIELD: f"are not valid JSON{where}"}) from None
    if not isinstance(value, dict):
        raise Invalid('Check the arguments: they must be a JSON object, like {"n": 1}.',
                      {JSON_ARGS_FIELD: 'must be a JSON object, like {"n": 1}'})
    return value


def _read_upload(kind: JobKind, name: str, upload: FileStorage | None,
                 errors: dict[str, str]) -> str | None:
    if upload is None or not upload.filename:
        return None
    limit = upload_limit(kind, name)
    data = upload.stream.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"The file is over {size_text(limit)}.", {name: "is too large"})
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        errors[name] = "must be UTF-8 text (save it as CSV UTF-8)"
        return None
