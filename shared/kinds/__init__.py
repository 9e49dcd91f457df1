"""Job kinds: what a team declares to make a job startable from the site.

A kind is declared once, beside its function, with :func:`job_kind`::

    from shared.kinds import Context, job_kind

    @job_kind("count", title="Count", description="Counts to n.",
              args={"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}},
                    "required": ["n"]})
    def count(ctx: Context, n: int) -> dict[str, int]:
        for i in range(1, n + 1):
            ctx.progress(i, total=n, message=f"{i} of {n}")
            ctx.log(f"counted {i}")
        return {"counted": n}

The module is listed in ``JOB_KINDS`` (comma-separated module names). The site
imports it to learn the kind (name, title, argument schema) and never calls the
function; the worker imports it to run the function with a :class:`Context`.
So a kind's module must not import ``website`` or ``worker``.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from shared.config import BUILTIN_KIND_MODULES
from shared.errors import JobcastError
from shared.kinds.policy import DEFAULT_PRIORITY, Policy, make_policy

F = TypeVar("F", bound=Callable[..., Any])

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
RESULT_TYPES = ("json", "text", "download")
# JOB_KINDS lists these by default: the kinds Jobcast ships.
BUILTIN_MODULES = BUILTIN_KIND_MODULES


class KindError(JobcastError):
    """A kind declared wrongly (bad name, schema, duplicate)."""


class PermanentFailure(Exception):  # noqa: N818 - named for what the job says, not an error kind
    """Raised by a job function: the job fails now, without the retries its kind
    declares (the error would come again: bad input, a missing record)."""


class CancelRequested(Exception):  # noqa: N818 - control flow: the job was asked to stop
    """Raised by the context once the job was asked to stop (a cancel of a running job):
    by :meth:`Context.check_cancelled`, and by the next ``progress`` or ``log``. Let it
    propagate (after cleaning up) and the job ends ``cancelled``; the worker stopped."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} was asked to stop")
        self.job_id = job_id


class Context(Protocol):
    """What a kind's function gets as its first argument (the worker provides it)."""

    job_id: str
    config: Any  # the worker's shared.config.Config
    lifecycle: Any  # the worker's shared.lifecycle.Lifecycle: for kinds that start or control jobs

    def progress(self, current: int, total: int | None = None, message: str = "",
                 stage: str = "") -> None:
        """Report progress: ``current`` of ``total``, or a percentage when ``total`` is None."""

    def log(self, line: str) -> None:
        """Append a line to the job's live log (batched: sent by size or every ~100 ms)."""

    def save_file(self, name: str, data: bytes, content_type: str = "text/plain") -> str:
        """Store a file for download with the job; its name."""

    @property
    def cancelled(self) -> bool:
        """True once the job was asked to stop (its owner cancelled it while it ran):
        stop soon, then return or raise :class:`CancelRequested`; the job ends
        ``cancelled``. Not stopped within ``CANCEL_GRACE`` seconds, it is killed."""

    def check_cancelled(self) -> None:
        """Raise :class:`CancelRequested` if the job was asked to stop."""


@dataclass(frozen=True)
class JobKind:
    """A declared job kind.

    ``args`` is the JSON Schema of the arguments (an object schema); properties
    with ``"contentMediaType"`` are uploads (a file field on the page, the
    file's text in ``args``). ``result`` says how the page shows the result:
    ``json`` (pretty-printed), ``text``, or ``download`` (the result names a
    file saved with :meth:`Context.save_file` under ``"file"``).
    """

    name: str
    title: str
    description: str
    args: dict[str, Any]
    function: str  # dotted name the worker imports
    result: str = "json"
    timeout: int | None = None
    hidden: bool = False  # run by the site itself (bulk actions): no form, not startable by API
    check: Callable[[dict[str, Any]], dict[str, str]] | None = field(default=None, compare=False)
    # External kinds have no Python function: workers in any language claim
    # their jobs over HTTP (docs/workers.md); ``module`` names where it was declared.
    external: bool = False
    module: str = ""
    # Events the kind adds to a change of one of its jobs (the highlighter's snippet room).
    events: Callable[[Any, Any], list[tuple[str, dict[str, Any], str]]] | None = field(
        default=None, compare=False)
    # Flow control: retries, unique, concurrency, priority, stalls (shared/kinds/policy.py).
    policy: Policy = field(default_factory=Policy)

    def to_json(self) -> dict[str, Any]:
        """What ``GET /api/kinds`` lists."""
        return {"name": self.name, "title": self.title, "description": self.description,
                "args": self.args, "result": self.result, "external": self.external,
                "policy": self.policy.to_json()}

    @property
    def uploads(self) -> tuple[str, ...]:
        """Argument names that are file uploads."""
        props = self.args.get("properties", {})
        return tuple(name for name, spec in props.items()
                     if isinstance(spec, dict) and "contentMediaType" in spec)


_REGISTRY: dict[str, JobKind] = {}


