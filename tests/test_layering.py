"""Dependencies point one way: the house rule, checked on every module's imports.

Drivers know no MQTT and no policy; protocol is the contract every side imports and imports
none of them; the gate agent and the console never import each other or the simulator
(the simulator plugs in by registration, as pyserial's URL handlers do); nothing imports
``edge`` or ``console`` but their own packages, the entry points and shared process helpers
of ``gatepost/``, and the tests and benchmarks.  One exception is named: the fleet harness (``simulator/fleet.py``)
runs hundreds of *real* gates, so it imports the gate's code by design (issue 17).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("protocol", "drivers", "broker", "edge", "console", "simulator")

FORBIDDEN: dict[str, frozenset[str]] = {
    "protocol": frozenset({"drivers", "broker", "edge", "console", "simulator"}),
    "drivers": frozenset({"broker", "edge", "console", "simulator", "paho", "aiomqtt"}),
    "broker": frozenset({"drivers", "edge", "console", "simulator"}),
    "edge": frozenset({"console", "simulator"}),
    "console": frozenset({"edge", "simulator"}),
    "simulator": frozenset({"edge", "console"}),
}
"""For each package, the top-level modules none of its modules may import."""

ALLOWED: dict[str, frozenset[str]] = {
    "simulator/fleet.py": frozenset({"edge"}),
}
"""Named exceptions: the fleet harness runs the real gate code (issue 17)."""


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def _modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_one_way(path: Path) -> None:
    relative = path.relative_to(ROOT).as_posix()
    package = relative.split("/")[0]
    bad = (_imports(path) & FORBIDDEN[package]) - ALLOWED.get(relative, frozenset())
    assert not bad, f"{relative} imports {sorted(bad)}, which {package}/ must not depend on"


def test_the_rule_can_fail(tmp_path: Path) -> None:
    """The walker sees imports inside functions too (the lazy ones a glance at the top misses)."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from console.store import Store\n    import edge.agent\n")
    assert _imports(module) == {"console", "edge"}
