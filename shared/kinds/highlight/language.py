"""Language auto-detection for snippets submitted with ``language=auto``.

Pygments' ``guess_lexer`` alone picks badly on short, mixed snippets (``import
os`` then ``print('<b>hi</b>')`` comes out as XML, plain SQL as text). Here each
common language is scored on cheap signals (a shebang, JSON that parses, a
leading tag, keywords and idioms that only that language uses), on how cleanly
its lexer tokenizes the text (``Error`` tokens count against it) and on the
lexer's own ``analyse_text``. Pygments' ``guess_lexer`` is one more candidate
(it knows hundreds of other languages, e.g. PHP): its pick wins when it is
confident enough, or when no common language shows any signal.

It runs once per snippet in the worker: only the first ``SAMPLE_CHARS``
characters are lexed (``guess_lexer``, which asks every Pygments lexer, sees
the first ``GUESS_CHARS``), so a 100 KB snippet costs the same as a 16 KB one:
tens of milliseconds.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache

from pygments.lexer import Lexer
from pygments.lexers import TextLexer, get_lexer_by_name, guess_lexer
from pygments.token import Error
from pygments.util import ClassNotFound

SAMPLE_CHARS = 16 * 1024
MIN_SIGNAL = 2.0  # below this, no common language is evident: ask guess_lexer
ERROR_WEIGHT = 1.5  # score lost per Error token (counted up to MAX_ERRORS)
MAX_ERRORS = 8
ANALYSE_WEIGHT = 2.0  # analyse_text gives 0..1
GUESS_WEIGHT = 6.0  # guess_lexer's pick (another language) scores its analyse_text times this
GUESS_MIN = 0.1  # an analyse_text below this is noise (prose comes out as "teratermmacro")
GUESS_CHARS = 4 * 1024  # guess_lexer asks every Pygments lexer: it sees less

# Openings that no common language has: leave those to guess_lexer.
FOREIGN = re.compile(r"\A\s*<\?(php|xml)\b")
_M = re.MULTILINE
_MI = re.MULTILINE | re.IGNORECASE


@dataclass(frozen=True)
class Signal:
    """A pattern that hints at a language, worth ``weight`` (counted at most ``cap`` times)."""

    pattern: re.Pattern[str]
    weight: float
    cap: int = 3


def _s(pattern: str, weight: float, flags: int = _M, cap: int = 3) -> Signal:
    return Signal(re.compile(pattern, flags), weight, cap)


# Pygments alias -> signals. Weights: 3 = nearly proof, 1 = a common idiom.
SIGNALS: dict[str, tuple[Signal, ...]] = {
    "python": (
        _s(r"^\s*def \w+\(.*\)\s*(->\s*[\w\[\], .|]+)?:\s*$", 3),
        _s(r"^\s*(import [\w.]+(\s+as \w+)?|from [\w.]+ import [\w*(])", 2.5),
        _s(r"^\s*class \w+(\(.*\))?:\s*$", 3),
        _s(r"^\s*(elif |except( \w+)?.*:|try:|with .+ as \w+:|async def )", 2),
        _s(r"\bprint\(", 1),
        _s(r"\bself\.\w+", 1),
        _s(r"\b(None|True|False)\b", 0.5),
        _s(r"^\s*if .+:\s*$|^\s*for \w+(, \w+)* in .+:\s*$|^\s*while .+:\s*$", 2),
        _s(r"^\s*@\w+", 1),
        _s(r"f\"[^\"]*\{|f'[^']*\{", 1),
        _s(r"__name__|__init__", 2),
        _s(r"\[[^\]\n]+ for \w+(, \w+)* in [^\]\n]+\]", 2),  # a list comprehension
    ),
    "javascript": (
        _s(r"\b(const|let|var) [\w${}\[\], ]+ =", 2),
        _s(r"\bfunction\s*[\w$]*\s*\(", 2),
        _s(r"=>", 1.5),
        _s(r"\b(console\.log|document\.|window\.|JSON\.(parse|stringify)|addEventListener)", 3),
        _s(r"\brequire\(['\"]|^\s*(import .+ from ['\"]|export (default|const|function|class))", 3),
        _s(r"===|!==", 2),
        _s(r"\b(undefined|null|this)\b", 0.5),
        _s(r"\.then\(|\basync\b|\bawait\b|new Promise", 1),
    ),
    "sql": (
        _s(r"^\s*(SELECT|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+(TABLE|INDEX|VIEW)"
           r"|ALTER\s+TABLE|DROP\s+TABLE|WITH\s+\w+\s+AS)\b", 3, _MI),
        _s(r"\bFROM\s+\w+", 1, re.IGNORECASE),
        _s(r"\bWHERE\b", 1, re.IGNORECASE),
        _s(r"\b(INNER |LEFT |RIGHT )?JOIN\b.+\bON\b", 2, re.IGNORECASE),
        _s(r"\b(GROUP|ORDER) BY\b", 2, re.IGNORECASE),
        _s(r"\bVALUES\s*\(", 2, re.IGNORECASE),
        _s(r"\b(PRIMARY KEY|NOT NULL|VARCHAR|INTEGER|REFERENCES)\b", 2, re.IGNORECASE),
        _s(r"\bCOUNT\(\*\)|\bHAVING\b", 1.5, re.IGNORECASE),
    ),
    "html": (
        _s(r"\A\s*<(!doctype html|html|head|body|div|p|a|span|ul|ol|table|form|section|nav"
           r"|header|main|h[1-6]|img|script|style|link|meta)\b", 4, re.IGNORECASE),
        _s(r"</(div|p|a|span|li|ul|td|tr|table|body|html|head|form|h[1-6]|section|button)>", 1,
           re.IGNORECASE),
        _s(r"<\w+(\s+[\w-]+=\"[^\"]*\")+\s*/?>", 1),
        _s(r"^\s*<", 0.5),
    ),
    "bash": (
        _s(r"\A#!\s*/(usr/)?bin/(env\s+)?(ba|z|da|k)?sh\b", 6),
        _s(r"^\s*(echo|export|cd|sudo|apt(-get)?|mkdir|rm|cp|mv|chmod|curl|wget|source|set -\w+)"
           r"\b", 1.5),
        _s(r"^\s*(if \[\[?|for \w+ in\b|while \[|case .+ in$|fi$|done$|esac$|then$|do$)", 2.5),
        _s(r"\$\{?\w+\}?|\$\(", 1),
        _s(r"\|\s*(grep|awk|sed|xargs|sort|uniq|wc|head|tail|cut|tr)\b", 2),
        _s(r"\s(&&|\|\|)\s", 0.5),
        _s(r"^\s*\w+=[\"'$\w]", 1),
        _s(r"^\s*\$ \w", 2),  # a prompt
        _s(r"^\s*echo\s", 1),  # with the command above: a lone echo line is enough
        _s(r"^\s*(pip3?|npm|npx|yarn|git|docker|make|python3?|ls|cat|grep|tar|ssh|systemctl"
           r"|kubectl|brew|cargo)\s+(-{1,2}\w|\S*[./]\S*|(install|run|build|status|push|pull"
           r"|clone|commit|checkout|ps|exec|logs|test)\b)", 1.5),
    ),
    "json": (),  # decided by parsing (see _json_score)
    "c": (
        _s(r"^\s*#\s*(include\s*[<\"]|define\s+\w+|ifn?def\b|endif\b)", 3),
        _s(r"\b(int|void|char|long|unsigned|static|size_t)\s+\**\w+\s*\([^)]*\)\s*\{?\s*$", 2),
        _s(r"\b(printf|fprintf|malloc|free|sizeof|memcpy|strlen|scanf)\s*\(", 2),
        _s(r"\b(struct|typedef|unsigned|const char)\b", 1.5),
        _s(r"\w->\w", 1),
        _s(r"\bNULL\b", 1),
        _s(r"^\s*(return\b.*|\w.*\));\s*$", 0.5),
    ),
    "go": (
        _s(r"^package \w+\s*$", 4),
        _s(r"^import \(|^import \"[\w/.]+\"", 3),
        _s(r"^func (\(\w+ \*?\w+\) )?\w+\(", 3),
        _s(r":=", 1.5),
        _s(r"^\s*for .*:= range\b", 3),
        _s(r"\bfmt\.\w+\(", 3),
        _s(r"\b(go func|chan |defer |make\(|err != nil)", 2),
        _s(r"\[\]\w+\{?", 1),
    ),
}


@cache
def _lexer(alias: str) -> Lexer:
    return get_lexer_by_name(alias)


def _json_score(text: str) -> float:
    stripped = text.strip()
    if not stripped or stripped[0] not in "[{":
        return 0.0
    try:
        json.loads(stripped)
    except ValueError:
        return 0.0
    return 10.0


def _signal_score(alias: str, text: str) -> float:
    score = 0.0
    for signal in SIGNALS[alias]:
        hits = 0
        for _match in signal.pattern.finditer(text):
            hits += 1
            if hits >= signal.cap:
                break
        score += signal.weight * hits
    if alias == "json":
        score += _json_score(text)
    if alias == "python" and text.startswith("#!") and "python" in text.split("\n", 1)[0]:
        score += 6
    if alias == "javascript" and text.startswith("#!") and "node" in text.split("\n", 1)[0]:
        score += 6
    return score


def error_tokens(lexer: Lexer, text: str) -> int:
    """How many ``Error`` tokens ``lexer`` produces over ``text`` (at most MAX_ERRORS)."""
    errors = 0
    for token_type, _value in lexer.get_tokens(text):
        if token_type in Error:
            errors += 1
            if errors >= MAX_ERRORS:
                break
    return errors


def scores(text: str) -> dict[str, float]:
    """Each common language's score for ``text`` (higher is likelier)."""
    sample = text[:SAMPLE_CHARS]
    result: dict[str, float] = {}
    for alias in SIGNALS:
        signal = _signal_score(alias, sample)
        if signal <= 0:
            result[alias] = 0.0
            continue
        lexer = _lexer(alias)
        analysed = float(lexer.analyse_text(sample) or 0.0)
        result[alias] = (signal + ANALYSE_WEIGHT * analysed
                         - ERROR_WEIGHT * error_tokens(lexer, sample))
    return result


