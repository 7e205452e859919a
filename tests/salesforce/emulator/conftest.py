"""Fixtures: a fresh emulator per test, trusted through REQUESTS_CA_BUNDLE, and real clients for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from simple_salesforce import Salesforce

from emulators.salesforce import Emulator

SOAP_ENVELOPE = """<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:partner.soap.sforce.com">
  <soapenv:Header><urn:SessionHeader><urn:sessionId>{session}</urn:sessionId></urn:SessionHeader></soapenv:Header>
  <soapenv:Body><urn:convertLead>{converts}</urn:convertLead></soapenv:Body>
</soapenv:Envelope>"""


def lead_convert(lead_id: str, account_id: str | None = None, status: str = "Closed - Converted") -> str:
    account = f"<urn:accountId>{account_id}</urn:accountId>" if account_id else ""
    return (
        f"<urn:leadConverts>{account}<urn:convertedStatus>{status}</urn:convertedStatus>"
        "<urn:doNotCreateOpportunity>true</urn:doNotCreateOpportunity>"
        f"<urn:leadId>{lead_id}</urn:leadId><urn:overwriteLeadSource>false</urn:overwriteLeadSource>"
        "<urn:sendNotificationEmail>false</urn:sendNotificationEmail></urn:leadConverts>"
    )


def soap_convert(emulator: Emulator, session: str, *converts: str, **kw) -> requests.Response:
    body = SOAP_ENVELOPE.format(session=session, converts="".join(converts))
    headers = {"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": "convertLead"}
    return requests.post(emulator.soap_url, data=body.encode(), headers=headers, timeout=5, **kw)


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with Emulator(timeout_sleep=2.0, seed=1234) as emu:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", emu.ca_bundle_path)
        yield emu


@pytest.fixture
def token(emulator: Emulator) -> str:
    response = requests.post(
        emulator.token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": emulator.client_id,
            "client_secret": emulator.client_secret,
        },
        timeout=5,
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


class TimeoutSession(requests.Session):
    """Every request carries a timeout, as the engine's client does."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.default_timeout = timeout

    def request(self, *args, **kwargs):  # type: ignore[override]
        kwargs.setdefault("timeout", self.default_timeout)
        return super().request(*args, **kwargs)


def make_client(emulator: Emulator, token: str, timeout: float = 5.0) -> Salesforce:
    return Salesforce(
        instance_url=emulator.instance_url, session_id=token, version="62.0", session=TimeoutSession(timeout)
    )


@pytest.fixture
def sf(emulator: Emulator, token: str) -> Salesforce:
    return make_client(emulator, token)
