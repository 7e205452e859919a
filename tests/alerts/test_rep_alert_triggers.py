"""One engine: each workspace alert rule is a shipped trigger. The engine decides (a Firing, unique per
trigger, workspace and occurrence, with the rule's evidence as its why; enabled or not), and its rep_alert
action raises the same alert as before, linked to the firing (alerts/engine.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import connection
from django.urls import reverse

from alerts.engine import KIND, rep_alert_triggers_ensure, shipped, trigger_key
from alerts.models import Alert
from alerts.services import alerts_evaluate_scheduled, workspace_alerts_evaluate
from processing.pipeline import workspace_process
from processing.tasks import process_workspaces
from tests.alerts.conftest import make_rep
from tests.alerts.test_concurrency import at_once
from tests.events.helpers import lifecycle_event, store
from tests.factories import AccountFactory, EventFactory, WorkspaceFactory
from triggers.models import Firing, Timer, Trigger
from triggers.preview import trigger_preview
from triggers.selectors import firing_document
from triggers.services import ENABLED_CACHE_KEY, trigger_save, triggers_enabled, triggers_evaluate
from triggers.tasks import fire_due_timers
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)


@pytest.fixture(autouse=True)
def triggers_not_cached() -> Iterator[None]:
    """These tests change the shipped triggers: the engine's cache must not carry that into other tests."""
    cache.delete(ENABLED_CACHE_KEY)
    yield
    cache.delete(ENABLED_CACHE_KEY)


def trial(**fields) -> Workspace:
    defaults = {"workspace_id": "ws_t", "company": "Acme", "email": "dana@acme.io", "trial_started_at": T0}
    return WorkspaceFactory(**{**defaults, **fields})


def started() -> None:
    trial(trial_expires_at=T0 + timedelta(days=30))
    EventFactory(external_id="msg_start", workspace_key="ws_t", occurred_at=T0)


def existing_account() -> None:
    trial(account=AccountFactory(name="Acme", domain="acme.io", owner=make_rep("olga").user))


def expiring() -> None:
    trial(trial_started_at=T0 - timedelta(days=12), trial_expires_at=NOW + timedelta(days=2))
    EventFactory(external_id="msg_start", workspace_key="ws_t", occurred_at=T0 - timedelta(days=12))


def expired() -> None:
    trial(trial_started_at=T0 - timedelta(days=14), trial_expires_at=NOW - timedelta(minutes=30))


def converted() -> None:
    trial(status="paid", plan="team", mrr=Decimal("297.00"), converted_at=T0)
    EventFactory(external_id="msg_paid", type="subscription.converted", workspace_key="ws_t", occurred_at=T0)


def churned() -> None:
    trial(status="churned", mrr=Decimal("297.00"), churned_at=T0, churn_reason="too expensive")
    EventFactory(external_id="msg_churn", type="workspace.churned", workspace_key="ws_t", occurred_at=T0)


def payment_failed() -> None:
    trial(status="paid", mrr=Decimal("99.00"), converted_at=T0 - timedelta(days=40), at_risk=True)
    Workspace.objects.filter(workspace_id="ws_t").update(at_risk_since=T0)
    EventFactory(
        external_id="evt_fail", type="billing.payment_failed", source="stripe", workspace_key="ws_t", occurred_at=T0,
        payload={"data": {"workspace_id": "ws_t", "amount_due": "99.00", "invoice_id": "in_1"}},
    )  # fmt: skip


def review() -> None:
    trial(needs_review=True, review_reasons=["No trial data on record."], trial_started_at=T0 - timedelta(days=9))


SCENARIOS: dict[str, Callable[[], None]] = {
    "trial_started": started,
    "existing_account_trial": existing_account,
    "trial_expiring": expiring,
    "trial_expired": expired,
    "converted": converted,
    "churned": churned,
    "payment_failed": payment_failed,
    "needs_review": review,
}


def rep_trigger(rule: str) -> Trigger:
    return Trigger.objects.get(key=trigger_key(rule))


def test_every_workspace_rule_ships_as_an_enabled_transactional_trigger():
    # given the database as migrate leaves it
    triggers = {trigger.when["rule"]: trigger for trigger in Trigger.objects.filter(when__kind=KIND)}
    # then one trigger per rule, enabled and exempt from caps and quiet hours, its one action the rep alert
    assert set(triggers) == set(SCENARIOS)
    assert all(t.enabled and t.transactional and t.version == 1 for t in triggers.values())
    assert {t.actions[0]["channel"] for t in triggers.values()} == {"rep_alert"}
    assert triggers["converted"].audience == "owner_rep"
    assert (triggers["needs_review"].audience, triggers["needs_review"].team) == ("team", "lifecycle-admins")
    for trigger in triggers.values():
        trigger.full_clean()  # valid as data: the kind and the channel are registered
    assert triggers_enabled() == [t for t in triggers_enabled() if t.when["kind"] != KIND], "not the run's"


