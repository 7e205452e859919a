"""Fixtures of the demo tests: the engine served over real HTTP."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.servers.basehttp import ThreadedWSGIServer

REPO = Path(__file__).resolve().parents[2]


class OneRequestAtATime(ThreadedWSGIServer):
    """Django's live server handling each request in the server thread itself, one at a time: on SQLite
    the test database is one in-memory connection that request threads would otherwise share."""

    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)


@pytest.fixture
def engine_url(transactional_db, settings) -> Iterator[str]:
    """The engine on 127.0.0.1 over HTTP, started after this test's settings apply (no SSL redirect)."""
    from pytest_django.live_server_helper import LiveServer

    settings.SECURE_SSL_REDIRECT = False
    server = LiveServer("127.0.0.1:0", start=False)
    server.thread.server_class = OneRequestAtATime
    server.start()
    server._live_server_modified_settings.enable()
    try:
        yield server.url
    finally:
        server._live_server_modified_settings.disable()
        server.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
