"""CSV that a spreadsheet opens as data: the escaping every export of the console goes through.

Holder names, pass codes and card numbers come from outside (a resident's form, a forged
scan), and a cell a spreadsheet reads as a formula runs when an operator opens the
export.  OWASP's guidance (CSV Injection, https://owasp.org/www-community/attacks/CSV_Injection,
source OWASP/www-community ``pages/attacks/CSV_Injection.md``) asks that no cell begin
with ``=``, ``+``, ``-``, ``@``, tab, carriage return or line feed, that a field
separator or quote inside a value must not be able to start a new cell, and offers the
sanitisation: wrap every field in double quotes, prepend a single quote, double every
double quote.  Here:

- every field is quoted and its quotes doubled (:data:`csv.QUOTE_ALL`, RFC 4180 §2.6–2.7),
  so a ``,`` or ``;`` inside a value never starts a cell, whichever separator the
  spreadsheet guesses;
- a text field is prefixed with ``'`` when its first character that is not white space
  — after NFKC normalisation, so the full-width ``＝ ＋ － ＠`` and other look-alikes
  count as what they stand for — is one of ``= + - @``, or when it begins with a tab,
  carriage return or line feed, or contains ``|`` (the DDE form ``=cmd|' /C calc'!A0``
  and its variants).  A leading space or a full-width sign no longer hides a formula;
- numbers the console wrote itself (counts, row ids, a staffing change of ``-1``) stay
  numbers: they are not text from outside and cannot be formulas.

The prefix is visible to a program reading the file as plain CSV; that is the price OWASP
names too, and it is paid only by values that look like formulas.
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from collections.abc import Iterable, Iterator, Sequence

FORMULA_STARTS = frozenset("=+-@")
CONTROL_STARTS = frozenset("\t\r\n")


def looks_like_formula(text: str) -> bool:
    """Whether a spreadsheet could read ``text`` as a formula (or a DDE call)."""
    if not text:
        return False
    if text[0] in CONTROL_STARTS or "|" in unicodedata.normalize("NFKC", text):
        return True
    for char in text:
        # spaces (also the ideographic one), controls and zero-width marks a spreadsheet may skip
        if unicodedata.category(char) in ("Zs", "Cc", "Cf"):
            continue
        return unicodedata.normalize("NFKC", char)[:1] in FORMULA_STARTS
    return False


def cell(value: object) -> object:
    """One field as written: text made safe, numbers kept, None empty, lists and dicts as JSON, else ``str``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    if isinstance(value, dict | list | tuple):
        text = json.dumps(value, ensure_ascii=False, default=str)
    else:
        text = str(value)
    return "'" + text if looks_like_formula(text) else text


def rows_text(header: Iterable[str], rows: Iterable[Iterable[object]], *, every: int = 500) -> Iterator[str]:
    """The CSV text of ``header`` and ``rows``, in chunks of ``every`` rows (for streaming)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL)
    writer.writerow([cell(h) for h in header])
    for count, row in enumerate(rows, 1):
        writer.writerow([cell(value) for value in row])
        if count % every == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def table_download(
    columns: Sequence[str], rows: Iterable[Sequence[object]], fmt: str, filename: str
) -> tuple[bytes, str, dict[str, str]]:
    """A small table as a download: ``(body, media type, headers)`` for CSV (escaped as above) or JSON lines.

    The roster, attendance and patrol exports are a day's or a week's rows, so they are
    built whole rather than streamed; every JSON line is an object keyed by the columns.
    """
    if fmt == "csv":
        body, media = "".join(rows_text(columns, rows)), "text/csv; charset=utf-8"
    else:
        body = "".join(
            json.dumps(dict(zip(columns, row, strict=True)), ensure_ascii=False) + "\n" for row in rows
        )
        media = "application/json"
    headers = {"content-disposition": f'attachment; filename="{filename}.{fmt}"', "cache-control": "no-store"}
    return body.encode("utf-8"), media, headers
