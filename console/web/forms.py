"""What the pages that change things share: reading a field, a refusal shown on the form, the audit entry.

A form the console refuses is shown again with the reason, never a 500: the reason is a
:class:`PageError`, a translation key with its values and the HTTP status, and
:func:`refused` renders it the same way on every page (``passes/_error.html``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from console.web.auth import client_address
from console.web.render import render
from protocol.errors import GatepostError

MAX_FIELD_CHARS = 200
"""The longest text a form field or a search is read as; the rest is cut, never stored."""


class PageError(GatepostError, ValueError):
    """A request the page refuses, with the translation key and values of the message it shows."""

    def __init__(self, key: str, status: int = 400, **values: object) -> None:
        self.key = key
        self.status = status
        self.values = values
        super().__init__(self._describe())

    def _describe(self) -> str:
        """The message for logs, ``key values``; a subclass that knows the field puts it in front."""
        return f"{self.key} {self.values}"


def field_text(values: Mapping[str, object], name: str, limit: int = MAX_FIELD_CHARS) -> str:
    """A text field, trimmed and cut to ``limit``; a missing one, or a file where text belongs, is empty."""
    value = values.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def refused(request: Request, template: str, exc: PageError, **ctx: Any) -> Response:
    """The page again with the reason its form was refused."""
    return render(
        request, template, status_code=exc.status, error_key=exc.key, error_values=exc.values, **ctx
    )


async def audit(request: Request, action: str, target: str, detail: dict[str, Any]) -> None:
    """Record who changed what from which address: every change made on a page is audited.

    In a worker thread: while ingest holds SQLite's write lock the insert waits, and on
    the event loop that wait would freeze every page and live stream with it.
    """
    await run_in_threadpool(
        request.app.state.ctx.audit.record,
        request.state.user,
        action,
        target,
        detail,
        address=client_address(request),
    )


def thumbnail_folder(request: Request) -> Path | None:
    """Where the guard screens' holder thumbnails go; ``None`` when this console delivers none."""
    folder = getattr(getattr(request.app.state.ctx.config, "cards", None), "thumbnails", None)
    return None if folder is None else Path(folder)
