"""Stand-ins for the behaviour channels, started per test over real HTTPS on loopback.

Each fixture appends its throwaway CA to the bundle in use (REQUESTS_CA_BUNDLE, never replaced) and
points the channel's settings at the stand-in.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator

import pytest

from emulators.product_webhook import ProductWebhookSink
from emulators.zendesk import ZendeskEmulator


def new_whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture
def product_webhook(settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[ProductWebhookSink]:
    """The product's in-app endpoint; PRODUCT_WEBHOOK_URL and _SECRET point at it."""
    with ProductWebhookSink(secret=new_whsec()) as sink:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", sink.ca_bundle_path or "")
        settings.PRODUCT_WEBHOOK_URL = sink.url
        settings.PRODUCT_WEBHOOK_SECRET = sink.state.secret
        settings.PRODUCT_WEBHOOK_ALLOW_LOOPBACK = True
        settings.PRODUCT_WEBHOOK_TIMEOUT_SECONDS = 2.0
        yield sink


@pytest.fixture
def zendesk(settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[ZendeskEmulator]:
    """The support desk; ZENDESK_URL, _EMAIL and _API_TOKEN point at it."""
    with ZendeskEmulator() as desk:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", desk.ca_bundle_path)
        settings.ZENDESK_URL = desk.url
        settings.ZENDESK_EMAIL = desk.email
        settings.ZENDESK_API_TOKEN = desk.token
        settings.ZENDESK_ALLOW_LOOPBACK = True
        settings.ZENDESK_TIMEOUT_SECONDS = 2.0
        yield desk
