"""Every page in English and Chinese: flat JSON catalogues merged from ``locales/*.{en,zh}.json``.

Each page family keeps its own pair of files (``core``, ``passes``, ``cards``, ``flow``)
so two people can add strings without touching one file.  Keys are dotted and prefixed
by their family; a key defined in two files is an error at start-up, not a silent
override.  ``tests/console/web/test_i18n.py`` checks that both languages hold the same
keys and that every key used in templates and Python exists.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("gatepost.console.web.i18n")

LOCALES_DIR = Path(__file__).resolve().parent / "locales"
LANGUAGES = ("en", "zh")
DEFAULT_LANGUAGE = "en"
LANGUAGE_NAMES = {"en": "English", "zh": "中文"}

Translate = Callable[..., str]


class CatalogueError(ValueError):
    """A locale file is malformed or defines a key another file already defines."""


def load_catalogues(directory: Path = LOCALES_DIR) -> dict[str, dict[str, str]]:
    catalogues: dict[str, dict[str, str]] = {lang: {} for lang in LANGUAGES}
    origin: dict[tuple[str, str], str] = {}
    for lang in LANGUAGES:
        for path in sorted(directory.glob(f"*.{lang}.json")):
            try:
                entries = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise CatalogueError(f"{path}: {exc}") from exc
            if not isinstance(entries, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in entries.items()
            ):
                raise CatalogueError(f"{path}: must be one JSON object of key -> text")
            for key, text in entries.items():
                if (lang, key) in origin:
                    raise CatalogueError(f"{path}: key {key!r} is also defined in {origin[lang, key]}")
                origin[lang, key] = path.name
                catalogues[lang][key] = text
    return catalogues


@functools.cache
def catalogues() -> dict[str, dict[str, str]]:
    return load_catalogues()


def translator(lang: str) -> Translate:
    """``t(key, **values)``: the text in ``lang`` (English if missing there), formatted with values.

    A key missing from every catalogue renders as the key itself and logs once, so a
    forgotten string is visible but never breaks a page.
    """
    table = catalogues().get(lang) or catalogues()[DEFAULT_LANGUAGE]
    fallback = catalogues()[DEFAULT_LANGUAGE]

    def t(key: str, **values: object) -> str:
        text = table.get(key) or fallback.get(key)
        if text is None:
            _missing(key)
            return key
        if values:
            try:
                return text.format(**values)
            except (KeyError, IndexError, ValueError):
                return text
        return text

    return t


@functools.cache
def _missing(key: str) -> None:
    log.warning("no translation for %r", key)


_QUALITY = re.compile(r"^\s*([A-Za-z]{1,8})(?:-[A-Za-z0-9]{1,8})*\s*(?:;\s*q\s*=\s*([0-9.]+))?\s*$")


def negotiate(accept_language: str | None) -> str:
    """The best of our languages for an ``Accept-Language`` header (English when none fits)."""
    best, best_q = DEFAULT_LANGUAGE, -1.0
    for part in (accept_language or "")[:500].split(","):
        match = _QUALITY.match(part)
        if not match:
            continue
        lang = match.group(1).lower()
        try:
            quality = float(match.group(2)) if match.group(2) else 1.0
        except ValueError:
            continue
        if lang in LANGUAGES and quality > best_q:
            best, best_q = lang, quality
    return best
