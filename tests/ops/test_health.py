"""GET /healthz: no login, cheap, 200 when the database and the queue answer, 503 otherwise."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import DatabaseError, OperationalError
from django.db.backends.utils import CursorWrapper
from django_q.models import OrmQ

from events.models import Event
from ops import health
from ops.health import broker_display
from tests.factories import EventFactory

pytestmark = pytest.mark.django_db


def test_healthy(client):
    EventFactory(status=Event.Status.NEW)
    EventFactory(status=Event.Status.ERROR)
    EventFactory(status=Event.Status.COMPLETED)
    OrmQ.objects.create(key="lifecycle", payload="task")

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "queue": {
            "broker": "orm",
            "queued_tasks": 1,
            "events": {"new": 1, "processing": 0, "error": 1, "review": 0},
        },
    }
    assert "no-cache" in response["Cache-Control"]


def test_cheap(client, django_assert_max_num_queries):
    with django_assert_max_num_queries(2):
        client.get("/healthz")


def test_database_failure_is_503_degraded(client, monkeypatch):
    monkeypatch.setattr(health, "event_status_counts", mock.Mock(side_effect=DatabaseError("gone")))

    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["database"] == "error: DatabaseError"
    assert "events" not in body["queue"]


def test_database_down_fails_the_queue_count_too(client):
    # given: every query fails the way a dropped connection does
    with mock.patch.object(CursorWrapper, "execute", side_effect=OperationalError("connection refused")):
        # when
        response = client.get("/healthz")

    # then
    assert response.status_code == 503
    assert response.json() == {
        "status": "degraded",
        "database": "error: OperationalError",
        "queue": {"broker": "orm", "error": "OperationalError"},
    }


def test_unreachable_redis_is_503_without_the_password(client, settings):
    settings.Q_BROKER = "redis://:s3cret@127.0.0.1:1/0"

    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["database"] == "ok"
    assert body["queue"]["broker"] == "redis://127.0.0.1:1/0"
    assert body["queue"]["error"] == "ConnectionError"
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
