"""Reading a job submission: ``{"kind", "args"}`` as JSON, or a page's form.

Both end in the same checks: the kind must exist, the arguments must match
its schema (each bad field named), then the kind's own ``check``. Uploads
(schema properties with ``contentMediaType``) come as files in a multipart
form, or as text in JSON ``args``; either way they must be UTF-8 text within
the property's ``maxLength`` bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import request
from werkzeug.datastructures import FileStorage, ImmutableMultiDict
from werkzeug.exceptions import RequestEntityTooLarge

from shared.kinds import JobKind
from shared.kinds.validate import FORM_ERROR, check_args, with_defaults
from shared.protocol import DEMO_KIND
from website.http.body import read_json_body, size_text

JSON_BODY_MAX = 512 * 1024
UPLOAD_DEFAULT_MAX = 1024 * 1024
FORM_OVERHEAD = 256 * 1024  # form fields and multipart framing beside the files


@dataclass
class Rejected(Exception):
    """A submission that cannot start a job: status, message and bad fields."""

    status: int
    message: str
    fields: dict[str, str] = field(default_factory=dict)
    kind: str = ""

    def to_json(self) -> dict[str, Any]:
        """``{"error", "fields"}`` for the API."""
        body: dict[str, Any] = {"error": self.message}
        if self.fields:
            body["fields"] = self.fields
        return body


def upload_limit(kind: JobKind, name: str) -> int:
    """Bytes an upload argument may have (its schema's ``maxLength``)."""
    spec = kind.args.get("properties", {}).get(name, {})
    return int(spec.get("maxLength", UPLOAD_DEFAULT_MAX))


def largest_upload(kinds: dict[str, JobKind]) -> int:
    """Bytes the largest upload of any kind may have (0 when none has one)."""
    sizes = [upload_limit(k, name) for k in kinds.values() for name in k.uploads]
    return max(sizes, default=0)


def read_submission(kinds: dict[str, JobKind]) -> tuple[JobKind, dict[str, Any], dict[str, Any]]:
    """The kind, its checked arguments, and the rest of a JSON body (webhook, ...).

    Raises :class:`Rejected` (400 for bad input, 413 for an upload too large).
    """
    if request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        request.max_content_length = largest_upload(kinds) + FORM_OVERHEAD
        try:
            form, files = request.form, request.files
        except RequestEntityTooLarge:
            raise Rejected(413, f"The upload is too large: at most "
                                f"{size_text(largest_upload(kinds))}.") from None
        kind = _kind(kinds, form.get("kind") or DEMO_KIND)
        args = form_args(kind, form, files)
        rest: dict[str, Any] = {}
    else:
        body = read_json_body(JSON_BODY_MAX)
        if body is None and request.content_length in (None, 0) and not request.data:
            body = {}
        if not isinstance(body, dict):
            raise Rejected(400, 'body must be a JSON object {"kind": ..., "args": {...}}')
        kind = _kind(kinds, body.get("kind", DEMO_KIND))
        args = body.get("args", {})
        if not isinstance(args, dict):
            raise Rejected(400, "args must be a JSON object", {FORM_ERROR: "must be an object"},
                           kind.name)
        for name in kind.uploads:
            value = args.get(name)
            if isinstance(value, str) and len(value.encode("utf-8")) > upload_limit(kind, name):
                raise Rejected(413, f"{name} is over {upload_limit(kind, name)} bytes",
                               {name: "is too large"}, kind.name)
        rest = {k: v for k, v in body.items() if k not in ("kind", "args")}
    args = with_defaults(kind, args)
    errors = check_args(kind, args)
    if not errors and kind.check is not None:
        errors = kind.check(args)
    if errors:
        names = ", ".join(sorted(n for n in errors if n != FORM_ERROR)) or "the arguments"
        raise Rejected(400, f"Check {names}.", errors, kind.name)
    return kind, args, rest


def _kind(kinds: dict[str, JobKind], name: object) -> JobKind:
    if not isinstance(name, str) or name not in kinds:
        known = ", ".join(sorted(kinds))
        raise Rejected(400, f"unknown kind {str(name)[:40]!r}; kinds: {known}",
                       {"kind": "is not a kind of this site"})
    return kinds[name]


def form_args(kind: JobKind, form: ImmutableMultiDict[str, str],
              files: ImmutableMultiDict[str, FileStorage]) -> dict[str, Any]:
    """A form's fields as the kind's arguments, converted by the schema's types."""
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
        raise Rejected(400, f"Check {', '.join(sorted(errors))}.", errors, kind.name)
    return args


def _read_upload(kind: JobKind, name: str, upload: FileStorage | None,
                 errors: dict[str, str]) -> str | None:
    if upload is None or not upload.filename:
        return None
    limit = upload_limit(kind, name)
    data = upload.stream.read(limit + 1)
    if len(data) > limit:
        raise Rejected(413, f"The file is over {size_text(limit)}.",
                       {name: "is too large"}, kind.name)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        errors[name] = "must be UTF-8 text (save it as CSV UTF-8)"
        return None
