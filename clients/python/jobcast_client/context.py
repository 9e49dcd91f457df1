"""What a handler gets as ``ctx``: progress, log lines, and whether to stop.

The same calls as the site's own worker gives a declared kind's function
(``worker/context.py``): ``ctx.progress(n, total=…, message=…)``, ``ctx.log(line)``,
``ctx.cancelled``, ``ctx.check_cancelled()`` (here also ``ctx.check()``). Reports are
queued and sent by the job's :class:`~jobcast_client.reporting.Reporter`: a call
never waits for the site.

When the handler should stop, its next ``progress``, ``log`` or ``check`` raises:

* :class:`CancelRequested`: someone cancelled the job; the job ends ``cancelled``;
* :class:`JobLost`: this attempt no longer holds the job (a 409: its lease lapsed
  and another attempt has it; the job ended or was cancelled by force);
  nothing more is reported for it;
* :class:`WorkerStopping`: the worker got SIGTERM (see :class:`~jobcast_client.Worker`).

A handler that works long without calling ``ctx`` learns none of this: call
``ctx.check()`` now and then.
"""

from __future__ import annotations

from typing import Any

from jobcast_client.reporting import Reporter, Signals


class CancelRequested(Exception):  # noqa: N818 - named for what happened, as the site's worker does
    """The job was asked to stop: end the handler (the job then ends ``cancelled``)."""


class JobLost(Exception):  # noqa: N818
    """This attempt no longer holds the job: stop, whatever it returns is not kept."""


class WorkerStopping(Exception):  # noqa: N818
    """The worker is stopping (SIGTERM): end the handler now if it can."""


class PermanentFailure(Exception):  # noqa: N818
    """Raise it to fail the job at once, even when its kind would retry it (``retry: false``)."""


class JobContext:
    """A claimed job's ``ctx``: ``job_id``, ``kind``, ``args``, ``attempt``, ``worker``
    (the worker's name), ``progress``, ``log``, ``cancelled`` and ``check``."""

    def __init__(self, job_id: str, kind: str, args: dict[str, Any], attempt: int, worker: str,
                 reporter: Reporter, signals: Signals) -> None:
        self.job_id = job_id
        self.kind = kind
        self.args = args
        self.attempt = attempt
        self.worker = worker
        self.acknowledged = False  # the handler was told of the cancel
        self._reporter = reporter
        self._signals = signals
        self._fields: dict[str, Any] = {"progress": 0, "message": ""}

    def progress(self, current: int, total: int | None = None, message: str = "",
                 stage: str = "") -> None:
        """Report ``current`` of ``total`` (or ``current`` percent with no total), with
        an optional ``message`` and ``stage``."""
        self.check()
        if total is None:
            fields: dict[str, Any] = {"progress": max(0, min(100, int(current)))}
        else:
            total = max(0, int(total))
            fields = {"current": max(0, min(int(current), total)), "total": total}
        fields["message"] = message
        if stage:
            fields["stage"] = stage
        self._fields = fields
        self._reporter.add(dict(fields), [])

    def log(self, line: str) -> None:
        """Add ``line`` to the job's log (text with newlines: a line each)."""
        self.check()
        self._reporter.add(dict(self._fields), str(line).splitlines() or [""])

    @property
    def cancelled(self) -> bool:
        """True once the job was asked to stop (reading it true acknowledges the
        cancel: the job then ends ``cancelled`` however the handler ends)."""
        seen = self._signals.cancel_requested
        self.acknowledged = self.acknowledged or seen
        return seen

    def check(self) -> None:
        """Raise :class:`JobLost`, :class:`CancelRequested` or :class:`WorkerStopping`
        when the handler should stop; else nothing."""
        if self._signals.lost:
            raise JobLost(self._signals.lost)
        if self.cancelled:
            raise CancelRequested(self.job_id)
        if self._signals.stopping:
            raise WorkerStopping(self.job_id)

    check_cancelled = check  # the name the site's own worker context uses

    def final_counts(self) -> dict[str, Any]:
        """The counts for the final report of a job that succeeded (``total`` of ``total``)."""
        total = self._fields.get("total")
        return {} if total is None else {"current": total, "total": total}
