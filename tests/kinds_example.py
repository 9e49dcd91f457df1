"""A job kind declared by a test module, as a team would declare its own.

Started with ``JOB_KINDS=tests.kinds_example``; nothing under website/ knows it.
"""

from __future__ import annotations

from shared.kinds import Context, job_kind
from tests.support import simulate_work


@job_kind("count_words", title="Count words",
          description="Counts the words of a text, one line at a time.",
          args={"type": "object", "additionalProperties": False, "required": ["text"],
                "properties": {
                    "text": {"type": "string", "minLength": 1, "maxLength": 10000,
                             "title": "Text"},
                    "shout": {"type": "boolean", "default": False, "title": "Shout"},
                }})
def count_words(ctx: Context, text: str, shout: bool = False) -> dict[str, object]:
    """Log each line's word count; the result is the total."""
    lines = text.splitlines()
    total = 0
    for number, line in enumerate(lines, start=1):
        words = len(line.split())
        total += words
        ctx.log(f"line {number}: {words} words" + ("!" if shout else ""))
        ctx.progress(number, total=len(lines), message=f"line {number} of {len(lines)}")
    return {"lines": len(lines), "words": total}


@job_kind("chatty", title="Chatty", description="Logs many lines fast.",
          args={"type": "object", "properties": {
              "lines": {"type": "integer", "minimum": 1, "maximum": 100000, "default": 1000},
              "per_second": {"type": "integer", "minimum": 1, "maximum": 100000,
                             "default": 1000}}})
def chatty(ctx: Context, lines: int = 1000, per_second: int = 1000) -> int:
    """Log ``lines`` lines at about ``per_second`` a second."""
    import time

    start = time.monotonic()
    for n in range(lines):
        ctx.log(f"line {n:06d}")
        due = start + (n + 1) / per_second
        pause = due - time.monotonic()
        if pause > 0:
            simulate_work(pause)
    return lines
