"""Retired gates: a gate taken out of service, whose integrations the console stops serving.

A gate that is dismantled still has a retained status on the broker and its history in
the store; neither should make it reappear elsewhere.  Retiring it (``gatepost console
gate retire SITE/GATE``) writes one row here.  The events stay (they are the record);
what follows a gate, such as the Home Assistant entities (console/homeassistant.py),
reads this table and removes itself.  The command is a separate process from the
running console, so the table is the message between them: the running console polls it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from console.db import Migration, now_text
from protocol.topics import validate_name

if TYPE_CHECKING:
    from console.db import Database


@dataclass(frozen=True, slots=True)
class RetiredGate:
    site: str
    gate: str
    retired_at: str
    by: str


def _migrations() -> list[Migration]:
    return [
        Migration(
            1,
            "retired gates",
            (
                """CREATE TABLE retired_gates (
                    site       TEXT NOT NULL,
                    gate       TEXT NOT NULL,
                    retired_at TEXT NOT NULL,
                    by_user    TEXT NOT NULL,
                    PRIMARY KEY (site, gate)
                )""",
            ),
        )
    ]


class GateRetirements:
    """The retired gates in the console database (component ``gate_retirement``)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("gate_retirement", _migrations())

    def retire(self, site: str, gate: str, *, by: str = "-") -> bool:
        """Retire ``site/gate``; False if it was retired already (the first retirement stands)."""
        validate_name(site, "site")
        validate_name(gate, "gate")
        if self.is_retired(site, gate):
            return False
        self.db.execute(
            "INSERT INTO retired_gates (site, gate, retired_at, by_user) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (site, gate) DO NOTHING",
            (site, gate, now_text(), by[:64]),
        )
        return True

    def reinstate(self, site: str, gate: str) -> bool:
        """Put a retired gate back in service; False if it was not retired."""
        if not self.is_retired(site, gate):
            return False
        self.db.execute("DELETE FROM retired_gates WHERE site = ? AND gate = ?", (site, gate))
        return True

    def is_retired(self, site: str, gate: str) -> bool:
        return bool(self.db.query("SELECT 1 FROM retired_gates WHERE site = ? AND gate = ?", (site, gate)))

    def all(self) -> list[RetiredGate]:
        rows = self.db.query("SELECT site, gate, retired_at, by_user FROM retired_gates ORDER BY site, gate")
        return [RetiredGate(*row) for row in rows]

    def keys(self) -> set[tuple[str, str]]:
        return {(row[0], row[1]) for row in self.db.query("SELECT site, gate FROM retired_gates")}
