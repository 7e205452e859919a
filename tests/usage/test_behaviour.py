"""Cohorts and stages on the event and as time passes: entered and left with the values that decided it,
stage periods with the previous stage, a sweep that visits only what is due, and the admin's preview."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.test import Client, override_settings
from django.urls import reverse

from events.models import Event
from tests.factories import EventFactory, WorkspaceFactory
from usage.metrics import RollupEvent, tickets_apply
from usage.metrics_rollups import TICKET_OPENED
from usage.models import Cohort, CohortMembership, Profile, StagePeriod
from usage.rollups import usage_rollup
from usage.services import behaviour_refresh, behaviour_sweep

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
FEATURES = ("envelope.send", "template.create", "team.invite", "report.export", "signer.remind", "bulk.send")


def usage(workspace: str, at: datetime, feature: str = "envelope.send", **data: Any) -> Event:
    data = {"workspace_id": workspace, "feature": feature, "product": "esign", "user_email": "dana@acme.io", **data}
    return EventFactory(
        type="usage.recorded",
        occurred_at=at,
        workspace_key=workspace,
        payload={"type": "usage.recorded", "timestamp": at.isoformat(), "data": data},
    )


def active(workspace: str, days: int, features: int = 2, *, end: datetime = T0) -> None:
    """Usage on each of the `days` days before `end`, spreading `features` features."""
    for day in range(days):
        usage(workspace, end - timedelta(days=day, hours=1), FEATURES[day % features])
    with override_settings(BEHAVIOUR_PROFILES=False):  # each test evaluates when it means to
        usage_rollup()


def stage_of(workspace: str) -> str | None:
    profile = Profile.objects.select_related("stage").get(workspace_key=workspace)
    return profile.stage.key if profile.stage else None


def cohorts_of(workspace: str) -> set[str]:
    return set(
        CohortMembership.objects.filter(workspace_key=workspace, exited_at__isnull=True).values_list(
            "cohort__key", flat=True
        )
    )


def test_frequent_shallow_use_enters_the_cohort_with_its_why():
    WorkspaceFactory(workspace_id="ws_1", status="trial", trial_started_at=T0 - timedelta(days=6))
    active("ws_1", days=5, features=2)

    changes = behaviour_refresh(workspace_keys=["ws_1"], now=T0)

    assert "feature_shallow_frequent" in cohorts_of("ws_1")
    [change] = changes
    assert "feature_shallow_frequent" in change.entered
    membership = CohortMembership.objects.get(workspace_key="ws_1", cohort__key="feature_shallow_frequent")
    assert membership.entered_version == 1
    leaves = membership.entered_why["condition"]["all"]
    assert leaves[0] == {"metric": "active_days_7d", "op": ">=", "value": 4, "actual": 5, "result": True}
    assert leaves[1]["actual"] == 2 and leaves[1]["result"] is True
    assert stage_of("ws_1") == "activated"


def test_evaluating_again_changes_nothing():
    WorkspaceFactory(workspace_id="ws_1")
    active("ws_1", days=5)
    behaviour_refresh(workspace_keys=["ws_1"], now=T0)
    assert behaviour_refresh(workspace_keys=["ws_1"], now=T0) == []
    assert CohortMembership.objects.count() == len(cohorts_of("ws_1"))
    assert StagePeriod.objects.count() == 1


def test_time_alone_takes_a_silent_workspace_out_and_into_dormant():
    WorkspaceFactory(workspace_id="ws_1", status="paid", trial_started_at=T0 - timedelta(days=40))
    active("ws_1", days=5)
    behaviour_refresh(workspace_keys=["ws_1"], now=T0)
    assert "feature_shallow_frequent" in cohorts_of("ws_1")

    later = T0 + timedelta(days=15)
    with time_machine.travel(later, tick=False):
        result = behaviour_sweep()

    assert result.visited == 1 and result.changed == 1
    assert cohorts_of("ws_1") == set()
    assert stage_of("ws_1") == "dormant"
    left = CohortMembership.objects.get(workspace_key="ws_1", cohort__key="feature_shallow_frequent")
    assert left.exited_at == later and left.exited_why["condition"]["result"] is False
    period = StagePeriod.objects.get(workspace_key="ws_1", exited_at__isnull=True)
    assert (period.stage.key, period.previous.key) == ("dormant", "activated")


def test_the_sweep_visits_only_profiles_whose_windows_can_move():
    WorkspaceFactory(workspace_id="ws_recent")
    WorkspaceFactory(workspace_id="ws_gone", trial_started_at=T0 - timedelta(days=400))
    active("ws_recent", days=2)
    active("ws_gone", days=1, end=T0 - timedelta(days=200))
    behaviour_refresh(workspace_keys=["ws_recent", "ws_gone"], now=T0)
    gone = Profile.objects.get(workspace_key="ws_gone")
    assert stage_of("ws_gone") == "dormant"
    assert gone.next_due_at is None, "silent longer than every window, every threshold behind it"
    recent = Profile.objects.get(workspace_key="ws_recent")
    assert recent.next_due_at == datetime(2026, 11, 21, tzinfo=UTC)

    with time_machine.travel(T0 + timedelta(days=1), tick=False):
        assert behaviour_sweep().visited == 1


def test_empty_windows_are_visited_only_while_a_ticket_is_in_them():
    for key in ("ws_quiet", "ws_ticket"):
        WorkspaceFactory(workspace_id=key, trial_started_at=T0 - timedelta(days=400))
        active(key, days=1, end=T0 - timedelta(days=80))  # silent longer than every window, tickets' too
    opened = RollupEvent("ws_ticket", T0 - timedelta(days=20), {"ticket_id": "t1"}, TICKET_OPENED)
    tickets_apply([opened])
    behaviour_refresh(workspace_keys=["ws_quiet", "ws_ticket"], now=T0)
    quiet, ticket = Profile.objects.get(workspace_key="ws_quiet"), Profile.objects.get(workspace_key="ws_ticket")
    assert quiet.next_due_at is None, "every window empty, every threshold behind it"
    assert ticket.metrics["tickets_baseline_60d"] == 1
    assert ticket.next_due_at == datetime(2026, 11, 21, tzinfo=UTC), "the ticket is still to leave the baseline"

    with time_machine.travel(T0 + timedelta(days=60), tick=False):  # the ticket is 80 days old
        assert behaviour_sweep().visited == 1
    ticket.refresh_from_db()
    assert ticket.metrics["tickets_baseline_60d"] == 0
    assert ticket.next_due_at is None


def test_a_workspace_never_active_is_due_when_a_row_dated_ahead_comes_into_its_windows():
    WorkspaceFactory(workspace_id="ws_new", trial_started_at=T0 - timedelta(days=400))
    WorkspaceFactory(workspace_id="ws_none", trial_started_at=T0 - timedelta(days=400))
    usage("ws_new", T0 + timedelta(days=2))  # its sender's clock runs ahead
    with override_settings(BEHAVIOUR_PROFILES=False):
        usage_rollup()
    behaviour_refresh(workspace_keys=["ws_new", "ws_none"], now=T0)
    assert Profile.objects.get(workspace_key="ws_none").next_due_at is None
    new = Profile.objects.get(workspace_key="ws_new")
    assert new.metrics["active_days_7d"] == 0
    assert new.next_due_at == datetime(2026, 11, 22, tzinfo=UTC), "the day its usage counts"

    with time_machine.travel(datetime(2026, 11, 22, 1, 0, tzinfo=UTC), tick=False):
        assert behaviour_sweep().visited == 1
    new.refresh_from_db()
    assert new.metrics["active_days_7d"] == 1


def test_a_local_midnight_is_the_due_time_in_the_workspace_zone():
    WorkspaceFactory(workspace_id="ws_1", timezone="Asia/Tokyo")
    active("ws_1", days=1)
    behaviour_refresh(workspace_keys=["ws_1"], now=T0)  # 15:00 UTC is 00:00 in Tokyo the next day
    profile = Profile.objects.get(workspace_key="ws_1")
    assert profile.timezone == "Asia/Tokyo"
    assert profile.next_due_at == datetime(2026, 11, 21, 15, 0, tzinfo=UTC)


def test_workspaces_never_evaluated_are_picked_up_once_by_the_sweep():
    WorkspaceFactory(workspace_id="ws_old")
    with time_machine.travel(T0, tick=False):
        assert behaviour_sweep().visited == 1
        assert Profile.objects.filter(workspace_key="ws_old").exists()
        assert behaviour_sweep().visited == 0


def test_the_sweep_finds_the_never_evaluated_among_evaluated_ones_window_after_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from usage import services

    monkeypatch.setattr(services, "SWEEP_CHUNK", 2)  # windows of two workspaces, most of them evaluated
    keys = [f"ws_{n:02d}" for n in range(9)]
    for key in keys:
        WorkspaceFactory(workspace_id=key)
    evaluated = keys[:3] + keys[5:7]
    behaviour_refresh(workspace_keys=evaluated, now=T0 - timedelta(hours=1))  # none due before tomorrow
    before = dict(Profile.objects.values_list("workspace_key", "evaluated_at"))
    with time_machine.travel(T0, tick=False):
        assert behaviour_sweep(limit=3).visited == 3  # the limit cuts across windows
        assert behaviour_sweep().visited == 1
        assert behaviour_sweep().visited == 0
    after = dict(Profile.objects.values_list("workspace_key", "evaluated_at"))
    assert sorted(after) == keys
    assert {key: after[key] for key in evaluated} == before, "the evaluated ones were left alone"


def test_a_disabled_cohort_is_not_evaluated():
    WorkspaceFactory(workspace_id="ws_1")
    active("ws_1", days=5)
    Cohort.objects.filter(key="feature_shallow_frequent").update(enabled=False)
    behaviour_refresh(workspace_keys=["ws_1"], now=T0)
    assert "feature_shallow_frequent" not in cohorts_of("ws_1")


def test_a_payment_problem_puts_any_stage_at_risk():
    WorkspaceFactory(workspace_id="ws_1", status="paid", at_risk=True)
    active("ws_1", days=5)
    behaviour_refresh(workspace_keys=["ws_1"], now=T0)
    period = StagePeriod.objects.get(workspace_key="ws_1")
    assert period.stage.key == "at_risk"
    assert period.entered_why["condition"]["any"][0]["result"] is True


# --- the admin -----------------------------------------------------------------------------------------------


def test_the_admin_preview_counts_samples_and_explains(admin_client: Client):
    WorkspaceFactory(workspace_id="ws_1")
    WorkspaceFactory(workspace_id="ws_2")
    active("ws_1", days=5)
    active("ws_2", days=1)
    behaviour_refresh(workspace_keys=["ws_1", "ws_2"], now=T0)
    cohort = Cohort.objects.get(key="feature_shallow_frequent")
    url = reverse("admin:usage_cohort_preview", args=[cohort.pk])

    page = admin_client.get(url, {"workspace": "ws_2"})
    assert page.status_code == 200
    assert "Matches now: 1 of 2 evaluated workspaces" in page.text
    assert "<code>ws_1</code>" in page.text
    assert "Why, for ws_2" in page.text and "&quot;actual&quot;: 1" in page.text

    edited = admin_client.post(url, {"condition": '{"metric": "active_days_7d", "op": ">=", "value": 1}'})
    assert "Matches now: 2 of 2" in edited.text
    assert Cohort.objects.get(pk=cohort.pk).version == 1, "a preview saves nothing"
    broken = admin_client.post(url, {"condition": '{"metric": "active_days_7d", "op": "~", "value": 1}'})
    assert "op: Expected one of" in broken.text


def test_the_admin_validates_and_versions_a_changed_condition(admin_client: Client):
    cohort = Cohort.objects.get(key="at_risk")
    url = reverse("admin:usage_cohort_change", args=[cohort.pk])
    form = {"key": cohort.key, "name": cohort.name, "description": cohort.description, "enabled": "on"}

    refused = admin_client.post(url, {**form, "condition": '{"all": [{"metric": "nope", "op": ">", "value": 1}]}'})
    assert refused.status_code == 200 and "all[0].metric: Unknown metric" in refused.text
    assert (
        admin_client.post(url, {**form, "condition": '{"metric": "errors_7d", "op": ">", "value": 3}'}).status_code
        == 302
    )
    cohort.refresh_from_db()
    assert cohort.version == 2 and cohort.condition == {"metric": "errors_7d", "op": ">", "value": 3}
    assert admin_client.get(reverse("admin:usage_stage_changelist")).status_code == 200


def test_the_sweep_task_is_scheduled_every_minute_and_bounded(settings):
    from django_q.models import Schedule

    from usage.tasks import sweep_behaviour

    schedule = Schedule.objects.get(func="usage.tasks.sweep_behaviour")
    assert (schedule.schedule_type, schedule.minutes) == ("I", 1)
    for n in range(3):
        WorkspaceFactory(workspace_id=f"ws_{n}")
    settings.BEHAVIOUR_SWEEP_LIMIT = 2
    assert sweep_behaviour()["visited"] == 2
    assert sweep_behaviour()["visited"] == 1


def test_a_usage_batch_moves_cohorts_in_its_own_transaction():
    WorkspaceFactory(workspace_id="ws_1")
    for day in range(5):
        usage("ws_1", datetime.now(UTC) - timedelta(days=day), FEATURES[day % 2])
    usage_rollup()
    assert "feature_shallow_frequent" in cohorts_of("ws_1")


def test_a_refresh_reads_and_writes_in_statements_that_do_not_grow_with_its_workspaces():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def statements(keys: list[str]) -> int:
        for key in keys:
            WorkspaceFactory(workspace_id=key)
            active(key, days=5)
        behaviour_refresh(workspace_keys=keys, now=T0)  # first evaluation: profiles, memberships, periods made
        for key in keys:
            usage(key, T0 - timedelta(minutes=5), "team.invite")
        with override_settings(BEHAVIOUR_PROFILES=False):
            usage_rollup()
        with CaptureQueriesContext(connection) as queries:
            behaviour_refresh(workspace_keys=keys, now=T0)
        return len(queries)

    assert statements(["ws_a1", "ws_a2"]) == statements([f"ws_b{n}" for n in range(12)])


def test_profiles_are_written_by_one_upsert_that_still_moves_their_day_and_due_time():
    """A bulk pass writes every profile; Django's bulk_update (one CASE per column over every row) was most
    of its time. New and existing profiles go in one INSERT … ON CONFLICT, and each still moves on."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for key in ("ws_old", "ws_new"):
        WorkspaceFactory(workspace_id=key)
        active(key, days=3)
    behaviour_refresh(workspace_keys=["ws_old"], now=T0)
    before = Profile.objects.get(workspace_key="ws_old")
    later = T0 + timedelta(days=1)
    with CaptureQueriesContext(connection) as queries:
        behaviour_refresh(workspace_keys=["ws_old", "ws_new"], now=later)
    writes = [q["sql"] for q in queries if "usage_profile" in q["sql"] and not q["sql"].startswith("SELECT")]
    assert len(writes) == 1 and writes[0].startswith("INSERT") and "ON CONFLICT" in writes[0], writes
    after = Profile.objects.get(workspace_key="ws_old")
    assert after.pk == before.pk
    assert (after.day, after.evaluated_at) == (later.date(), later)
    assert after.next_due_at == datetime(2026, 11, 22, tzinfo=UTC)
    assert (before.metrics["days_since_last_active"], after.metrics["days_since_last_active"]) == (0, 1)
    assert Profile.objects.get(workspace_key="ws_new").stage_id is not None


