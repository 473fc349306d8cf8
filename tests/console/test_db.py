"""console/db.py on both backends: placeholders, transactions, threads, migrations."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from console.db import Database, DatabaseError, IntegrityError, Migration, display_url, to_psycopg

MIGRATIONS = (
    Migration(1, "people", ("CREATE TABLE people (id {pk}, name TEXT NOT NULL UNIQUE, photo {blob})",)),
    Migration(2, "age", ("ALTER TABLE people ADD COLUMN born {bigint}",)),
)


@pytest.fixture
def db(db_url: str | Path) -> Database:
    database = Database(db_url)
    yield database
    database.close()


def test_placeholders_are_translated_outside_literals_only() -> None:
    sql = "SELECT '?', 'a%', x::jsonb, :name, ? -- ? %\n"
    assert to_psycopg(sql) == "SELECT '?', 'a%%', x::jsonb, %(name)s, %s -- ? %%\n"


def test_password_is_not_displayed() -> None:
    assert display_url("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert display_url(Path("/x/events.db")) == "/x/events.db"


def test_roundtrip_of_types_and_percent(db: Database) -> None:
    assert db.migrate("test", MIGRATIONS) == [1, 2]
    assert (
        db.execute("INSERT INTO people (name, photo, born) VALUES (?, ?, ?)", ("a%b", b"\x00\xff", 2**40))
        == 1
    )
    (row_id,) = db.query("INSERT INTO people (name) VALUES (?) RETURNING id", ("b",))[0]
    assert row_id == 2
    assert db.query("SELECT name, photo, born FROM people WHERE name LIKE '%\\%%' ESCAPE '\\'") == [
        ("a%b", b"\x00\xff", 2**40)
    ]
    assert db.query("SELECT id FROM people WHERE name = :name", {"name": "b"}) == [(2,)]
    db.executemany("INSERT INTO people (name) VALUES (?)", [("c",), ("d",)])
    assert db.query("SELECT COUNT(*) FROM people") == [(4,)]


def test_text_with_nul_is_stored_not_a_server_error(db: Database) -> None:
    """PostgreSQL text cannot hold NUL: there it becomes U+FFFD, on SQLite it stays."""
    kept = "a\x00b" if db.dialect == "sqlite" else "a\ufffdb"
    db.migrate("test", MIGRATIONS)
    db.execute("INSERT INTO people (name) VALUES (?)", ("a\x00b",))
    db.executemany("INSERT INTO people (name) VALUES (?)", [("c\x00",)])
    assert db.query("SELECT name FROM people WHERE name = :name", {"name": "a\x00b"}) == [(kept,)]
    assert db.query("SELECT COUNT(*) FROM people WHERE name = ?", ("c\x00",)) == [(1,)]


def test_a_login_name_or_audit_target_with_nul_is_refused_or_kept(db: Database) -> None:
    from console.audit import AuditLog
    from console.users import LoginOutcome, UserStore

    users, audit = UserStore(db), AuditLog(db)
    users.add("admin", "correct horse battery", "admin")
    assert users.login("ad\x00min", "correct horse battery").outcome is LoginOutcome.BAD_CREDENTIALS
    audit.record("-", "login.failed", "ad\x00min", {"name": "ad\x00min"})
    (entry,) = audit.entries()
    assert entry.target == ("ad\x00min" if db.dialect == "sqlite" else "ad\ufffdmin")
    assert entry.detail == {"name": "ad\x00min"}  # JSON text writes NUL as \u0000 anyway


def test_transaction_rolls_back_whole_and_names_the_constraint(db: Database) -> None:
    db.migrate("test", MIGRATIONS)
    db.execute("INSERT INTO people (name) VALUES (?)", ("a",))
    with pytest.raises(IntegrityError), db.transaction():
        db.execute("INSERT INTO people (name) VALUES (?)", ("new",))
        db.execute("INSERT INTO people (name) VALUES (?)", ("a",))
    assert db.query("SELECT name FROM people ORDER BY name") == [("a",)]
    with db.transaction():
        db.execute("INSERT INTO people (name) VALUES (?)", ("b",))
    assert db.query("SELECT COUNT(*) FROM people") == [(2,)]


def test_transactions_do_not_nest(db: Database) -> None:
    with pytest.raises(DatabaseError, match="nest"), db.transaction(), db.transaction():
        pass


def test_bad_sql_is_a_database_error_not_a_driver_one(db: Database) -> None:
    with pytest.raises(DatabaseError):
        db.query("SELECT * FROM no_such_table")
    assert db.query("SELECT 1") == [(1,)]  # the connection survives (PostgreSQL: not stuck in a failed tx)


def test_one_connection_per_thread(db: Database) -> None:
    db.migrate("test", MIGRATIONS)
    errors: list[BaseException] = []

    def insert(prefix: str) -> None:
        try:
            for i in range(20):
                with db.transaction():
                    db.execute("INSERT INTO people (name) VALUES (?)", (f"{prefix}{i}",))
        except BaseException as exc:  # reported below, with the thread's own words
            errors.append(exc)

    threads = [threading.Thread(target=insert, args=(p,)) for p in "abcd"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert db.query("SELECT COUNT(*) FROM people") == [(80,)]


def test_migrations_are_per_component_and_idempotent(db_url: str | Path) -> None:
    with Database(db_url) as db:
        assert db.migrate("test", MIGRATIONS[:1]) == [1]
        assert db.migrate("other", (Migration(1, "x", ("CREATE TABLE other_x (id {pk})",)),)) == [1]
    with Database(db_url) as db:
        assert db.migrate("test", MIGRATIONS) == [2]
        assert db.migrate("test", MIGRATIONS) == []
        assert db.schema_version("test") == 2 and db.schema_version("other") == 1
        assert db.schema_version("missing") == 0
        assert db.columns("people") == ["id", "name", "photo", "born"]


def test_a_failed_migration_leaves_nothing_behind(db: Database) -> None:
    broken = Migration(1, "broken", ("CREATE TABLE half (id {pk})", "CREATE TABLE broken ("))
    with pytest.raises(DatabaseError):
        db.migrate("test", (broken,))
    assert db.schema_version("test") == 0
    assert not db.table_exists("half")


def test_concurrent_first_opens_apply_each_migration_once(db_url: str | Path) -> None:
    first = Database(db_url)
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def open_and_migrate() -> None:
        try:
            with Database(db_url) as db:
                results.append(db.migrate("test", MIGRATIONS))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_and_migrate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(v for applied in results for v in applied) == [1, 2]
    assert first.query("SELECT version FROM schema_migrations WHERE component = 'test' ORDER BY 1") == [
        (1,),
        (2,),
    ]
    first.close()


def test_legacy_sqlite_schema_migrations_are_carried_forward(tmp_path: Path) -> None:
    """A store made before components existed: (version, name, applied_at) rows become 'events'."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    conn.executemany(
        "INSERT INTO schema_migrations VALUES (?, ?, ?)", [(1, "events", "t1"), (2, "status", "t2")]
    )
    conn.commit()
    conn.close()
    with Database(path) as db:
        assert db.schema_version("events") == 2
        assert db.migrate("web", MIGRATIONS[:1]) == [1]
        assert db.query(
            "SELECT component, version, name, applied_at FROM schema_migrations ORDER BY 1, 2"
        ) == [
            ("events", 1, "events", "t1"),
            ("events", 2, "status", "t2"),
            (
                "web",
                1,
                "people",
                db.query("SELECT applied_at FROM schema_migrations WHERE component='web'")[0][0],
            ),
        ]


def test_readonly_refuses_missing_file_and_writes(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="no such database"):
        Database(tmp_path / "missing.db", readonly=True)
    Database(tmp_path / "x.db").close()
    with Database(tmp_path / "x.db", readonly=True) as db, pytest.raises(DatabaseError):
        db.execute("CREATE TABLE t (x INTEGER)")


def test_in_memory_sqlite_is_refused() -> None:
    with pytest.raises(DatabaseError, match="in-memory"):
        Database(":memory:")


def test_unreachable_postgres_is_a_clear_error() -> None:
    with pytest.raises(DatabaseError, match="cannot connect") as info:
        Database("postgresql://nobody:pw@127.0.0.1:1/none?connect_timeout=2")
    assert "pw" not in str(info.value)


def test_closed_database_refuses(db: Database) -> None:
    db.close()
    with pytest.raises(DatabaseError, match="closed"):
        db.query("SELECT 1")
