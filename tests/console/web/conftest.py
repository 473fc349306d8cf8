"""Fixtures for the web console tests (helpers in ``web_support.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from console.config import ConsoleConfig
from console.store import EventStore
from console.web.app import build_context, create_app
from tests.console.web.pages_support import closed_port
from tests.console.web.web_support import Web


@pytest.fixture
def web_factory(tmp_path: Path) -> Iterator[Callable[..., Web]]:
    made: list[Web] = []

    def build(*, watch: bool = True, endpoint: Any = None, **web_settings: Any) -> Web:
        config = ConsoleConfig.model_validate(
            {
                "store": {"path": str(tmp_path / "console" / "events.db")},
                "web": web_settings,
                # a port nobody listens on: a test never reaches the broker running on this machine
                # (a test that needs one passes ``endpoint`` from the ``broker`` fixture)
                "mqtt": {"host": "127.0.0.1", "port": closed_port()},
            }
        )
        store = EventStore(config.store.path)
        ctx = build_context(config, store, endpoint=endpoint)
        web = Web(ctx, store, create_app(ctx, watch=watch), tmp_path)
        made.append(web)
        return web

    yield build
    for web in made:
        web.ctx.db.close()
        web.store.close()


@pytest.fixture
def web(web_factory: Callable[..., Web]) -> Web:
    return web_factory()
