"""Stripe tests: a configured webhook secret, signed deliveries of the captured-shape fixtures, and
localstripe started on 127.0.0.1 in a subprocess of the test."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from django.core.servers.basehttp import ThreadedWSGIServer
from django.test import Client

from billing.stripe_adapter import sign_payload

STRIPE_SECRET = "whsec_test_5f0c7a1b2e3d4c5b6a7980f1e2d3c4b5"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "stripe"
SERVER = Path(__file__).resolve().parent / "localstripe_server.py"


@pytest.fixture(autouse=True)
def stripe_settings(settings) -> Any:
    settings.STRIPE_WEBHOOK_SECRET = STRIPE_SECRET
    return settings


def fixture(name: str) -> dict[str, Any]:
    """A fresh copy of tests/fixtures/stripe/<name>.json (tests may change it)."""
    return copy.deepcopy(json.loads((FIXTURES / f"{name}.json").read_text()))


def stripe_headers(body: str, *, secret: str = STRIPE_SECRET, timestamp: int | None = None) -> dict[str, str]:
    return {"Stripe-Signature": sign_payload(body, secret, timestamp=timestamp)}


SendStripe = Callable[..., Any]


@pytest.fixture
def send_stripe(client: Client) -> SendStripe:
    """POST an event (dict, str or bytes) to the Stripe webhook, signed now unless headers are given."""

    def send(event: dict[str, Any] | str | bytes, *, headers: dict[str, str] | None = None, **sign: Any):
        body = json.dumps(event) if isinstance(event, dict) else event
        if headers is None:
            headers = stripe_headers(body.decode() if isinstance(body, bytes) else body, **sign)
        return client.post("/webhooks/stripe/", data=body, content_type="application/json", headers=headers)

    return send


@dataclass
class LocalStripe:
    base: str
    process: subprocess.Popen

    def config(self, path: str, **data: Any) -> None:
        requests.post(f"{self.base}/_config/{path}", data=data, timeout=5).raise_for_status()


def start_localstripe(*extra: str) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen(
        [sys.executable, str(SERVER), *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    port = int(process.stdout.readline().strip() or 0)
    if not port:
        process.kill()
        pytest.fail("localstripe did not start")
    return process, port


def wait_for(url: str, **kwargs: Any) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            requests.get(url, timeout=1, **kwargs)
            return
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def localstripe(settings) -> Iterator[LocalStripe]:
    """A fresh localstripe for this test, on 127.0.0.1 and a free port; the engine's Stripe reads point at it."""
    process, port = start_localstripe()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/v1/customers")
        settings.STRIPE_API_BASE = base
        settings.STRIPE_API_KEY = "sk_test_lifecycle_engine"
        yield LocalStripe(base, process)
    finally:
        stop(process)


class OneRequestAtATime(ThreadedWSGIServer):
    """Django's live server, handling each request in the server thread itself."""

    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)


@pytest.fixture
def engine_server(transactional_db, settings) -> Iterator[str]:
    """The engine served over real HTTP on 127.0.0.1, for localstripe to deliver to; yields its base URL.

    pytest-django's own `live_server` is session-scoped: its middleware is loaded before this test's
    settings apply, so SECURE_SSL_REDIRECT (on whenever DEBUG is off) would bounce every delivery to
    https. Same helper class, started here, after the settings. One request at a time: on SQLite the
    test database is one in-memory connection the server threads would share, and localstripe
    delivers a burst of events at once.
    """
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
