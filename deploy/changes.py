"""The changes an installation is made of: each says what it does, whether it is needed, and does it.

A plan is a list of these.  ``--dry-run`` prints :meth:`Change.describe` for every change
whose :meth:`Change.pending` is true and stops; a real run applies the same list, so what
was printed is what is done.  ``pending`` looks at the target as it is now, which is what
makes a second run change nothing: every change already made reports itself not pending.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from deploy.errors import InstallError
from deploy.target import Target

Trigger = str
"""What must be told after a change on a running system: ``systemd`` (daemon-reload) or ``udev``."""


class Change(ABC):
    triggers: frozenset[Trigger] = frozenset()

    @abstractmethod
    def describe(self) -> str:
        """One line for ``--dry-run`` and the log: what will be (or was) done, with modes and owners."""

    @abstractmethod
    def pending(self, target: Target) -> bool:
        """Whether the target differs from what this change makes it."""

    @abstractmethod
    def apply(self, target: Target) -> None: ...


def _owner(target: Target, user: str, group: str) -> tuple[int, int]:
    accounts = target.accounts()
    uid, gid = accounts.uid(user), accounts.gid(group)
    if uid is None or gid is None:
        raise InstallError(f"{user}:{group} does not exist in {target.root}/etc/passwd and group")
    return uid, gid


def _differs(target: Target, path: Path, mode: int, user: str, group: str) -> bool:
    info = path.lstat()
    accounts = target.accounts()
    return (
        stat.S_IMODE(info.st_mode) != mode
        or info.st_uid != accounts.uid(user)
        or info.st_gid != accounts.gid(group)
    )


# -- accounts ----------------------------------------------------------------------------


@dataclass
class Group(Change):
    name: str

    def describe(self) -> str:
        return f"create system group {self.name}"

    def pending(self, target: Target) -> bool:
        return target.accounts().gid(self.name) is None

    def apply(self, target: Target) -> None:
        target.run(["groupadd", "--system", *target.root_option(), self.name])


@dataclass
class User(Change):
    name: str
    home: PurePosixPath
    groups: Sequence[str]
    comment: str

    def _missing_groups(self, target: Target) -> list[str]:
        have = target.accounts().groups_of(self.name)
        return [group for group in self.groups if group not in have]

    def describe(self) -> str:
        return (
            f"create system user {self.name} (home {self.home}, no login shell,"
            f" groups {','.join(self.groups)}), or add it to the groups it lacks"
        )

    def pending(self, target: Target) -> bool:
        return target.accounts().uid(self.name) is None or bool(self._missing_groups(target))

    def apply(self, target: Target) -> None:
        root = target.root_option()
        if target.accounts().uid(self.name) is None:
            target.run(
                [
                    "useradd",
                    "--system",
                    "--user-group",
                    "--home-dir",
                    str(self.home),
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    "--comment",
                    self.comment,
                    "--groups",
                    ",".join(self.groups),
                    *root,
                    self.name,
                ]
            )
        missing = self._missing_groups(target)
        if missing:
            target.run(["usermod", "--append", "--groups", ",".join(missing), *root, self.name])


@dataclass
class RemoveUser(Change):
    """``--purge`` only: the user and its own group go; shared groups (gpio, dialout) stay."""

    name: str

    def describe(self) -> str:
        return f"delete system user {self.name}"

    def pending(self, target: Target) -> bool:
        return target.accounts().uid(self.name) is not None

    def apply(self, target: Target) -> None:
        target.run(["userdel", *target.root_option(), self.name])


# -- files -------------------------------------------------------------------------------


@dataclass
class Directory(Change):
    path: PurePosixPath
    mode: int
    user: str = "root"
    group: str = "root"

    def describe(self) -> str:
        return f"make directory {self.path} ({self.mode:04o} {self.user}:{self.group})"

    def pending(self, target: Target) -> bool:
        path = target.path(self.path)
        return not path.is_dir() or _differs(target, path, self.mode, self.user, self.group)

    def apply(self, target: Target) -> None:
        path = target.path(self.path)
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, *_owner(target, self.user, self.group))
        os.chmod(path, self.mode)


@dataclass
class File(Change):
    path: PurePosixPath
    content: bytes
    mode: int = 0o644
    user: str = "root"
    group: str = "root"
    what: str = ""
    """What the file is, for the description (``unit``, ``key``, ``udev rules``)."""
    triggers: frozenset[Trigger] = frozenset()

    def describe(self) -> str:
        what = f"{self.what} " if self.what else ""
        return (
            f"write {what}{self.path} ({self.mode:04o} {self.user}:{self.group}, {len(self.content)} bytes)"
        )

    def pending(self, target: Target) -> bool:
        path = target.path(self.path)
        if path.is_symlink() or not path.is_file():
            return True
        return path.read_bytes() != self.content or _differs(target, path, self.mode, self.user, self.group)

    def apply(self, target: Target) -> None:
        path = target.path(self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        uid, gid = _owner(target, self.user, self.group)
        temporary = path.with_name(f".{path.name}.gatepost-new")
        # Owner and mode are set before the content is written and the file is renamed
        # into place, so a key is never readable by others, not even for an instant.
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, self.mode)
            os.write(fd, self.content)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)


@dataclass
class Remove(Change):
    """A file, or with ``tree`` a whole folder, that the installation made."""

    path: PurePosixPath
    tree: bool = False
    triggers: frozenset[Trigger] = frozenset()

    def describe(self) -> str:
        return f"remove {self.path}{'/ and everything in it' if self.tree else ''}"

    def pending(self, target: Target) -> bool:
        path = target.path(self.path)
        return path.exists() or path.is_symlink()

    def apply(self, target: Target) -> None:
        path = target.path(self.path)
        if self.tree and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


@dataclass
class Block(Change):
    """A marked block of lines in a file someone else owns (``config.txt``): one copy, ours only.

    Everything between the markers is ours and is replaced whole; everything outside is
    left byte for byte.  Several blocks (an old hand edit) collapse into one.  With no
    ``lines`` the block is removed.
    """

    path: PurePosixPath
    begin: str
    end: str
    lines: Sequence[str] = ()

    def describe(self) -> str:
        if not self.lines:
            return f"remove the '{self.begin}' block from {self.path}"
        return f"set the '{self.begin}' block in {self.path}: " + "; ".join(self.lines)

    def _rewritten(self, text: str) -> str:
        kept: list[str] = []
        inside = False
        at: int | None = None
        for line in text.splitlines(keepends=True):
            stripped = line.strip()
            if not inside and stripped == self.begin:
                inside = True
                at = len(kept) if at is None else at
                continue
            if inside:
                if stripped == self.end:
                    inside = False
                continue
            kept.append(line)
        if inside:
            raise InstallError(f"{self.path}: '{self.begin}' has no '{self.end}'; fix the file by hand")
        if not self.lines:
            return "".join(kept)
        block = [f"{self.begin}\n", *(f"{line}\n" for line in self.lines), f"{self.end}\n"]
        if at is None:
            if kept and not kept[-1].endswith("\n"):
                kept[-1] += "\n"
            at = len(kept)
        return "".join(kept[:at] + block + kept[at:])

    def pending(self, target: Target) -> bool:
        path = target.path(self.path)
        if not path.exists():
            return bool(self.lines)
        text = path.read_text(encoding="utf-8")
        return self._rewritten(text) != text

    def apply(self, target: Target) -> None:
        path = target.path(self.path)
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        info = path.stat() if path.exists() else None
        temporary = path.with_name(f".{path.name}.gatepost-new")
        temporary.write_text(self._rewritten(text), encoding="utf-8")
        if info is not None:
            os.chmod(temporary, stat.S_IMODE(info.st_mode))
        os.replace(temporary, path)


# -- packages, units and commands --------------------------------------------------------


def installed_packages(target: Target) -> set[str]:
    """Package names dpkg has as installed in the target (its status file; no dpkg run)."""
    try:
        text = target.path("/var/lib/dpkg/status").read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return set()
    names = set()
    for paragraph in text.split("\n\n"):
        fields = dict(
            line.split(":", 1) for line in paragraph.splitlines() if ":" in line and not line.startswith(" ")
        )
        if fields.get("Status", "").strip() == "install ok installed":
            names.add(fields.get("Package", "").strip())
    return names


@dataclass
class Packages(Change):
    """Debian packages; each entry may name alternatives (``chromium|chromium-browser``), the first is installed.

    From the bundle's ``debs/`` when it has them (no network), else through the target's apt.
    """

    wanted: Sequence[str]
    debs: Sequence[Path] = ()
    """``.deb`` files from the bundle, matching the target's architecture."""

    def _missing(self, target: Target) -> list[str]:
        have = installed_packages(target)
        return [entry for entry in self.wanted if not set(entry.split("|")) & have]

    def describe(self) -> str:
        source = f"from the bundle's {len(self.debs)} .deb files" if self.debs else "with apt-get"
        return (
            f"install Debian packages {', '.join(self.wanted)} ({source}; those already installed are kept)"
        )

    def pending(self, target: Target) -> bool:
        return bool(self._missing(target))

    def apply(self, target: Target) -> None:
        missing = [entry.split("|")[0] for entry in self._missing(target)]
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        apt = ["apt-get", "install", "-y", "-q", "--no-install-recommends"]
        if not self.debs:
            target.run(target.inside([*apt, *missing]), env=env)
        else:
            staging = Path(tempfile.mkdtemp(prefix="gatepost-debs-", dir=target.path("/tmp")))
            staging.chmod(0o755)  # apt reads local files as its unprivileged _apt user
            try:
                # apt reads "%3a" (an epoch's colon, as apt-get download names files) as an
                # escape in a local file's name: the copies are named plainly.
                names = [deb.name.replace("%", "_") for deb in self.debs]
                for deb, name in zip(self.debs, names, strict=True):
                    shutil.copyfile(deb, staging / name)
                    (staging / name).chmod(0o644)
                inside = PurePosixPath("/") / staging.relative_to(target.root.resolve())
                files = [str(inside / name) for name in names]
                target.run(target.inside([*apt, *files]), env=env)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        still = self._missing(target)
        if still:
            raise InstallError(f"packages still missing after apt-get: {', '.join(still)}")


