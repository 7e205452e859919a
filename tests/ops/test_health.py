"""GET /healthz: no login, cheap, 200 when the database, the queue and both heartbeats are fine, 503 otherwise."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from unittest import mock

import pytest
import time_machine
from django.db import DatabaseError, OperationalError, connection
from django.db.backends.utils import CursorWrapper
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from events.models import Event
from failures import tasks as ops_tasks
from failures.models import Heartbeat
from ops import health
from ops.health import broker_display
from processing import tasks as event_tasks
from tests.factories import EventFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_heartbeats():
    """Both heartbeats as a running cluster leaves them: stamped by the real tasks just now."""
    ops_tasks.heartbeat()
    event_tasks.sweep()


def just_started(monkeypatch, seconds_ago: float = 5) -> None:
    monkeypatch.setattr(health, "process_started_at", time.monotonic() - seconds_ago)


def aged(name: str, seconds: float) -> None:
    Heartbeat.objects.filter(name=name).update(beat_at=timezone.now() - timedelta(seconds=seconds))


def test_healthy(client):
    EventFactory(status=Event.Status.NEW)
    EventFactory(status=Event.Status.ERROR)
    EventFactory(status=Event.Status.COMPLETED)
    OrmQ.objects.create(key="lifecycle", payload="task")

    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body == {
        "status": "ok",
        "database": "ok",
        "queue": {
            "broker": "orm",
            "queued_tasks": 1,
            "events": {"new": 1, "processing": 0, "error": 1, "review": 0},
        },
        "heartbeats": {
            "queue": {
                "status": "ok",
                "age_seconds": body["heartbeats"]["queue"]["age_seconds"],
                "max_age_seconds": 180,
            },
            "sweeper": {
                "status": "ok",
                "age_seconds": body["heartbeats"]["sweeper"]["age_seconds"],
                "max_age_seconds": 300,
            },
        },
        "failed": [],
    }
    assert 0 <= body["heartbeats"]["queue"]["age_seconds"] < 60
    assert "no-cache" in response["Cache-Control"]


def test_cheap(client, django_assert_max_num_queries):
    with django_assert_max_num_queries(3):
        client.get("/healthz")


def test_stale_queue_heartbeat_is_503_naming_it(client):
    # given: the cluster stopped running scheduled tasks 4 minutes ago (limit 3)
    aged("queue", 240)

    # when
    response = client.get("/healthz")

    # then
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["failed"] == ["queue_heartbeat"]
    assert body["heartbeats"]["queue"]["status"] == "stale"
    assert body["heartbeats"]["queue"]["age_seconds"] >= 240
    assert body["heartbeats"]["sweeper"]["status"] == "ok"
    assert body["database"] == "ok"


def test_stale_sweeper_heartbeat_is_503_naming_it(client):
    aged("sweeper", 301)

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["failed"] == ["sweeper_heartbeat"]
    assert response.json()["heartbeats"]["sweeper"]["status"] == "stale"


def test_heartbeats_age_with_the_clock_and_a_sweep_makes_it_fresh_again(client):
    with time_machine.travel(timezone.now() + timedelta(minutes=10)):
        assert client.get("/healthz").json()["failed"] == ["queue_heartbeat", "sweeper_heartbeat"]
        event_tasks.sweep()
        ops_tasks.heartbeat()
        response = client.get("/healthz")
    assert response.status_code == 200


def test_a_heartbeat_that_never_beat_is_missing_and_503(client):
    Heartbeat.objects.filter(name="sweeper").delete()

    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["sweeper_heartbeat"]
    assert body["heartbeats"]["sweeper"] == {"status": "missing", "age_seconds": None, "max_age_seconds": 300}


def test_thresholds_are_configurable(client, settings):
    aged("queue", 240)
    settings.HEALTH_QUEUE_HEARTBEAT_MAX_AGE_SECONDS = 600

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["heartbeats"]["queue"]["max_age_seconds"] == 600


def test_heartbeat_checks_can_be_switched_off_but_are_still_reported(client, settings):
    aged("queue", 4000)
    settings.HEALTH_CHECK_HEARTBEATS = False

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["heartbeats"]["queue"]["status"] == "stale"


def test_the_heartbeat_schedules_are_installed():
    assert Schedule.objects.filter(func="failures.tasks.heartbeat", minutes=1, repeats=-1).exists()
    assert Schedule.objects.filter(func="processing.tasks.sweep", minutes=1, repeats=-1).exists()


def test_a_failing_sweep_leaves_the_heartbeat_to_go_stale(client, monkeypatch):
    aged("sweeper", 200)
    monkeypatch.setattr(event_tasks, "events_sweep", mock.Mock(side_effect=DatabaseError("deadlock")))

    with pytest.raises(DatabaseError):
        event_tasks.sweep()

    assert Heartbeat.objects.get(name="sweeper").beat_at < timezone.now() - timedelta(seconds=199)


def test_database_failure_is_503_degraded(client, monkeypatch):
    monkeypatch.setattr(health, "event_status_counts", mock.Mock(side_effect=DatabaseError("gone")))

    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["database"] == "error: DatabaseError"
    assert body["failed"] == ["database"]
    assert "events" not in body["queue"]


def test_database_down_fails_the_queue_count_too(client):
    # given: every query fails the way a dropped connection does
    with mock.patch.object(CursorWrapper, "execute", side_effect=OperationalError("connection refused")):
        # when
        response = client.get("/healthz")

    # then
    assert response.status_code == 503
    unknown = "error: OperationalError"
    assert response.json() == {
        "status": "degraded",
        "database": "error: OperationalError",
        "queue": {"broker": "orm", "error": "OperationalError"},
        "heartbeats": {
            "queue": {"status": unknown, "age_seconds": None, "max_age_seconds": 180},
            "sweeper": {"status": unknown, "age_seconds": None, "max_age_seconds": 300},
        },
        "failed": ["database", "queue", "queue_heartbeat", "sweeper_heartbeat"],
    }


def test_a_connection_that_cannot_be_opened_is_503(client):
    # given: the connection is gone and reconnecting is refused
    refused = OperationalError("could not connect to server: Connection refused")
    with mock.patch.object(connection, "ensure_connection", side_effect=refused):
        response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["database"] == "error: OperationalError"
    assert body["failed"] == ["database", "queue", "queue_heartbeat", "sweeper_heartbeat"]


def test_unreachable_redis_is_503_without_the_password(client, settings):
    settings.Q_BROKER = "redis://:s3cret@127.0.0.1:1/0"

    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["database"] == "ok"
    assert body["queue"]["broker"] == "redis://127.0.0.1:1/0"
    assert body["queue"]["error"] == "ConnectionError"
    assert body["failed"] == ["queue"]
    assert b"s3cret" not in response.content


def test_redis_queue_size_from_django_qs_list(client, settings, monkeypatch):
    settings.Q_BROKER = "redis://queue.internal:6379/0"
    fake = mock.Mock()
    fake.llen.return_value = 5
    monkeypatch.setattr(health.redis, "from_url", mock.Mock(return_value=fake))

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["queue"]["queued_tasks"] == 5
    fake.llen.assert_called_once_with("django_q:lifecycle:q")
    fake.close.assert_called_once()


def test_not_redirected_to_https_or_to_a_slash(client, settings):
    settings.SECURE_SSL_REDIRECT = True

    assert client.get("/healthz").status_code == 200
    assert client.head("/healthz").status_code == 200


def test_read_only(client):
    assert client.post("/healthz").status_code == 405


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("orm", "orm"),
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("redis://:pw@cache:6379/1", "redis://cache:6379/1"),
        ("rediss://user:pw@cache:6380/0", "rediss://user@cache:6380/0"),
        ("redis://cache:6379/0?password=pw&ssl_cert_reqs=none", "redis://cache:6379/0?ssl_cert_reqs=none"),
    ],
)
def test_broker_display_drops_passwords(url, shown):
    assert broker_display(url) == shown


# --- start-up grace and logging (issue 18 item 10) -------------------------------------------------------


def test_a_fresh_start_without_heartbeats_is_200_starting_then_503_after_the_grace(client, monkeypatch, settings):
    """Before: 503 for the first ~45 s of a clean start (no beat yet), so a balancer kept the instance out."""
    Heartbeat.objects.all().delete()  # a clean start: the cluster has not run its first scheduled beat yet
    just_started(monkeypatch, seconds_ago=5)

    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["failed"] == []
    assert body["heartbeats"]["queue"]["status"] == "missing"  # reported as it is
    assert body["starting"]["waived"] == ["queue_heartbeat", "sweeper_heartbeat"]
    assert 170 <= body["starting"]["grace_remaining_seconds"] <= settings.HEALTH_STARTUP_GRACE_SECONDS

    just_started(monkeypatch, seconds_ago=settings.HEALTH_STARTUP_GRACE_SECONDS + 1)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["queue_heartbeat", "sweeper_heartbeat"]
    assert "starting" not in response.json()


def test_the_grace_also_covers_heartbeats_left_stale_by_downtime_and_is_configurable(client, monkeypatch, settings):
    aged("queue", 7200)  # the engine was stopped for two hours and starts again
    just_started(monkeypatch, seconds_ago=30)
    assert client.get("/healthz").status_code == 200

    settings.HEALTH_STARTUP_GRACE_SECONDS = 0
    assert client.get("/healthz").status_code == 503


def test_the_grace_never_hides_a_database_failure(client, monkeypatch):
    just_started(monkeypatch)

    def broken(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(health, "event_status_counts", broken)
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json()["failed"] == ["database"]


def test_a_state_change_is_logged_once_not_every_probe(client, caplog):
    """Before: every 503 probe logged at ERROR (django.request), every few seconds."""
    aged("queue", 240)
    with caplog.at_level(logging.INFO):
        codes = [client.get("/healthz").status_code for _ in range(5)]
        ops_tasks.heartbeat()  # the cluster beats again
        codes += [client.get("/healthz").status_code for _ in range(3)]

    assert codes == [503] * 5 + [200] * 3
    records = [(r.name, r.levelname, r.getMessage()) for r in caplog.records if "health" in r.getMessage().lower()
               or r.name == "django.request"]  # fmt: skip
    assert [(name, level) for name, level, _ in records] == [("ops.health", "ERROR"), ("ops.health", "INFO")]
    assert records[0][2].startswith("health: degraded (503), failing: queue_heartbeat; ")
    assert "queue heartbeat stale" in records[0][2]
    assert records[1][2] == "health: ok again (was degraded: queue_heartbeat)"
