"""Shared builders for console tests: real events, as a gate would publish them."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from protocol import Event

START = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)

MakeEvents = Callable[..., list[Event]]


@pytest.fixture
def make_events() -> MakeEvents:
    """``make_events(site, gate, seqs, boot=None)``: one access.scan event per seq, fresh ids."""

    def build(site: str, gate: str, seqs: range | list[int], *, boot: str | None = None) -> list[Event]:
        boot = boot or uuid.uuid4().hex
        return [
            Event(
                id=uuid.uuid4().hex,
                site=site,
                gate=gate,
                boot=boot,
                seq=seq,
                time=START + timedelta(seconds=seq),
                clock_trusted=True,
                type="access.scan",
                data={"credential": "pass", "code": f"{seq:06d}", "granted": seq % 2 == 0},
            )
            for seq in seqs
        ]

    return build


# -- databases: the same test on SQLite and on PostgreSQL (task S; console/db.py) --------------

POSTGRES_ENV = "GATEPOST_TEST_POSTGRES"
POSTGRES_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"


def _postgres_server() -> str:
    import os

    return os.environ.get(POSTGRES_ENV, POSTGRES_DEFAULT)


def _with_database(url: str, database: str, query: str = "") -> str:
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(url)._replace(path=f"/{database}", query=query))


@pytest.fixture(scope="module")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database ``gp_<random>`` for this test module, dropped afterwards.

    Skips (saying why) when no server answers at ``$GATEPOST_TEST_POSTGRES`` or
    127.0.0.1:5432, so the suite still runs on a laptop with SQLite alone.
    """
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'gatepost[postgres]')")
    server = _postgres_server()
    try:
        admin = psycopg.connect(server, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        pytest.skip(f"no PostgreSQL at {server} (set {POSTGRES_ENV}): {str(exc).strip().splitlines()[0]}")
    name = f"gp_{uuid.uuid4().hex[:16]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield _with_database(server, name)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """A URL whose connections see only a fresh schema: an empty database per test, cheaply."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return _with_database(
        postgres_database, postgres_database.rsplit("/", 1)[1], f"options=-csearch_path%3D{schema}"
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """The same test twice: on an SQLite file in ``tmp_path`` and on an empty PostgreSQL schema."""
    if request.param == "sqlite":
        return tmp_path / "console" / "events.db"
    return request.getfixturevalue("postgres_url")
