"""Payload retention: settled payloads past EVENT_PAYLOAD_RETENTION_DAYS keep only what the fold reads;
re-folding them gives the same state, running twice equals once, and one run catches up after an outage."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from auditlog.models import LogEntry
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from events.models import Event
from events.services import MARKETO_TYPE
from events.store import NewEvent
from linking.marketo import marketo_events_apply
from privacy.retention import payload_retained
from privacy.services import retention_run
from processing.pipeline import lifecycle_event as fold_input
from processing.pipeline import workspace_process
from processing.replay import replay
from tests.events.helpers import T0, lifecycle_event, store
from usage.rollups import usage_rollup
from workspaces.lifecycle import fold
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db

OLD = timedelta(days=200)


def with_extras(event: NewEvent, **extra: Any) -> NewEvent:
    """The event as a sender might really send it: fields the engine never reads, personal ones too."""
    payload = {**event.payload, "data": {**event.payload["data"], **extra}, "meta": {"ip": "203.0.113.9"}}
    return NewEvent(**{**event.__dict__, "payload": payload})


def billing(external_id: str, type_: str, at: datetime, **data: Any) -> NewEvent:
    return NewEvent(
        source="stripe",
        external_id=external_id,
        type=type_,
        occurred_at=at,
        workspace_key="ws_1",
        payload={
            "type": type_,
            "timestamp": at.isoformat().replace("+00:00", "Z"),
            "data": {"workspace_id": "ws_1", **data},
            "stripe": {"event_id": external_id, "type": "invoice.payment_failed", "object_id": "in_1"},
        },
    )


@pytest.fixture
def settled(settings) -> dict[str, Any]:
    """Events of every kind, processed and settled, received 200 days ago; the stored state."""
    settings.EVENT_PAYLOAD_RETENTION_DAYS = 90
    store(
        with_extras(
            lifecycle_event("t1", "trial.started", last_name="Reyes", workspace_name="Acme design"),
            phone="+1 555 0100",
            utm_source="newsletter",
        ),
        with_extras(lifecycle_event("c1", "subscription.converted", at=T0 + timedelta(days=3)), coupon="DANA50"),
        billing("pf1", "billing.payment_failed", T0 + timedelta(days=5), email="billing@acme.io", amount_due="297.00"),
        billing("rn1", "billing.renewal_updated", T0 + timedelta(days=6), renews_at="2026-12-04T12:00:00Z"),
        lifecycle_event("t2", "trial.started", workspace_id="ws_2", email="lee@gmail.com", first_name="Lee"),
        lifecycle_event("ch2", "workspace.churned", workspace_id="ws_2", at=T0 + timedelta(days=9), reason="price"),
        lifecycle_event("u1", "usage.recorded", user_email="sam@acme.io", product="app"),
        NewEvent(
            "provisioning",
            "x1",
            "workspace.renamed",
            T0,
            "ws_1",
            {
                "type": "workspace.renamed",
                "timestamp": "2026-11-01T12:00:00Z",
                "data": {"workspace_id": "ws_1", "owner": "dana@acme.io"},
            },
            status=Event.Status.IGNORED,
        ),
        NewEvent(
            "provisioning",
            "r1",
            "trial.started",
            None,
            "",
            {"type": "trial.started", "data": {"email": "not-an-address", "first_name": "Zed"}},
            status=Event.Status.REJECTED,
        ),
        NewEvent(
            "marketo",
            "mk1",
            MARKETO_TYPE,
            T0,
            "",
            {
                "lead_id": "mk1",
                "email": "kim@acme.io",
                "first_name": "Kim",
                "last_name": "Ode",
                "company": "Acme",
                "created_at": "2026-11-01T12:00:00Z",
            },
        ),
    )
    for key in ("ws_1", "ws_2"):
        workspace_process(workspace_key=key)
    usage_rollup()
    marketo_events_apply()
    Event.objects.update(received_at=timezone.now() - OLD)
    assert set(Event.objects.values_list("status", flat=True)) == {"completed", "ignored", "rejected"}
    return {w.workspace_id: workspace_state(w) for w in Workspace.objects.all()}


def workspace_state(workspace: Workspace) -> dict[str, Any]:
    fields = ("status", "email", "first_name", "last_name", "company", "name", "plan", "mrr", "trial_expires_at",
              "converted_at", "churned_at", "churn_reason", "at_risk", "renews_at", "needs_review", "lead_id",
              "account_id", "contact_id")  # fmt: skip
    return {name: getattr(workspace, name) for name in fields}


def payloads() -> dict[str, Any]:
    return dict(Event.objects.values_list("external_id", "payload"))


def test_settled_payloads_keep_only_what_the_fold_reads(settled):
    report = retention_run()
    assert (report.due, report.scrubbed) == (10, 10)
    kept = payloads()
    assert kept["t1"]["data"] == {
        "workspace_id": "ws_1",
        "email": "dana@acme.io",
        "first_name": "Dana",
        "last_name": "Reyes",
        "company": "Acme",
        "workspace_name": "Acme design",
    }
    assert "meta" not in kept["t1"] and kept["t1"]["type"] == "trial.started"
    assert kept["c1"]["data"] == {"workspace_id": "ws_1", "plan": "team", "mrr": "297.00"}
    assert kept["pf1"]["data"] == {"workspace_id": "ws_1", "amount_due": "297.00"}  # the billing email is gone
    assert kept["pf1"]["stripe"] == {"event_id": "pf1", "type": "invoice.payment_failed", "object_id": "in_1"}
    assert kept["u1"]["data"] == {"workspace_id": "ws_1", "feature": "export", "product": "app"}
    assert kept["mk1"] == {"lead_id": "mk1", "company": "Acme", "created_at": "2026-11-01T12:00:00Z"}
    assert kept["x1"] == {"type": "workspace.renamed", "timestamp": "2026-11-01T12:00:00Z"}
    assert kept["r1"] == {"type": "trial.started"}
    assert Event.objects.filter(payload_scrubbed_at__isnull=True).count() == 0


def test_refolding_scrubbed_events_gives_the_same_state(settled):
    retention_run()
    entries = LogEntry.objects.count()
    assert replay().drifted == []
    for key in ("ws_1", "ws_2"):
        workspace_process(workspace_key=key, force=True)
    assert {w.workspace_id: workspace_state(w) for w in Workspace.objects.all()} == settled
    assert LogEntry.objects.count() == entries  # the re-fold found nothing to change


def test_running_twice_equals_running_once(settled):
    first = retention_run()
    after_first = list(Event.objects.order_by("pk").values_list("pk", "payload", "payload_scrubbed_at", "status"))
    second = retention_run()
    assert (first.scrubbed, second.due, second.scrubbed) == (10, 0, 0)
    assert list(Event.objects.order_by("pk").values_list("pk", "payload", "payload_scrubbed_at", "status")) == (
        after_first
    )


def test_recent_and_open_events_keep_their_payload(settled):
    Event.objects.filter(external_id="t1").update(received_at=timezone.now() - timedelta(days=89))
    Event.objects.filter(external_id="c1").update(status=Event.Status.ERROR)
    before = payloads()
    retention_run()
    after = payloads()
    assert after["t1"] == before["t1"] and "meta" in after["t1"]
    assert after["c1"] == before["c1"]
    assert after["u1"] != before["u1"]


def test_zero_days_keeps_everything(settled, settings):
    settings.EVENT_PAYLOAD_RETENTION_DAYS = 0
    before = payloads()
    report = retention_run()
    assert (report.cutoff, report.scrubbed) == (None, 0)
    assert payloads() == before


def test_one_run_after_an_outage_does_every_missed_day(settled):
    """The daily schedule has no catch-up: one run picks everything due, whatever its age."""
    for days, external_id in ((95, "t1"), (150, "c1"), (400, "u1")):
        Event.objects.filter(external_id=external_id).update(received_at=timezone.now() - timedelta(days=days))
    assert retention_run().scrubbed == 10
    schedule = Schedule.objects.get(func="privacy.tasks.payload_retention")
    assert (schedule.schedule_type, schedule.repeats) == (Schedule.DAILY, -1)
    assert settings.Q_CLUSTER["catch_up"] is False


def test_command_dry_run_counts_and_changes_nothing(settled):
    before = payloads()
    out = io.StringIO()
    call_command("privacy", "retention", "--dry-run", stdout=out, stderr=io.StringIO())
    assert "10 due, would scrub 10" in out.getvalue()
    assert payloads() == before


def test_command_shows_progress_and_eta(settled):
    out, err = io.StringIO(), io.StringIO()
    call_command("privacy", "retention", "--batch-size", "3", stdout=out, stderr=err)
    assert "10 due, scrubbed 10" in out.getvalue()
    assert "3/10 events" in err.getvalue() and "ETA" in err.getvalue()
    out = io.StringIO()
    call_command("privacy", "retention", stdout=out, stderr=io.StringIO())
    assert "0 due, scrubbed 0" in out.getvalue()


# --- the projection against the fold, for any events ------------------------------------------------

names = st.sampled_from(["", "Dana", "Lee", "O'Brien"])
emails = st.sampled_from(["", "dana@acme.io", "DANA@acme.io ", "lee@gmail.com"])
instants = st.integers(min_value=0, max_value=40).map(lambda d: T0 + timedelta(days=d))


@st.composite
def lifecycle_payloads(draw) -> tuple[str, str, datetime, dict]:
    type_ = draw(st.sampled_from(["trial.started", "subscription.converted", "workspace.churned"]))
    data: dict[str, Any] = {"workspace_id": "ws_1", "junk": draw(st.text(max_size=5)), "phone": "555"}
    if type_ == "trial.started":
        data |= {"email": draw(emails) or "dana@acme.io", "first_name": draw(names), "last_name": draw(names)}
        data |= {"company": draw(st.sampled_from(["", "Acme"])), "plan": draw(st.sampled_from(["", "team"]))}
    elif type_ == "subscription.converted":
        data |= {"email": draw(emails), "plan": draw(st.sampled_from(["team", "pro"])), "mrr": "29.00",
                 "billing_interval": draw(st.sampled_from(["", "month"]))}  # fmt: skip
    else:
        data |= {"email": draw(emails), "reason": draw(st.sampled_from(["", "price"]))}
    at = draw(instants)
    envelope = {"type": type_, "timestamp": at.astimezone(UTC).isoformat(), "data": data, "extra": {"ua": "x"}}
    return draw(st.uuids()).hex, type_, at, envelope


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(lifecycle_payloads(), min_size=1, max_size=6))
def test_fold_of_retained_payloads_equals_fold_of_originals(events):
    original = [fold_input(i, t, at, payload, "provisioning") for i, t, at, payload in events]
    retained = [
        fold_input(i, t, at, payload_retained(event_type=t, status="completed", payload=payload), "provisioning")
        for i, t, at, payload in events
    ]
    assert fold("ws_1", retained) == fold("ws_1", original)
