"""A batch of alert evaluations raises its alerts together: one transaction, one round-robin lock, one
INSERT of deliveries and one delivery task; a race or a failure falls back to one by one, as before."""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable

import pytest
from auditlog.models import LogEntry
from django.db import connection
from django.test.utils import CaptureQueriesContext

import alerts.routing
import alerts.services
from alerts.models import Alert, RoutingCursor, TerritoryRule
from alerts.services import alert_raise, workspaces_alerts_evaluate
from alerts.tasks import deliver_alerts
from tests.alerts.conftest import make_rep
from tests.events.helpers import queued_tasks
from tests.factories import AccountFactory, WorkspaceFactory
from tests.workspaces.helpers import writes_entries
from workspaces.actors import system_actor
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db


def trials(*keys: str, domain: str = "") -> list[Workspace]:
    """New trials without an account: each fires one rep alert (trial_started)."""
    return [WorkspaceFactory(workspace_id=key, email=f"dana@{domain or key}.example") for key in keys]


def trial_key(workspace: Workspace) -> str:
    return f"trial_started:{workspace.workspace_id}:{workspace.trial_started_at:%Y%m%dT%H%M%S}"


def shape(sql: str) -> str:
    """A statement's verb and table ('INSERT INTO "alerts_alert"'), savepoint names left out."""
    return re.sub(r'"s\d+_x\d+"', "", sql.split(" (")[0]).split(" WHERE")[0].strip()


def keys_of(workspaces: list[Workspace]) -> list[str]:
    return [workspace.workspace_id for workspace in workspaces]


@pytest.mark.django_db(transaction=True)
def test_a_batch_of_firings_commits_once(monkeypatch):
    # given eight workspaces that each fire one rep alert, routed by round robin
    make_rep("ann"), make_rep("ben")
    workspaces = trials(*(f"ws_{n}" for n in range(8)))
    system_actor()  # created beforehand: its first use commits on its own
    commits = []
    commit = connection.commit
    monkeypatch.setattr(connection, "commit", lambda: (commits.append(1), commit())[-1])
    # when they are evaluated together
    created = workspaces_alerts_evaluate(workspace_keys=keys_of(workspaces))
    # then all eight alerts are committed in one transaction
    assert len(created) == 8 and Alert.objects.count() == 8
    assert len(commits) == 1


def test_a_batch_repeats_per_alert_only_the_alert_and_its_audit_entry():
    # given an account owner, a territory and round robin, one routing of each per three workspaces
    owner, tess = make_rep("olga"), make_rep("tess")
    make_rep("ann")
    TerritoryRule.objects.create(name="Acme", rep=tess, domains="acme.io")

    def batch(prefix: str, size: int) -> list[str]:
        keys = []
        for n in range(size):
            owned = AccountFactory(owner=owner.user)
            keys += [
                WorkspaceFactory(workspace_id=f"{prefix}o{n}", email=f"o{n}@{prefix}owned.io", account=owned),
                WorkspaceFactory(workspace_id=f"{prefix}t{n}", email=f"t{n}@acme.io"),
                WorkspaceFactory(workspace_id=f"{prefix}r{n}", email=f"r{n}@{prefix}other{n}.io"),
            ]
        return [workspace.workspace_id for workspace in keys]

    workspaces_alerts_evaluate(workspace_keys=batch("warm", 1))  # the cursor and the caches exist
    small, large = batch("s", 1), batch("l", 2)
    # when batches of three and six alerts are raised
    with CaptureQueriesContext(connection) as three:
        assert len(workspaces_alerts_evaluate(workspace_keys=small)) == 3
    with CaptureQueriesContext(connection) as six:
        assert len(workspaces_alerts_evaluate(workspace_keys=large)) == 6
    # then three more alerts cost their three INSERTs, nothing else: a batch's audit entries go in one
    extra = Counter(shape(q["sql"]) for q in six.captured_queries)
    extra.subtract(Counter(shape(q["sql"]) for q in three.captured_queries))
    assert +extra == {'INSERT INTO "alerts_alert"': 3}
    assert sum(writes_entries(q["sql"]) for q in six.captured_queries) == 1
    assert LogEntry.objects.filter(content_type__model="alert", action=LogEntry.Action.CREATE).count() == 12
    assert Counter(Alert.objects.values_list("routed_by", flat=True)) == {
        "owner": 4,
        "territory": 4,
        "round_robin": 4,
    }


