"""The timer loop (`manage.py fire_timers`): batch after batch while timers are due, then asleep until the
next due time; a failed sweep is logged and the loop goes on; SIGTERM stops it after the batch in hand."""

from __future__ import annotations

import os
import signal
import threading
from datetime import timedelta

import pytest
import time_machine
from django.core.management import call_command

from tests.factories import WorkspaceFactory
from tests.triggers.conftest import T0, make_trigger, usage
from triggers import timers
from triggers.models import Firing, Timer
from triggers.services import triggers_evaluate
from triggers.timers import seconds_to_next_due, timers_loop

pytestmark = pytest.mark.django_db


def quiet(count: int) -> None:
    """`count` workspaces whose silence timer comes due an hour after T0."""
    make_trigger("gone_quiet", {"kind": "silence", "for_seconds": 3600})
    for i in range(count):
        key = WorkspaceFactory(workspace_id=f"ws_l{i}", email=f"o{i}@acme.io").workspace_id
        triggers_evaluate(workspace_key=key, new_events=[usage(key, T0)], now=T0)


def test_a_full_batch_is_followed_at_once_by_the_next_and_the_last_one_stops_the_run():
    quiet(5)
    stop, claimed = threading.Event(), []

    def seen(sweep: timers.Sweep) -> None:
        claimed.append(sweep.claimed)
        if sweep.claimed < 2:
            stop.set()  # the partial batch: the loop would now sleep until the next due time

    with time_machine.travel(T0 + timedelta(hours=1, seconds=1), tick=False):
        report = timers_loop(stop=stop, limit=2, on_sweep=seen)

    assert claimed == [2, 2, 1]
    assert (report.sweeps, report.claimed, report.firings) == (3, 5, 5)
    assert Firing.objects.filter(status="fired").count() == 5
    assert not Timer.objects.filter(status="pending").exists()


def test_it_sleeps_until_the_next_due_time_and_no_longer_than_its_limit():
    quiet(1)
    with time_machine.travel(T0 + timedelta(minutes=59, seconds=59.5), tick=False):
        assert seconds_to_next_due(1.0) == pytest.approx(0.5)
    with time_machine.travel(T0, tick=False):
        assert seconds_to_next_due(1.0) == 1.0  # due in an hour: look again in a second
    with time_machine.travel(T0 + timedelta(hours=2), tick=False):
        assert seconds_to_next_due(1.0) == 0.0  # overdue: at once
    Timer.objects.all().delete()
    assert seconds_to_next_due(1.0) == 1.0  # none at all


def test_a_failed_sweep_is_logged_and_the_loop_goes_on(monkeypatch, caplog):
    quiet(1)
    real, calls = timers.timers_sweep, []

    def down_once(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            raise ConnectionError("the database went away")
        return real(**kwargs)

    monkeypatch.setattr(timers, "timers_sweep", down_once)
    stop = threading.Event()
    with time_machine.travel(T0 + timedelta(hours=1, seconds=1), tick=False):
        report = timers_loop(stop=stop, idle_max=0.01, on_sweep=lambda sweep: stop.set())

    assert (report.errors, report.firings) == (1, 1)
    assert "the timer sweep failed" in caplog.text


def test_the_command_fires_what_is_due_and_stops_on_sigterm():
    quiet(2)
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    sigterm = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGTERM))
    try:
        with time_machine.travel(T0 + timedelta(hours=1, seconds=1), tick=False):
            sigterm.start()
            call_command("fire_timers", "--idle-max", "0.05")
    finally:
        sigterm.cancel()
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    assert Firing.objects.filter(status="fired").count() == 2
