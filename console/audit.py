"""The audit log: who did what from the console, kept beside the events it concerns.

Every operator action that changes something or takes data out — logging in and out,
failed logins, acknowledging alarms, unlocking doors, issuing and revoking passes,
imports, user changes, exports — is one row.  Rows are only ever inserted; the web
console has no route that edits or deletes them, so the log answers "who opened the
north door at 02:14" after the fact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from console.db import now_text

if TYPE_CHECKING:
    from console.db import Database

MAX_TARGET_CHARS = 200
MAX_DETAIL_CHARS = 2000


class Named(Protocol):
    name: str


@dataclass(frozen=True, slots=True)
class AuditEntry:
    row_id: int
    time: str
    user: str
    action: str
    target: str
    detail: dict[str, Any]
    address: str


def _migrations() -> list:
    from console.db import Migration

    return [
        Migration(
            1,
            "audit log",
            (
                """CREATE TABLE audit_log (
                    row_id  {pk},
                    time    TEXT NOT NULL,
                    user_name TEXT NOT NULL,
                    action  TEXT NOT NULL,
                    target  TEXT NOT NULL,
                    detail  TEXT NOT NULL,
                    address TEXT NOT NULL
                )""",
                "CREATE INDEX audit_log_time ON audit_log (time)",
                "CREATE INDEX audit_log_action ON audit_log (action, time)",
            ),
        )
    ]


class AuditLog:
    """Append-only log in the console database (component ``audit``)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("audit", _migrations())

    def record(
        self,
        user: Named | str | None,
        action: str,
        target: str = "",
        detail: dict[str, Any] | str | None = None,
        *,
        address: str = "",
    ) -> None:
        """One row; ``user`` is a name, anything with ``.name``, or None for an anonymous attempt."""
        name = user if isinstance(user, str) else (user.name if user is not None else "-")
        if isinstance(detail, str):
            detail = {"text": detail}
        text = json.dumps(detail or {}, ensure_ascii=False, default=str)
        if len(text) > MAX_DETAIL_CHARS:
            text = json.dumps({"truncated": text[: MAX_DETAIL_CHARS - 40]}, ensure_ascii=False)
        self.db.execute(
            "INSERT INTO audit_log (time, user_name, action, target, detail, address) VALUES (?, ?, ?, ?, ?, ?)",
            (now_text(), name[:64], action[:64], str(target)[:MAX_TARGET_CHARS], text, address[:64]),
        )

    def entries(
        self,
        *,
        action: str | None = None,
        user: str | None = None,
        before_row_id: int | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Newest first, paged by ``before_row_id``."""
        where: list[str] = []
        params: list[object] = []
        if action:
            where.append("action = ?")
            params.append(action)
        if user:
            where.append("user_name = ?")
            params.append(user)
        if before_row_id is not None:
            where.append("row_id < ?")
            params.append(before_row_id)
        sql = "SELECT row_id, time, user_name, action, target, detail, address FROM audit_log"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY row_id DESC LIMIT ?"
        params.append(max(1, min(limit, 1000)))
        return [
            AuditEntry(int(r[0]), r[1], r[2], r[3], r[4], json.loads(r[5]), r[6])
            for r in self.db.query(sql, params)
        ]

    def actions(self) -> list[str]:
        return [row[0] for row in self.db.query("SELECT DISTINCT action FROM audit_log ORDER BY action")]
