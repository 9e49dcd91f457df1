"""Checking a job's arguments against its kind's schema, field by field."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from shared.errors import Invalid
from shared.kinds import JobKind

FORM_ERROR = "_form"  # errors that belong to no one field


def check_args(kind: JobKind, args: object) -> dict[str, str]:
    """Each bad field of ``args`` with what is wrong (empty when they are good).

    Keys are top-level argument names, or ``FORM_ERROR`` for the object itself.
    """
    if not isinstance(args, dict):
        return {FORM_ERROR: "args must be a JSON object"}
    errors: dict[str, str] = {}
    validator = Draft202012Validator(kind.args)
    for error in sorted(validator.iter_errors(args), key=lambda e: list(e.path)):
        if error.path:
            name = str(error.path[0])
        elif error.validator == "required":
            name = next((p for p in error.validator_value if p not in args), FORM_ERROR)
            errors.setdefault(name, "is required")
            continue
        elif error.validator == "additionalProperties":
            allowed = set(kind.args.get("properties", {}))
            for extra in sorted(set(args) - allowed):
                errors.setdefault(str(extra), "is not an argument of this kind")
            continue
        else:
            name = FORM_ERROR
        errors.setdefault(name, _short(error.message))
    return errors


def _short(message: str) -> str:
    return message if len(message) <= 200 else message[:197] + "..."


def problems(kind: JobKind, args: dict[str, Any]) -> dict[str, str]:
    """What the schema, then the kind's own ``check``, find wrong in ``args``."""
    return check_args(kind, args) or (kind.check(args) if kind.check else {})


def checked_args(kind: JobKind, args: dict[str, Any]) -> dict[str, Any]:
    """``args`` with the schema's defaults, checked (:func:`problems`); :class:`Invalid`
    naming each bad field otherwise."""
    args = with_defaults(kind, args)
    errors = problems(kind, args)
    if errors:
        names = ", ".join(sorted(n for n in errors if n != FORM_ERROR)) or "the arguments"
        raise Invalid(f"Check {names}.", errors)
    return args


def find_kind(kinds: dict[str, JobKind], name: object) -> JobKind:
    """The kind a submission names; :class:`Invalid` listing the kinds otherwise."""
    if not isinstance(name, str) or name not in kinds:
        known = ", ".join(sorted(kinds))
        raise Invalid(f"unknown kind {str(name)[:40]!r}; kinds: {known}",
                      {"kind": "is not a kind of this site"})
    return kinds[name]


def with_defaults(kind: JobKind, args: dict[str, Any]) -> dict[str, Any]:
    """``args`` with the schema's defaults filled in for missing properties."""
    filled = dict(args)
    for name, spec in kind.args.get("properties", {}).items():
        if name not in filled and isinstance(spec, dict) and "default" in spec:
            filled[name] = spec["default"]
    return filled
