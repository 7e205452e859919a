"""Fuzzing the webhooks past authentication: every generated request is signed with the configured key
(or carries the Marketo token), so the payload validation and the Stripe mapping meet the generated
bodies. Answers must be as documented, and only an accepted (202) or rejected (422) request stores a
row: exactly one event, `new`/`ignored` or `rejected`, never anything else.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from schemathesis.core import NotSet
from schemathesis.specs.openapi.checks import ignored_auth, negative_data_rejection, positive_data_acceptance
from schemathesis.transport.serialization import serialize_json

from billing.stripe_adapter import sign_payload
from events.models import Event, WebhookBatch
from events.openapi import STRIPE_HANDLED
from events.signatures import sign_standard_webhook
from tests.conftest import PROVISIONING_SECRET
from tests.fuzz.conftest import MARKETO_TOKEN, STRIPE_SECRET
from tests.fuzz.helpers import row_counts
from tests.fuzz.schema import FUZZ_SETTINGS, fuzz_schema

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fuzz_settings")]

# Credentials are added to every case below, never generated. The coverage phase is left to the unsigned
# run: its missing-header cases are about authentication, which the signature added here would undo.
signed = fuzz_schema(
    path_regex="^/webhooks/", phases={"coverage": {"enabled": False}}, **{"with-security-parameters": False}
)


def wire_body(body: object) -> bytes:
    """The body as schemathesis itself sends JSON (its serialize_json), so the signature covers those bytes."""
    if isinstance(body, NotSet):
        return b""
    sent = serialize_json(body)
    return sent["data"] if "data" in sent else json.dumps(sent["json"]).encode()


def credentials(path: str, headers: dict[str, str], body: str) -> dict[str, str]:
    """What a real sender adds: a fresh Standard Webhooks signature, the Marketo token, a Stripe signature."""
    now = int(time.time())
    if path in ("/webhooks/provisioning/", "/webhooks/provisioning/batch/"):
        msg_id = headers.get("webhook-id", "")
        signature = sign_standard_webhook(secret=PROVISIONING_SECRET, msg_id=msg_id, timestamp=now, body=body)
        return {"webhook-timestamp": str(now), "webhook-signature": signature}
    if path == "/webhooks/marketo/":
        return {"Authorization": f"Bearer {MARKETO_TOKEN}"}
    return {"Stripe-Signature": sign_payload(body, STRIPE_SECRET, timestamp=now)}


def assert_stored_as_answered(response: Any, last_id: int, before: dict[str, int]) -> None:
    """202: one new or ignored event; 422: one rejected event (none when that key was rejected before);
    anything else: nothing. No other table changes either way. A batch: see assert_batch_stored_as_answered."""
    if response.request.url.endswith("/batch/"):
        assert_batch_stored_as_answered(response, last_id, before)
        return
    stored = list(Event.objects.filter(id__gt=last_id).values_list("status", flat=True))
    allowed = {202: (["new"], ["ignored"]), 422: ([], ["rejected"])}.get(response.status_code, ([],))
    assert stored in allowed, (response.status_code, response.text)
    after = row_counts()
    assert {table for table in after if after[table] != before[table]} <= {Event._meta.db_table}


def assert_batch_stored_as_answered(response: Any, last_id: int, before: dict[str, int]) -> None:
    """CONTRACT §2b: a 202 stored exactly the events it counts as accepted, ignored and rejected (each with
    that status) and recorded the batch; a 422 one rejected event; anything else nothing."""
    stored = list(Event.objects.filter(id__gt=last_id).values_list("external_id", "status"))
    after = row_counts()
    changed = {table for table in after if after[table] != before[table]}
    if response.status_code == 202:
        answer = response.json()
        statuses = [status for _, status in stored]
        rejected_ids = {item["id"] for item in answer["rejected"]}
        assert statuses.count("new") == answer["accepted"], (answer, stored)
        assert statuses.count("ignored") == answer["ignored"], (answer, stored)
        assert {key for key, status in stored if status == "rejected"} <= rejected_ids
        assert changed <= {Event._meta.db_table, WebhookBatch._meta.db_table}
        assert WebhookBatch.objects.filter(webhook_id=answer["id"]).exists()
    else:
        assert [status for _, status in stored] in ([], ["rejected"] if response.status_code == 422 else []), (
            response.status_code,
            response.text,
        )
        assert changed <= {Event._meta.db_table}


def last_event_id() -> int:
    return Event.objects.order_by("-id").values_list("id", flat=True).first() or 0


@signed.parametrize()
@FUZZ_SETTINGS
def test_signed_webhook_requests_are_answered_as_documented(case):
    raw = wire_body(case.body)
    body = raw.decode("utf-8", "replace")  # a body that is not UTF-8 is refused whatever its signature
    # Assigned, not edited in place: schemathesis then re-judges whether the case is still a negative one.
    case.headers = {**(case.headers or {}), **credentials(case.path, dict(case.headers or {}), body)}
    last_id, before = last_event_id(), row_counts()

    # ignored_auth probes whether generated credentials are refused; these are real ones. Stripe objects are
    # read leniently by design (billing/stripe_adapter.py: other API versions' shapes too), so an object off the
    # documented shape is no reason to refuse an authentic event.
    excluded = [ignored_auth, negative_data_rejection] if case.path == "/webhooks/stripe/" else [ignored_auth]
    response = case.call_and_validate(data=raw, excluded_checks=excluded)

    assert_stored_as_answered(response, last_id, before)


stripe_events = signed["/webhooks/stripe/"]["POST"]


def naming_a_workspace(stripe_object: dict[str, Any]) -> dict[str, Any]:
    """The object with metadata.workspace_id set where subscriptions and invoices carry it."""
    metadata = {**stripe_object.get("metadata", {}), "workspace_id": "ws_fuzz"}
    parent = stripe_object.get("parent", {})
    details = {"subscription": "sub_fuzz", **parent.get("subscription_details", {}), "metadata": metadata}
    return {**stripe_object, "metadata": metadata, "parent": {**parent, "subscription_details": details}}


@FUZZ_SETTINGS
@given(
    case=stripe_events.as_strategy(),
    event_type=st.sampled_from(STRIPE_HANDLED),
    named=st.booleans(),
)
def test_signed_stripe_events_of_handled_types_are_answered_as_documented(case, event_type, named):
    """Generated subscriptions and invoices through the handlers and the mapping (random types rarely name a
    handled one, or a workspace). Whether the object names its workspace decides 202 or 422, which the schema
    cannot say, so positive_data_acceptance does not apply; no 5xx, documented answers and stored rows do."""
    stripe_object = case.body["data"]["object"]
    data = {**case.body["data"], "object": naming_a_workspace(stripe_object) if named else stripe_object}
    case.body = {**case.body, "type": event_type, "data": data}
    raw = wire_body(case.body)
    case.headers = {**(case.headers or {}), **credentials(case.path, {}, raw.decode())}
    last_id, before = last_event_id(), row_counts()

    response = case.call_and_validate(data=raw, excluded_checks=[ignored_auth, positive_data_acceptance])

    assert response.status_code in (200, 202, 422), response.text  # authentic: stored, a duplicate, or rejected
    assert_stored_as_answered(response, last_id, before)
