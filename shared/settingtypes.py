"""What a setting is and how its text is parsed (the table itself: ``shared/settings.py``).

A :class:`Setting` is a descriptor declared once in ``shared.settings.Settings``:
its name (the attribute's), its concern, its default, how the environment's
text becomes a value, a one-line meaning and whether a deployment normally
sets it. ``shared.config.Config`` reads every setting through :meth:`Setting.read`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, overload
from urllib.parse import urlsplit

from shared.errors import JobcastError

DEVELOPMENT = "development"
PRODUCTION = "production"
WEB = "web"
WORKER = "worker"

T = TypeVar("T")
Parser = Callable[[str, str], T]  # (name, text that is not blank) -> value


class ConfigError(JobcastError):
    """Raised at start-up when the configuration is missing or invalid."""


@dataclass
class Context:
    """What a derived value may look at: the process role and the settings read so far."""

    role: str
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def dev(self) -> bool:
        """True once ``JOBCAST_ENV`` (the table's first setting) was read as development."""
        return bool(self.values.get("JOBCAST_ENV") == DEVELOPMENT)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]


class Setting(Generic[T]):
    """One setting, read from the environment variable of the same name.

    ``default`` applies when the variable is unset or blank (``blank``, when
    given, instead when it is set but blank); ``development``, when given,
    replaces the default under ``JOBCAST_ENV=development``; ``derive`` turns the
    value into the final one from the settings declared before it (a default
    that depends on another setting). ``shown`` is the default as
    docs/configuration.md writes it, when the plain value would not say it.
    """

    def __init__(self, concern: str, default: T, parse: Parser[T], meaning: str, *,
                 deploy: bool = False, shown: str = "", blank: T | None = None,
                 development: T | None = None,
                 derive: Callable[[T, Context], T] | None = None) -> None:
        self.name = ""
        self.concern = concern
        self.default = default
        self.parse = parse
        self.meaning = meaning
        self.deploy = deploy
        self.shown = shown
        self.blank = blank
        self.development = development
        self.derive = derive

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> Setting[T]: ...

    @overload
    def __get__(self, obj: object, objtype: type | None = None) -> T: ...

    def __get__(self, obj: object | None, objtype: type | None = None) -> Setting[T] | T:
        if obj is None:
            return self
        # Config stores every value in the instance, which wins over this descriptor.
        raise AttributeError(f"{self.name} has not been read (build a shared.config.Config)")

    def __repr__(self) -> str:
        return f"Setting({self.name!r}, {self.concern!r}, {self.default!r})"

    def read(self, environ: Mapping[str, str], context: Context) -> T:
        """The value of this setting in ``environ`` (``ConfigError`` if it is invalid)."""
        raw = environ.get(self.name)
        if raw is not None and raw.strip():
            value = self.parse(self.name, raw)
        elif raw is not None and self.blank is not None:
            value = self.blank
        elif context.dev and self.development is not None:
            value = self.development
        else:
            value = self.default
        return self.derive(value, context) if self.derive else value

    @property
    def default_text(self) -> str:
        """The default as the documentation shows it."""
        return self.shown or shown_value(self.default)


def shown_value(value: object) -> str:
    """A default as the documentation writes it: ```30```, ```0.4```, ``empty``."""
    if isinstance(value, bool):
        return "`1`" if value else "`0`"
    if isinstance(value, float):
        return f"`{value:g}`"
    if isinstance(value, tuple | list):
        return f"`{','.join(str(v) for v in value)}`" if value else "empty"
    return f"`{value}`" if value != "" else "empty"


# -- parsers: (name, text) -> value, called only for text that is not blank ----------


def integer(minimum: int = 0, cap: int | None = None) -> Parser[int]:
    """A whole number, at least ``minimum``; above ``cap`` it is taken as ``cap``."""

    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError as exc:
            raise ConfigError(f"{name} must be an integer, got {raw.strip()!r}") from exc
        if value < minimum:
            raise ConfigError(f"{name} must be >= {minimum}, got {value}")
        return value if cap is None else min(value, cap)

    return parse


def number(name: str, raw: str) -> float:
    """A number of at least 0 (seconds, a rate)."""
    try:
        value = float(raw.strip())
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw.strip()!r}") from exc
    if value < 0:
        raise ConfigError(f"{name} must be >= 0, got {value}")
    return value


def text(convert: Callable[[str], str] = str.strip) -> Parser[str]:
    """Text, through ``convert`` (by default stripped of surrounding blanks)."""
    return lambda _name, raw: convert(raw)


def secret(_name: str, raw: str) -> str:
    """A secret or token: taken exactly as given."""
    return raw


def one_of(*choices: str) -> Parser[str]:
    """One of ``choices`` (stripped)."""

    def parse(name: str, raw: str) -> str:
        value = raw.strip()
        if value not in choices:
            listed = " or ".join(repr(c) for c in choices)
            raise ConfigError(f"{name} must be {listed}")
        return value

    return parse


def flag(name: str, raw: str) -> bool:
    """On or off: ``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off``."""
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 1 or 0, got {raw!r}")


def names(_name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated names, each stripped; empty ones left out."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def origins(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated web origins (``https://host[:port]``: a scheme, a host, an optional
    port, nothing else), lowercased; ``*`` is refused (list each origin)."""
    found: list[str] = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        url = urlsplit(part.lower())
        try:
            url.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            url = url._replace(scheme="")
        if (url.scheme not in ("http", "https") or not url.hostname or url.path or url.query
                or url.fragment or "@" in url.netloc or url.netloc.endswith(":")):
            raise ConfigError(f"{name}: {part!r} is not an origin such as "
                              "https://app.example.com or http://127.0.0.1:8000")
        netloc = url.netloc  # as a browser's Origin header writes it: no default port
        if url.port == {"http": 80, "https": 443}[url.scheme]:
            netloc = netloc.rpartition(":")[0]
        found.append(f"{url.scheme}://{netloc}")
    return tuple(dict.fromkeys(found))


def intervals(name: str, raw: str) -> tuple[int, ...]:
    """Comma-separated whole seconds, at least one, each >= 1."""
    try:
        values = tuple(int(part) for part in raw.split(","))
    except ValueError:
        raise ConfigError(f"{name} must be seconds separated by commas, got {raw!r}") from None
    if not values or any(v < 1 for v in values):
        raise ConfigError(f"{name} must list at least one interval, each >= 1 second")
    return values


_RATE_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def parse_rate(text: str, name: str = "RATE_LIMIT") -> tuple[int, int]:
    """``"30/minute"`` -> ``(30, 60)``; ``"5/10"`` -> 5 per 10 s; ``"0"`` -> disabled ``(0, 0)``.

    ``name`` is the setting named in the error message."""
    raw = text.strip().lower()
    if raw in ("0", "off", "none", ""):
        return 0, 0
    count, sep, unit = raw.partition("/")
    unit = unit.strip()
    try:
        limit = int(count)
        window = _RATE_UNITS.get(unit.removesuffix("s")) or int(unit)
    except ValueError as exc:
        raise ConfigError(
            f"{name} must look like '30/minute', '5/second', '100/hour', '10/60' "
            f"(seconds) or '0' to disable; got {text!r}"
        ) from exc
    if not sep or limit < 0 or window <= 0:
        raise ConfigError(f"{name} must be a positive count per window or 0, got {text!r}")
    return (limit, window) if limit else (0, 0)
