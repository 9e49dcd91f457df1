"""The Lua scripts of the job and snippet stores, kept as named files in shared/lua/.

Each file starts with a header naming its KEYS and ARGV and what it returns.
Scripts that return several values return field/value pairs, which
:func:`pairs` turns into a dict, so callers read results by name.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import redis
from redis.commands.core import Script

LUA_DIR = Path(__file__).with_name("lua")


@cache
def source(name: str) -> str:
    """The text of ``shared/lua/<name>.lua``."""
    return (LUA_DIR / f"{name}.lua").read_text(encoding="utf-8")


def register(client: redis.Redis, name: str) -> Script:
    """Register the named script on ``client`` (EVALSHA, loaded on first use)."""
    return client.register_script(source(name))


def pairs(result: list[Any]) -> dict[str, Any]:
    """``['code', 1, 'state', 'running']`` -> ``{'code': 1, 'state': 'running'}``."""
    def text(value: Any) -> str:
        return value if type(value) is str else (
            value.decode() if isinstance(value, bytes) else str(value))

    names, values = result[0::2], result[1::2]
    return {text(name): value for name, value in zip(names, values, strict=False)}