@pytest.mark.parametrize("rule", list(SCENARIOS))
@time_machine.travel(NOW, tick=False)
def test_each_rules_trigger_fires_once_and_raises_the_same_alert(rule):
    # given a workspace whose state calls for this rule's alert
    SCENARIOS[rule]()
    # when its rules are evaluated
    [alert] = workspace_alerts_evaluate(workspace_key="ws_t")
    # then the alert is the rule's, raised by its trigger's firing, which holds the rule's evidence
    firing = alert.firing
    assert alert.rule == rule and alert.dedupe_key.startswith(f"{rule}:ws_t:")
    assert (firing.trigger.key, firing.status, firing.fired_at) == (trigger_key(rule), "fired", NOW)
    assert firing.occurrence == rule + alert.dedupe_key.removeprefix(f"{rule}:ws_t")
    assert firing.transactional and firing.trigger_version == 1
    why = firing.explanation
    assert (why["kind"], why["rule"], why["dedupe_key"]) == (KIND, rule, alert.dedupe_key)
    assert (why["title"], why["reason"]) == (alert.title, alert.reason)
    assert {"event_ids": why["event_ids"], "values": why["values"]} == alert.context
    assert why["caps"] == [] and "quiet_hours" not in why
    # and evaluating again decides and raises nothing
    assert workspace_alerts_evaluate(workspace_key="ws_t") == []
    assert Firing.objects.count() == 1 and Alert.objects.count() == 1


@time_machine.travel(NOW, tick=False)
def test_the_firing_carries_the_events_and_values_the_alert_shows():
    converted()
    [alert] = workspace_alerts_evaluate(workspace_key="ws_t")
    document = firing_document(alert.firing)
    assert document["trigger"] == "alert_converted" and document["workspace_id"] == "ws_t"
    assert document["actions"] == [{"channel": "rep_alert", "status": "planned"}]
    assert document["explanation"]["event_ids"] == ["msg_paid"]
    assert document["explanation"]["values"] == {
        "plan": "team", "mrr": "297.00", "currency": "USD", "converted_at": T0.isoformat(),
    }  # fmt: skip


@time_machine.travel(NOW, tick=False)
def test_the_alerts_admin_page_links_to_the_firing_that_raised_it(admin_client):
    converted()
    [alert] = workspace_alerts_evaluate(workspace_key="ws_t")
    page = admin_client.get(reverse("admin:alerts_alert_change", args=[alert.pk])).content.decode()
    assert reverse("admin:triggers_firing_change", args=[alert.firing.pk]) in page


@time_machine.travel(NOW, tick=False)
def test_disabling_a_trigger_in_the_engine_stops_its_alert_and_enabling_it_brings_it_back():
    # given the conversion trigger turned off as data (a new version)
    trigger = rep_trigger("converted")
    trigger.enabled = False
    trigger_save(trigger=trigger)
    converted()
    # when the workspace is evaluated, then nothing is decided or raised
    assert workspace_alerts_evaluate(workspace_key="ws_t") == []
    assert not Firing.objects.exists() and not Alert.objects.exists()
    # when it is turned on again, the alert comes with a firing of the new version
    trigger.enabled = True
    trigger_save(trigger=trigger)
    [alert] = workspace_alerts_evaluate(workspace_key="ws_t")
    assert alert.rule == "converted" and alert.firing.trigger_version == 3


@time_machine.travel(NOW, tick=False)
def test_the_engines_caps_and_quiet_hours_never_hold_a_rep_alert_back(settings):
    # given caps already used up and quiet hours all day, everywhere
    settings.TRIGGERS_WORKSPACE_CAP = settings.TRIGGERS_PERSON_CAP = (0, 86400)
    settings.TRIGGERS_QUIET_HOURS = ("00:00", "23:59")
    existing_account()
    # when the rule fires, then the alert is raised at once, routed as before
    [alert] = workspace_alerts_evaluate(workspace_key="ws_t")
    assert alert.firing.status == "fired" and alert.routed_by == "owner"
    assert alert.firing.recipient == f"user:{alert.recipient.pk}"


@time_machine.travel(NOW, tick=False)
def test_a_rep_alert_made_non_transactional_waits_for_quiet_hours_then_is_raised_by_the_sweep(settings):
    # given an admin who let the engine's quiet hours apply to the conversion trigger
    trigger = rep_trigger("converted")
    trigger.transactional = False
    trigger_save(trigger=trigger)
    settings.TRIGGERS_WORKSPACE_CAP = settings.TRIGGERS_PERSON_CAP = None
    settings.TRIGGERS_QUIET_HOURS = ("08:00", "12:00")
    converted()
    Workspace.objects.filter(workspace_id="ws_t").update(owner=make_rep("rita").user)
    # when it fires in quiet hours, then it is deferred and nothing is raised yet
    assert workspace_alerts_evaluate(workspace_key="ws_t") == []
    firing = Firing.objects.get()
    assert (firing.status, firing.reason) == ("deferred", "quiet_hours")
    assert not Alert.objects.exists()
    # when quiet hours are over, the sweep releases it and its action raises the alert
    with time_machine.travel(T0.replace(hour=12, minute=1), tick=False):
        fire_due_timers()
    alert = Alert.objects.get()
    assert alert.firing == firing and alert.rule == "converted" and alert.recipient.username == "rita"
    assert Timer.objects.get().status == "done"


