"""CONTRACT §4: every row of the status table for the Stripe webhook, signed by the stripe library's scheme."""

from __future__ import annotations

import json
import logging
import time

import pytest

from events.models import Event
from tests.billing.conftest import fixture, stripe_headers

pytestmark = pytest.mark.django_db

TRIAL = "customer.subscription.created.trialing"


def test_handled_event_is_stored_accepted_and_enqueued_on_commit(send_stripe, django_capture_on_commit_callbacks):
    # given
    event = fixture(TRIAL)
    # when
    with django_capture_on_commit_callbacks() as callbacks:
        response = send_stripe(event)
    # then
    assert response.status_code == 202
    assert response.json() == {"id": event["id"], "status": "accepted"}
    stored = Event.objects.get(source=Event.Source.STRIPE, external_id=event["id"])
    assert stored.status == Event.Status.NEW
    assert stored.type == "trial.started"
    assert stored.workspace_key == "ws_stripe_1"
    assert stored.occurred_at.isoformat() == "2026-11-01T12:00:00+00:00"
    assert len(callbacks) == 1, "processing is enqueued once, on commit"


def test_same_event_id_is_a_duplicate_and_changes_nothing(send_stripe):
    event = fixture(TRIAL)
    first = send_stripe(event)
    before = list(Event.objects.values())
    second = send_stripe(event)
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json() == {"id": event["id"], "status": "duplicate"}
    assert list(Event.objects.values()) == before


def test_unhandled_type_is_acknowledged_and_stored_ignored(send_stripe):
    event = fixture("customer.created")
    response = send_stripe(event)
    assert response.status_code == 202
    assert response.json() == {"id": event["id"], "status": "ignored"}
    stored = Event.objects.get(external_id=event["id"])
    assert stored.status == Event.Status.IGNORED
    assert stored.type == "customer.created"
    assert stored.workspace_key == "ws_stripe_1"
    assert stored.payload == event, "kept as received, for review"
    assert "not handled" in stored.notes


