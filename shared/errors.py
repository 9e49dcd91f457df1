"""The errors of Jobcast's core, one base for them all.

Everything the core refuses raises a :class:`JobcastError` of one of the kinds
below, with a message written for the person who sent the request and, for a
refused argument, the fields at fault. The site maps each kind to its HTTP
status in one place (``website/http/answers.py``); the worker and the tick
process log the message.
"""

from __future__ import annotations


class JobcastError(Exception):
    """Something the core refuses to do, and why (``message``); ``fields`` names the
    arguments at fault (``{name: problem}``), when there are some; ``retry_after``
    says in how many seconds asking again may work."""

    def __init__(self, message: str, fields: dict[str, str] | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = dict(fields or {})
        self.retry_after = retry_after


class NotFound(JobcastError, LookupError):
    """No such job, batch, schedule or kind (or it expired)."""


class Invalid(JobcastError, ValueError):
    """Input that breaks the contract: a bad argument, payload, filter or URL."""


class TooLarge(Invalid):
    """Input over a size limit."""


class Conflict(JobcastError):
    """The thing exists, but its state does not allow this (yet, or any more)."""


class Forbidden(JobcastError):
    """The caller may not do this to that thing."""


class TooMany(JobcastError):
    """The caller asked too often, or holds too much: later, or less."""


class Unavailable(JobcastError):
    """The store is full or out of reach: later."""