def test_processing_and_the_schedule_raise_each_alert_once_however_often_events_come():
    # given a trial, then its conversion, each processed by the task as it comes
    make_rep("rita")
    now = datetime.now(tz=UTC)
    trial_started = lifecycle_event("e1", "trial.started", email="dana@acme.io", at=now - timedelta(hours=2))
    conversion = lifecycle_event("e2", "subscription.converted", email="dana@acme.io", at=now - timedelta(hours=1))
    store(trial_started)
    process_workspaces(["ws_1"])
    store(conversion)
    process_workspaces(["ws_1"])
    # when both are delivered again, the workspace is processed again from its events and the schedule runs
    store(trial_started, conversion)
    process_workspaces(["ws_1"])
    workspace_process(workspace_key="ws_1", force=True)
    alerts_evaluate_scheduled()
    # then each rule's alert exists once, each raised by one firing of its trigger
    alerts = {alert.rule: alert for alert in Alert.objects.all()}
    assert set(alerts) == {"trial_started", "needs_review", "converted"}  # linking asked a question too
    assert Firing.objects.count() == 3
    assert all(alert.firing.trigger.key == trigger_key(rule) for rule, alert in alerts.items())
    assert alerts["converted"].firing.explanation["event_ids"] == ["e2"]


@time_machine.travel(NOW, tick=False)
def test_an_alert_raised_before_the_engine_is_neither_raised_nor_fired_again():
    # given a conversion alert raised by the rules before they were triggers (no firing)
    converted()
    [alert] = workspace_alerts_evaluate(workspace_key="ws_t")
    Firing.objects.all().delete()
    Alert.objects.filter(pk=alert.pk).update(firing=None)
    # when evaluated again, nothing new is decided
    assert workspace_alerts_evaluate(workspace_key="ws_t") == []
    assert not Firing.objects.exists()


@time_machine.travel(NOW, tick=False)
def test_the_engines_own_callers_read_the_kind_with_the_rule_and_raise_the_alert_once():
    # given a conversion, evaluated by the engine's entry point with the rep trigger named
    converted()
    trigger = rep_trigger("converted")
    [firing] = triggers_evaluate(workspace_key="ws_t", new_events=[], triggers=[trigger], now=NOW)
    # then the firing's action raised the alert, and the processing run's list leaves the kind out
    assert Alert.objects.get().firing == firing and firing.explanation["rule"] == "converted"
    assert trigger not in triggers_enabled()
    assert triggers_evaluate(workspace_key="ws_t", new_events=[], triggers=[trigger], now=NOW) == []


@time_machine.travel(NOW, tick=False)
def test_the_dry_run_of_a_rep_alert_trigger_shows_what_would_fire_and_keeps_nothing():
    # given a converted workspace (changed just now) and a paid one not touched for a month
    converted()
    with time_machine.travel(NOW - timedelta(days=30), tick=False):
        trial(workspace_id="ws_old", status="paid", converted_at=NOW - timedelta(days=30))
    # when the conversion trigger is dry-run
    preview = trigger_preview(trigger=rep_trigger("converted"), now=NOW)
    # then it would fire for the converted workspace only, with the rule's why; nothing is kept
    assert [(o.workspace_key, o.verdict) for o in preview.outcomes] == [("ws_t", "fire")]
    assert preview.outcomes[0].explanation["dedupe_key"] == "converted:ws_t:20261201T090000"
    assert not Firing.objects.exists() and not Alert.objects.exists()


def test_a_rule_of_the_kind_must_be_a_workspace_rule():
    trigger = Trigger(
        key="alert_sync", name="Sync", when={"kind": KIND, "rule": "sync_paused"},
        actions=[{"channel": "rep_alert", "template": "sync_paused"}],
    )  # fmt: skip
    with pytest.raises(ValidationError) as raised:
        trigger.full_clean()
    assert "when.rule: Expected one of trial_started," in str(raised.value)


def test_a_missing_shipped_trigger_is_made_again_and_a_disabled_one_stays_disabled():
    # given one shipped trigger deleted and another disabled by an admin
    rep_trigger("churned").delete()
    disabled = rep_trigger("converted")
    disabled.enabled = False
    trigger_save(trigger=disabled)
    # when post_migrate runs (as after a flush of the database)
    assert rep_alert_triggers_ensure() == 1
    # then the deleted one is back as shipped and the disabled one is left as the admin left it
    assert rep_trigger("churned").enabled and not rep_trigger("converted").enabled
    assert Trigger.objects.filter(when__kind=KIND).count() == len(shipped())


@pytest.mark.django_db(transaction=True)
def test_concurrent_evaluations_decide_one_firing_and_raise_one_alert():
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers on its file lock; PostgreSQL proves the race")
    make_rep("ann")
    WorkspaceFactory(workspace_id="ws_race", email="p@gmail.com")

    at_once(8, lambda i: workspace_alerts_evaluate(workspace_key="ws_race"))

    alert = Alert.objects.get(rule="trial_started")
    assert Firing.objects.filter(workspace_key="ws_race", trigger__key="alert_trial_started").get() == alert.firing
