"""Fixtures for the installer's tests; see tests/deploy/roots.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.roots import make_gate_folder, make_root, make_wheel


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The emulated arm64 run takes minutes of a shared CPU: only when asked for by ``-m emulated``."""
    expression = config.getoption("markexpr") or ""
    if "emulated" in expression and "not emulated" not in expression:
        return
    skip = pytest.mark.skip(reason="arm64 under qemu: run with -m emulated")
    for item in items:
        if item.get_closest_marker("emulated") is not None:
            item.add_marker(skip)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_root(tmp_path / "root")


@pytest.fixture
def gate_folder(tmp_path: Path) -> Path:
    return make_gate_folder(tmp_path / "north")


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    return make_wheel(tmp_path / "dist")
