"""The Lua scripts of the job and snippet stores, kept as named files in shared/lua/.

Each script takes its Redis keys as ``KEYS`` and exactly one argument: a JSON
object (``ARGV[1]``, ``cjson.decode``) whose fields the script reads by name.
:func:`run` (and :func:`run_each`, :func:`run_on` for many runs in one round
trip) take the keys and those fields; :func:`encode` writes the JSON once.

Each file starts with a header naming its KEYS, the fields of its JSON argument
(``a.<name>``) and what it returns. Scripts that return several values return
field/value pairs, which :func:`pairs` turns into a dict, so callers read
results by name.

Logic that several scripts share is written once, as a fragment in
``shared/lua/lib/<name>.lua`` (a ``local function``); a script takes it in with
a line of its own that reads exactly ``--! include <name>``, which
:func:`source` replaces with the fragment's text before the script is
registered. A fragment includes nothing itself, and a script includes each
fragment once. (Redis reports errors at the line of the expanded text.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import redis
from redis.client import Pipeline
from redis.commands.core import Script
from redis.connection import AbstractConnection
from redis.exceptions import NoScriptError

LUA_DIR = Path(__file__).with_name("lua")
LIB_DIR = LUA_DIR / "lib"
INCLUDE = re.compile(r"^--! include ([a-z_]+)[ \t]*$", re.MULTILINE)
# A script's keys and its named fields, as run_each and run_on take them.
Call = tuple[Sequence[str], Mapping[str, Any]]

_ENCODER = json.JSONEncoder(ensure_ascii=False, check_circular=False, separators=(",", ":"))


class ScriptSourceError(ValueError):
    """A script includes a fragment that does not exist, or twice; or a fragment includes one."""


@cache
def fragment(name: str) -> str:
    """The text of ``shared/lua/lib/<name>.lua``, which includes nothing itself."""
    path = LIB_DIR / f"{name}.lua"
    if not path.is_file():
        raise ScriptSourceError(f"no Lua fragment {name!r} ({path})")
    text = path.read_text(encoding="utf-8")
    if INCLUDE.search(text):
        raise ScriptSourceError(f"the Lua fragment {name!r} includes another: fragments do not")
    return text.rstrip("\n")


@cache
def source(name: str) -> str:
    """The text of ``shared/lua/<name>.lua``, each ``--! include <fragment>`` line
    replaced by that fragment (:func:`fragment`)."""
    text = (LUA_DIR / f"{name}.lua").read_text(encoding="utf-8")
    names = INCLUDE.findall(text)
    if len(set(names)) != len(names):
        raise ScriptSourceError(f"{name}.lua includes a fragment twice: {names}")
    return INCLUDE.sub(lambda match: fragment(match.group(1)), text)


def includes(name: str) -> list[str]:
    """The fragments ``shared/lua/<name>.lua`` includes, in order."""
    return INCLUDE.findall((LUA_DIR / f"{name}.lua").read_text(encoding="utf-8"))


def register(client: redis.Redis, name: str) -> Script:
    """Register the named script on ``client`` (EVALSHA, loaded on first use)."""
    return client.register_script(source(name))


def encode(fields: Mapping[str, Any]) -> str:
    """A script's one argument: ``fields`` as compact JSON (UTF-8 text left as it is)."""
    return _ENCODER.encode(fields)


def run(script: Script, keys: Sequence[str], fields: Mapping[str, Any],
        client: redis.Redis | Pipeline | None = None) -> Any:
    """Run ``script`` with ``keys`` and its named ``fields`` (one JSON argument), on
    ``client`` (a pipeline queues it) or the client it was registered on."""
    return script(keys=list(keys), args=[encode(fields)], client=client)


def pairs(result: list[Any]) -> dict[str, Any]:
    """``['code', 1, 'state', 'running']`` -> ``{'code': 1, 'state': 'running'}``."""
    def text(value: Any) -> str:
        return value if type(value) is str else (
            value.decode() if isinstance(value, bytes) else str(value))

    names, values = result[0::2], result[1::2]
    return {text(name): value for name, value in zip(names, values, strict=False)}


def run_each(client: redis.Redis, script: Script, calls: Sequence[Call]) -> list[Any]:
    """Run ``script`` once per ``(keys, fields)`` in one round trip, on a connection
    borrowed from ``client``'s pool (:func:`run_on`).

    Each run is still atomic on its own. The answers are in order; a run that
    failed answers its :class:`redis.RedisError` instead of raising. A redis-py
    pipeline of :class:`Script` calls takes two round trips (it asks ``SCRIPT
    EXISTS`` before each execute).
    """
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        return run_on(connection, script, calls)
    except (redis.ConnectionError, redis.TimeoutError):
        connection.disconnect()  # in an unknown state: the pool opens it again
        raise
    finally:
        pool.release(connection)


def run_on(connection: AbstractConnection, script: Script, calls: Sequence[Call]) -> list[Any]:
    """Run ``script`` once per ``(keys, fields)`` on a connection the caller holds alone:
    the commands go out in one write and their replies are read in order.

    A run that failed answers its :class:`redis.RedisError` instead of raising.
    When Redis no longer has the script (a restart, ``SCRIPT FLUSH``), it is
    loaded and the runs it refused go again. Connection errors are raised (the
    connection is then in an unknown state: the caller disconnects it).
    """
    arguments = [(len(keys), *keys, encode(fields)) for keys, fields in calls]  # encoded once
    answers: list[Any] = [None] * len(calls)
    pending = list(range(len(calls)))
    for _ in range(2):
        connection.send_packed_command(connection.pack_commands(
            [("EVALSHA", script.sha, *arguments[i]) for i in pending]),
            check_health=False)
        for index in pending:
            try:
                answers[index] = connection.read_response()
            except redis.ResponseError as exc:
                answers[index] = exc
        pending = [i for i in pending if isinstance(answers[i], NoScriptError)]
        if not pending:
            break
        connection.send_command("SCRIPT", "LOAD", script.script, check_health=False)
        script.sha = connection.read_response()
    return answers
