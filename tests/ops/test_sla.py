"""SLA checks: late events, late Salesforce writes and silent sources each raise one admin alert per window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django_q.models import Schedule

from alerts import tasks
from alerts.models import Alert
from alerts.sla import sla_evaluate, source_traffic_rollup
from events.models import Event, SourceDay
from salesforce.models import OutboxItem
from tests.factories import EventFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def alerts(rule: str) -> list[Alert]:
    return list(Alert.objects.filter(rule=rule).order_by("pk"))


# --- events -------------------------------------------------------------------------------------


def test_an_event_waiting_past_the_sla_alerts_with_the_figures():
    EventFactory(status=Event.Status.NEW, received_at=NOW - timedelta(minutes=7), external_id="msg_late")
    EventFactory(status=Event.Status.ERROR, received_at=NOW - timedelta(minutes=6))
    EventFactory(status=Event.Status.NEW, received_at=NOW - timedelta(minutes=4))  # within the SLA

    assert sla_evaluate() == {"breaches": 1, "raised": 1}

    [alert] = alerts("sla_event_delay")
    assert alert.audience == "admins"
    assert alert.reason.startswith("2 event(s) not completed 300 s after receipt; oldest waiting 420 s (new)")
    assert alert.context["waiting"] == 2
    assert alert.context["event_ids"][0] == "msg_late"


def test_within_the_sla_nothing_fires():
    EventFactory(status=Event.Status.NEW, received_at=NOW - timedelta(minutes=4, seconds=59))
    EventFactory(status=Event.Status.REVIEW, received_at=NOW - timedelta(hours=2))  # parked, alerted elsewhere

    assert sla_evaluate() == {"breaches": 0, "raised": 0}


def test_one_alert_per_window_while_the_breach_lasts(clock):
    EventFactory(status=Event.Status.NEW, received_at=NOW - timedelta(minutes=10))

    sla_evaluate()
    clock.shift(timedelta(minutes=20))
    assert sla_evaluate() == {"breaches": 1, "raised": 0}
    clock.shift(timedelta(minutes=20))  # 13:10: the next hourly window
    sla_evaluate()

    assert len(alerts("sla_event_delay")) == 2


def test_the_sla_is_configurable(settings):
    settings.SLA_EVENT_SECONDS = 60
    EventFactory(status=Event.Status.PROCESSING, received_at=NOW - timedelta(seconds=90))

    sla_evaluate()

    assert "not completed 60 s after receipt" in alerts("sla_event_delay")[0].reason


def test_an_event_that_completed_late_between_two_checks_still_counts():
    received = NOW - timedelta(minutes=30)
    EventFactory(status=Event.Status.COMPLETED, received_at=received, completed_at=received + timedelta(minutes=8))
    EventFactory(status=Event.Status.COMPLETED, received_at=received, completed_at=received + timedelta(minutes=1))

    sla_evaluate()

    [alert] = alerts("sla_event_delay")
    assert alert.context["completed_late"] == 1
    assert "1 completed late in the last 60 min" in alert.reason


# --- Salesforce writes --------------------------------------------------------------------------


def pending_write(external_id: str, age: timedelta, **fields) -> OutboxItem:
    item = OutboxItem.objects.create(object_type="Lead", external_id=external_id, payload={}, **fields)
    OutboxItem.objects.filter(pk=item.pk).update(updated_at=NOW - age)  # auto_now: set it behind save()'s back
    return item


def test_writes_pending_past_their_sla_alert(settings):
    settings.SALESFORCE_SYNC = "live"
    pending_write("lead_1", timedelta(minutes=40), state=OutboxItem.State.RETRY, error_code="UNABLE_TO_LOCK_ROW")
    pending_write("lead_2", timedelta(minutes=16))
    pending_write("lead_3", timedelta(minutes=5))
    pending_write("lead_4", timedelta(hours=5), state=OutboxItem.State.DEAD)  # dead letters are alerted elsewhere

    sla_evaluate()

    [alert] = alerts("sla_salesforce_delay")
    assert alert.context["waiting"] == 2
    assert alert.context["oldest_minutes"] == 40
    assert alert.reason == (
        "2 write(s) waiting longer than 15 min (2 Lead); oldest 40 min: Lead lead_1, last error UNABLE_TO_LOCK_ROW."
    )


def test_writes_are_not_checked_while_the_sync_is_off(settings):
    settings.SALESFORCE_SYNC = "off"
    pending_write("lead_1", timedelta(hours=3))

    assert sla_evaluate()["breaches"] == 0


def test_the_salesforce_sla_is_configurable(settings):
    settings.SALESFORCE_SYNC = "dry_run"
    settings.SLA_SALESFORCE_MINUTES = 60
    pending_write("lead_1", timedelta(minutes=40))

    assert sla_evaluate()["breaches"] == 0


# --- silent sources -----------------------------------------------------------------------------


def steady_traffic(source: str, *, until: datetime, every: timedelta, count: int) -> None:
    for n in range(count):
        received = until - n * every
        EventFactory(source=source, received_at=received, status=Event.Status.COMPLETED, completed_at=received)


def test_a_source_silent_for_far_longer_than_usual_alerts_once():
    # given: a provisioning event every 10 minutes for 5 hours, then nothing for 3 hours
    steady_traffic("provisioning", until=NOW - timedelta(hours=3), every=timedelta(minutes=10), count=30)

    # when
    sla_evaluate()
    sla_evaluate()

    # then: 10 × the 10 min gap = 100 min allowed; 180 min silent
    [alert] = alerts("sla_source_silent")
    assert alert.title == "No provisioning webhooks for 3.0 h"
    assert alert.context["usual_gap_seconds"] == 600
    assert alert.context["allowed_seconds"] == 6000
    assert alert.context["events_in_lookback"] == 30
    assert "one every 10.0 min on average" in alert.reason


def test_a_silence_within_the_usual_rhythm_is_fine():
    steady_traffic("provisioning", until=NOW - timedelta(minutes=90), every=timedelta(minutes=10), count=30)

    assert sla_evaluate()["breaches"] == 0


def test_the_minimum_silence_applies_to_busy_sources(settings):
    steady_traffic("stripe", until=NOW - timedelta(minutes=50), every=timedelta(seconds=10), count=30)
    assert sla_evaluate()["breaches"] == 0  # 100 s allowed by the factor, but at least 60 min

    settings.SLA_SOURCE_SILENCE_MIN_MINUTES = 30
    assert sla_evaluate()["breaches"] == 1


def test_too_little_traffic_is_not_judged():
    steady_traffic("marketo", until=NOW - timedelta(days=3), every=timedelta(minutes=1), count=19)

    assert sla_evaluate()["breaches"] == 0


def test_each_silence_alerts_once(clock):
    steady_traffic("provisioning", until=NOW - timedelta(hours=3), every=timedelta(minutes=10), count=30)
    sla_evaluate()
    EventFactory(source="provisioning", received_at=NOW)  # traffic resumes …
    clock.shift(timedelta(hours=4))  # … and stops again

    sla_evaluate()
    sla_evaluate()

    assert len(alerts("sla_source_silent")) == 2


def test_the_sla_task_is_scheduled():
    assert Schedule.objects.filter(func="alerts.tasks.evaluate_slas", repeats=-1).exists()
    assert tasks.evaluate_slas() == {"breaches": 0, "raised": 0}


def test_traffic_is_rolled_up_incrementally_by_id():
    steady_traffic("stripe", until=NOW, every=timedelta(hours=6), count=6)  # 36 h: spans two or three days

    assert source_traffic_rollup() == 6
    assert source_traffic_rollup() == 0
    EventFactory(source="stripe", received_at=NOW)
    EventFactory(source="marketo", received_at=NOW)
    assert source_traffic_rollup(chunk=1) == 1  # at most `chunk` ids a run
    assert source_traffic_rollup() == 1

    days = SourceDay.objects.filter(source="stripe")
    assert sum(days.values_list("count", flat=True)) == 7
    assert days.order_by("-day").first().last_at == NOW
    assert SourceDay.objects.get(source="marketo").count == 1
