"""Error tracking: failures grouped by kind with counts; admins alerted once per new kind and per rate window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
import time_machine
from django.db import DatabaseError

from alerts.error_alerts import error_alerts_raise
from alerts.models import Alert
from events.models import Event
from failures.models import ErrorKind
from failures.services import error_kinds_resolve, error_message_normalise, error_record
from linking.marketo import MARKETO_TYPE, marketo_events_apply
from processing import pipeline
from tests.factories import EventFactory
from usage.rollups import usage_rollup

pytestmark = pytest.mark.django_db

#: A clock-aligned rate window starts at 12:00 (ERROR_ALERT_WINDOW_MINUTES = 10).
NOON = datetime(2026, 11, 20, 12, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (
            "UNABLE_TO_LOCK_ROW: record 001xx000003DGb2AAG locked",
            "UNABLE_TO_LOCK_ROW: record 00Qxx000001abcDEAA locked",
        ),
        ("workspace ws_8812 has 3 events", "workspace ws_17 has 12 events"),
        ("send to dana@acme.io refused", "send to bo@example.org refused"),
        ("value 'Acme Inc' too long", 'value "Globex" too long'),
        (
            "request 6f1c2a4e-8a0b-4c4f-9a53-4f7d3e2b1c00 timed out",
            "request 0a1b2c3d-0000-4c4f-9a53-4f7d3e2b1c00 timed out",
        ),
    ],
)
def test_what_varies_between_occurrences_is_normalised_away(first, second):
    assert error_message_normalise(first) == error_message_normalise(second)


def test_different_messages_stay_different():
    assert error_message_normalise("Required fields are missing: [LastName]") != error_message_normalise(
        "Required fields are missing: [Company]"
    )


def test_the_same_kind_is_counted_and_alerts_once():
    # when
    with time_machine.travel(NOON, tick=False):
        first = error_record(source="sync", kind="UNABLE_TO_LOCK_ROW", message="row 001xx000003DGb2AAG locked")
    with time_machine.travel(NOON + timedelta(minutes=1), tick=False):
        error_record(source="sync", kind="UNABLE_TO_LOCK_ROW", message="row 001xx000003DGb3AAG locked")
        error_record(source="sync", kind="UNABLE_TO_LOCK_ROW", message="row 001xx000003DGb4AAG locked")

    # then (the alerts app's task, every minute, raises what the ledger marked)
    assert not Alert.objects.exists()
    assert error_alerts_raise() == 1
    assert error_alerts_raise() == 0  # raised once
    [kind] = ErrorKind.objects.all()
    assert kind.pk == first.pk
    assert kind.count == 3
    assert kind.first_seen == NOON
    assert kind.last_seen == NOON + timedelta(minutes=1)
    assert kind.last_example == "row 001xx000003DGb4AAG locked"
    [alert] = Alert.objects.all()
    assert alert.rule == "error_new_kind"
    assert alert.audience == "admins"
    assert "UNABLE_TO_LOCK_ROW" in alert.title
    assert alert.context["source"] == "sync"


def test_a_new_kind_alerts_again():
    error_record(source="sync", kind="UNABLE_TO_LOCK_ROW", message="locked")
    error_record(source="sync", kind="REQUIRED_FIELD_MISSING", message="Required fields are missing: [LastName]")
    error_record(source="processing", kind="UNABLE_TO_LOCK_ROW", message="locked")
    error_alerts_raise()

    assert ErrorKind.objects.count() == 3
    assert Alert.objects.filter(rule="error_new_kind").count() == 3


def test_crossing_the_rate_alerts_once_per_window(settings):
    settings.ERROR_ALERT_RATE = 3
    settings.ERROR_ALERT_WINDOW_MINUTES = 10

    def burst(at: datetime, n: int) -> None:
        with time_machine.travel(at, tick=False):
            for _ in range(n):
                error_record(source="delivery", kind="SlackError", message="HTTP 500 from Slack")
            error_alerts_raise()  # the task's minute comes round

    burst(NOON, 2)
    assert not Alert.objects.filter(rule="error_rate").exists()
    burst(NOON + timedelta(minutes=5), 4)  # third, fourth … in the same window: one alert
    burst(NOON + timedelta(minutes=12), 2)  # next window, under the rate: nothing
    burst(NOON + timedelta(minutes=21), 3)  # third window, at the rate: a second alert

    alerts = list(Alert.objects.filter(rule="error_rate").order_by("pk"))
    assert [a.context["window_start"] for a in alerts] == ["2026-11-20T12:00:00+00:00", "2026-11-20T12:20:00+00:00"]
    assert alerts[0].context["window_count"] == 6  # what the window held when the task raised it
    assert "6 failures of this kind since 12:00 UTC (threshold: 3 in 10 minutes)" in alerts[0].reason
    assert ErrorKind.objects.get().count == 11


def test_a_rate_of_zero_never_alerts(settings):
    settings.ERROR_ALERT_RATE = 0
    for _ in range(5):
        error_record(source="sync", kind="X", message="m")
    error_alerts_raise()

    assert not Alert.objects.filter(rule="error_rate").exists()


def test_a_resolved_kind_that_comes_back_alerts_once_more():
    kind = error_record(source="sync", kind="INVALID_FIELD", message="No such column 'Foo__c'")
    error_alerts_raise()
    error_kinds_resolve(ids=[kind.pk])

    error_record(source="sync", kind="INVALID_FIELD", message="No such column 'Bar__c'")
    error_record(source="sync", kind="INVALID_FIELD", message="No such column 'Baz__c'")
    error_alerts_raise()

    titles = list(Alert.objects.filter(rule="error_new_kind").order_by("pk").values_list("title", flat=True))
    assert titles == ["New salesforce sync error: INVALID_FIELD", "Reappeared salesforce sync error: INVALID_FIELD"]
    assert ErrorKind.objects.get().resolved_at is None


def test_the_latest_object_is_linked_and_emails_are_masked():
    event = EventFactory()

    kind = error_record(
        source="processing", kind="ValueError", message="bad owner dana@acme.io", obj=event, workspace_key="ws_1"
    )

    assert kind.last_example == "bad owner <email>"
    assert "dana@acme.io" not in kind.message
    assert kind.last_workspace_key == "ws_1"
    error_alerts_raise()
    assert Alert.objects.get().context["object"] == f"/admin/events/event/{event.pk}/change/"


def test_recording_never_raises_into_the_failure_path():
    with mock.patch.object(ErrorKind.objects, "filter", side_effect=DatabaseError("disk full")):
        assert error_record(source="sync", kind="X", message="m") is None


def test_a_processing_failure_is_recorded_with_its_event(monkeypatch):
    def explode(**kwargs):
        raise RuntimeError("fold failed for ws_1")

    event = EventFactory(workspace_key="ws_1")
    monkeypatch.setattr(pipeline, "workspace_apply_state", explode)

    pipeline.workspace_process(workspace_key="ws_1")

    kind = ErrorKind.objects.get()
    assert (kind.source, kind.kind, kind.count) == ("processing", "RuntimeError", 1)
    assert kind.message == "fold failed for <id>"
    assert kind.last_object_id == str(event.pk)
    assert Event.objects.get(pk=event.pk).status == Event.Status.ERROR


def test_an_unreadable_stored_payload_is_recorded():
    event = EventFactory(workspace_key="ws_2", payload={"type": "trial.started", "data": {"workspace_id": "ws_2"}})

    pipeline.workspace_process(workspace_key="ws_2")

    kind = ErrorKind.objects.get()
    assert (kind.source, kind.kind) == ("processing", "PayloadInvalid")
    assert Event.objects.get(pk=event.pk).status == Event.Status.REVIEW


def test_an_unreadable_marketo_event_is_recorded():
    event = EventFactory(source="marketo", type=MARKETO_TYPE, workspace_key="", payload={"email": "not-an-email"})

    marketo_events_apply(event_ids=[event.pk])

    kind = ErrorKind.objects.get()
    assert (kind.source, kind.kind, kind.last_object_id) == ("processing", "PayloadInvalid", str(event.pk))


def test_an_unreadable_usage_event_is_recorded():
    event = EventFactory(type="usage.recorded", payload={"type": "usage.recorded", "data": {"workspace_id": "ws_1"}})

    usage_rollup(event_ids=[event.pk])

    kind = ErrorKind.objects.get()
    assert (kind.source, kind.kind, kind.last_object_id) == ("processing", "PayloadInvalid", str(event.pk))
    assert Event.objects.get(pk=event.pk).status == Event.Status.REVIEW
