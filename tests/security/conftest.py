"""Fixtures for the attack tests: the console tests' databases (SQLite and PostgreSQL) and event builders."""

from __future__ import annotations

from tests.console.conftest import db_url, make_events, postgres_database, postgres_url

__all__ = ["db_url", "make_events", "postgres_database", "postgres_url"]
