"""console/web/spreadsheet.py: the CSV escaping every export uses (OWASP CSV Injection)."""

from __future__ import annotations

import csv
import io
from datetime import date

import pytest

from console.web.spreadsheet import cell, looks_like_formula, rows_text


@pytest.mark.parametrize(
    "text",
    ["=1", "+1", "-1", "@A1", "\t1", "\r1", "\n1", " =1", "\u00a0=1", "\u3000=1", "\u200b=1", "\ufeff=1",
     "＝1", "＋1", "－1", "＠A1", "﹦1", "a|b", "a｜b", "=cmd|' /C calc'!A0"],
)  # fmt: skip
def test_what_a_spreadsheet_could_run_is_prefixed(text: str) -> None:
    assert looks_like_formula(text)
    assert cell(text) == "'" + text


@pytest.mark.parametrize("text", ["", "王小明", "Li Wei", "3-2-501", "O'Brien", "a=b", "x@example.org", "12"])
def test_ordinary_text_is_kept(text: str) -> None:
    assert not looks_like_formula(text) and cell(text) == text


def test_numbers_stay_numbers_and_other_values_become_text() -> None:
    assert [cell(v) for v in (-1, 2.5, True, None)] == [-1, 2.5, "true", ""]
    assert cell(date(2026, 11, 29)) == "2026-11-29"
    assert cell({"k": "=1"}) == '{"k": "=1"}'


def test_every_field_is_quoted_and_rows_come_in_chunks() -> None:
    chunks = list(rows_text(("a", "b"), ([i, f"x;{i}"] for i in range(5)), every=2))
    assert len(chunks) == 3
    text = "".join(chunks)
    assert text.splitlines()[:2] == ['"a","b"', '"0","x;0"']
    assert list(csv.reader(io.StringIO(text)))[-1] == ["4", "x;4"]
