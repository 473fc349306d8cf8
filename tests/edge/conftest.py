"""Fixtures for the gate's tests: ``full_disk`` (tests/edge/full_disk.py)."""

from tests.edge.full_disk import full_disk

__all__ = ["full_disk"]
