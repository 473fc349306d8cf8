"""Wheels as files: their names' tags, their declared requirements, and which machine they fit.

The offline bundle holds wheels for two machines at once (a Pi's aarch64 and a PC's
x86_64), so the installer and the bundle builder need to tell them apart by file name,
and to read a wheel's requirements the way pip would for the *target* machine.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PYTHON = "3.11"
"""The Python of Raspberry Pi OS bookworm and Debian 12, which the bundle is made for."""
ARCHES = ("aarch64", "x86_64")


@dataclass(frozen=True, slots=True)
class WheelName:
    project: str
    """Canonical project name (``opencv-python-headless``)."""
    version: str
    platforms: tuple[str, ...]

    @classmethod
    def parse(cls, filename: str) -> WheelName:
        stem = filename.removesuffix(".whl")
        parts = stem.split("-")
        if len(parts) not in (5, 6):
            raise ValueError(f"not a wheel file name: {filename}")
        return cls(canonicalize_name(parts[0]), parts[1], tuple(parts[-1].split(".")))

    def fits(self, arch: str) -> bool:
        return any(tag == "any" or tag.endswith(f"_{arch}") for tag in self.platforms)

    @property
    def pure(self) -> bool:
        return self.platforms == ("any",)


def marker_environment(arch: str) -> dict[str, str]:
    """Marker values of a Linux ``arch`` machine with CPython 3.11, whatever machine this is.

    ``pip download --platform`` evaluates markers with *this* machine's values, so a
    requirement such as ``lgpio; platform_machine == "aarch64"`` would be left out of an
    aarch64 download made on a PC; the bundle builder uses this to find such gaps.
    """
    env = dict(default_environment())
    env.update(
        implementation_name="cpython",
        platform_python_implementation="CPython",
        os_name="posix",
        sys_platform="linux",
        platform_system="Linux",
        platform_machine=arch,
        python_version=PYTHON,
        python_full_version=f"{PYTHON}.2",
        implementation_version=f"{PYTHON}.2",
    )
    return env


def requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        headers = HeaderParser().parsestr(archive.read(name).decode("utf-8"))
    return [Requirement(value) for value in headers.get_all("Requires-Dist") or []]


def needed(wheel: Path, arch: str, extras: tuple[str, ...] = ()) -> list[Requirement]:
    """The requirements of ``wheel`` that apply on an ``arch`` machine, with ``extras`` asked for."""
    env = marker_environment(arch)
    result = []
    for requirement in requirements(wheel):
        marker = requirement.marker
        if marker is None or any(marker.evaluate({**env, "extra": extra}) for extra in ("", *extras)):
            result.append(requirement)
    return result


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_GATEPOST = re.compile(r"^gatepost-[^-]+-py3-none-any\.whl$")


def gatepost_wheel(folder: Path) -> Path | None:
    found = sorted(p for p in folder.glob("gatepost-*.whl") if _GATEPOST.match(p.name))
    return found[-1] if found else None
