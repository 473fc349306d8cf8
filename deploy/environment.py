"""``/opt/gatepost``: a virtual environment made from the gatepost wheel, by the target's own Python.

It is made by the target's ``python3 -m venv`` (under ``chroot`` for ``--root``), so the
interpreter, its paths and its compiled wheels are the target's.  A stamp file records
the sha256 of the wheel it was made from: the same wheel again changes nothing, a new
one (even with the same version number) is installed over it.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from deploy.changes import Change
from deploy.layout import PREFIX, STAMP
from deploy.source import WheelSource
from deploy.target import Target
from deploy.wheels import sha256


@dataclass
class Environment(Change):
    source: WheelSource
    extras: Sequence[str] = ()
    system_site_packages: bool = False
    """See Debian's own Python packages too (python3-lgpio, python3-evdev: no wheel fits)."""

    def stamp_text(self) -> str:
        """What the stamp file holds once this environment is made: wheel digest, name and options."""
        flags = ",".join(sorted(self.extras)) + (";system-site-packages" if self.system_site_packages else "")
        return f"{sha256(self.source.wheel)} {self.source.wheel.name} {flags}\n"

    def describe(self) -> str:
        extras = f"[{','.join(self.extras)}]" if self.extras else ""
        origin = "the bundle's wheels, offline" if self.source.offline else "the package index"
        system = ", seeing Debian's Python packages" if self.system_site_packages else ""
        return (
            f"make {PREFIX} (a Python environment) from {self.source.wheel.name}{extras} and {origin}{system}"
        )

    def pending(self, target: Target) -> bool:
        stamp = target.path(STAMP)
        return (
            not target.path(PREFIX / "bin" / "python").exists()
            or not stamp.is_file()
            or stamp.read_text(encoding="utf-8") != self.stamp_text()
        )

    def apply(self, target: Target) -> None:
        python = str(PREFIX / "bin" / "python")
        if not target.path(python).exists():
            site = ["--system-site-packages"] if self.system_site_packages else []
            target.run(target.inside(["python3", "-m", "venv", *site, str(PREFIX)]))
        self._set_system_site_packages(target)
        with self._staged(target) as (wheel, links):
            index = ["--no-index", "--find-links", links] if links else []
            pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *index]
            extras = f"[{','.join(self.extras)}]" if self.extras else ""
            target.run(target.inside([*pip, f"{wheel}{extras}"]), offline_pip=bool(links))
            # The same version number built again (a fix during a site visit) is still new code.
            target.run(
                target.inside([*pip, "--no-deps", "--force-reinstall", wheel]), offline_pip=bool(links)
            )
        target.path(STAMP).write_text(self.stamp_text(), encoding="utf-8")

    def _set_system_site_packages(self, target: Target) -> None:
        config = target.path(PREFIX / "pyvenv.cfg")
        value = "true" if self.system_site_packages else "false"
        lines = [
            f"include-system-site-packages = {value}"
            if line.split("=")[0].strip() == "include-system-site-packages"
            else line
            for line in config.read_text(encoding="utf-8").splitlines()
        ]
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")

    @contextlib.contextmanager
    def _staged(self, target: Target) -> Iterator[tuple[str, str | None]]:
        """The wheel and the wheels folder as paths the target's pip sees."""
        source = self.source
        if target.in_place:
            yield str(source.wheel), (str(source.find_links) if source.find_links else None)
            return
        # Inside a chroot only the root's own files are visible: copy the wheels in.
        folder = Path(tempfile.mkdtemp(prefix="gatepost-wheels-", dir=target.path("/tmp")))
        try:
            if source.find_links is not None:
                for wheel in source.find_links.glob("*.whl"):
                    shutil.copy2(wheel, folder / wheel.name)
            shutil.copy2(source.wheel, folder / source.wheel.name)
            inside = PurePosixPath("/") / folder.relative_to(target.root.resolve())
            yield str(inside / source.wheel.name), (str(inside) if source.find_links else None)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def target_python(target: Target) -> str | None:
    """``3.11`` for the target's ``python3`` (from its symlink: no program of the target is run)."""
    link = target.path("/usr/bin/python3")
    try:
        name = Path(link.readlink()).name if link.is_symlink() else None
    except OSError:
        return None
    if name and name.startswith("python3."):
        return name.removeprefix("python")
    return None


def target_arch(target: Target) -> str | None:
    """The target's Debian architecture (``arm64``), as its dpkg status records dpkg's own package."""
    try:
        text = target.path("/var/lib/dpkg/status").read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    for paragraph in text.split("\n\n"):
        if paragraph.startswith("Package: dpkg\n") or "\nPackage: dpkg\n" in f"\n{paragraph}\n":
            for line in paragraph.splitlines():
                if line.startswith("Architecture:"):
                    return line.split(":", 1)[1].strip()
    return None
