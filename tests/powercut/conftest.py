"""A LazyFS mount per test (tests/powercut/lazyfs.py), or a skip that says what is missing."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.powercut.lazyfs import LazyFS


@pytest.fixture
def lazyfs(tmp_path: Path) -> Iterator[LazyFS]:
    """A fresh, empty LazyFS mounted at ``tmp_path/mnt`` (its durable image at ``tmp_path/image``)."""
    if not os.path.exists("/dev/fuse"):
        pytest.skip("no /dev/fuse: FUSE is not available here")
    if shutil.which("fusermount3") is None:
        pytest.skip("fusermount3 is not installed (Debian package fuse3)")
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:
        pytest.skip(f"mfusepy cannot load libfuse: {exc}")
    fs = LazyFS(tmp_path / "mnt", tmp_path / "image", seed=int(os.environ.get("GATEPOST_POWERCUT_SEED", "1")))
    try:
        fs.start()
    except OSError as exc:
        pytest.skip(f"cannot mount a FUSE filesystem here: {exc}")
    try:
        yield fs
    finally:
        fs.stop()
