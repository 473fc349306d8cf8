"""The systemd units and chrony settings shipped in the wheel (``systemd/``, linked as ``deploy/units``).

The installer takes every ``gatepost-<role>*.service`` and ``.path`` the package holds, so a unit added
to ``systemd/`` is installed without a change here.  Units written for a checkout ran
``/opt/gatepost/.venv/bin/gatepost``; the installed environment *is* ``/opt/gatepost``, so
that one path is rewritten and nothing else in a unit is touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

ROLE_UNITS = {"gate": "gatepost-edge", "console": "gatepost-console", "broker": "gatepost-broker"}
CHRONY = {"gate": "gate.conf", "console": "console.conf", "broker": "console.conf"}
_PATH_FIXES = (("/opt/gatepost/.venv/bin/", "/opt/gatepost/bin/"),)


@dataclass(frozen=True, slots=True)
class Unit:
    name: str
    text: str

    @property
    def installable(self) -> bool:
        """Has an ``[Install]`` section and is not a template: ``systemctl enable`` can take it."""
        return "\n[Install]" in f"\n{self.text}" and "@." not in self.name


def _units_dir() -> resources.abc.Traversable:
    return resources.files("deploy") / "units"


def role_units(role: str) -> list[Unit]:
    prefix = ROLE_UNITS[role]
    units = []
    for entry in sorted(_units_dir().iterdir(), key=lambda e: e.name):
        if entry.name.startswith(prefix) and entry.name.endswith((".service", ".path")):
            text = entry.read_text(encoding="utf-8")
            for old, new in _PATH_FIXES:
                text = text.replace(old, new)
            units.append(Unit(entry.name, text))
    return units


def chrony_conf(role: str) -> bytes | None:
    """The shipped chrony settings for ``role``, or ``None`` while the package has none."""
    entry = _units_dir() / "chrony" / CHRONY[role]
    return entry.read_bytes() if entry.is_file() else None
