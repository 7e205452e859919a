"""Exactly once under real concurrency: threads with their own connections, released at once.

SQLite serialises writers on its file lock, so the race only exists on PostgreSQL; there these tests
prove the firing's unique key, the cap locks and SKIP LOCKED decide, not a read-then-write.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection, connections

from tests.factories import WorkspaceFactory
from tests.triggers.conftest import T0, event, make_trigger, usage
from triggers.models import Firing, Timer
from triggers.services import triggers_evaluate
from triggers.timers import timers_fire_due

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers on its file lock; PostgreSQL proves the race")


def at_once(n: int, work: Callable[[int], Any]) -> list[Any]:
    barrier = threading.Barrier(n)

    def run(i: int) -> Any:
        try:
            barrier.wait(timeout=10)
            return work(i)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def test_eight_concurrent_evaluations_of_one_run_fire_each_occurrence_once():
    WorkspaceFactory(workspace_id="ws_r", email="o@acme.io")
    make_trigger("welcome", {"kind": "event", "event": {"type": "trial.started"}})
    make_trigger("busy", {"kind": "count", "event": {"type": "usage.recorded"}, "count": 3, "within_seconds": 60})
    events = [event("ws_r", "trial.started", T0)] + [usage("ws_r", T0 + timedelta(seconds=i)) for i in range(6)]

    created = at_once(8, lambda i: triggers_evaluate(workspace_key="ws_r", new_events=events, now=T0))

    assert sum(len(firings) for firings in created) == 3
    assert sorted(Firing.objects.values_list("occurrence", flat=True)) == sorted(
        [f"event:{events[0].pk}", f"count:{events[3].pk}", f"count:{events[6].pk}"]
    )


def test_concurrent_sweeps_fire_each_due_timer_exactly_once():
    make_trigger("gone_quiet", {"kind": "silence", "for_seconds": 3600})
    for i in range(24):
        WorkspaceFactory(workspace_id=f"ws_s{i}", email=f"o{i}@acme.io")
        triggers_evaluate(workspace_key=f"ws_s{i}", new_events=[usage(f"ws_s{i}", T0)], now=T0)

    def sweep(i: int) -> list[Firing]:
        fired = []
        while batch := timers_fire_due(now=T0 + timedelta(hours=2), limit=5):
            fired += batch
        return fired

    created = at_once(4, sweep)

    assert sum(len(firings) for firings in created) == 24
    assert Counter(Firing.objects.values_list("workspace_key", flat=True)) == {f"ws_s{i}": 1 for i in range(24)}
    assert set(Timer.objects.values_list("status", flat=True)) == {"done"}


def test_concurrent_runs_of_different_workspaces_share_one_persons_cap(settings):
    settings.TRIGGERS_PERSON_CAP = (2, 86400)
    rep = User.objects.create_user("rep", email="rep@example.com")
    keys = [WorkspaceFactory(workspace_id=f"ws_o{i}", owner=rep).workspace_id for i in range(6)]
    make_trigger("rep_heads_up", {"kind": "event", "event": {"type": "trial.started"}}, audience="owner_rep")
    events = [event(key, "trial.started", T0) for key in keys]

    at_once(6, lambda i: triggers_evaluate(workspace_key=keys[i], new_events=[events[i]], now=T0))

    decided = Counter(Firing.objects.values_list("status", "reason"))
    assert decided == {("fired", ""): 2, ("suppressed", "cap_person"): 4}
