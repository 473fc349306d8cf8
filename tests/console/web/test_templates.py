"""Every page's ``title`` block is words only: markup there lands inside ``<title>``, where the
browser shows it as text and scripts never run (a merge once put a page's JSON labels there)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

TEMPLATES = Path(__file__).resolve().parents[3] / "console" / "web" / "templates"
_TITLE = re.compile(r"{%\s*block title\s*%}(.*?){%\s*endblock", re.S)


@pytest.mark.parametrize(
    "path", sorted(TEMPLATES.rglob("*.html")), ids=lambda p: str(p.relative_to(TEMPLATES))
)
def test_title_block_holds_no_markup(path: Path) -> None:
    for body in _TITLE.findall(path.read_text(encoding="utf-8")):
        assert "<" not in body and "\n" not in body.strip(), f"{path.name}: title block holds {body[:80]!r}"
