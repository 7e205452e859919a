"""Dedupe and round robin under real concurrency: threads with their own connections, released at once.

SQLite serialises writers on its file lock, so the race only exists on PostgreSQL; there these tests
prove the unique constraint and the cursor's row lock decide, not a read-then-write.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection, connections

from alerts.delivery import deliveries_send_due
from alerts.models import Alert, Delivery, TerritoryRule
from alerts.services import alert_raise, workspace_alerts_evaluate, workspaces_alerts_evaluate
from tests.alerts.conftest import make_rep
from tests.factories import WorkspaceFactory

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


def test_twelve_concurrent_raises_of_one_key_make_one_alert_with_one_set_of_deliveries(settings):
    settings.SLACK_WEBHOOK_URL = "https://hooks.slack.com/services/T0/B0/X"
    make_rep("ann")
    make_rep("ben")
    workspace = WorkspaceFactory(email="p@gmail.com")

    results = at_once(
        12,
        lambda i: alert_raise(
            rule="trial_started", dedupe_key="race", title="t", reason="r", audience="rep", workspace=workspace
        ),
    )

    assert sum(created for _, created in results) == 1
    assert len({alert.pk for alert, _ in results}) == 1
    alert = Alert.objects.get()
    assert sorted(alert.deliveries.values_list("channel", flat=True)) == ["email", "slack"]


def test_concurrent_evaluations_of_one_workspace_raise_each_alert_once():
    make_rep("ann")
    WorkspaceFactory(workspace_id="ws_race", email="p@gmail.com")
    at_once(8, lambda i: workspace_alerts_evaluate(workspace_key="ws_race"))
    assert list(Alert.objects.values_list("rule", flat=True)) == ["trial_started"]


def test_concurrent_batches_of_overlapping_workspaces_raise_each_alert_once_and_take_turns_fairly():
    reps = [make_rep(name) for name in ("ann", "ben", "cat")]
    keys = [WorkspaceFactory(email=f"p{i}@firm{i}.example").workspace_id for i in range(9)]

    created = at_once(8, lambda i: workspaces_alerts_evaluate(workspace_keys=keys[i % 3 :] + keys[: i % 3]))

    assert sum(len(alerts) for alerts in created) == 9
    assert sorted(Alert.objects.values_list("workspace_key", flat=True)) == sorted(keys)
    assert Delivery.objects.count() == 9
    counts = Counter(Alert.objects.values_list("recipient__username", flat=True))
    assert counts == {rep.user.username: 3 for rep in reps}


def test_concurrent_batches_without_round_robin_insert_in_one_order_and_raise_each_alert_once():
    # no cursor lock to queue them: each batch inserts in the same order, so they wait instead of deadlocking
    TerritoryRule.objects.create(name="Acme", rep=make_rep("tess"), domains="acme.io")
    keys = [WorkspaceFactory(email=f"p{i}@acme.io").workspace_id for i in range(12)]

    created = at_once(8, lambda i: workspaces_alerts_evaluate(workspace_keys=keys[::-1] if i % 2 else keys))

    assert sum(len(alerts) for alerts in created) == 12
    assert sorted(Alert.objects.values_list("workspace_key", flat=True)) == sorted(keys)
    assert set(Alert.objects.values_list("routed_by", flat=True)) == {"territory"}


def test_concurrent_round_robin_hands_out_every_turn_exactly_once():
    reps = [make_rep(name) for name in ("ann", "ben", "cat", "dan")]
    workspaces = [WorkspaceFactory(email=f"p{i}@gmail.com") for i in range(16)]

    at_once(
        16,
        lambda i: alert_raise(
            rule="trial_started", dedupe_key=f"rr{i}", title="t", reason="r", audience="rep", workspace=workspaces[i]
        ),
    )

    counts = Counter(Alert.objects.values_list("recipient__username", flat=True))
    assert counts == {rep.user.username: 4 for rep in reps}


def test_concurrent_senders_send_each_delivery_once(smtp):
    rep = make_rep("ann")
    for i in range(10):
        alert_raise(
            rule="trial_started", dedupe_key=f"d{i}", title=f"t{i}", reason="r", audience="rep",
            workspace=WorkspaceFactory(email=f"p{i}@gmail.com"),
        )  # fmt: skip
    assert Delivery.objects.filter(recipient=rep.address).count() == 10

    reports = at_once(4, lambda i: deliveries_send_due())

    assert sum(report.sent for report in reports) == 10
    assert len(smtp.messages) == 10
    assert sorted(m["Subject"] for m in smtp.messages) == sorted(f"[New self-serve trial] t{i}" for i in range(10))
