"""Times shown on the pages: durations, ages and the ETA of a running job.

``website/static/js/timefmt.js`` formats the same way in the browser.
"""

from __future__ import annotations

import time

from flask import Flask

from shared.protocol import RUNNING, iso_time
from shared.store import JobState


def format_duration(seconds: float | None) -> str:
    """``"4s"``, ``"2m 05s"``, ``"1h 02m"``, ``"3d 04h"``; ``"–"`` for None."""
    if seconds is None:
        return "–"
    total = max(int(round(seconds)), 0)
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def eta_seconds(started_at: float | None, progress: int, now: float) -> float | None:
    """Seconds left at the rate observed so far, or None when it cannot be told.

    The rate is ``progress / (now - started_at)``: a job at 40% after 8 s has
    12 s to go. Unknown before the first step (0%) and at 100%.
    """
    if started_at is None or not 0 < progress < 100:
        return None
    elapsed = now - started_at
    if elapsed <= 0:
        return None
    return elapsed * (100 - progress) / progress


def job_eta(job: JobState, now: float | None = None) -> float | None:
    """The ETA of a running job (None for any other state)."""
    if job.state != RUNNING:
        return None
    return eta_seconds(job.started_at, job.progress, time.time() if now is None else now)


def job_duration(job: JobState, now: float | None = None) -> float | None:
    """How long the job ran (until now while it runs); None before it started."""
    if job.started_at is None:
        return None
    end = job.finished_at or (time.time() if now is None else now)
    return max(end - job.started_at, 0.0)


def iso_text(value: object) -> str:
    """Epoch seconds (a number or its text) as ISO 8601 UTC to the second; '–' for none."""
    try:
        stamp = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "–"
    return iso_time(stamp, "seconds")


def register(app: Flask) -> None:
    """Make the helpers available to templates."""
    app.add_template_filter(format_duration, "duration")
    app.add_template_filter(iso_text, "iso_time")
    app.add_template_global(job_eta, "job_eta")
    app.add_template_global(job_duration, "job_duration")
    app.add_template_global(time.time, "now")
