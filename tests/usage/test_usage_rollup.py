"""Usage rollups: sums per workspace/feature/product/local day, distinct users, exactly once."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.models import Event
from tests.factories import EventFactory, WorkspaceFactory
from usage import rollups as services
from usage.models import UsageDaily, UsageDailyUser
from usage.rollups import usage_rollup
from usage.tasks import rollup_usage

pytestmark = pytest.mark.django_db

LATE = datetime(2026, 11, 20, 23, 59, 59, tzinfo=UTC)
MIDNIGHT = datetime(2026, 11, 21, 0, 0, 0, tzinfo=UTC)
LATE_DAY = LATE.date()


def usage_event(occurred_at: datetime = LATE, **data: Any) -> Event:
    """A stored `usage.recorded` event, as the webhook would have kept it."""
    data = {"workspace_id": "ws_1", "feature": "export", **data}
    return EventFactory(
        type="usage.recorded",
        occurred_at=occurred_at,
        workspace_key=data["workspace_id"],
        payload={"type": "usage.recorded", "timestamp": occurred_at.isoformat(), "data": data},
    )


def row(workspace_key: str = "ws_1", feature: str = "export", product: str = "", day: date = LATE_DAY):
    return UsageDaily.objects.get(workspace_key=workspace_key, feature=feature, product=product, day=day)


def snapshot() -> tuple[list[tuple], list[tuple]]:
    daily = UsageDaily.objects.order_by("workspace_key", "feature", "product", "day").values_list(
        "workspace_key",
        "feature",
        "product",
        "day",
        "events",
        "count",
        "duration_seconds",
        "errors",
        "first_seen_at",
        "last_seen_at",
    )
    users = UsageDailyUser.objects.order_by("workspace_key", "feature", "product", "day", "user_email")
    return list(daily), list(users.values_list("workspace_key", "feature", "product", "day", "user_email"))


def test_sums_per_workspace_feature_and_utc_day_when_no_zone_is_known():
    # given
    usage_event(LATE - timedelta(hours=1), count=3, duration_seconds=1.5)
    usage_event(LATE, count=2, duration_seconds=2.25)
    usage_event(MIDNIGHT, count=7)
    usage_event(LATE, workspace_id="ws_2", count=5)
    usage_event(LATE, feature="import")
    # when
    rolled_up = usage_rollup()
    # then
    assert rolled_up == 5
    late = row()
    assert (late.events, late.count, late.duration_seconds) == (2, 5, 3.75)
    assert (row(day=MIDNIGHT.date()).events, row(day=MIDNIGHT.date()).count) == (1, 7)
    assert row(workspace_key="ws_2").count == 5
    assert row(feature="import").count == 1
    assert UsageDaily.objects.count() == 4


def test_usage_counts_on_the_workspace_local_day_where_its_zone_is_known():
    """A workspace in Kolkata (UTC+5:30) used the product at 23:59 UTC: 05:29 the next day there; one in
    Los Angeles at 00:00 UTC: 16:00 the day before. Its windows count local days, so the rollup does too."""
    # given
    WorkspaceFactory(workspace_id="ws_in", timezone="Asia/Kolkata")
    WorkspaceFactory(workspace_id="ws_la", timezone="America/Los_Angeles")
    WorkspaceFactory(workspace_id="ws_nowhere", timezone="Not/AZone")
    usage_event(LATE, workspace_id="ws_in", user_email="a@x.example")
    usage_event(MIDNIGHT, workspace_id="ws_la", user_email="b@x.example")
    usage_event(LATE, workspace_id="ws_nowhere")
    # when
    usage_rollup()
    # then
    assert row(workspace_key="ws_in", day=LATE_DAY + timedelta(days=1)).events == 1
    assert row(workspace_key="ws_la", day=LATE_DAY).events == 1  # 16:00 on Nov 20 there
    assert row(workspace_key="ws_nowhere", day=LATE_DAY).events == 1  # an unknown zone counts in UTC
    assert set(UsageDailyUser.objects.values_list("workspace_key", "day")) == {
        ("ws_in", LATE_DAY + timedelta(days=1)),
        ("ws_la", LATE_DAY),
    }


def test_count_defaults_to_one_and_duration_to_zero():
    usage_event()
    usage_event()
    usage_rollup()
    assert (row().events, row().count, row().duration_seconds) == (2, 2, 0.0)


def test_product_is_part_of_the_key():
    usage_event(product="cloud")
    usage_event()
    usage_rollup()
    assert row(product="cloud").events == 1
    assert row(product="").events == 1


def test_errors_are_counted():
    usage_event(outcome="error")
    usage_event(outcome="success")
    usage_event(outcome="error")
    usage_rollup()
    assert (row().events, row().errors) == (3, 2)


def test_distinct_users_are_recorded_once_per_day():
    usage_event(user_email="ann@acme.io")
    usage_event(user_email="Ann@Acme.io")
    usage_event(user_email="bob@acme.io")
    usage_event()
    usage_event(MIDNIGHT, user_email="ann@acme.io")
    usage_rollup()
    late_users = UsageDailyUser.objects.filter(day=LATE.date()).values_list("user_email", flat=True)
    assert sorted(late_users) == ["ann@acme.io", "bob@acme.io"]
    assert UsageDailyUser.objects.filter(day=MIDNIGHT.date()).count() == 1


def test_first_and_last_seen_are_min_and_max_occurred_at():
    usage_event(LATE - timedelta(minutes=5))
    usage_event(LATE)
    usage_event(LATE - timedelta(minutes=30, microseconds=250))
    usage_rollup()
    assert row().first_seen_at == LATE - timedelta(minutes=30, microseconds=250)
    assert row().last_seen_at == LATE


def test_rolled_up_events_are_completed():
    events = [usage_event(), usage_event()]
    usage_rollup()
    for event in events:
        event.refresh_from_db()
        assert event.status == Event.Status.COMPLETED
        assert event.completed_at is not None


def test_running_again_counts_nothing_more():
    # given
    events = [usage_event(user_email="ann@acme.io") for _ in range(3)]
    usage_rollup()
    before = snapshot()
    # when: the sweeper and a retried task for the same ids
    assert usage_rollup() == 0
    assert rollup_usage([event.pk for event in events]) == 0
    # then
    assert snapshot() == before


def test_a_second_rollup_adds_to_existing_rows():
    # given
    usage_event(LATE - timedelta(hours=2), count=2, duration_seconds=1.0, user_email="ann@acme.io")
    usage_rollup()
    # when
    usage_event(LATE, count=3, duration_seconds=0.5, outcome="error", user_email="ann@acme.io")
    usage_event(LATE - timedelta(hours=3), user_email="bob@acme.io")
    assert usage_rollup() == 2
    # then
    late = row()
    assert (late.events, late.count, late.duration_seconds, late.errors) == (3, 6, 1.5, 1)
    assert (late.first_seen_at, late.last_seen_at) == (LATE - timedelta(hours=3), LATE)
    assert UsageDailyUser.objects.count() == 2


def test_only_the_given_ids_are_rolled_up():
    chosen, other = usage_event(count=4), usage_event(count=10)
    assert usage_rollup(event_ids=[chosen.pk]) == 1
    assert row().count == 4
    other.refresh_from_db()
    assert other.status == Event.Status.NEW


def test_limit_takes_the_oldest_and_the_task_drains_the_backlog(monkeypatch):
    # given
    events = [usage_event() for _ in range(5)]
    # when
    assert usage_rollup(limit=2) == 2
    # then
    assert set(Event.objects.filter(status="completed").values_list("pk", flat=True)) == {
        events[0].pk,
        events[1].pk,
    }
    monkeypatch.setattr("usage.rollups.DEFAULT_LIMIT", 2)
    assert rollup_usage() == 3
    assert row().events == 5


def test_invalid_stored_payload_goes_to_review_and_is_not_counted():
    # given
    good = usage_event(count=2)
    bad = usage_event(count=-1, feature="")
    broken = EventFactory(type="usage.recorded", occurred_at=LATE, payload="not json")
    # when
    assert usage_rollup() == 1
    # then
    assert row().count == 2
    assert UsageDaily.objects.count() == 1
    bad.refresh_from_db()
    broken.refresh_from_db()
    good.refresh_from_db()
    assert bad.status == broken.status == Event.Status.REVIEW
    assert "data.count" in bad.notes and "data.feature" in bad.notes
    assert "Expected a JSON object" in broken.notes
    assert good.status == Event.Status.COMPLETED


def test_lifecycle_events_are_untouched():
    trial = EventFactory(type="trial.started", occurred_at=LATE)
    usage_event()
    assert usage_rollup() == 1
    trial.refresh_from_db()
    assert trial.status == Event.Status.NEW
    assert usage_rollup(event_ids=[trial.pk]) == 0


def test_a_failure_rolls_back_the_rollup_and_the_claim(monkeypatch):
    """The counts and the status change commit together: a crash before the commit loses neither."""
    # given
    event = usage_event(count=3, user_email="ann@acme.io")

    def crash(event_ids: list[int]) -> None:
        raise RuntimeError("worker killed")

    monkeypatch.setattr(services, "_mark_completed", crash)
    # when
    with pytest.raises(RuntimeError):
        usage_rollup()
    # then
    assert not UsageDaily.objects.exists()
    assert not UsageDailyUser.objects.exists()
    event.refresh_from_db()
    assert event.status == Event.Status.NEW
    monkeypatch.undo()
    assert usage_rollup() == 1
    assert row().count == 3


def rollup_queries(events: int) -> int:
    for n in range(events):
        usage_event(LATE - timedelta(seconds=n), feature=f"f{n}", user_email=f"u{n}@acme.io", outcome="error")
    with CaptureQueriesContext(connection) as queries:
        assert usage_rollup() == events
    return len(queries)


def test_queries_do_not_grow_with_the_batch(settings):
    settings.BEHAVIOUR_PROFILES = False  # the profiles' own statements are counted in tests/usage
    assert rollup_queries(3) == rollup_queries(60)


def test_the_admin_lists_daily_usage_read_only(admin_client):
    usage_event(product="cloud")
    usage_rollup()
    response = admin_client.get(reverse("admin:usage_usagedaily_changelist"), {"q": "ws_1", "product": "cloud"})
    assert response.status_code == 200
    assert response.context["cl"].result_count == 1
    assert admin_client.get(reverse("admin:usage_usagedaily_add")).status_code == 403


usage_data = st.fixed_dictionaries(
    {
        "workspace_id": st.sampled_from(["ws_a", "ws_b"]),
        "feature": st.sampled_from(["export", "import"]),
    },
    optional={
        "product": st.sampled_from(["", "cloud"]),
        "count": st.integers(0, 1000),
        # Quarters add exactly in any order, so chunked and whole sums compare equal.
        "duration_seconds": st.integers(0, 4000).map(lambda quarters: quarters / 4),
        "outcome": st.sampled_from(["success", "error"]),
        "user_email": st.sampled_from(["ann@acme.io", "bob@acme.io"]),
    },
)
usage_events = st.lists(st.tuples(st.integers(-3600, 3600), usage_data), min_size=1, max_size=25)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=usage_events, seed=st.randoms(use_true_random=False))
def test_rolling_up_in_chunks_equals_rolling_up_at_once(events: list[tuple[int, dict]], seed: random.Random):
    # given
    Event.objects.all().delete()
    ids = [usage_event(MIDNIGHT + timedelta(seconds=offset), **data).pk for offset, data in events]
    reset = {"status": Event.Status.NEW, "completed_at": None}
    # when: all at once
    UsageDaily.objects.all().delete()
    UsageDailyUser.objects.all().delete()
    assert usage_rollup() == len(ids)
    whole = snapshot()
    # when: in random chunks
    UsageDaily.objects.all().delete()
    UsageDailyUser.objects.all().delete()
    Event.objects.update(**reset)
    seed.shuffle(ids)
    counted = 0
    while ids:
        size = seed.randint(1, 6)
        counted += usage_rollup(event_ids=ids[:size])
        ids = ids[size:]
    # then
    assert counted == len(events)
    assert snapshot() == whole


def run_concurrently(work: Callable[[], int], threads: int = 4) -> list[int]:
    """Run `work` in several threads released at once, each on its own database connection."""
    barrier = threading.Barrier(threads)

    def worker() -> int:
        try:
            barrier.wait(timeout=10)
            return work()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return [future.result() for future in [pool.submit(worker) for _ in range(threads)]]


def drain() -> int:
    counted = 0
    while (batch := usage_rollup(limit=25)) > 0:
        counted += batch
    return counted


postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="SQLite serialises writers; PostgreSQL proves SKIP LOCKED"
)


def make_400_events() -> list[int]:
    """400 events over 2 workspaces, 2 features, 2 days and 4 users."""
    return [
        usage_event(
            LATE if n % 2 else MIDNIGHT,
            workspace_id=f"ws_{n % 4 // 2}",
            feature="export" if n % 3 else "import",
            count=n % 5,
            user_email=f"user{n % 4}@acme.io",
        ).pk
        for n in range(400)
    ]


def assert_400_counted_once(counted: list[int]) -> None:
    assert sum(counted) == 400
    assert not Event.objects.exclude(status=Event.Status.COMPLETED).exists()
    totals = [(r.events, r.count) for r in UsageDaily.objects.all()]
    assert sum(events for events, _ in totals) == 400
    assert sum(count for _, count in totals) == sum(n % 5 for n in range(400))
    assert UsageDailyUser.objects.count() == len({(n % 4 // 2, bool(n % 3), n % 2, n % 4) for n in range(400)})


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_rollups_count_every_event_exactly_once():
    make_400_events()
    assert_400_counted_once(run_concurrently(drain))


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_duplicate_tasks_for_the_same_ids_count_them_once():
    ids = make_400_events()
    assert_400_counted_once(run_concurrently(lambda: rollup_usage(ids)))


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_drains_over_partitions_count_every_event_exactly_once(settings):
    settings.USAGE_ROLLUP_PARTITIONS = 3
    make_400_events()
    assert_400_counted_once(run_concurrently(services.usage_rollup_drain))


def partition_of(workspace_key: str, partitions: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT mod(hashtext(%s) & 2147483647, %s)", [workspace_key, partitions])
        return cursor.fetchone()[0]


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_batch_takes_only_its_partition_and_skips_one_another_worker_holds(settings):
    """Two workers roll up disjoint workspaces side by side: each batch claims one partition's events, and
    a partition whose lock is held is not waited for unless asked (the drain takes it last, waiting)."""
    # given
    settings.USAGE_ROLLUP_PARTITIONS = 2
    keys = [f"ws_{n}" for n in range(12)]
    partition = {key: partition_of(key, 2) for key in keys}
    assert set(partition.values()) == {0, 1}
    for key in keys:
        usage_event(workspace_id=key)
    # when: partition 0 alone
    result = services.usage_rollup_batch(partition=0)
    # then
    assert result is not None and result.rolled_up == sum(1 for key in keys if partition[key] == 0)
    new = set(Event.objects.filter(status=Event.Status.NEW).values_list("workspace_key", flat=True))
    assert new == {key for key in keys if partition[key] == 1}
    # when: another connection holds partition 1's lock
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [services._PARTITION_LOCK, 1])
                held.set()
                release.wait(timeout=10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(timeout=10)
        # then: not waited for
        assert services.usage_rollup_batch(partition=1, wait=False) is None
        assert Event.objects.filter(status=Event.Status.NEW).count() == len(new)
    finally:
        release.set()
        thread.join(timeout=10)
    # and the drain takes what is left once the lock is free
    assert services.usage_rollup_drain() == len(new)
    assert not Event.objects.filter(status=Event.Status.NEW).exists()


def test_one_partition_where_the_database_has_one_writer(settings):
    settings.USAGE_ROLLUP_PARTITIONS = 4
    expected = 1 if connection.vendor != "postgresql" else 4
    assert services.rollup_partitions() == expected
    usage_event()
    assert services.usage_rollup_drain() == 1


@postgres_only
@pytest.mark.parametrize(("waited", "expected"), [(timedelta(0), "whole"), (timedelta(seconds=1), "each")])
def test_a_fresh_backlog_goes_in_one_transaction_one_left_waiting_partition_by_partition(
    settings, monkeypatch, waited, expected
):
    """One worker keeps up with a fresh backlog in one batch (fewest statements an event); one that has waited
    longer than SPLIT_AFTER is split so other workers can take the other partitions."""
    # given
    settings.USAGE_ROLLUP_PARTITIONS = 2
    monkeypatch.setattr(services, "SPLIT_AFTER", timedelta(milliseconds=500))
    for n in range(12):
        usage_event(workspace_id=f"ws_{n}")
    Event.objects.update(received_at=timezone.now() - waited)
    batches = []
    real = services.usage_rollup_batch

    def spy(**kwargs):
        result = real(**kwargs)
        batches.append((kwargs["partition"], result.claimed if result else None))
        return result

    monkeypatch.setattr(services, "usage_rollup_batch", spy)
    # when
    assert services.usage_rollup_drain() == 12
    # then
    if expected == "each":
        assert sorted(partition for partition, _ in batches) == [0, 1]
        assert all(0 < claimed < 12 for _, claimed in batches)
    else:
        assert batches == [(services.EVERY_PARTITION, 12)]
