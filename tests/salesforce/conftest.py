"""The engine's live sync against the local Salesforce emulator over HTTPS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emulators.salesforce import Emulator


@pytest.fixture
def salesforce(settings, monkeypatch) -> Iterator[Emulator]:
    """A fresh emulator, the engine configured for live sync against it, its CA trusted."""
    with Emulator(timeout_sleep=3.0, seed=7) as emulator:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", emulator.ca_bundle_path)
        settings.SALESFORCE_SYNC = "live"
        settings.SALESFORCE_INSTANCE_URL = emulator.instance_url
        settings.SALESFORCE_LOGIN_URL = emulator.login_url
        settings.SALESFORCE_CLIENT_ID = emulator.client_id
        settings.SALESFORCE_CLIENT_SECRET = emulator.client_secret
        settings.SALESFORCE_ACCESS_TOKEN = ""
        settings.SALESFORCE_TIMEOUT_SECONDS = 1.5
        yield emulator
