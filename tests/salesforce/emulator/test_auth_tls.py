"""Token endpoint, bearer sessions, TLS trust through an appended CA bundle."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import requests
from simple_salesforce.exceptions import SalesforceExpiredSession

from emulators.salesforce import Emulator
from emulators.salesforce.tls import MARK_BEGIN

from .conftest import make_client

pytestmark = []


def test_client_credentials_token_flow(emulator: Emulator) -> None:
    response = requests.post(
        emulator.token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": emulator.client_id,
            "client_secret": emulator.client_secret,
        },
        timeout=5,
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {"access_token", "instance_url", "token_type", "issued_at", "signature", "id"}
    assert body["token_type"] == "Bearer"
    assert body["instance_url"] == emulator.instance_url
    assert body["access_token"].startswith("00D")
    sf = make_client(emulator, body["access_token"])
    assert sf.limits()["DailyApiRequests"]["Max"] > 0
    assert [e.kind for e in emulator.requests_log] == ["token", "limits"]
    assert emulator.requests_log.api_calls() == [emulator.requests_log[1]]


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"grant_type": "client_credentials", "client_id": "nope", "client_secret": "x"}, "invalid_client"),
        ({"grant_type": "client_credentials", "client_id": "lifecycle-engine-emulator"}, "invalid_client"),
        ({"grant_type": "password", "client_id": "a", "client_secret": "b"}, "unsupported_grant_type"),
    ],
)
def test_bad_token_requests_answer_400(emulator: Emulator, form: dict, error: str) -> None:
    response = requests.post(emulator.token_url, data=form, timeout=5)
    assert response.status_code == 400
    assert response.json()["error"] == error
    assert response.json()["error_description"]


def test_basic_auth_client_credentials_are_accepted(emulator: Emulator) -> None:
    response = requests.post(
        emulator.token_url,
        data={"grant_type": "client_credentials"},
        auth=(emulator.client_id, emulator.client_secret),
        timeout=5,
    )
    assert response.status_code == 200


@pytest.mark.parametrize("header", [None, "Bearer not-a-token", "Basic abc"])
def test_api_calls_need_a_valid_bearer_token(emulator: Emulator, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = requests.get(f"{emulator.instance_url}/services/data/v62.0/limits/", headers=headers, timeout=5)
    assert response.status_code == 401
    assert response.json() == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID", "fields": []}
    ]
    assert emulator.api_usage[0] == 0  # refused calls are not counted


def test_expired_tokens_raise_expired_session_in_simple_salesforce(emulator: Emulator, token: str) -> None:
    sf = make_client(emulator, token)
    sf.limits()
    emulator.expire_tokens()
    with pytest.raises(SalesforceExpiredSession) as info:
        sf.limits()
    assert info.value.content[0]["errorCode"] == "INVALID_SESSION_ID"
    fresh = emulator.issue_token()
    assert make_client(emulator, fresh).limits()


def test_token_ttl_expires_tokens() -> None:
    with Emulator(token_ttl=0.0) as emu:
        token = emu.issue_token()
        response = requests.get(
            f"{emu.instance_url}/services/data/v62.0/limits/",
            headers={"Authorization": f"Bearer {token}"},
            verify=emu.ca_bundle_path,
            timeout=5,
        )
        assert response.status_code == 401


def test_tls_is_verified_for_real(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"{emulator.instance_url}/services/data/"
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url, timeout=5)
    assert requests.get(url, timeout=5, verify=emulator.ca_bundle_path).status_code == 200
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", emulator.ca_bundle_path)
    assert requests.get(url, timeout=5).status_code == 200
    context = ssl.create_default_context(cafile=emulator.ca_bundle_path)
    assert context.cert_store_stats()["x509_ca"] >= 2


def test_ca_bundle_appends_to_the_existing_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trustme

    other_ca = trustme.CA().cert_pem.bytes().decode()
    original = tmp_path / "original.pem"
    original.write_text(other_ca)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(original))
    out = tmp_path / "bundle.pem"
    with Emulator(ca_bundle_path=str(out)) as emu:
        text = out.read_text()
        assert text.startswith(other_ca)
        assert text.count("BEGIN CERTIFICATE") == 2
        assert emu.tls is not None and emu.tls.ca_pem.strip() in text
    # Restarted with the bundle it wrote as REQUESTS_CA_BUNDLE: the stale emulator CA is replaced, not piled up.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(out))
    with Emulator(ca_bundle_path=str(out)):
        text = out.read_text()
        assert text.count("BEGIN CERTIFICATE") == 2
        assert text.count(MARK_BEGIN) == 1
        assert other_ca in text


def test_default_bundle_keeps_certifi_certificates(monkeypatch: pytest.MonkeyPatch) -> None:
    import certifi

    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with Emulator() as emu:
        original = Path(certifi.where()).read_text()
        bundle = Path(emu.ca_bundle_path).read_text()
        assert bundle.count("BEGIN CERTIFICATE") == original.count("BEGIN CERTIFICATE") + 1
        # Public sites still verify with it: the first certificate of the original bundle is in there verbatim.
        first = original[original.index("-----BEGIN CERTIFICATE-----") : original.index("-----END CERTIFICATE-----")]
        assert first in bundle


def test_keep_alive_reuses_one_connection(emulator: Emulator, token: str) -> None:
    sf = make_client(emulator, token)
    for _ in range(5):
        sf.limits()
    connections = {e.connection for e in emulator.requests_log.api_calls("limits")}
    assert len(connections) == 1