def test_handled_event_with_nothing_to_apply_is_stored_ignored_with_the_reason(send_stripe):
    event = fixture("invoice.paid.subscription_cycle")
    event["data"]["object"].update(amount_paid=0, amount_due=0, billing_reason="subscription_create")
    response = send_stripe(event)
    assert response.status_code == 202
    assert response.json() == {"id": event["id"], "status": "ignored"}
    stored = Event.objects.get(external_id=event["id"])
    assert stored.status == Event.Status.IGNORED
    assert "pays no subscription period" in stored.notes


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Stripe-Signature": "garbage"},
        {"Stripe-Signature": f"t={int(time.time())},v1={'0' * 64}"},
        {"Stripe-Signature": f"t={int(time.time())},v0=abc"},
    ],
    ids=["missing", "unparseable", "wrong-signature", "no-v1-scheme"],
)
def test_bad_or_missing_signature_is_401_and_stores_nothing(send_stripe, headers):
    response = send_stripe(fixture(TRIAL), headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_signature"}
    assert Event.objects.count() == 0


def test_signature_with_another_secret_is_401(send_stripe):
    body = json.dumps(fixture(TRIAL))
    response = send_stripe(body, headers=stripe_headers(body, secret="whsec_someone_else"))
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_signature"}


@pytest.mark.parametrize("offset", [-301, 301, -3600, 3600])
def test_timestamp_more_than_300_s_away_in_either_direction_is_stale(send_stripe, offset):
    response = send_stripe(fixture(TRIAL), timestamp=int(time.time()) + offset)
    assert response.status_code == 401
    assert response.json() == {"error": "stale_timestamp"}
    assert Event.objects.count() == 0


@pytest.mark.parametrize("offset", [-290, 290])
def test_timestamp_within_300_s_is_accepted(send_stripe, offset):
    assert send_stripe(fixture(TRIAL), timestamp=int(time.time()) + offset).status_code == 202


def test_stale_and_badly_signed_is_invalid_signature(send_stripe):
    body = json.dumps(fixture(TRIAL))
    headers = stripe_headers(body, secret="whsec_someone_else", timestamp=int(time.time()) - 3600)
    assert send_stripe(body, headers=headers).json() == {"error": "invalid_signature"}


def test_refusal_log_never_contains_the_body(send_stripe, caplog):
    with caplog.at_level(logging.WARNING, logger="billing.webhook"):
        send_stripe(fixture(TRIAL), headers={"Stripe-Signature": "garbage"})
    assert "dana@acme.io" not in caplog.text
    assert "invalid_signature" in caplog.text


def test_non_utf8_body_is_invalid_signature(send_stripe):
    response = send_stripe(b"\xff\xfe{}", headers={"Stripe-Signature": f"t={int(time.time())},v1=00"})
    assert response.status_code == 401


def test_handled_event_without_workspace_id_is_422_and_kept_rejected(send_stripe):
    event = fixture(TRIAL)
    del event["data"]["object"]["metadata"]["workspace_id"]
    response = send_stripe(event)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_payload"
    assert list(body["fields"]) == ["data.object.metadata.workspace_id"]
    stored = Event.objects.get(external_id=event["id"])
    assert stored.status == Event.Status.REJECTED
    assert stored.type == "customer.subscription.created"
    assert stored.payload == event
    assert "workspace_id" in stored.notes


def test_workspace_id_from_an_expanded_customer_is_enough(send_stripe):
    event = fixture(TRIAL)
    obj = event["data"]["object"]
    del obj["metadata"]["workspace_id"]
    obj["customer"] = {
        "id": obj["customer"],
        "object": "customer",
        "email": "dana@acme.io",
        "metadata": {"workspace_id": "ws_c"},
    }
    assert send_stripe(event).status_code == 202
    assert Event.objects.get(external_id=event["id"]).workspace_key == "ws_c"


def test_invoice_without_workspace_id_names_the_invoice_field(send_stripe):
    event = fixture("invoice.payment_failed")
    event["data"]["object"]["parent"]["subscription_details"]["metadata"] = {}
    response = send_stripe(event)
    assert response.status_code == 422
    assert list(response.json()["fields"]) == ["data.object.parent.subscription_details.metadata.workspace_id"]


def test_signed_malformed_json_is_422_and_kept_rejected(send_stripe):
    response = send_stripe('{"id": "evt_broken", "type": ')
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_payload"
    assert "body" in response.json()["fields"]
    stored = Event.objects.get(source=Event.Source.STRIPE)
    assert stored.status == Event.Status.REJECTED
    assert stored.external_id.startswith("unparsed:")


def test_signed_event_missing_envelope_fields_is_422(send_stripe):
    response = send_stripe({"id": "evt_no_data", "object": "event", "type": "invoice.paid"})
    assert response.status_code == 422
    assert set(response.json()["fields"]) == {"created", "data.object"}
    assert Event.objects.get(external_id="evt_no_data").status == Event.Status.REJECTED


def test_mapped_data_the_schema_refuses_is_422(send_stripe):
    event = fixture(TRIAL)
    event["data"]["object"]["metadata"]["email"] = "not-an-email"
    response = send_stripe(event)
    assert response.status_code == 422
    assert list(response.json()["fields"]) == ["mapped.data.email"]


def test_body_over_1_mib_is_413_before_anything_else(send_stripe):
    response = send_stripe("x" * (1024 * 1024 + 1), headers={"Stripe-Signature": "not even checked"})
    assert response.status_code == 413
    assert response.json() == {"error": "payload_too_large"}


def test_secret_not_configured_is_503(send_stripe, settings):
    settings.STRIPE_WEBHOOK_SECRET = ""
    response = send_stripe(fixture(TRIAL))
    assert response.status_code == 503
    assert response.json() == {"error": "not_configured"}


def test_only_post(client):
    assert client.get("/webhooks/stripe/").status_code == 405
