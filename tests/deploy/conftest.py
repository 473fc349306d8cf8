"""Fixtures for the installer's tests; see tests/deploy/roots.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.roots import make_gate_folder, make_root, make_wheel


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_root(tmp_path / "root")


@pytest.fixture
def gate_folder(tmp_path: Path) -> Path:
    return make_gate_folder(tmp_path / "north")


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    return make_wheel(tmp_path / "dist")
