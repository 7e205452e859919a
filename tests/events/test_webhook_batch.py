"""CONTRACT §2b: batches on /webhooks/provisioning/batch/, each event with its own id and result."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from events.jsonbody import INT_OUT_OF_RANGE, NOT_FINITE, TOO_DEEP
from events.models import Event, WebhookBatch
from events.schemas import MAX_BATCH_EVENTS
from tests.conftest import lifecycle_body, signed_headers
from tests.events.helpers import queued_tasks

pytestmark = pytest.mark.django_db

URL = "/webhooks/provisioning/batch/"
AT = "2026-11-20T14:03:11Z"
TRIAL = {"workspace_id": "ws_b", "email": "dana@acme.io"}
USAGE = {"workspace_id": "ws_b", "feature": "envelope.send"}


def event(event_id: Any, event_type: str = "usage.recorded", data: Any = None, **extra: Any) -> dict[str, Any]:
    body = {"id": event_id, "type": event_type, "timestamp": AT, "data": USAGE if data is None else data}
    return {**body, **extra}


def send_batch(client: Client, body: Any, *, msg_id: str = "batch_1", headers: dict | None = None, **sign: Any):
    text = body if isinstance(body, str) else json.dumps(body)
    return client.post(
        URL,
        data=text,
        content_type="application/json",
        headers=headers if headers is not None else signed_headers(text, msg_id=msg_id, **sign),
    )


def statuses() -> dict[str, str]:
    return dict(Event.objects.values_list("external_id", "status"))


def test_each_event_counts_once_and_valid_ones_are_stored_beside_rejected_ones(client, send_webhook):
    # given: one event already sent alone
    send_webhook(lifecycle_body("usage.recorded", USAGE), msg_id="e_seen")
    events = [
        event("e_trial", "trial.started", TRIAL),
        event("e_usage"),
        event("e_seen"),
        event("e_unknown", "seat.added", {"workspace_id": "ws_b"}),
        event("e_bad", "usage.recorded", {"workspace_id": "ws_b"}),
        event("e_usage"),  # again within the batch
    ]
    # when
    response = send_batch(client, {"events": events})
    # then
    assert response.status_code == 202
    assert response.json() == {
        "id": "batch_1",
        "accepted": 2,
        "duplicates": 2,
        "ignored": 1,
        "rejected": [{"index": 4, "id": "e_bad", "fields": {"data.feature": ["This field is required."]}}],
    }
    assert statuses() == {
        "e_seen": "new",
        "e_trial": "new",
        "e_usage": "new",
        "e_unknown": "ignored",
        "e_bad": "rejected",
    }
    trial = Event.objects.get(external_id="e_trial")
    assert (trial.type, trial.workspace_key, trial.occurred_at.isoformat()) == (
        "trial.started",
        "ws_b",
        "2026-11-20T14:03:11+00:00",
    )
    assert trial.payload["data"] == TRIAL
    assert "data.feature" in Event.objects.get(external_id="e_bad").notes
    recorded = WebhookBatch.objects.get(webhook_id="batch_1")
    assert (recorded.events, recorded.accepted, recorded.duplicates, recorded.ignored, recorded.rejected) == (
        6,
        2,
        2,
        1,
        1,
    )


def test_an_event_sent_in_a_batch_is_a_duplicate_when_sent_alone(client, send_webhook):
    send_batch(client, {"events": [event("e_1")]})
    response = send_webhook(lifecycle_body("usage.recorded", USAGE), msg_id="e_1")
    assert (response.status_code, response.json()["status"]) == (200, "duplicate")


def test_the_same_batch_again_is_a_duplicate_and_changes_nothing(client):
    send_batch(client, {"events": [event("e_1")]}, msg_id="batch_x")
    before = list(Event.objects.values())
    response = send_batch(client, {"events": [event("e_1"), event("e_2")]}, msg_id="batch_x")
    assert response.status_code == 200
    assert response.json() == {"id": "batch_x", "status": "duplicate"}
    assert list(Event.objects.values()) == before
    assert WebhookBatch.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "events"),
        ({"events": {"id": "e"}}, "events"),
        ([event("e_1")], "events"),
        ({"events": [event(f"e_{i}") for i in range(MAX_BATCH_EVENTS + 1)]}, "events"),
        ({"events": [event("e_1"), {"type": "usage.recorded", "timestamp": AT, "data": USAGE}]}, "events.1.id"),
        ({"events": [event(12345)]}, "events.0.id"),
        ({"events": [event(12345678901234567890123)]}, "events.0.id"),
        ({"events": [event("  ")]}, "events.0.id"),
        ({"events": [event("x" * 256)]}, "events.0.id"),
        ({"events": ["e_1"]}, "events.0.id"),
    ],
)
def test_a_malformed_envelope_is_422_and_stores_none_of_its_events(client, body, field):
    response = send_batch(client, body, msg_id="batch_bad")
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_payload"
    assert field in response.json()["fields"]
    assert statuses() == {"batch_bad": "rejected"}, "kept as one rejected message, its events not stored"
    assert not WebhookBatch.objects.exists(), "a corrected batch with the same id is still taken"


def test_malformed_json_is_422(client):
    response = send_batch(client, '{"events": [', msg_id="batch_bad")
    assert response.status_code == 422
    assert "body" in response.json()["fields"]


@pytest.mark.parametrize(
    ("raw_event", "field", "message"),
    [
        (
            '{"id": "e_h", "type": "usage.recorded", "timestamp": "' + AT + '", "data": '
            '{"workspace_id": "ws_b", "feature": "f", "count": 1e999}}',
            "data.count",
            NOT_FINITE,
        ),
        (
            '{"id": "e_h", "type": "usage.recorded", "timestamp": "' + AT + '", "data": '
            '{"workspace_id": "ws_b", "feature": "f", "extra": NaN}}',
            "data.extra",
            NOT_FINITE,
        ),
        (
            '{"id": "e_h", "type": "usage.recorded", "timestamp": "' + AT + '", "data": '
            '{"workspace_id": "ws_b", "feature": "f", "n": ' + "9" * 5000 + "}}",
            "data.n",
            INT_OUT_OF_RANGE,
        ),
        (
            '{"id": "e_h", "type": "usage.recorded", "timestamp": "' + AT + '", "data": '
            '{"workspace_id": "ws_b", "feature": "f", "deep": ' + "[" * 63 + "]" * 63 + "}}",
            "body",
            TOO_DEEP,
        ),
        (
            '{"id": "e_h", "type": "usage.recorded", "timestamp": "9999-12-31T23:59:59-14:00", "data": '
            '{"workspace_id": "ws_b", "feature": "f"}}',
            "timestamp",
            None,
        ),
        (
            '{"id": "e_h", "type": "workspace.churned", "timestamp": "' + AT + '", "data": '
            '{"workspace_id": "ws_b", "churned_at": "1969-12-31T23:59:59Z"}}',
            "data.churned_at",
            None,
        ),
    ],
)
def test_hostile_input_is_judged_per_event(client, raw_event, field, message):
    """CONTRACT §2's hostile-input rules, for each event of a batch: that event is rejected, naming where,
    and kept with a payload the database holds; its neighbours are stored."""
    text = '{"events": [' + json.dumps(event("e_ok")) + ", " + raw_event + "]}"
    response = send_batch(client, text)
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["accepted"] == 1
    [rejected] = body["rejected"]
    assert (rejected["index"], rejected["id"]) == (1, "e_h")
    assert field in rejected["fields"], rejected["fields"]
    if message:
        assert rejected["fields"][field] == [message]
    assert statuses() == {"e_ok": "new", "e_h": "rejected"}
    Event.objects.get(external_id="e_h").payload  # noqa: B018 (readable back)


def test_a_body_nested_deeper_than_an_event_may_be_is_422(client):
    deep = "[" * 300 + "]" * 300
    text = '{"events": [{"id": "e", "type": "x", "timestamp": "' + AT + '", "data": {"d": ' + deep + "}}]}"
    response = send_batch(client, text)
    assert response.status_code == 422
    assert response.json()["fields"] == {"body": [TOO_DEEP]}


def test_a_bad_number_outside_the_events_is_422(client):
    response = send_batch(client, '{"events": [], "n": NaN}')
    assert response.status_code == 422
    assert response.json()["fields"] == {"n": [NOT_FINITE]}


def test_signature_size_and_configuration_answer_as_for_single_events(client, settings):
    body = json.dumps({"events": [event("e_1")]})
    bad = signed_headers(body, msg_id="batch_1")
    bad["webhook-signature"] = "v1,AAAA"
    assert send_batch(client, body, headers=bad).json() == {"error": "invalid_signature"}
    assert send_batch(client, body, timestamp=1).status_code == 401
    big = json.dumps({"events": [event("e_1", data={**USAGE, "pad": "x" * (1024 * 1024)})]})
    assert send_batch(client, big).status_code == 413
    assert client.get(URL).status_code == 405
    settings.PROVISIONING_WEBHOOK_SECRET = ""
    assert send_batch(client, body).status_code == 503
    assert not Event.objects.exists() and not WebhookBatch.objects.exists()


def test_one_transaction_one_insert_and_one_doorbell_per_batch(client, django_capture_on_commit_callbacks):
    events = [event(f"u_{i}", data={**USAGE, "workspace_id": f"ws_{i % 3}"}) for i in range(200)]
    events += [event(f"t_{i}", "trial.started", {**TRIAL, "workspace_id": f"ws_{i}"}) for i in range(3)]
    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = send_batch(client, {"events": events})
    assert response.json()["accepted"] == 203
    table = Event._meta.db_table
    inserts = [query["sql"] for query in queries if query["sql"].startswith(f'INSERT INTO "{table}"')]
    assert len(inserts) == 1, "all rows in one multi-row INSERT"
    assert len(callbacks) == 1, "the doorbell rings once, on commit"
    [rollup] = queued_tasks("usage.tasks.rollup_usage")
    assert len(rollup["args"][0]) == 200
    [process] = queued_tasks("processing.tasks.process_workspaces")
    assert process["args"][0] == ["ws_0", "ws_1", "ws_2"]


def test_an_empty_batch_is_accepted_with_nothing_in_it(client):
    response = send_batch(client, {"events": []})
    assert response.status_code == 202
    assert response.json() == {"id": "batch_1", "accepted": 0, "duplicates": 0, "ignored": 0, "rejected": []}


def test_the_batch_is_in_the_openapi_schema(client):
    from events.openapi import PATHS, SCHEMAS

    operation = PATHS["/webhooks/provisioning/batch/"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("ProvisioningBatch")
    assert set(SCHEMAS["WebhookBatchReceipt"]["required"]) == {"id", "accepted", "duplicates", "ignored", "rejected"}


@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_of_one_batch_and_overlapping_batches_store_each_event_once():
    """Over real connections: the same batch five times at once is one 202 and four duplicates; two other
    batches sharing events with it (one in reverse order) store each event once, each answered new in exactly
    one of them, and never deadlock."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections

    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers on its file lock; PostgreSQL proves the race")
    shared = [event(f"s_{i}") for i in range(50)]
    requests = [({"events": shared}, "batch_same")] * 5
    requests += [
        ({"events": [*(shared if n else shared[::-1]), *(event(f"own_{n}_{i}") for i in range(3))]}, f"batch_{n}")
        for n in range(2)
    ]
    barrier = threading.Barrier(len(requests))

    def send(body: dict, msg_id: str):
        try:
            barrier.wait(timeout=10)
            return send_batch(Client(), body, msg_id=msg_id)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        responses = list(pool.map(lambda args: send(*args), requests))
    same = sorted(response.status_code for response in responses[:5])
    assert same == [200, 200, 200, 200, 202]
    answers = [response.json() for response in responses if response.status_code == 202]
    assert sum(answer["accepted"] for answer in answers) == 56, "each event accepted in exactly one batch"
    assert Event.objects.count() == 56
    assert WebhookBatch.objects.count() == 3
