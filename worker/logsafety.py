"""Keep job arguments, the per-job callback token among them, out of the worker's logs.

``log_job_description=False`` stops RQ from printing a job's call on start and
end, but when a job raises, RQ's ``handle_exception`` still attaches the job's
``args`` and ``kwargs`` to the log record (``extra``), where any structured
handler or formatter (JSON logs, Sentry, ``%(kwargs)s``) writes them out. The
filter below, installed on RQ's worker logger, replaces them before any
handler sees the record.
"""

from __future__ import annotations

import logging

REDACTED = "<redacted>"
_ARGUMENT_FIELDS = ("arguments", "kwargs")
RQ_WORKER_LOGGER = "rq.worker"


class RedactJobArguments(logging.Filter):
    """Replace the job arguments RQ attaches to its records with ``<redacted>``."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact, then let the record through."""
        for name in _ARGUMENT_FIELDS:
            if name in record.__dict__:
                setattr(record, name, REDACTED)
        return True


def install(logger_name: str = RQ_WORKER_LOGGER) -> None:
    """Put the filter on RQ's worker logger (once)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactJobArguments) for f in logger.filters):
        logger.addFilter(RedactJobArguments())
