"""The generic external kind: any JSON object of arguments (at most 16 KB), run by
whatever worker claims it over HTTP (docs/workers.md)."""

from __future__ import annotations

import json

from shared.kinds import external_kind
from shared.kinds.validate import FORM_ERROR

ARGS_MAX_BYTES = 16 * 1024


def check_args(args: dict[str, object]) -> dict[str, str]:
    """The arguments, as compact JSON, fit in ``ARGS_MAX_BYTES``."""
    size = len(json.dumps(args, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size > ARGS_MAX_BYTES:
        return {FORM_ERROR: f"args must be at most {ARGS_MAX_BYTES} bytes of JSON, got {size}"}
    return {}


EXTERNAL = external_kind(
    "external", module=__name__, title="External",
    description="Any JSON object of arguments, run by a worker in any language that claims "
                "it over HTTP (POST /api/workers/claim).",
    args={"type": "object"}, check=check_args)
