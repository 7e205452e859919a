"""What the fuzzing found, pinned as plain tests (each failed before its fix)."""

from __future__ import annotations

import json

import pytest

from billing.stripe_adapter import sign_payload
from events.models import Event
from tests.fuzz.conftest import STRIPE_SECRET

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("url", ["/webhooks/provisioning/", "/webhooks/marketo/", "/webhooks/stripe/"])
def test_webhooks_answer_other_methods_405_with_allow(client, url):
    response = client.get(url)

    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert response.json() == {"error": "method_not_allowed", "allowed": ["POST"]}


@pytest.mark.parametrize("page", ["0", "-1", "abc", "1.5"])
@pytest.mark.parametrize("url", ["/api/workspaces/", "/api/events/", "/api/alerts/"])
def test_a_page_that_is_not_a_number_from_1_is_an_invalid_filter(client, reader_token, url, page):
    response = client.get(url, {"page": page}, headers={"Authorization": f"Token {reader_token}"})

    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_filter",
        "fields": {"page": ["A page number of 1 or more is required."]},
    }


def test_a_page_past_the_last_is_404(client, reader_token):
    response = client.get("/api/workspaces/", {"page": "2"}, headers={"Authorization": f"Token {reader_token}"})

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "Invalid page."}


def test_the_last_page_by_name_still_works(client, reader_token):
    response = client.get("/api/workspaces/", {"page": "last"}, headers={"Authorization": f"Token {reader_token}"})

    assert response.status_code == 200


@pytest.mark.parametrize("created", [245365898830713565741056, 382530217485340, -(10**15)])
def test_a_signed_stripe_event_created_out_of_range_is_422_not_500(client, settings, created):
    settings.STRIPE_WEBHOOK_SECRET = STRIPE_SECRET
    body = json.dumps({"id": "evt_far", "type": "invoice.paid", "created": created, "data": {"object": {}}})

    response = client.post(
        "/webhooks/stripe/",
        data=body,
        content_type="application/json",
        headers={"Stripe-Signature": sign_payload(body, STRIPE_SECRET)},
    )

    assert response.status_code == 422
    assert list(response.json()["fields"]) == ["created"]  # beyond 64 bits, or beyond what a datetime holds
    assert Event.objects.get(external_id="evt_far").status == Event.Status.REJECTED


def test_text_filters_are_documented_as_the_api_takes_them(client, reader_token):
    schema = client.get("/api/schema/?format=json", headers={"Authorization": f"Token {reader_token}"}).json()
    workspace_filter = next(
        p for p in schema["paths"]["/api/events/"]["get"]["parameters"] if p["name"] == "workspace_id"
    )

    assert workspace_filter["allowEmptyValue"] is True
    assert workspace_filter["schema"]["pattern"] == r"^[^\x00]*[^\s\x00][^\x00]*$"
    for value, status in (("", 200), ("ws_1", 200), ("   ", 400), ("ws\x00", 400)):
        response = client.get(
            "/api/events/", {"workspace_id": value}, headers={"Authorization": f"Token {reader_token}"}
        )
        assert response.status_code == status, value


@pytest.mark.parametrize(
    ("text", "stored"), [("nul \x00 inside", "nul \ufffd inside"), ("lone \ud800 pair", "lone \ufffd pair")]
)
def test_a_signed_event_with_text_postgresql_cannot_hold_is_stored_not_500(send_webhook, text, stored):
    body = json.dumps({"type": "plan.renamed", "timestamp": "2026-11-20T14:03:11Z", "data": {"note": text}})

    response = send_webhook(body, msg_id=f"msg_{text[:3]}\x00")

    assert response.status_code == 202, response.content
    event = Event.objects.get()
    assert event.payload["data"]["note"] == stored
    assert event.external_id == f"msg_{text[:3]}\ufffd"
    assert send_webhook(body, msg_id=f"msg_{text[:3]}\x00").json()["status"] == "duplicate"


def test_a_signed_body_with_a_nul_byte_is_kept_as_rejected_not_500(send_webhook):
    response = send_webhook(b"\x00")

    assert response.status_code == 422
    assert Event.objects.get().payload == "\ufffd"


@pytest.mark.parametrize(
    ("event_type", "stripe_object"),
    [
        (
            "customer.subscription.created",
            {"status": "active", "metadata": {"workspace_id": "ws_1"}, "items": {"data": 5}},
        ),
        ("invoice.paid", {"lines": {"data": 7}}),
    ],
)
def test_a_signed_stripe_object_with_a_list_that_is_not_one_is_read_not_500(
    client, settings, event_type, stripe_object
):
    settings.STRIPE_WEBHOOK_SECRET = STRIPE_SECRET
    body = json.dumps({"id": "evt_odd", "type": event_type, "created": 1795400000, "data": {"object": stripe_object}})

    response = client.post(
        "/webhooks/stripe/",
        data=body,
        content_type="application/json",
        headers={"Stripe-Signature": sign_payload(body, STRIPE_SECRET)},
    )

    assert response.status_code == 202
    assert response.json() == {"id": "evt_odd", "status": "ignored"}
