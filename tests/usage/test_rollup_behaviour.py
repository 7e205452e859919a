"""The rollup re-evaluates the workspaces it touched: concurrent rollups of one workspace take turns."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime

import pytest

from events.models import Event
from tests.factories import WorkspaceFactory
from tests.usage.test_usage_rollup import postgres_only, run_concurrently, usage_event
from usage import rollups as services
from usage.definitions import definitions_load, shipped_document
from usage.models import Profile, StagePeriod
from usage.rollups import usage_rollup
from usage.tasks import rollup_usage
from workspaces.models import WorkspaceLock

AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_rollups_of_one_workspace_open_one_stage_period(settings):
    # given: fresh workspaces (no profile, no stage yet) and four rollup tasks per workspace at once
    settings.BEHAVIOUR_PROFILES = True
    definitions_load(shipped_document())
    for round_ in range(4):
        key = f"ws_r{round_}"
        WorkspaceFactory(workspace_id=key)
        ids = iter([usage_event(AT, workspace_id=key, feature=f"f{n}").pk for n in range(8)])
        lock = threading.Lock()

        def task(ids: itertools.chain = ids, lock: threading.Lock = lock) -> int:
            with lock:
                mine = [next(ids), next(ids)]
            return usage_rollup(event_ids=mine)

        # when: each would see no open stage period and open one; the second used to fail on the constraint
        counted = run_concurrently(task)
        # then: every event counted once, one open stage period, the profile written
        assert sum(counted) == 8
        assert StagePeriod.objects.filter(workspace_key=key, exited_at__isnull=True).count() == 1
        assert Profile.objects.filter(workspace_key=key, stage__isnull=False).exists()
    assert not Event.objects.exclude(status=Event.Status.COMPLETED).exists()


@pytest.mark.django_db
def test_the_rollup_leaves_the_lifecycle_lock_time_alone(settings):
    # given: one workspace the lifecycle processed at a known time, one it never saw
    settings.BEHAVIOUR_PROFILES = True
    WorkspaceLock.objects.create(workspace_key="ws_a", processed_at=AT)
    usage_event(AT, workspace_id="ws_a")
    usage_event(AT, workspace_id="ws_b")
    # when
    rollup_usage(None)
    # then: both have a lock row (usage can come first); the lifecycle's processed_at is unchanged
    locks = dict(WorkspaceLock.objects.values_list("workspace_key", "processed_at"))
    assert locks == {"ws_a": AT, "ws_b": None}


@pytest.mark.django_db
def test_no_lock_rows_without_profiles(settings):
    settings.BEHAVIOUR_PROFILES = False
    usage_event(AT, workspace_id="ws_a")
    rollup_usage(None)
    assert not WorkspaceLock.objects.exists()


@pytest.mark.django_db
def test_a_task_takes_the_batches_queued_behind_it_and_evaluates_once(settings, monkeypatch):
    # given: two webhook batches for one workspace, each ringing its own task, the first not yet run
    settings.BEHAVIOUR_PROFILES = True
    evaluated: list[list[str]] = []
    refresh = services.behaviour_refresh
    monkeypatch.setattr(
        services, "behaviour_refresh", lambda **kw: evaluated.append(list(kw["workspace_keys"])) or refresh(**kw)
    )
    first = [usage_event(AT, workspace_id="ws_a", feature=f"f{n}").pk for n in range(3)]
    second = [usage_event(AT, workspace_id="ws_a", feature=f"g{n}").pk for n in range(2)]
    # when
    counted = [rollup_usage(first), rollup_usage(second)]
    # then: the first task counted both batches and re-evaluated the workspace once; the second found nothing
    assert counted == [5, 0]
    assert evaluated == [["ws_a"]]
    assert not Event.objects.exclude(status=Event.Status.COMPLETED).exists()


@pytest.mark.django_db
def test_a_rollup_touching_more_workspaces_than_one_metrics_statement_takes(settings, monkeypatch):
    # given: more workspaces in one batch than one sessions statement takes (400 in production; 2 here)
    settings.BEHAVIOUR_PROFILES = True
    monkeypatch.setattr("usage.metrics_sql.SESSION_KEYS", 2)
    keys = [f"ws_m{n}" for n in range(5)]
    for n, key in enumerate(keys):
        usage_event(AT, workspace_id=key, user_email=f"ann@acme{n}.io")
    # when: the second statement used to name a workspace where the key column belongs (a ProgrammingError)
    counted = rollup_usage(None)
    # then: every workspace profiled, each with its own session
    assert counted == 5
    profiles = dict(Profile.objects.values_list("workspace_key", "metrics"))
    assert sorted(profiles) == keys
    assert {key: bool(profiles[key]) for key in keys} == dict.fromkeys(keys, True)
