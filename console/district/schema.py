"""The district export's tables in the console database (component ``district``).

In the console's own store, beside the events, so that moving the cursor and the events it
points at are in one database: a restored backup brings back both, and a console restarted
mid-stream resumes exactly where the district last acknowledged.
"""

from __future__ import annotations

from console.db import Database, Migration

COMPONENT = "district"

MIGRATIONS = (
    Migration(
        1,
        "district cursor and API tokens",
        (
            """CREATE TABLE district_cursor (
                name       TEXT PRIMARY KEY,
                position   {bigint} NOT NULL,
                sent       {bigint} NOT NULL DEFAULT 0,
                settled    {bigint} NOT NULL DEFAULT 0,
                updated_at TEXT NOT NULL
            )""",
            """CREATE TABLE district_tokens (
                token_id     TEXT PRIMARY KEY,
                token_hash   TEXT NOT NULL UNIQUE,
                label        TEXT NOT NULL,
                sites        TEXT NOT NULL,
                created_by   TEXT NOT NULL,
                created_at   TEXT NOT NULL,
                revoked_at   TEXT,
                last_used_at TEXT
            )""",
            # a token limited to sites pages through its sites' events by row_id, not the whole table
            "CREATE INDEX events_site_row ON events (site, row_id)",
        ),
    ),
)


def migrate(db: Database) -> None:
    db.migrate(COMPONENT, MIGRATIONS)
