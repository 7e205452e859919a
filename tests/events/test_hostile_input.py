"""Hostile but correctly signed input (CONTRACT §2, issue 18 item 4): nesting past 64 levels, numbers out of
range, NaN/Infinity and dates that cannot be applied are 422 naming the field and kept as `rejected` on all
three webhooks, never a 5xx. Each of these answered 500 or 503 before."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from billing.stripe_adapter import sign_payload
from events.jsonbody import MAX_JSON_DEPTH, json_nesting_exceeds
from events.models import Event
from tests.conftest import lifecycle_body
from tests.fuzz.conftest import MARKETO_TOKEN, STRIPE_SECRET

pytestmark = pytest.mark.django_db

TRIAL = {"workspace_id": "ws_1", "email": "dana@acme.io"}
DEEP = "[" * 1000 + "]" * 1000
TOO_DEEP = ["Nested deeper than 64 levels."]
INT_RANGE = ["Integers must lie between -9223372036854775807 and 9223372036854775807."]
NOT_FINITE = ["NaN, Infinity and numbers beyond a double's range are not JSON numbers."]
DATE_RANGE = ["Enter an instant from 1970-01-01T00:00:00Z to 2999-12-31T23:59:59Z."]


def provisioning(text: str, data: str | None = None, timestamp: str = '"2026-11-20T14:03:11Z"') -> str:
    """A trial.started body with `text` spliced in as data.x (raw JSON, so NaN and 5,000 digits stay as sent)."""
    data = data or '{"workspace_id": "ws_1", "email": "dana@acme.io", "x": ' + text + "}"
    return '{"type": "trial.started", "timestamp": ' + timestamp + ', "data": ' + data + "}"


def assert_rejected(response: Any, fields: dict[str, list[str]], source: str) -> Event:
    assert response.status_code == 422, response.content
    assert response.json() == {"error": "invalid_payload", "fields": fields}
    event = Event.objects.get()
    assert (event.source, event.status, event.occurred_at) == (source, Event.Status.REJECTED, None)
    return event


# --- provisioning -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (provisioning(DEEP), {"body": TOO_DEEP}),
        (provisioning("9" * 5000), {"data.x": INT_RANGE}),
        (provisioning("9223372036854775808"), {"data.x": INT_RANGE}),
        (provisioning("[1, -9223372036854775808]"), {"data.x.1": INT_RANGE}),
        (provisioning("NaN"), {"data.x": NOT_FINITE}),
        (provisioning("Infinity"), {"data.x": NOT_FINITE}),
        (provisioning('{"y": -Infinity}'), {"data.x.y": NOT_FINITE}),
        (provisioning("1e999"), {"data.x": NOT_FINITE}),
    ],
    ids=["deep-1000", "5000-digits", "2**63", "-2**63-in-list", "nan", "infinity", "minus-infinity", "1e999"],
)
def test_provisioning_refuses_what_it_cannot_hold_as_422_kept_as_text(send_webhook, body, fields):
    response = send_webhook(body)

    event = assert_rejected(response, fields, "provisioning")
    assert event.payload == body  # the body as text: storable, unlike the parsed one


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (provisioning("1", timestamp='"9999-12-31T23:59:59-14:00"'), {"timestamp": DATE_RANGE}),
        (provisioning("1", timestamp='"0001-01-01T00:00:00+14:00"'), {"timestamp": DATE_RANGE}),
        (provisioning("1", timestamp='"9999-12-25T00:00:00Z"'), {"timestamp": DATE_RANGE}),
        (provisioning("1", timestamp='"1969-12-31T23:59:59Z"'), {"timestamp": DATE_RANGE}),
        (provisioning("1", timestamp='"3000-01-01T00:00:00Z"'), {"timestamp": DATE_RANGE}),
        (lifecycle_body("trial.started", {**TRIAL, "trial_expires_at": "9999-12-31T23:59:59Z"}), None),
        (lifecycle_body("workspace.churned", {**TRIAL, "churned_at": "0001-01-01T00:00:00Z"}), None),
    ],
    ids=["overflowing", "underflowing", "year-9999", "before-1970", "year-3000", "trial-expiry", "churn-date"],
)
def test_provisioning_refuses_dates_it_cannot_apply_in_any_date_field(send_webhook, body, fields):
    data = json.loads(body)["data"]
    field = next((f"data.{name}" for name in ("trial_expires_at", "churned_at") if name in data), None)

    response = send_webhook(body)

    event = assert_rejected(response, fields or {field: DATE_RANGE}, "provisioning")
    assert event.payload == json.loads(body)


@pytest.mark.parametrize(
    "timestamp",
    ["1970-01-01T00:00:00Z", "1970-01-01T01:00:00+01:00", "2999-12-31T23:59:59Z", "2999-12-31T22:59:59-01:00"],
)
def test_dates_at_the_edges_of_the_range_are_accepted(send_webhook, timestamp):
    response = send_webhook(lifecycle_body("trial.started", TRIAL, timestamp=timestamp))

    assert response.status_code == 202, response.content


def test_nesting_of_exactly_64_levels_is_accepted_and_65_refused(send_webhook):
    # The body is level 1, data level 2: 62 more arrays make 64.
    deepest = "[" * (MAX_JSON_DEPTH - 2) + "]" * (MAX_JSON_DEPTH - 2)
    accepted = send_webhook(provisioning(deepest))
    refused = send_webhook(provisioning(f"[{deepest}]"))

    assert accepted.status_code == 202, accepted.content
    assert refused.status_code == 422
    assert refused.json()["fields"] == {"body": TOO_DEEP}


def test_brackets_inside_strings_do_not_count_as_nesting():
    text = json.dumps({"s": "[" * 500, "t": 'a \\" [[[ \\\\', "u": [[1]]}).encode()

    assert not json_nesting_exceeds(text)
    assert json_nesting_exceeds(b'{"s": "]]]]", "x": ' + b"[" * 64 + b"]" * 64 + b"}")


def test_infinity_in_a_body_rejected_for_another_field_is_kept_not_500(send_webhook):
    """Reached _reject with the parsed body, whose Infinity the database refused (IntegrityError, 500)."""
    body = provisioning("Infinity", timestamp='"yesterday"')

    response = send_webhook(body)

    event = assert_rejected(response, {"data.x": NOT_FINITE}, "provisioning")
    assert event.payload == body


# --- Marketo --------------------------------------------------------------------------------------


def post_marketo(client: Client, body: str) -> Any:
    return client.post(
        "/webhooks/marketo/", data=body, content_type="application/json",
        headers={"Authorization": f"Bearer {MARKETO_TOKEN}"},
    )  # fmt: skip


LEAD = '{"lead_id": "mk_1", "email": "dana@acme.io", "company": %s}'


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (LEAD % DEEP, {"body": TOO_DEEP}),
        (LEAD % ("1" * 5000), {"company": INT_RANGE}),
        (LEAD % "NaN", {"company": NOT_FINITE}),
        (LEAD % "-1e999", {"company": NOT_FINITE}),
        ('{"lead_id": "mk_1", "email": "dana@acme.io", "created_at": "9999-12-31T23:59:59-14:00"}', None),
    ],
    ids=["deep-1000", "5000-digits", "nan", "minus-1e999", "overflowing-date"],
)
def test_marketo_refuses_what_it_cannot_hold_as_422_kept_rejected(client, settings, body, fields):
    settings.MARKETO_WEBHOOK_TOKEN = MARKETO_TOKEN

    response = post_marketo(client, body)

    assert_rejected(response, fields or {"created_at": DATE_RANGE}, "marketo")


# --- Stripe ---------------------------------------------------------------------------------------


def subscription(**price: Any) -> dict[str, Any]:
    price = {"id": "price_1", "lookup_key": "team", "currency": "usd", "recurring": {"interval": "month"}, **price}
    item = {"quantity": 1, "price": price}
    return {
        "id": "evt_hostile",
        "type": "customer.subscription.created",
        "created": 1795400000,
        "data": {
            "object": {
                "id": "sub_1", "object": "subscription", "status": "active", "currency": "usd",
                "metadata": {"workspace_id": "ws_1"}, "items": {"data": [item]},
            }
        },
    }  # fmt: skip


def post_stripe(client: Client, body: str) -> Any:
    return client.post(
        "/webhooks/stripe/", data=body, content_type="application/json",
        headers={"Stripe-Signature": sign_payload(body, STRIPE_SECRET)},
    )  # fmt: skip


UNIT_AMOUNT = "data.object.items.data.0.price.unit_amount"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ('{"id": "evt_deep", "x": ' + DEEP + "}", {"body": TOO_DEEP}),
        ('{"id": "evt_deep", "x": ' + "[" * 65 + "]" * 65 + "}", {"body": TOO_DEEP}),
        (json.dumps(subscription(unit_amount=10**30)), {UNIT_AMOUNT: INT_RANGE}),
        (json.dumps(subscription(unit_amount_decimal="1e30")), {"data.object.items": ["mrr"]}),
        (json.dumps(subscription(unit_amount=100)).replace("1795400000", "NaN"), {"created": NOT_FINITE}),
        (json.dumps(subscription(unit_amount=100)).replace('"quantity": 1', '"quantity": Infinity'), None),
        ('{"id": "evt_big", "n": ' + "7" * 5000 + "}", {"n": INT_RANGE}),
        (json.dumps(subscription(unit_amount=100)).replace("1795400000", "32503680000"), {"created": ["2999"]}),
    ],
    ids=["deep-1000", "deep-65", "unit-amount-1e30", "unit-amount-decimal-1e30", "nan", "infinity", "5000-digits",
         "year-3000"],
)  # fmt: skip
def test_stripe_refuses_what_it_cannot_hold_as_422_kept_rejected(client, settings, body, fields):
    settings.STRIPE_WEBHOOK_SECRET = STRIPE_SECRET

    response = post_stripe(client, body)

    assert response.status_code == 422, response.content
    answered = response.json()["fields"]
    fields = fields or {"data.object.items.data.0.quantity": NOT_FINITE}
    assert list(answered) == list(fields)
    for name, messages in fields.items():  # the short ones name a word of the message
        assert answered[name] == messages or messages[0] in answered[name][0].lower()
    event = Event.objects.get()
    assert (event.source, event.status) == ("stripe", Event.Status.REJECTED)


def test_a_stripe_event_at_the_edge_of_the_range_is_accepted(client, settings):
    settings.STRIPE_WEBHOOK_SECRET = STRIPE_SECRET
    body = json.dumps(subscription(unit_amount=9900)).replace("1795400000", "0")

    response = post_stripe(client, body)

    assert response.status_code == 202, response.content
    assert Event.objects.get().payload["data"]["mrr"] == "99.00"
