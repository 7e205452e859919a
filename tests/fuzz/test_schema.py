"""The schema the fuzz tests use is the one /api/schema/ serves, and it documents the webhooks."""

from __future__ import annotations

import pytest

from tests.fuzz.schema import published_schema

pytestmark = pytest.mark.django_db


def test_fuzzed_schema_is_the_served_one(client, reader_token):
    response = client.get("/api/schema/?format=json", headers={"Authorization": f"Token {reader_token}"})

    assert response.status_code == 200
    assert response.json() == published_schema()


def test_webhooks_are_documented_with_their_security():
    schema = published_schema()

    operations = {path: schema["paths"][path]["post"] for path in schema["paths"] if path.startswith("/webhooks/")}
    assert {path: op["security"] for path, op in operations.items()} == {
        "/webhooks/provisioning/": [{"standardWebhooks": []}],
        "/webhooks/provisioning/batch/": [{"standardWebhooks": []}],
        "/webhooks/marketo/": [{"marketoBearer": []}],
        "/webhooks/stripe/": [{"stripeSignature": []}],
    }
    assert all(
        set(op["responses"]) == {"200", "202", "401", "408", "411", "413", "422", "429", "503"}
        for op in operations.values()
    )
    assert schema["components"]["securitySchemes"]["tokenAuth"]["name"] == "Authorization"