def test_round_robin_in_a_batch_hands_out_turns_in_workspace_order_with_one_update():
    reps = [make_rep(name) for name in ("ann", "ben", "cat")]
    workspaces = trials(*(f"ws_{n}" for n in (5, 2, 4, 0, 3, 1)))
    with CaptureQueriesContext(connection) as queries:
        workspaces_alerts_evaluate(workspace_keys=keys_of(workspaces))
    got = Alert.objects.order_by("workspace_key").values_list("recipient", flat=True)
    assert list(got) == [rep.user.pk for rep in reps] * 2
    assert sum(q["sql"].startswith('UPDATE "alerts_routingcursor"') for q in queries.captured_queries) == 1
    # the counter is durable: the next alert, raised alone, takes the next turn
    alert, _ = alert_raise(
        rule="trial_started", dedupe_key="k", title="t", reason="r", audience="rep", workspace=trials("ws_9")[0]
    )
    assert alert.recipient == reps[0].user and RoutingCursor.objects.get().position == 7


def test_a_dedupe_race_inside_a_batch_raises_one_alert_per_key_and_the_others_still(monkeypatch, caplog):
    # given four workspaces whose keys are free when the batch looks them up
    make_rep("ann")
    workspaces = trials("ws_1", "ws_2", "ws_3", "ws_4")
    theirs: list[Alert] = []

    def another_worker_raises_ws_2_first(read: Callable) -> Callable:
        def read_then_race(**kwargs):
            theirs.append(
                alert_raise(rule="trial_started", dedupe_key=trial_key(workspaces[1]), title="t", reason="r")[0]
            )
            return read(**kwargs)

        return read_then_race

    monkeypatch.setattr(
        alerts.services, "workspaces_events", another_worker_raises_ws_2_first(alerts.services.workspaces_events)
    )
    # when the batch inserts them, one key being taken meanwhile
    with caplog.at_level(logging.INFO, logger="alerts.services"):
        created = workspaces_alerts_evaluate(workspace_keys=keys_of(workspaces))
    assert "raising 4 alert(s) together failed (IntegrityError" in caplog.text  # rolled back, then one by one
    # then the other three are raised, with their deliveries, and the taken key has only the winner's alert
    assert sorted(alert.workspace_key for alert in created) == ["ws_1", "ws_3", "ws_4"]
    assert Alert.objects.filter(dedupe_key=trial_key(workspaces[1])).get() == theirs[0]
    assert Alert.objects.count() == 4
    assert all(alert.deliveries.count() == 1 for alert in created)


def test_a_failing_firing_does_not_stop_the_others(monkeypatch, caplog):
    make_rep("ann")
    workspaces = trials("ws_1", "ws_2", "ws_3")
    domain_of = alerts.routing.email_domain_of

    def broken_for_ws_2(workspace: Workspace) -> str:
        if workspace.workspace_id == "ws_2":
            raise ValueError("a bad email")
        return domain_of(workspace)

    monkeypatch.setattr(alerts.routing, "email_domain_of", broken_for_ws_2)
    with caplog.at_level(logging.INFO, logger="alerts.services"):
        created = workspaces_alerts_evaluate(workspace_keys=keys_of(workspaces))
    assert sorted(alert.workspace_key for alert in created) == ["ws_1", "ws_3"]
    assert sorted(Alert.objects.values_list("workspace_key", flat=True)) == ["ws_1", "ws_3"]
    assert "evaluating alert rules for workspace ws_2 failed" in caplog.text


def test_a_batch_rings_once_and_that_task_sends_every_alert(smtp, django_capture_on_commit_callbacks):
    rep = make_rep("ann")
    workspaces = trials("ws_1", "ws_2", "ws_3")
    with django_capture_on_commit_callbacks(execute=True):
        created = workspaces_alerts_evaluate(workspace_keys=keys_of(workspaces))
    [task] = queued_tasks("alerts.tasks.deliver_alerts")
    assert sorted(task["args"][0]) == sorted(alert.pk for alert in created)

    assert deliver_alerts(task["args"][0])["sent"] == 3
    assert [message["To"] for message in smtp.messages] == [rep.address] * 3
