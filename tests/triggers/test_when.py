"""Each kind of "when", fired once per occurrence, with the explanation it was decided on."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.factories import WorkspaceFactory
from tests.triggers.conftest import T0, event, make_trigger, minutes, usage
from triggers.models import Firing, Timer
from triggers.services import triggers_evaluate
from triggers.timers import timers_fire_due
from usage.models import Cohort, CohortMembership, Stage, StagePeriod
from usage.services import Change

pytestmark = pytest.mark.django_db

EXPORT = {"type": "usage.recorded", "where": [{"path": "feature", "op": "==", "value": "export"},
                                              {"path": "outcome", "op": "==", "value": "error"}]}  # fmt: skip


@pytest.fixture
def ws():
    return WorkspaceFactory(workspace_id="ws_t", email="owner@acme.io", timezone="Europe/Berlin")


def evaluate(events, now=T0, changes=()):
    return triggers_evaluate(workspace_key="ws_t", new_events=events, behaviour_changes=changes, now=now)


def test_a_matching_event_fires_once_and_says_why(ws):
    trigger = make_trigger("first_export_error", {"kind": "event", "event": EXPORT})
    hit = usage("ws_t", T0, "export", outcome="error", user_email="u@acme.io")
    miss = usage("ws_t", T0, "export", outcome="success")

    firings = evaluate([hit, miss])
    again = evaluate([hit, miss], now=T0 + minutes(5))  # a retry or replay of the same run

    assert again == []
    [firing] = firings
    assert (firing.status, firing.occurrence, firing.recipient) == ("fired", f"event:{hit.pk}", "email:u@acme.io")
    assert firing.explanation["event_ids"] == [hit.pk]
    assert firing.explanation["values"] == {"feature": "export", "outcome": "error"}
    assert firing.explanation["trigger_version"] == trigger.version == firing.trigger_version
    assert firing.actions == [{"channel": "email", "template": "first_export_error", "status": "planned"}]
    assert Firing.objects.count() == 1


def test_n_events_within_a_window_count_to_the_second(ws):
    make_trigger("three_errors_an_hour", {"kind": "count", "event": EXPORT, "count": 3, "within_seconds": 3600})
    spread = [usage("ws_t", T0 + timedelta(seconds=s), "export", outcome="error") for s in (0, 1800, 3600)]

    assert evaluate(spread, now=T0 + minutes(61)) == []  # the first is exactly an hour before the third: out

    fourth = usage("ws_t", T0 + timedelta(seconds=3601), "export", outcome="error")
    [firing] = evaluate([fourth], now=T0 + minutes(61))

    assert firing.occurrence == f"count:{fourth.pk}"
    assert firing.explanation | {"filter": None} == {
        **firing.explanation, "count": 3, "threshold": 3, "window_seconds": 3600, "filter": None,
        "event_ids": [spread[1].pk, spread[2].pk, fourth.pk],
    }  # fmt: skip


def test_a_count_starts_anew_after_it_fired_however_the_runs_split_the_events(ws):
    make_trigger("burst", {"kind": "count", "event": EXPORT, "count": 2, "within_seconds": 600})
    events = [usage("ws_t", T0 + timedelta(seconds=10 * i), "export", outcome="error") for i in range(5)]

    first = evaluate(events[:3])
    second = evaluate(events[3:], now=T0 + minutes(1))

    assert [f.occurrence for f in first + second] == [f"count:{events[1].pk}", f"count:{events[3].pk}"]
    assert Firing.objects.get(occurrence=f"count:{events[3].pk}").explanation["event_ids"] == [
        events[2].pk, events[3].pk
    ]  # fmt: skip
    assert evaluate(events, now=T0 + minutes(2)) == []  # a replay of them all adds nothing


def test_a_late_event_completes_a_window_that_ends_after_it(ws):
    make_trigger("burst", {"kind": "count", "event": EXPORT, "count": 3, "within_seconds": 60})
    first, third = (usage("ws_t", T0 + timedelta(seconds=s), "export", outcome="error") for s in (0, 20))
    assert evaluate([first, third]) == []

    late = usage("ws_t", T0 + timedelta(seconds=10), "export", outcome="error")  # sent before, arrived after
    [firing] = evaluate([late], now=T0 + minutes(1))

    assert firing.occurrence == f"count:{third.pk}"
    assert firing.explanation["event_ids"] == [first.pk, late.pk, third.pk]


def test_a_stall_fires_when_the_step_is_not_finished_in_time(ws):
    make_trigger("wizard_stalled", {
        "kind": "stall", "within_seconds": 48 * 3600, "key": "flow",
        "start": {"type": "usage.recorded", "where": [{"path": "feature", "op": "==", "value": "wizard.start"}]},
        "finish": {"type": "usage.recorded", "where": [{"path": "feature", "op": "==", "value": "wizard.done"}]},
    })  # fmt: skip
    start = usage("ws_t", T0, "wizard.start", flow="a")
    other = usage("ws_t", T0 + minutes(5), "wizard.done", flow="b")  # another flow's finish ends nothing

    assert evaluate([start, other]) == []
    assert timers_fire_due(now=T0 + timedelta(hours=47)) == []
    [firing] = timers_fire_due(now=T0 + timedelta(hours=48))

    assert firing.occurrence == f"stall:{start.pk}"
    assert firing.explanation["event_ids"] == [start.pk]
    assert firing.explanation["within_seconds"] == 48 * 3600 and firing.explanation["finish_seen"] is False
    assert timers_fire_due(now=T0 + timedelta(hours=49)) == []
    assert Timer.objects.get().status == "done"


def test_a_finish_cancels_the_stall_timer(ws):
    make_trigger("wizard_stalled", {
        "kind": "stall", "within_seconds": 3600,
        "start": {"type": "usage.recorded", "where": [{"path": "feature", "op": "==", "value": "wizard.start"}]},
        "finish": {"type": "usage.recorded", "where": [{"path": "feature", "op": "==", "value": "wizard.done"}]},
    })  # fmt: skip
    evaluate([usage("ws_t", T0, "wizard.start")])
    done = usage("ws_t", T0 + minutes(20), "wizard.done")

    evaluate([done], now=T0 + minutes(21))

    timer = Timer.objects.get()
    assert (timer.status, timer.outcome) == ("cancelled", f"finished by event {done.pk}")
    assert timers_fire_due(now=T0 + timedelta(hours=2)) == []


def test_a_finish_the_evaluation_never_saw_still_stops_the_stall(ws):
    make_trigger("wizard_stalled", {
        "kind": "stall", "within_seconds": 3600,
        "start": {"type": "usage.recorded", "where": [{"path": "feature", "op": "==", "value": "wizard.start"}]},
        "finish": {"type": "usage.recorded", "where": [{"path": "feature", "op": "==", "value": "wizard.done"}]},
    })  # fmt: skip
    evaluate([usage("ws_t", T0, "wizard.start")])
    usage("ws_t", T0 + minutes(30), "wizard.done")  # stored, its run not yet evaluated

    assert timers_fire_due(now=T0 + timedelta(hours=1)) == []
    assert Timer.objects.get().outcome.startswith("finished by event")


def test_silence_fires_after_no_activity_and_activity_moves_it(ws):
    make_trigger("gone_quiet", {"kind": "silence", "for_seconds": 3 * 86400})
    evaluate([usage("ws_t", T0)])
    latest = usage("ws_t", T0 + timedelta(days=2))
    evaluate([latest], now=T0 + timedelta(days=2))

    assert timers_fire_due(now=T0 + timedelta(days=3, minutes=1)) == []  # moved to day 5
    [firing] = timers_fire_due(now=T0 + timedelta(days=5))

    assert firing.occurrence == f"silence:{latest.pk}"
    assert firing.explanation["event_ids"] == [latest.pk]
    assert firing.explanation["silent_seconds"] == 3 * 86400
    assert Timer.objects.filter(status="pending").count() == 0


def test_a_cohort_entered_fires_once_per_membership_with_its_why(ws):
    cohort = Cohort.objects.create(key="power_users_t", name="Power", condition={"all": []})
    membership = CohortMembership.objects.create(
        workspace_key="ws_t", cohort=cohort, entered_at=T0, entered_version=1, entered_why={"result": True}
    )
    make_trigger("power_welcome", {"kind": "cohort", "cohort": "power_users_t", "change": "entered"})
    change = Change(workspace_key="ws_t", entered=("power_users_t",))

    [firing] = evaluate([], changes=[change])

    assert firing.occurrence == f"cohort:{membership.pk}:entered"
    assert firing.explanation["why"] == {"result": True} and firing.explanation["membership_id"] == membership.pk
    assert evaluate([], changes=[change]) == []
    assert evaluate([], changes=[Change(workspace_key="ws_t", exited=("power_users_t",))]) == []


def test_a_stage_change_fires_when_from_and_to_match(ws):
    onboarding = Stage.objects.create(key="onboarding_t", name="Onboarding", order=90, condition={"all": []})
    active = Stage.objects.create(key="active_t", name="Active", order=91, condition={"all": []})
    period = StagePeriod.objects.create(
        workspace_key="ws_t", stage=active, previous=onboarding, entered_at=T0, entered_version=1
    )
    make_trigger("activated", {"kind": "stage", "from": "onboarding_t", "to": "active_t"})
    make_trigger("left_for_elsewhere", {"kind": "stage", "from": "onboarding_t", "to": "churned_t"})

    [firing] = evaluate([], changes=[Change(workspace_key="ws_t", stage_from="onboarding_t", stage_to="active_t")])

    assert (firing.trigger.key, firing.occurrence) == ("activated", f"stage:{period.pk}")
    assert (firing.explanation["from"], firing.explanation["to"]) == ("onboarding_t", "active_t")


def test_a_trial_expiring_in_n_days_fires_on_the_day_and_follows_a_moved_date(ws):
    ws.trial_expires_at = T0 + timedelta(days=10)
    ws.save()
    make_trigger("trial_ending", {"kind": "date", "field": "trial_expires_at", "days_before": 3})
    evaluate([])
    ws.trial_expires_at = T0 + timedelta(days=14)  # extended
    ws.save()
    evaluate([], now=T0 + minutes(1))

    assert timers_fire_due(now=T0 + timedelta(days=7)) == []
    [firing] = timers_fire_due(now=T0 + timedelta(days=11))

    assert firing.explanation["date"] == (T0 + timedelta(days=14)).isoformat()
    assert firing.explanation["days_left"] == 3.0
    assert sorted(Timer.objects.values_list("status", flat=True)) == ["cancelled", "done"]


def test_a_converted_trial_gets_no_expiry_firing(ws):
    ws.trial_expires_at = T0 + timedelta(days=10)
    ws.save()
    make_trigger("trial_ending", {"kind": "date", "field": "trial_expires_at", "days_before": 3})
    evaluate([])
    ws.status = "paid"
    ws.save()

    assert timers_fire_due(now=T0 + timedelta(days=8)) == []
    assert Timer.objects.get().outcome == "the date no longer applies"


def test_events_of_other_workspaces_and_disabled_triggers_do_not_fire(ws):
    make_trigger("welcome", {"kind": "event", "event": {"type": "trial.started"}})
    make_trigger("off", {"kind": "event", "event": {"type": "trial.started"}}, enabled=False)

    assert evaluate([event("ws_other", "trial.started", T0)]) == []
    assert [f.trigger.key for f in evaluate([event("ws_t", "trial.started", T0)])] == ["welcome"]
