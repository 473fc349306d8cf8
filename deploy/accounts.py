"""Users and groups as the target root's own ``/etc/passwd`` and ``/etc/group`` say, not this machine's.

The installer may write into a root that is not the running system (``--root``, a chroot
being prepared, an SD card mounted on a laptop), so names are resolved from that root's
files, never with :mod:`pwd`, which would ask this machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Accounts:
    users: dict[str, tuple[int, int]]
    """name -> (uid, primary gid)"""
    groups: dict[str, tuple[int, frozenset[str]]]
    """name -> (gid, supplementary members)"""

    @classmethod
    def read(cls, root: Path) -> Accounts:
        users: dict[str, tuple[int, int]] = {}
        groups: dict[str, tuple[int, frozenset[str]]] = {}
        for fields in _entries(root / "etc/passwd"):
            if len(fields) >= 4 and fields[2].isdigit() and fields[3].isdigit():
                users[fields[0]] = (int(fields[2]), int(fields[3]))
        for fields in _entries(root / "etc/group"):
            if len(fields) >= 3 and fields[2].isdigit():
                members = frozenset(m for m in (fields[3] if len(fields) > 3 else "").split(",") if m)
                groups[fields[0]] = (int(fields[2]), members)
        return cls(users, groups)

    def uid(self, name: str) -> int | None:
        entry = self.users.get(name)
        return None if entry is None else entry[0]

    def gid(self, name: str) -> int | None:
        entry = self.groups.get(name)
        return None if entry is None else entry[0]

    def groups_of(self, user: str) -> frozenset[str]:
        """Every group ``user`` is in: its primary group and those listing it as a member."""
        primary = self.users.get(user, (None, None))[1]
        return frozenset(
            name for name, (gid, members) in self.groups.items() if user in members or gid == primary
        )


def _entries(path: Path) -> list[list[str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]
