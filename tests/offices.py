"""A site office for tests: a known passphrase and a cheap scrypt, so each test does not pay 0.3 s.

Production offices use :data:`console.passes.sealed.DEFAULT_SCRYPT`; the code paths are
the same, only ``n`` is smaller.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from console.passes.office import Office
from console.passes.sealed import ScryptParams

PASSPHRASE = "correct horse battery staple"
FAST_KDF = ScryptParams(n=1 << 14, r=8, p=1)


def create_office(directory: Path, *, site: str = "longtan", site_id: int = 7, **extra: Any) -> Office:
    """``Office.create`` with the test passphrase and the cheap KDF (both can be overridden)."""
    extra.setdefault("passphrase", PASSPHRASE)
    extra.setdefault("kdf", FAST_KDF)
    return Office.create(directory, site=site, site_id=site_id, **extra)


def gate_passes_section(office_dir: Path, folder: Path) -> dict[str, str]:
    """A gate's ``[passes]`` table, with its own copies of the office's public files (as an installer makes)."""
    folder.mkdir(parents=True, exist_ok=True)
    public = Path(office_dir) / "public"
    for name in ("root.pub", "bundle", "revocations"):
        (folder / name).write_bytes((public / name).read_bytes())
    return {
        "root_key": str(folder / "root.pub"),
        "trust_bundle": str(folder / "bundle"),
        "revocation_list": str(folder / "revocations"),
    }