@dataclass
class EnableUnit(Change):
    name: str
    enable: bool = True
    triggers: frozenset[Trigger] = frozenset({"systemd"})

    def describe(self) -> str:
        return f"{'enable' if self.enable else 'disable'} {self.name}"

    def _enabled(self, target: Target) -> bool:
        done = target.run(["systemctl", *target.systemctl_root(), "is-enabled", self.name], check=False)
        return done.stdout.decode().strip() in ("enabled", "enabled-runtime", "alias")

    def pending(self, target: Target) -> bool:
        return self._enabled(target) != self.enable

    def apply(self, target: Target) -> None:
        # On a running system a disabled unit is stopped too: Debian's mosquitto would hold
        # the broker's port, an uninstalled agent must not keep running from a deleted folder.
        now = ["--now"] if target.live and not self.enable else []
        verb = "enable" if self.enable else "disable"
        target.run(["systemctl", *target.systemctl_root(), verb, *now, self.name])


@dataclass
class Command(Change):
    """A step only a program can take (making the broker's files, encrypting a credential)."""

    argv: Sequence[str]
    text: str
    is_pending: Callable[[Target], bool]
    input: bytes | None = None
    triggers: frozenset[Trigger] = field(default_factory=frozenset)

    def describe(self) -> str:
        return self.text

    def pending(self, target: Target) -> bool:
        return self.is_pending(target)

    def apply(self, target: Target) -> None:
        target.run(target.inside(self.argv), input=self.input)
