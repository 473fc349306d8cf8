"""Backups of the console's store: taken while ingest runs, checked, written atomically, kept N deep.

(Not to be confused with console/passes/backup.py, the site office's key backup.)

* SQLite: :meth:`sqlite3.Connection.backup`, SQLite's online backup API
  (https://www.sqlite.org/backup.html, https://docs.python.org/3/library/sqlite3.html#sqlite3.Connection.backup),
  in one step: the copy is one read transaction, so it is the store as of one commit, and
  in WAL mode the ingest writer goes on committing meanwhile.  A copy made in small steps
  restarts whenever another connection writes, which under steady ingest may be never done.
* PostgreSQL: ``pg_dump --format=custom`` (one snapshot, in a repeatable-read transaction
  of its own: https://www.postgresql.org/docs/current/app-pgdump.html) and ``pg_restore``.

Each backup is written to a temporary name beside its final one, checked (SQLite:
``PRAGMA integrity_check`` and the events counted; PostgreSQL: ``pg_restore --list`` reads
the whole archive's table of contents), fsynced, renamed into place and its folder
fsynced: a backup under its final name is complete, and a crash leaves only a ``.tmp``.

Restoring over a live console's store would pull the floor from under its writer, so
:func:`restore_store` refuses while a console runs on it (the run lock that ``console run``
holds on an SQLite store, or a fresh connected heartbeat in ``console_link``), saying which,
unless told ``force``.  The SQLite file it replaces is kept beside it (``….before-restore-…``).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

from console.db import display_url, is_postgres_url, sqlite_path
from protocol.errors import GatepostError

log = logging.getLogger("gatepost.console.backup")

PREFIX = "events-"
SQLITE_SUFFIX = ".db"
PG_SUFFIX = ".pgdump"
STAMP = "%Y%m%dT%H%M%S%fZ"
PG_TIMEOUT_S = 3600.0


class BackupError(GatepostError, RuntimeError):
    """A backup or restore that did not happen; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class BackupResult:
    path: Path
    size: int
    events: int | None
    """Events in the copy (SQLite; None for a PostgreSQL archive, counted only on restore)."""
    seconds: float

    def describe(self) -> str:
        events = "" if self.events is None else f", {self.events} events"
        return f"{self.path} ({self.size} bytes{events}, {self.seconds:.2f} s)"