def _guess(sample: str) -> tuple[Lexer, float]:
    """Pygments' own guess (plain text when it is not even a little sure) and its
    score on the same scale as :func:`scores`."""
    head = sample[:GUESS_CHARS]
    try:
        lexer = guess_lexer(head)
    except ClassNotFound:
        return TextLexer(), 0.0
    analysed = float(lexer.analyse_text(head) or 0.0)
    if analysed < GUESS_MIN:
        return TextLexer(), 0.0
    return lexer, GUESS_WEIGHT * analysed - ERROR_WEIGHT * error_tokens(lexer, head)


def detect_lexer(text: str) -> Lexer:
    """The lexer that best fits ``text``: the best-scoring common language, unless
    Pygments' guess (another language) scores higher or nothing common is evident."""
    sample = text[:SAMPLE_CHARS]
    if FOREIGN.match(sample):
        return _guess(sample)[0]
    ranked = scores(sample)
    alias, best = max(ranked.items(), key=lambda item: item[1])
    guessed, guess_score = _guess(sample)
    if best >= MIN_SIGNAL and (alias in guessed.aliases or best >= guess_score):
        return get_lexer_by_name(alias)
    return guessed


def detect_language(text: str) -> str:
    """The main Pygments alias of the detected language (``text`` when nothing fits)."""
    lexer = detect_lexer(text)
    return str(lexer.aliases[0]) if lexer.aliases else "text"
