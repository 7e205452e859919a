"""Caps per trigger and across triggers with priorities, re-entry, transactional exemption, quiet hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User

from tests.factories import AccountFactory, WorkspaceFactory
from tests.triggers.conftest import T0, event, make_trigger, minutes
from triggers.models import Firing, Timer
from triggers.services import firing_planned_actions, triggers_evaluate
from triggers.timers import timers_fire_due

pytestmark = pytest.mark.django_db

STARTED = {"kind": "event", "event": {"type": "trial.started"}}


def started(workspace: str, at: datetime = T0):
    return triggers_evaluate(workspace_key=workspace, new_events=[event(workspace, "trial.started", at)], now=at)


def test_the_higher_priority_trigger_wins_the_last_slot_and_the_loser_says_why(settings):
    settings.TRIGGERS_WORKSPACE_CAP = (1, 86400)
    WorkspaceFactory(workspace_id="ws_c", email="o@acme.io")
    make_trigger("low", STARTED, priority=1)
    make_trigger("high", STARTED, priority=9)

    firings = started("ws_c")

    by_key = {f.trigger.key: f for f in firings}
    high, low = by_key["high"], by_key["low"]
    assert (high.status, low.status, low.reason) == ("fired", "suppressed", "cap_workspace")
    assert by_key["low"].explanation["caps"] == [{"cap": "workspace", "limit": 1, "window_seconds": 86400, "used": 1}]
    assert by_key["low"].explanation["why_not"] == "The workspace cap across triggers"
    assert firing_planned_actions(by_key["low"]) == []
    assert [a.channel for a in firing_planned_actions(by_key["high"])] == ["email"]


def test_a_slot_frees_when_the_window_has_passed(settings):
    settings.TRIGGERS_WORKSPACE_CAP = (1, 3600)
    WorkspaceFactory(workspace_id="ws_c", email="o@acme.io")
    make_trigger("welcome", STARTED)

    first, second, third = started("ws_c"), started("ws_c", T0 + minutes(59)), started("ws_c", T0 + minutes(61))

    assert [f.status for f in first + second + third] == ["fired", "suppressed", "fired"]


def test_the_person_cap_counts_across_workspaces(settings):
    settings.TRIGGERS_PERSON_CAP = (2, 86400)
    rep = User.objects.create_user("rep", email="rep@example.com")
    for i in range(3):
        WorkspaceFactory(workspace_id=f"ws_p{i}", email=f"o{i}@firm{i}.example", owner=rep)
    make_trigger("rep_heads_up", STARTED, audience="owner_rep")

    statuses = [started(f"ws_p{i}")[0] for i in range(3)]

    assert [(f.status, f.reason) for f in statuses] == [("fired", ""), ("fired", ""), ("suppressed", "cap_person")]
    assert {f.recipient for f in statuses} == {f"user:{rep.pk}"}


def test_the_account_owner_is_the_owner_rep_before_the_kept_owner():
    kept, account_owner = User.objects.create_user("kept"), User.objects.create_user("acct")
    WorkspaceFactory(workspace_id="ws_o", owner=kept, account=AccountFactory(owner=account_owner))
    make_trigger("rep_heads_up", STARTED, audience="owner_rep")

    assert started("ws_o")[0].recipient == f"user:{account_owner.pk}"


def test_an_audience_nobody_resolves_is_recorded_not_dropped():
    WorkspaceFactory(workspace_id="ws_n", account=AccountFactory(owner=User.objects.create_user("own")))
    make_trigger("csm_call", STARTED, audience="csm")

    [firing] = started("ws_n")  # an account without a CSM: the owner rep is not taken for one

    assert (firing.status, firing.reason) == ("suppressed", "no_recipient")


def test_the_csm_is_the_account_csm_set_in_the_admin():
    csm = User.objects.create_user("cs", email="cs@engine.example")
    WorkspaceFactory(workspace_id="ws_cs", account=AccountFactory(csm=csm))
    make_trigger("csm_call", STARTED, audience="csm")

    [firing] = started("ws_cs")

    assert (firing.status, firing.recipient) == ("fired", f"user:{csm.pk}")


def test_the_trigger_cap_and_once_only_reentry(settings):
    WorkspaceFactory(workspace_id="ws_c", email="o@acme.io")
    make_trigger("daily", STARTED, cap_seconds=86400)
    make_trigger("once", STARTED, reentry="once")

    first, later, next_day = started("ws_c"), started("ws_c", T0 + minutes(90)), started("ws_c", T0 + timedelta(days=2))

    decided = [(f.trigger.key, f.status, f.reason) for f in first + later + next_day]
    assert decided == [
        ("daily", "fired", ""), ("once", "fired", ""),
        ("daily", "suppressed", "cap_trigger"), ("once", "suppressed", "reentry"),
        ("daily", "fired", ""), ("once", "suppressed", "reentry"),
    ]  # fmt: skip


def test_transactional_triggers_are_exempt_and_do_not_use_slots(settings):
    settings.TRIGGERS_WORKSPACE_CAP = (1, 86400)
    settings.TRIGGERS_QUIET_HOURS = ("00:00", "23:59")
    WorkspaceFactory(workspace_id="ws_c", email="o@acme.io")
    make_trigger("receipt", STARTED, transactional=True, priority=100)
    make_trigger("nudge", STARTED, priority=1)

    firings = {f.trigger.key: f for f in started("ws_c")}

    assert firings["receipt"].status == "fired" and firings["receipt"].explanation["caps"] == []
    assert firings["nudge"].status == "deferred"  # it had the slot; the quiet hours held it


def test_quiet_hours_in_the_recipients_zone_defer_and_a_timer_releases(settings):
    settings.TRIGGERS_QUIET_HOURS = ("21:00", "08:00")
    WorkspaceFactory(workspace_id="ws_q", email="o@acme.io", timezone="Asia/Tokyo")
    make_trigger("welcome", STARTED)
    evening_in_tokyo = datetime(2026, 11, 23, 13, 30, tzinfo=UTC)  # 22:30 in Tokyo, 13:30 in UTC

    [firing] = started("ws_q", evening_in_tokyo)

    assert (firing.status, firing.reason) == ("deferred", "quiet_hours") and firing_planned_actions(firing) == []
    assert firing.explanation["why_not"] == "Quiet hours (deferred)"
    assert firing.explanation["quiet_hours"] == {"zone": "Asia/Tokyo", "until": "2026-11-24T08:00:00+09:00"}
    assert Timer.objects.get().due_at == datetime(2026, 11, 23, 23, 0, tzinfo=UTC)
    assert timers_fire_due(now=datetime(2026, 11, 23, 22, 59, tzinfo=UTC)) == []
    timers_fire_due(now=datetime(2026, 11, 23, 23, 0, tzinfo=UTC))
    firing.refresh_from_db()
    assert (firing.status, firing.reason, firing.fired_at) == ("fired", "", datetime(2026, 11, 23, 23, 0, tzinfo=UTC))
    assert firing.explanation["released_at"] == "2026-11-23T23:00:00+00:00" and "why_not" not in firing.explanation
    assert firing.actions[0]["status"] == "planned"


def test_a_deferred_firing_holds_its_slot(settings):
    settings.TRIGGERS_WORKSPACE_CAP = (1, 86400)
    settings.TRIGGERS_QUIET_HOURS = ("21:00", "08:00")
    WorkspaceFactory(workspace_id="ws_q", email="o@acme.io")
    make_trigger("welcome", STARTED)

    night, morning = started("ws_q", T0.replace(hour=23)), started("ws_q", T0.replace(hour=23) + timedelta(hours=10))

    decided = [(f.status, f.reason) for f in night + morning]
    assert decided == [("deferred", "quiet_hours"), ("suppressed", "cap_workspace")]
    assert Firing.objects.filter(status="suppressed").get().explanation["caps"][0]["used"] == 1
