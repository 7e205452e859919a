"""CONTRACT §2: every row of the provisioning webhook's status table."""

from __future__ import annotations

import json
import logging

import pytest

from events.models import Event
from tests.conftest import lifecycle_body, signed_headers

pytestmark = pytest.mark.django_db

TRIAL = {"workspace_id": "ws_8812", "email": "dana@acme.io", "workspace_name": "Acme"}


def test_valid_event_is_stored_new_and_answered_202(send_webhook, django_capture_on_commit_callbacks):
    # given
    body = lifecycle_body("trial.started", TRIAL)
    # when
    with django_capture_on_commit_callbacks() as callbacks:
        response = send_webhook(body, msg_id="msg_accept")
    # then
    assert response.status_code == 202
    assert response.json() == {"id": "msg_accept", "status": "accepted"}
    event = Event.objects.get(external_id="msg_accept")
    assert event.status == Event.Status.NEW
    assert event.source == Event.Source.PROVISIONING
    assert event.type == "trial.started"
    assert event.workspace_key == "ws_8812"
    assert event.occurred_at.isoformat() == "2026-11-20T14:03:11+00:00"
    assert event.payload == json.loads(body)
    assert len(callbacks) == 1, "processing is enqueued once, on commit"


def test_processing_is_not_enqueued_before_commit(send_webhook, django_capture_on_commit_callbacks):
    from django_q.models import OrmQ

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        send_webhook(lifecycle_body("trial.started", TRIAL))
    assert OrmQ.objects.count() == 0, "nothing reaches the broker before the commit"
    for callback in callbacks:
        callback()
    assert OrmQ.objects.count() == 1


def test_same_webhook_id_is_a_duplicate_and_changes_nothing(send_webhook):
    body = lifecycle_body("trial.started", TRIAL)
    first = send_webhook(body, msg_id="msg_dup")
    before = list(Event.objects.values())
    second = send_webhook(body, msg_id="msg_dup")
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json() == {"id": "msg_dup", "status": "duplicate"}
    assert list(Event.objects.values()) == before


def test_unknown_type_is_stored_ignored(send_webhook):
    response = send_webhook(lifecycle_body("seat.added", {"workspace_id": "ws_1", "seats": 3}), msg_id="msg_new")
    assert response.status_code == 202
    assert response.json() == {"id": "msg_new", "status": "ignored"}
    event = Event.objects.get(external_id="msg_new")
    assert event.status == Event.Status.IGNORED
    assert event.workspace_key == "ws_1"
    assert "not known" in event.notes


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"email": "dana@acme.io"}, "data.workspace_id"),
        ({"workspace_id": "ws_1"}, "data.email"),
        ({"workspace_id": "ws_1", "email": "not-an-email"}, "data.email"),
        (
            {"workspace_id": "ws_1", "email": "a@b.io", "trial_expires_at": "tomorrow"},
            "data.trial_expires_at",
        ),
    ],
)
def test_trial_with_bad_fields_is_422_and_kept_rejected(send_webhook, data, field):
    response = send_webhook(lifecycle_body("trial.started", data), msg_id="msg_bad")
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_payload"
    assert field in body["fields"]
    event = Event.objects.get(external_id="msg_bad")
    assert event.status == Event.Status.REJECTED
    assert field in event.notes


def test_422_body_matches_the_contract_example(send_webhook):
    response = send_webhook(lifecycle_body("subscription.converted", {"plan": "team", "mrr": "297.00"}))
    assert response.json() == {
        "error": "invalid_payload",
        "fields": {"data.workspace_id": ["This field is required."]},
    }


@pytest.mark.parametrize(
    ("event_type", "data", "field"),
    [
        ("subscription.converted", {"workspace_id": "w", "mrr": "1"}, "data.plan"),
        ("subscription.converted", {"workspace_id": "w", "plan": "team"}, "data.mrr"),
        ("subscription.converted", {"workspace_id": "w", "plan": "team", "mrr": "-5"}, "data.mrr"),
        ("subscription.converted", {"workspace_id": "w", "plan": "team", "mrr": "1.234"}, "data.mrr"),
        (
            "subscription.converted",
            {"workspace_id": "w", "plan": "t", "mrr": 1, "currency": "dollars"},
            "data.currency",
        ),
        ("workspace.churned", {"workspace_id": "w", "churned_at": "2026-11-20 10:00"}, "data.churned_at"),
        ("usage.recorded", {"workspace_id": "w"}, "data.feature"),
        ("usage.recorded", {"workspace_id": "w", "feature": "esign", "count": -1}, "data.count"),
        ("usage.recorded", {"workspace_id": "w", "feature": "esign", "outcome": "maybe"}, "data.outcome"),
        ("trial.started", {"workspace_id": "w" * 65, "email": "a@b.io"}, "data.workspace_id"),
    ],
)
def test_each_type_validates_its_fields(send_webhook, event_type, data, field):
    response = send_webhook(lifecycle_body(event_type, data))
    assert response.status_code == 422
    assert field in response.json()["fields"]