def test_a_stage_kept_keeps_the_time_it_was_entered():
    """A re-evaluation that leaves the stage where it is writes the profile again with the open period's start
    (read back as the database's own text on PostgreSQL), not the evaluation's time."""
    WorkspaceFactory(workspace_id="ws_1", status="trial", trial_started_at=T0 - timedelta(days=6))
    active("ws_1", days=5, features=2)
    entered = T0 + timedelta(microseconds=123)  # to the microsecond through the text
    behaviour_refresh(workspace_keys=["ws_1"], now=entered)
    period = StagePeriod.objects.get(workspace_key="ws_1", exited_at__isnull=True)
    later = T0 + timedelta(hours=5, microseconds=250)

    behaviour_refresh(workspace_keys=["ws_1"], now=later)

    profile = Profile.objects.get(workspace_key="ws_1")
    assert StagePeriod.objects.get(workspace_key="ws_1", exited_at__isnull=True).pk == period.pk
    assert (profile.stage_id, profile.stage_since, profile.evaluated_at) == (period.stage_id, entered, later)


def test_the_sweep_leaves_a_workspace_that_a_usage_batch_evaluated_after_the_sweep_read_it(monkeypatch):
    """The sweep reads a chunk's metrics before it takes the chunk's locks. A usage batch that re-evaluated one
    of them in between (under the locks) left it current: the sweep must not write its older reading back."""
    from usage import services

    for key in ("ws_1", "ws_2"):
        WorkspaceFactory(workspace_id=key)
        active(key, days=5)
    behaviour_refresh(workspace_keys=["ws_1", "ws_2"], now=T0)
    later = T0 + timedelta(days=1)  # both due
    batch_at = later + timedelta(minutes=1)
    original, landed = services._read, []

    def read_then_a_batch_lands(keys, now, *args, **kwargs):
        read = original(keys, now, *args, **kwargs)
        if not landed:
            landed.append(True)
            behaviour_refresh(workspace_keys=["ws_1"], now=batch_at)  # what a usage batch's refresh does
        return read

    monkeypatch.setattr(services, "_read", read_then_a_batch_lands)
    result = behaviour_sweep(now=later)

    assert result.visited == 1
    assert Profile.objects.get(workspace_key="ws_1").evaluated_at == batch_at
    assert Profile.objects.get(workspace_key="ws_2").evaluated_at == later
