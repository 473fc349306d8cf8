"""TOML configuration files validated by a pydantic model, with errors that name the line.

An installer editing ``/etc/gatepost/*.toml`` on a gate needs "``gate.toml:12:
mqtt.port: Input should be less than or equal to 65535``", not a stack trace, so every
problem becomes a :class:`ConfigIssue` with file, line and dotted key, and all of them
are reported at once.  ``tomllib`` does not say where a key was written, so
:func:`key_lines` finds it by scanning the text for table headers and ``key =`` lines;
a key that is missing (or inside an inline table or array) is reported at the line of
the nearest enclosing table that is written, or line 1 for the top level.

:func:`load_or_report` is the step every ``gatepost … run`` and ``check-config`` starts
with, so a bad file reads and exits the same whichever program was given it.
"""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from protocol.errors import GatepostError

KeyPath = tuple[str | int, ...]

_M = TypeVar("_M", bound=BaseModel)
_C = TypeVar("_C")

EXIT_BAD_CONFIG = 2
"""A command's exit status when its configuration file cannot be used, as for any bad usage."""

_BARE = r"[A-Za-z0-9_-]+"
_BASIC = r'"(?:[^"\\]|\\.)*"'
_LITERAL = r"'[^']*'"
_KEY = rf"(?:{_BARE}|{_BASIC}|{_LITERAL})"
_DOTTED = rf"{_KEY}(?:\s*\.\s*{_KEY})*"
_TABLE = re.compile(rf"^\s*\[\s*({_DOTTED})\s*\]\s*(?:#.*)?$")
_ARRAY_TABLE = re.compile(rf"^\s*\[\[\s*({_DOTTED})\s*\]\]\s*(?:#.*)?$")
_ASSIGN = re.compile(rf"^\s*({_DOTTED})\s*=")
_PART = re.compile(_KEY)
_TOML_LINE = re.compile(r"\s*\(at line (\d+), column \d+\)\s*$")


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in one configuration file: ``FILE:LINE: key.path: message``."""

    file: Path
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else f"{self.file}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(GatepostError, ValueError):
    """A configuration file that cannot be used; ``issues`` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        super().__init__("\n".join(str(issue) for issue in issues))
        self.issues = issues


def _split_key(dotted: str) -> list[str]:
    parts: list[str] = []
    for match in _PART.finditer(dotted):
        token = match.group(0)
        if token.startswith('"'):
            token = tomllib.loads(f"k = {token}")["k"]
        elif token.startswith("'"):
            token = token[1:-1]
        parts.append(token)
    return parts


def _code_lines(text: str) -> list[tuple[int, str]]:
    """Lines that start a statement: not inside a multi-line string or an open array/inline table."""
    lines: list[tuple[int, str]] = []
    depth = 0
    multiline: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if multiline is None and depth == 0:
            lines.append((number, line))
        i = 0
        while i < len(line):
            if multiline is not None:
                end = line.find(multiline, i)
                if end < 0:
                    break
                multiline, i = None, end + 3
                continue
            char = line[i]
            if char == "#":
                break
            if line.startswith('"""', i) or line.startswith("'''", i):
                multiline, i = line[i : i + 3], i + 3
                continue
            if char == '"':
                i += 1
                while i < len(line) and line[i] != '"':
                    i += 2 if line[i] == "\\" else 1
            elif char == "'":
                close = line.find("'", i + 1)
                i = len(line) if close < 0 else close
            elif char in "[{" and not (depth == 0 and _is_header(line)):
                depth += 1
            elif char in "]}" and depth > 0:
                depth -= 1
            i += 1
    return lines


def _is_header(line: str) -> bool:
    return bool(_TABLE.match(line) or _ARRAY_TABLE.match(line))


def key_lines(text: str) -> dict[KeyPath, int]:
    """Map each written key path to its line: ``("mqtt", "port") -> 7``, ``("scanners", 0) -> 12``.

    Best effort by design: it only has to point a person at the right line, and a path
    it cannot place falls back to its nearest placed ancestor.
    """
    found: dict[KeyPath, int] = {}
    table: KeyPath = ()
    arrays: dict[KeyPath, int] = {}
    for number, line in _code_lines(text):
        if match := _ARRAY_TABLE.match(line):
            name = tuple(_split_key(match.group(1)))
            index = arrays.get(name, -1) + 1
            arrays[name] = index
            table = (*_resolve(name, arrays), index)
            found.setdefault(table[:-1], number)
            found[table] = number
        elif match := _TABLE.match(line):
            table = _resolve(tuple(_split_key(match.group(1))), arrays)
            for end in range(1, len(table) + 1):
                found.setdefault(table[:end], number)
        elif match := _ASSIGN.match(line):
            key = (*table, *_split_key(match.group(1)))
            for end in range(len(table) + 1, len(key) + 1):
                found.setdefault(key[:end], number)
    return found


def _resolve(name: tuple[str, ...], arrays: dict[KeyPath, int]) -> KeyPath:
    """``[scanners.options]`` after ``[[scanners]]`` means the last scanner's options."""
    path: list[str | int] = []
    for part in name:
        path.append(part)
        index = arrays.get(tuple(p for p in path if isinstance(p, str)))
        if index is not None and len(path) < len(name):
            path.append(index)
    return tuple(path)


def line_of(lines: dict[KeyPath, int], loc: KeyPath) -> int:
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def _message(error: Any) -> str:
    if error.get("type") == "extra_forbidden":
        return "unknown key (not allowed here)"
    if error.get("type") == "missing":
        return "required key is missing"
    message = str(error.get("msg", "invalid"))
    return message.removeprefix("Value error, ")


def load_toml_model(path: Path, model: type[_M]) -> _M:
    """Read ``path`` and validate it as ``model``, or raise ConfigError naming every bad line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(path, None, "", f"cannot read: {exc}")]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_LINE.search(message)
        line = int(match.group(1)) if match else None
        raise ConfigError(
            [ConfigIssue(path, line, "", f"TOML syntax: {_TOML_LINE.sub('', message)}")]
        ) from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        lines = key_lines(text)
        issues = []
        for error in exc.errors(include_url=False, include_input=False):
            loc = tuple(error.get("loc", ()))
            key = ".".join(str(part) for part in loc) or "(file)"
            issues.append(ConfigIssue(path, line_of(lines, loc), key, _message(error)))
        issues.sort(key=lambda issue: (issue.line or 0, issue.key))
        raise ConfigError(issues) from None


def load_or_report(load: Callable[[Path], _C], path: Path) -> _C | None:
    """``load(path)``, or None once every problem is on stderr, one ``FILE:LINE: key: message`` each.

    The caller then exits with :data:`EXIT_BAD_CONFIG`: an installer (or systemd's journal)
    sees what to fix in the file, never a traceback.
    """
    try:
        return load(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None