def test_mrr_accepts_number_or_decimal_string(send_webhook):
    for msg_id, mrr in (("msg_num", 297), ("msg_str", "297.00")):
        body = lifecycle_body("subscription.converted", {"workspace_id": "w", "plan": "team", "mrr": mrr})
        assert send_webhook(body, msg_id=msg_id).status_code == 202


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("{not json", "body"),
        ("[1, 2]", "body"),
        (json.dumps({"timestamp": "2026-11-20T14:03:11Z", "data": {}}), "type"),
        (json.dumps({"type": "trial.started", "data": TRIAL}), "timestamp"),
        (
            json.dumps({"type": "trial.started", "timestamp": "2026-11-20T14:03:11", "data": TRIAL}),
            "timestamp",
        ),
        (json.dumps({"type": "trial.started", "timestamp": "2026-11-20T14:03:11Z", "data": "x"}), "data"),
    ],
)
def test_malformed_envelope_is_422_naming_the_field(send_webhook, body, field):
    response = send_webhook(body, msg_id="msg_malformed")
    assert response.status_code == 422
    assert field in response.json()["fields"]
    assert Event.objects.get(external_id="msg_malformed").status == Event.Status.REJECTED


def test_envelope_and_data_errors_are_reported_together(send_webhook):
    body = json.dumps({"type": "trial.started", "timestamp": "yesterday", "data": {"email": "x"}})
    fields = send_webhook(body).json()["fields"]
    assert set(fields) == {"timestamp", "data.workspace_id", "data.email"}


def test_rejected_event_is_never_enqueued(send_webhook, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        send_webhook(lifecycle_body("trial.started", {"email": "a@b.io"}))
    assert callbacks == []


def test_missing_signature_is_401_and_stores_nothing(send_webhook):
    response = send_webhook(lifecycle_body("trial.started", TRIAL), headers={})
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_signature"}
    assert not Event.objects.exists()


def test_stale_timestamp_is_401_stale(send_webhook):
    import time

    response = send_webhook(lifecycle_body("trial.started", TRIAL), timestamp=int(time.time()) - 301)
    assert response.status_code == 401
    assert response.json() == {"error": "stale_timestamp"}
    assert not Event.objects.exists()


def test_refused_body_is_not_logged(send_webhook, caplog):
    secret_marker = "canary-do-not-log@acme.io"
    with caplog.at_level(logging.DEBUG):
        send_webhook(lifecycle_body("trial.started", {"workspace_id": "w", "email": secret_marker}), headers={})
    assert secret_marker not in caplog.text
    assert "invalid_signature" in caplog.text


def test_body_over_one_mib_is_413_before_verification(send_webhook):
    padding = "x" * (1024 * 1024)
    body = lifecycle_body("trial.started", {**TRIAL, "company": padding})
    response = send_webhook(body, headers={})  # unsigned: the size check comes first
    assert response.status_code == 413
    assert response.json() == {"error": "payload_too_large"}
    assert not Event.objects.exists()


def test_body_of_exactly_one_mib_is_not_refused_for_size(send_webhook):
    base = lifecycle_body("usage.recorded", {"workspace_id": "w", "feature": "f", "product": ""})
    body = base.replace('"product": ""', '"product": "' + "p" * (1024 * 1024 - len(base)) + '"')
    assert len(body.encode()) == 1024 * 1024
    response = send_webhook(body)
    assert response.status_code == 422  # product is too long, but the size was accepted
    assert "data.product" in response.json()["fields"]


def test_not_configured_is_503(send_webhook, settings):
    settings.PROVISIONING_WEBHOOK_SECRET = ""
    response = send_webhook(lifecycle_body("trial.started", TRIAL))
    assert response.status_code == 503
    assert response.json() == {"error": "not_configured"}
    assert not Event.objects.exists()


def test_get_is_405_json(client):
    response = client.get("/webhooks/provisioning/")
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"


def test_csrf_is_not_required_for_the_signed_webhook(settings):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    body = lifecycle_body("trial.started", TRIAL)
    response = strict.post(
        "/webhooks/provisioning/", data=body, content_type="application/json", headers=signed_headers(body)
    )
    assert response.status_code == 202


def test_overlong_webhook_id_is_422(send_webhook):
    response = send_webhook(lifecycle_body("trial.started", TRIAL), msg_id="m" * 256)
    assert response.status_code == 422
    assert "webhook-id" in response.json()["fields"]
    assert not Event.objects.exists()
