"""Atomic file replacement, so mosquitto (or a reader on another terminal) never sees half a file.

mosquitto reads the dynamic-security plugin's file when it starts; a torn file at that
moment (a power cut during provisioning) would lock every gate out.  Writing a temporary file in the same directory, syncing it and
renaming it over the old one makes each change all-or-nothing, also across a power cut.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: str | bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data``; the file has ``mode`` from the moment it exists.

    The new file takes the group of its directory, so a config directory created as
    ``root:mosquitto 0750`` keeps files the broker (running as ``mosquitto``) can read.
    """
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        group = path.parent.stat().st_gid
        if group != os.getegid():
            with contextlib.suppress(PermissionError):
                os.fchown(fd, -1, group)
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _sync_dir(path.parent)


def _sync_dir(directory: Path) -> None:
    """Make the rename itself durable; without this a power cut can bring back the old file."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
