"""What every request handler may reach: the console's configuration, stores and services.

One :class:`WebContext` is built by ``console run`` (or a test) and hung on
``app.state.ctx``; handlers take what they need from it rather than importing globals,
so a test can build an app around a temporary database and a real broker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from console.alarms import AlarmBook
    from console.audit import AuditLog
    from console.commands import CommandClient
    from console.config import ConsoleConfig
    from console.credentials import CardRegistry
    from console.db import Database
    from console.health import HealthListener
    from console.store import EventStore
    from console.users import UserStore
    from console.web.hub import Hub


@dataclass
class WebContext:
    config: ConsoleConfig
    db: Database
    store: EventStore
    audit: AuditLog
    alarms: AlarmBook
    users: UserStore
    commands: CommandClient | None
    hub: Hub
    office_dir: Path | None = None
    cards: CardRegistry | None = None
    health: HealthListener | None = None
    """Every gate's latest health message (console/health.py); ``None`` without a broker."""