def backup_name(target: str | Path, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime(STAMP)
    return f"{PREFIX}{stamp}{PG_SUFFIX if is_postgres_url(target) else SQLITE_SUFFIX}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _publish(tmp: Path, final: Path) -> None:
    """fsync the file, rename it into place, fsync the folder: all or nothing under ``final``."""
    _fsync_file(tmp)
    os.replace(tmp, final)
    _fsync_dir(final.parent)


# -- SQLite ----------------------------------------------------------------------------------


def check_sqlite(path: Path) -> int:
    """``PRAGMA integrity_check`` on a copy, and its event count; BackupError if it is not whole."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise BackupError(f"{path}: cannot open: {exc}") from exc
    try:
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:
            raise BackupError(f"{path}: integrity check failed: {'; '.join(problems[:5])}")
        try:
            return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
        except sqlite3.Error as exc:
            raise BackupError(f"{path}: not a console store: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path}: not a readable SQLite database: {exc}") from exc
    finally:
        conn.close()


def _backup_sqlite(source: Path, tmp: Path) -> None:
    if not source.exists():
        raise BackupError(f"{source}: no such store")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)  # pages=-1: the whole store in one step, one consistent snapshot
            # A single self-contained file: no -wal beside it to forget when copying it away.
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise BackupError(f"{source}: backup failed: {exc}") from exc
    finally:
        src.close()


# -- PostgreSQL --------------------------------------------------------------------------------


def _pg_args(url: str) -> tuple[str, list[str]]:
    """The connection string for the tools, and ``--schema`` when the URL pins one by ``search_path``.

    psycopg passes ``options=-csearch_path=…`` through; pg_dump would then still dump every
    schema, so the store's schema is named explicitly.
    """
    options = parse_qs(urlsplit(url).query).get("options", [])
    for option in options:
        for part in option.split():
            if part.startswith("-csearch_path="):
                schema = part.split("=", 1)[1].split(",")[0].strip('"')
                if schema:
                    return url, [f"--schema={schema}"]
    return url, []


def _run(command: list[str], what: str, *, stdout: IO[Any] | None = None) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(
            command,
            stdout=stdout if stdout is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=PG_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        raise BackupError(f"{command[0]} is not installed (Debian: postgresql-client)") from None
    except subprocess.TimeoutExpired:
        raise BackupError(f"{what}: {command[0]} took longer than {PG_TIMEOUT_S:.0f} s") from None
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise BackupError(f"{what}: {command[0]} failed: {'; '.join(message[-3:]) or result.returncode}")
    return result


def _backup_postgres(url: str, tmp: Path) -> None:
    dsn, schema = _pg_args(url)
    _run(
        ["pg_dump", "--format=custom", "--no-owner", *schema, f"--file={tmp}", f"--dbname={dsn}"],
        display_url(url),
    )
    listing = _run(["pg_restore", "--list", str(tmp)], str(tmp))
    if b"TABLE DATA" not in listing.stdout or b" events" not in listing.stdout:
        raise BackupError(f"{tmp}: the archive holds no events table; is {display_url(url)} a console store?")


# -- backup ------------------------------------------------------------------------------------


def backup_store(target: str | Path, directory: Path, *, now: datetime | None = None) -> BackupResult:
    """Back the store ``target`` up into ``directory``; the result names the file and what it holds."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / backup_name(target, now)
    tmp = directory / f".{final.name}.tmp"
    started = time.monotonic()
    try:
        if is_postgres_url(target):
            _backup_postgres(str(target), tmp)
            events = None
        else:
            _backup_sqlite(sqlite_path(target), tmp)
            events = check_sqlite(tmp)
        _publish(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return BackupResult(final, final.stat().st_size, events, time.monotonic() - started)


def backups(directory: Path) -> list[Path]:
    """The complete backups in ``directory``, oldest first (names sort by time)."""
    if not Path(directory).is_dir():
        return []
    return sorted(
        path
        for path in Path(directory).iterdir()
        if path.name.startswith(PREFIX) and path.suffix in (SQLITE_SUFFIX, PG_SUFFIX) and path.is_file()
    )


def prune_backups(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` backups; return what was deleted."""
    if keep < 1:
        raise ValueError("keep at least one backup")
    found = backups(directory)
    doomed = found[:-keep] if len(found) > keep else []
    for path in doomed:
        path.unlink()
    if doomed:
        _fsync_dir(Path(directory))
    return doomed


# -- a running console -------------------------------------------------------------------------


def run_lock_path(target: str | Path) -> Path | None:
    """The file ``console run`` holds locked while it runs on an SQLite store (None for PostgreSQL)."""
    if is_postgres_url(target):
        return None
    path = sqlite_path(target)
    return path.with_name(path.name + ".running")


def take_run_lock(target: str | Path) -> IO[str] | None:
    """Taken by ``console run`` for its whole life (keep the handle); the kernel drops it when the
    process ends, however it ends, so a crashed console never leaves a stale lock behind."""
    path = run_lock_path(target)
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a")  # noqa: SIM115 - held open for the life of the process
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared: several processes may run on one store
    except OSError:
        log.warning("%s is locked by a restore in progress; carrying on", path)
    return handle


def running_console(target: str | Path) -> str | None:
    """Why a console looks to be running on ``target`` now, or None."""
    path = run_lock_path(target)
    if path is not None:
        if path.exists():
            with open(path, "a") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    return f"a console process holds {path} (it runs on this store)"
                fcntl.flock(handle, fcntl.LOCK_UN)
        if not sqlite_path(target).exists():
            return None
    return _heartbeat(target)


def _heartbeat(target: str | Path) -> str | None:
    from console.db import DatabaseError
    from console.store import LINK_STALE_S, EventStore, LinkKind

    try:
        store = EventStore(target, readonly=True)
    except (DatabaseError, GatepostError):
        return None  # no store (yet), or not ours: nothing is running on it
    try:
        link = store.link_state()
    except Exception:
        return None
    finally:
        store.close()
    if link is None or link.state is not LinkKind.CONNECTED:
        return None
    confirmed = datetime.fromisoformat(link.confirmed_at.rstrip("Z")).replace(tzinfo=UTC)
    age = (datetime.now(UTC) - confirmed).total_seconds()
    if age < LINK_STALE_S:
        return f"console {link.name} said it was connected {age:.0f} s ago (console_link)"
    return None


# -- restore -----------------------------------------------------------------------------------


def restore_store(backup: Path, target: str | Path, *, force: bool = False) -> str:
    """Put ``backup`` in place of the store ``target``; return what was done, in words."""
    backup = Path(backup)
    if not backup.is_file():
        raise BackupError(f"{backup}: no such backup")
    if not force:
        why = running_console(target)
        if why is not None:
            raise BackupError(
                f"refusing to restore over {display_url(target)} while a console runs on it: {why}. "
                "Stop it first (systemctl stop gatepost-console), or pass --force"
            )
    if is_postgres_url(target):
        if backup.suffix != PG_SUFFIX:
            raise BackupError(f"{backup}: not a PostgreSQL archive ({PG_SUFFIX}); the store is PostgreSQL")
        dsn, _schema = _pg_args(str(target))
        _run(
            [
                "pg_restore",
                "--clean",
                "--if-exists",
                "--no-owner",
                "--single-transaction",
                f"--dbname={dsn}",
                str(backup),
            ],
            display_url(target),
        )
        return f"restored {backup} into {display_url(target)}"
    if backup.suffix != SQLITE_SUFFIX:
        raise BackupError(f"{backup}: not an SQLite backup ({SQLITE_SUFFIX}); the store is SQLite")
    events = check_sqlite(backup)
    path = sqlite_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.restore.tmp")
    shutil.copyfile(backup, tmp)
    kept = ""
    if path.exists():
        aside = path.with_name(f"{path.name}.before-restore-{datetime.now(UTC).strftime(STAMP)}")
        _fsync_file(path)
        os.replace(path, aside)
        kept = f"; the store it replaced is {aside}"
    for suffix in ("-wal", "-shm"):  # the old store's journal must not be replayed into the new one
        with contextlib.suppress(FileNotFoundError):
            path.with_name(path.name + suffix).unlink()
    _publish(tmp, path)
    return f"restored {backup} ({events} events) into {path}{kept}"


# -- scheduled backups -------------------------------------------------------------------------


class BackupTimer:
    """Backs the store up every ``interval_s`` inside ``console run``, keeping the newest ``keep``.

    It counts from the newest backup already in the folder, so a console restarted every
    night still backs up once a day rather than never or at every start.
    """

    def __init__(self, target: str | Path, directory: Path, *, interval_s: float, keep: int) -> None:
        self.target = target
        self.directory = Path(directory)
        self.interval_s = interval_s
        self.keep = keep
        self.last: BackupResult | None = None
        self.taken = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def due_in(self) -> float:
        found = backups(self.directory)
        if not found:
            return 0.0
        age = time.time() - found[-1].stat().st_mtime
        return max(0.0, self.interval_s - age)

    def run_once(self) -> BackupResult | None:
        try:
            result = backup_store(self.target, self.directory)
            pruned = prune_backups(self.directory, self.keep)
        except (BackupError, OSError) as exc:
            self.failures += 1
            log.error("scheduled backup of %s failed: %s", display_url(self.target), exc)
            return None
        self.last = result
        self.taken += 1
        log.info("backed the store up to %s; %d old backups deleted", result.describe(), len(pruned))
        return result

    def _loop(self) -> None:
        while not self._stop.wait(self.due_in()):
            if self.run_once() is None:
                self._stop.wait(min(self.interval_s, 300.0))  # retry a failed backup, not in a spin

    def start(self) -> BackupTimer:
        self._thread = threading.Thread(target=self._loop, name="store-backup", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


def start_backup_timer(config: Any) -> BackupTimer | None:
    if config.backup.directory is None:
        return None
    return BackupTimer(
        config.store.target,
        config.backup.directory,
        interval_s=config.backup.interval_hours * 3600,
        keep=config.backup.keep,
    ).start()


# -- command line ------------------------------------------------------------------------------


def add_backup_parsers(commands: argparse._SubParsersAction) -> None:
    backup = commands.add_parser("backup", help="back the event store up now (also while the console runs)")
    backup.add_argument("--config", "-c", type=Path, required=True, help="the console's TOML configuration")
    backup.add_argument("--to", type=Path, help="folder for the backup (default: [backup] directory)")
    backup.add_argument("--keep", type=int, help="then delete all but the newest N backups there")
    backup.set_defaults(func=_backup_command)

    restore = commands.add_parser(
        "restore", help="put a backup in place of the event store (console stopped)"
    )
    restore.add_argument("--config", "-c", type=Path, required=True, help="the console's TOML configuration")
    restore.add_argument("file", type=Path, help="a backup made by `gatepost console backup`")
    restore.add_argument(
        "--force", action="store_true", help="restore even though a console seems to run on the store"
    )
    restore.set_defaults(func=_restore_command)


def _backup_command(args: argparse.Namespace) -> int:
    from console.config import load_config
    from protocol.configfile import EXIT_BAD_CONFIG, load_or_report

    config = load_or_report(load_config, args.config)
    if config is None:
        return EXIT_BAD_CONFIG
    directory = args.to or config.backup.directory
    if directory is None:
        print("gatepost console backup: give --to DIR or set [backup] directory", file=sys.stderr)
        return 2
    try:
        result = backup_store(config.store.target, directory)
        keep = args.keep if args.keep is not None else (config.backup.keep if args.to is None else None)
        pruned = prune_backups(directory, keep) if keep else []
    except (BackupError, OSError, ValueError) as exc:
        print(f"gatepost console backup: {exc}", file=sys.stderr)
        return 1
    print(f"backup: {result.describe()}")
    for path in pruned:
        print(f"deleted old backup {path}")
    return 0


def _restore_command(args: argparse.Namespace) -> int:
    from console.config import load_config
    from protocol.configfile import EXIT_BAD_CONFIG, load_or_report

    config = load_or_report(load_config, args.config)
    if config is None:
        return EXIT_BAD_CONFIG
    try:
        print(restore_store(args.file, config.store.target, force=args.force))
    except (BackupError, OSError) as exc:
        print(f"gatepost console restore: {exc}", file=sys.stderr)
        return 1
    return 0
