"""Where the wheels come from: an offline bundle (folder or tarball), one wheel file, or this checkout.

With a bundle, pip installs with ``--no-index --find-links``: nothing is fetched, and a
wheel missing from the bundle fails the install here rather than at a gate with no
network.  Without one, the gatepost wheel is given (``--wheel``) or built from the
checkout this command runs from, and its dependencies come from the package index.
"""

from __future__ import annotations

import contextlib
import json
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from deploy.bundle import DEB_ARCH, build_gatepost_wheel
from deploy.errors import InstallError
from deploy.wheels import gatepost_wheel


@dataclass(frozen=True)
class WheelSource:
    wheel: Path
    """The gatepost wheel the environment is made from."""
    find_links: Path | None = None
    """A folder of every wheel needed (a bundle): install offline from it."""
    debs: dict[str, list[Path]] = field(default_factory=dict)
    """Debian packages in the bundle, by Debian architecture (``arm64``, ``amd64``)."""

    @property
    def offline(self) -> bool:
        return self.find_links is not None

    def debs_for(self, deb_arch: str) -> list[Path]:
        return sorted([*self.debs.get(deb_arch, []), *self.debs.get("all", [])])


def _from_folder(top: Path) -> WheelSource:
    wheels = top / "wheels"
    wheel = gatepost_wheel(wheels) if wheels.is_dir() else None
    if wheel is None:
        raise InstallError(f"{top} is not a gatepost bundle (no wheels/gatepost-*.whl)")
    manifest = top / "MANIFEST.json"
    if manifest.is_file():
        json.loads(manifest.read_text(encoding="utf-8"))  # a truncated copy fails here, not half-way
    debs = {
        arch: sorted((top / "debs" / arch).glob("*.deb"))
        for arch in (*DEB_ARCH.values(), "all")
        if (top / "debs" / arch).is_dir()
    }
    return WheelSource(wheel, wheels, debs)


@contextlib.contextmanager
def open_source(bundle: Path | None, wheel: Path | None) -> Iterator[WheelSource]:
    """The wheels to install from, unpacked or built in a temporary folder for as long as needed."""
    if bundle is not None and wheel is not None:
        raise InstallError("give --bundle or --wheel, not both")
    if bundle is not None and bundle.is_dir():
        yield _from_folder(bundle)
        return
    with tempfile.TemporaryDirectory(prefix="gatepost-install-") as scratch:
        if bundle is not None:
            if not bundle.is_file():
                raise InstallError(f"{bundle}: no such bundle")
            try:
                with tarfile.open(bundle) as archive:
                    archive.extractall(scratch, filter="data")
            except (tarfile.TarError, OSError) as exc:
                raise InstallError(f"{bundle}: cannot unpack the bundle: {exc}") from None
            tops = [p for p in Path(scratch).iterdir() if p.is_dir()]
            if len(tops) != 1:
                raise InstallError(f"{bundle}: expected one gatepost-bundle-* folder inside")
            yield _from_folder(tops[0])
        elif wheel is not None:
            if not wheel.is_file():
                raise InstallError(f"{wheel}: no such wheel")
            yield WheelSource(wheel)
        else:
            yield WheelSource(build_gatepost_wheel(Path(scratch)))
