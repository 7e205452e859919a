"""Timers are rows: a sweep that dies fires nothing and leaves them due; the next sweep fires each once."""

from __future__ import annotations

from datetime import timedelta

import pytest

from failures.models import ErrorKind
from tests.factories import WorkspaceFactory
from tests.triggers.conftest import T0, make_trigger, usage
from triggers import timers
from triggers.models import Firing, Timer, Trigger
from triggers.services import triggers_evaluate
from triggers.timers import timers_fire_due

pytestmark = pytest.mark.django_db


@pytest.fixture
def quiet_workspaces() -> list[str]:
    make_trigger("gone_quiet", {"kind": "silence", "for_seconds": 3600})
    keys = []
    for i in range(3):
        key = WorkspaceFactory(workspace_id=f"ws_k{i}", email=f"o{i}@acme.io").workspace_id
        triggers_evaluate(workspace_key=key, new_events=[usage(key, T0 + timedelta(minutes=i))], now=T0)
        keys.append(key)
    return keys


def test_a_sweep_killed_halfway_leaves_every_timer_due(quiet_workspaces, monkeypatch):
    calls = []

    def dies_on_the_second(timer, workspace, now):
        calls.append(timer.pk)
        if len(calls) == 2:
            raise SystemExit("worker killed")  # not an error of the timer: the process goes
        return real(timer, workspace, now)

    real = timers.HANDLERS[Timer.Kind.SILENCE]
    monkeypatch.setitem(timers.HANDLERS, Timer.Kind.SILENCE, dies_on_the_second)
    with pytest.raises(SystemExit):
        timers_fire_due(now=T0 + timedelta(hours=2))
    monkeypatch.setitem(timers.HANDLERS, Timer.Kind.SILENCE, real)

    assert Firing.objects.count() == 0
    assert Timer.objects.filter(status="pending").count() == 3
    assert len(timers_fire_due(now=T0 + timedelta(hours=2))) == 3
    assert timers_fire_due(now=T0 + timedelta(hours=3)) == []


def test_a_timer_that_fails_is_backed_off_and_recorded_and_the_others_fire(quiet_workspaces, monkeypatch):
    real = timers.HANDLERS[Timer.Kind.SILENCE]

    def fails_for_one(timer, workspace, now):
        if timer.workspace_key == "ws_k1":
            raise ValueError("bad data")
        return real(timer, workspace, now)

    monkeypatch.setitem(timers.HANDLERS, Timer.Kind.SILENCE, fails_for_one)
    now = T0 + timedelta(hours=2)

    fired = timers_fire_due(now=now)

    assert sorted(f.workspace_key for f in fired) == ["ws_k0", "ws_k2"]
    failed = Timer.objects.get(workspace_key="ws_k1")
    assert (failed.status, failed.attempts, failed.last_error) == ("pending", 1, "ValueError: bad data")
    assert now + timedelta(seconds=30) <= failed.due_at <= now + timedelta(seconds=60)
    assert ErrorKind.objects.filter(source="processing", kind="trigger timer silence: ValueError").exists()
    assert timers_fire_due(now=now) == []  # backed off: not due again at once


def test_the_sweep_takes_the_earliest_due_first_and_at_most_its_limit(quiet_workspaces):
    first = timers_fire_due(now=T0 + timedelta(hours=2), limit=2)
    rest = timers_fire_due(now=T0 + timedelta(hours=2), limit=2)

    assert [f.workspace_key for f in first] == ["ws_k0", "ws_k1"]
    assert [f.workspace_key for f in rest] == ["ws_k2"]


def test_a_late_event_older_than_a_fired_silence_starts_no_second_one(quiet_workspaces):
    timers_fire_due(now=T0 + timedelta(hours=2))
    late = usage("ws_k0", T0 - timedelta(minutes=5))  # arrives after the silence fired, dated before it

    triggers_evaluate(workspace_key="ws_k0", new_events=[late], now=T0 + timedelta(hours=2))

    assert timers_fire_due(now=T0 + timedelta(hours=3)) == []
    assert Firing.objects.filter(workspace_key="ws_k0").count() == 1


def test_a_disabled_trigger_fires_no_timer_it_had_set(quiet_workspaces):
    Trigger.objects.update(enabled=False)

    assert timers_fire_due(now=T0 + timedelta(hours=2)) == []
    assert set(Timer.objects.values_list("status", "outcome")) == {("cancelled", "the trigger is disabled")}
