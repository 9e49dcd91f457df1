"""The CSV import kind: check every row against declared columns, keep the good ones.

The user uploads a CSV file (at most 5 MB of UTF-8 text with a header row) and
names its columns, each with a type: ``name, email:email, age:integer``. The
job reports "n of total rows", logs each bad row with its line number, and
ends with a summary and the cleaned file (the good rows, the declared
columns in order) to download.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from datetime import date

from shared.errors import Invalid
from shared.kinds import Context, job_kind

UPLOAD_MAX_BYTES = 5 * 1024 * 1024
CLEANED_FILE = "cleaned.csv"
LOGGED_REJECTS_MAX = 500  # beyond this, bad rows are counted but not each logged


class ColumnsError(Invalid):
    """The column declaration cannot be read."""


def _is_int(text: str) -> bool:
    return re.fullmatch(r"[+-]?\d+", text) is not None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip().lower() not in ("nan", "inf", "-inf", "+inf", "infinity")


def _is_email(text: str) -> bool:
    return re.fullmatch(r"[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+", text) is not None


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


TYPES: dict[str, tuple[Callable[[str], bool], str]] = {
    "text": (lambda text: True, "text"),
    "integer": (_is_int, "a whole number"),
    "number": (_is_number, "a number"),
    "email": (_is_email, "an email address"),
    "date": (_is_date, "a date (YYYY-MM-DD)"),
}


def parse_columns(spec: str) -> list[tuple[str, str]]:
    """``"name, age:integer"`` -> ``[("name", "text"), ("age", "integer")]``."""
    columns: list[tuple[str, str]] = []
    for part in spec.split(","):
        name, _, kind = part.strip().partition(":")
        name, kind = name.strip(), (kind.strip().lower() or "text")
        if not name:
            raise ColumnsError("each column needs a name")
        if kind not in TYPES:
            raise ColumnsError(f"column {name!r}: type must be one of {', '.join(TYPES)}")
        if name in (c for c, _ in columns):
            raise ColumnsError(f"column {name!r} is declared twice")
        columns.append((name, kind))
    return columns


def check_csv_text(text: str) -> str | None:
    """Why ``text`` is not a CSV file with a header row, or None when it is."""
    if "\x00" in text:
        return "the file is not CSV text (it holds NUL bytes)"
    first = text.lstrip("\ufeff").split("\n", 1)[0].strip()
    if not first:
        return "the file has no header row (its first line is empty)"
    try:
        header = next(csv.reader([first]))
    except csv.Error as exc:
        return f"the header row is not CSV: {exc}"
    if not any(cell.strip() for cell in header):
        return "the file has no header row"
    return None


def check_args(args: dict[str, object]) -> dict[str, str]:
    """The site's check before enqueueing: the columns parse, the file is CSV."""
    errors: dict[str, str] = {}
    try:
        parse_columns(str(args.get("columns", "")))
    except ColumnsError as exc:
        errors["columns"] = str(exc)
    problem = check_csv_text(str(args.get("file", "")))
    if problem:
        errors["file"] = problem
    return errors


@job_kind("csv_import", title="CSV import", check=check_args,
          description="Checks every row of a CSV file against the columns you declare, "
                      "logs each bad row, and gives you the good rows as a cleaned file.",
          result="download",
          args={"type": "object", "additionalProperties": False, "required": ["columns", "file"],
                "properties": {
                    "columns": {"type": "string", "title": "Columns", "minLength": 1,
                                "maxLength": 2000,
                                "description": "Comma-separated; each a name, or name:type with "
                                               "type text, integer, number, email or date",
                                "default": "name, email:email"},
                    "file": {"type": "string", "title": "CSV file (UTF-8, at most 5 MB)",
                             "contentMediaType": "text/csv", "maxLength": UPLOAD_MAX_BYTES},
                }})
def csv_import(ctx: Context, columns: str, file: str) -> dict[str, object]:
    """Check ``file`` row by row against ``columns``; save the good rows."""
    declared = parse_columns(columns)
    problem = check_csv_text(file)
    if problem:
        raise ValueError(problem)
    rows = list(csv.reader(io.StringIO(file.lstrip("\ufeff"), newline="")))
    header = [cell.strip() for cell in rows[0]]
    missing = [name for name, _ in declared if name not in header]
    if missing:
        raise ValueError(f"the header has no column {', '.join(map(repr, missing))}")
    where = {name: header.index(name) for name, _ in declared}
    data = rows[1:]
    total = len(data)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([name for name, _ in declared])
    valid = rejected = 0
    step = max(1, total // 100)
    for number, row in enumerate(data, start=2):
        reason = _row_problem(row, declared, where, len(header))
        if reason is None:
            writer.writerow([row[where[name]].strip() for name, _ in declared])
            valid += 1
        else:
            rejected += 1
            if rejected <= LOGGED_REJECTS_MAX:
                ctx.log(f"line {number}: {reason}")
            elif rejected == LOGGED_REJECTS_MAX + 1:
                ctx.log(f"more than {LOGGED_REJECTS_MAX} bad rows: counting the rest only")
        done = number - 1
        if done % step == 0 or done == total:
            ctx.progress(done, total=total, message=f"{done} of {total} rows checked",
                         stage="checking")
    ctx.log(f"{valid} good rows, {rejected} rejected, of {total}")
    name = ctx.save_file(CLEANED_FILE, out.getvalue().encode("utf-8"), "text/csv")
    return {"rows": total, "valid": valid, "rejected": rejected, "file": name}


def _row_problem(row: list[str], declared: list[tuple[str, str]], where: dict[str, int],
                 width: int) -> str | None:
    if len(row) != width:
        return f"has {len(row)} fields, the header has {width}"
    for name, kind in declared:
        value = row[where[name]].strip()
        check, what = TYPES[kind]
        if not value:
            return f"{name} is empty"
        if not check(value):
            return f"{name} is not {what}: {value[:80]!r}"
    return None
