"""The machine being installed: its root folder, and how to run a command as that machine would.

``--root DIR`` installs into a root that is not the running system (a chroot, an SD card
mounted elsewhere).  Files are written under ``DIR``; accounts are changed with the
shadow tools' own ``--root``; ``systemctl --root`` enables units; only what must run the
target's own programs (its Python, apt, systemd-creds) runs under ``chroot DIR``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from deploy.accounts import Accounts
from deploy.errors import InstallError


@dataclass(frozen=True)
class Target:
    root: Path

    @property
    def in_place(self) -> bool:
        """Installing into the system that runs this process (no ``--root``, or ``--root /``)."""
        return self.root.resolve() == Path("/")

    @property
    def live(self) -> bool:
        """A booted systemd runs here: units can be reloaded and restarted, udev re-triggered."""
        return self.in_place and Path("/run/systemd/system").is_dir()

    def path(self, path: PurePosixPath | str) -> Path:
        """``path`` inside the target, as a path on this machine."""
        return self.root / PurePosixPath(path).relative_to("/")

    def accounts(self) -> Accounts:
        return Accounts.read(self.root)

    def root_option(self) -> list[str]:
        """``--root DIR`` for the tools that take one (shadow's useradd and friends, systemctl)."""
        return [] if self.in_place else ["--root", str(self.root.resolve())]

    def systemctl_root(self) -> list[str]:
        """``systemctl`` works on unit files alone unless a booted systemd runs here (a chroot, a folder)."""
        return [] if self.live else ["--root", str(self.root.resolve())]

    def inside(self, argv: Sequence[str]) -> list[str]:
        """``argv`` as the target's own program: under ``chroot`` unless installing in place."""
        return list(argv) if self.in_place else ["chroot", str(self.root.resolve()), *argv]

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        env: dict[str, str] | None = None,
        check: bool = True,
        offline_pip: bool = False,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``argv`` (already wrapped by :meth:`inside` where needed); a failure is an InstallError.

        ``offline_pip`` runs pip with none of this machine's pip settings: installing from a
        bundle must not look at an index or a find-links folder the office machine happens to have.
        """
        # The bundle's installer runs from a PYTHONPATH of unpacked wheels: the target's own
        # Python must not see them, or its pip takes them for installed and skips them.
        inherited = {
            k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
        }
        if offline_pip:  # this machine's index settings (PIP_FIND_LINKS, pip.conf) do not apply
            inherited = {k: v for k, v in inherited.items() if not k.startswith("PIP_")}
            inherited["PIP_CONFIG_FILE"] = os.devnull
        full_env = {**inherited, "LC_ALL": "C.UTF-8", **(env or {})}
        try:
            done = subprocess.run(list(argv), input=input, capture_output=True, env=full_env, check=False)
        except OSError as exc:
            raise InstallError(f"cannot run {argv[0]}: {exc}") from None
        if check and done.returncode != 0:
            output = (done.stderr or done.stdout).decode("utf-8", "replace").strip()
            raise InstallError(f"{' '.join(argv)} failed ({done.returncode}): {output[-2000:]}")
        return done