def _checked_schema(name: str, args: dict[str, Any] | None, result: str) -> dict[str, Any]:
    if not re.match(NAME_PATTERN, name):
        raise KindError(f"kind name {name!r} must match {NAME_PATTERN}")
    if result not in RESULT_TYPES:
        raise KindError(f"result must be one of {', '.join(RESULT_TYPES)}")
    schema = args if args is not None else {"type": "object", "properties": {}}
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise KindError(f"kind {name!r}: bad argument schema: {exc.message}") from exc
    if schema.get("type") != "object":
        raise KindError(f"kind {name!r}: the argument schema must be of type object")
    return schema


def job_kind(name: str, *, title: str, description: str = "",
             args: dict[str, Any] | None = None, result: str = "json",
             timeout: int | None = None, hidden: bool = False,
             check: Callable[[dict[str, Any]], dict[str, str]] | None = None,
             events: Callable[[Any, Any], list[tuple[str, dict[str, Any], str]]] | None = None,
             retries: int = 0, backoff: list[float] | tuple[float, ...] | str | None = None,
             unique: list[str] | tuple[str, ...] | None = None,
             concurrency: dict[str, Any] | None = None, priority: str = DEFAULT_PRIORITY,
             stall_after: float | None = None, stall_fails: bool = False,
             after_failure: str = "cancel") -> Callable[[F], F]:
    """Declare the decorated function as the job kind ``name``.

    ``args`` is the arguments' JSON Schema; ``check`` (optional) is called by
    the site with schema-valid arguments and returns ``{field: problem}`` for
    what a schema cannot say. ``timeout`` overrides ``JOB_TIMEOUT``. A
    ``hidden`` kind is started only by the site itself (no form, not by
    ``POST /api/jobs``). ``events(state, redis_client)`` gives the ``(event, payload,
    room)`` the kind pushes on each change of one of its jobs, besides the job's own.
    ``retries``, ``backoff``, ``unique``, ``concurrency``, ``priority``, ``stall_after``,
    ``stall_fails`` and ``after_failure`` are its flow control (``shared/kinds/policy.py``).
    """
    schema = _checked_schema(name, args, result)
    policy = make_policy(name, set(schema.get("properties", {})), retries=retries,
                         backoff=backoff, unique=unique, concurrency=concurrency,
                         priority=priority, stall_after=stall_after, stall_fails=stall_fails,
                         after_failure=after_failure)

    def register(function: F) -> F:
        if function.__qualname__ != function.__name__:
            raise KindError(f"kind {name!r}: declare a module-level function")
        dotted = f"{function.__module__}.{function.__name__}"
        known = _REGISTRY.get(name)
        if known is not None and known.function != dotted:
            raise KindError(f"kind {name!r} is declared twice ({known.function}, {dotted})")
        _REGISTRY[name] = JobKind(name=name, title=title, description=description,
                                  args=schema, function=dotted, result=result,
                                  timeout=timeout, hidden=hidden, check=check,
                                  module=function.__module__, events=events, policy=policy)
        return function
    return register


def external_kind(name: str, *, module: str, title: str, description: str = "",
                  args: dict[str, Any] | None = None, result: str = "json",
                  check: Callable[[dict[str, Any]], dict[str, str]] | None = None,
                  **flow: Any) -> JobKind:
    """Declare the external kind ``name`` (no Python function) in ``module`` (``__name__``).

    Its jobs wait in a queue of their own until a worker claims one over HTTP
    (``POST /api/workers/claim``); RQ never sees them. ``args``, ``check`` and the
    flow-control keywords (``retries``, ``backoff``…) work as for :func:`job_kind`.
    """
    schema = _checked_schema(name, args, result)
    policy = make_policy(name, set(schema.get("properties", {})), **flow)
    known = _REGISTRY.get(name)
    if known is not None and (not known.external or known.module != module):
        raise KindError(f"kind {name!r} is declared twice ({known.module}, {module})")
    kind = JobKind(name=name, title=title, description=description, args=schema, function="",
                   result=result, check=check, external=True, module=module, policy=policy)
    _REGISTRY[name] = kind
    return kind


def load_kinds(modules: Iterable[str]) -> dict[str, JobKind]:
    """Import the kind modules; every kind they declare, by name.

    Raises ``ImportError`` (from the import) for a module that cannot be loaded.
    """
    wanted = [m.strip() for m in modules if m.strip()]
    for module in wanted:
        importlib.import_module(module)
    return {name: kind for name, kind in sorted(_REGISTRY.items())
            if (kind.module or kind.function.rpartition(".")[0]) in wanted}


def resolve(kind: JobKind) -> Callable[..., Any]:
    """The kind's function (imported by dotted name); ``KindError`` for an external kind."""
    if kind.external:
        raise KindError(f"kind {kind.name!r} is external: a worker claims it over HTTP")
    module, _, attr = kind.function.rpartition(".")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]
