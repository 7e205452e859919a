"""/metrics: Prometheus text for a scraper with the bearer token or an admin; nobody else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from prometheus_client.parser import text_string_to_metric_families

from events.models import Event
from failures.services import error_record
from salesforce.models import OutboxItem
from tests.factories import EventFactory

pytestmark = pytest.mark.django_db

TOKEN = "metrics-test-token-0123456789"


def samples(response) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of an exposition page."""
    text = response.content.decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_without_a_token_configured_it_does_not_exist_for_anonymous(client, settings):
    settings.METRICS_TOKEN = ""

    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Token {TOKEN}", f"Basic {TOKEN}"])
def test_a_missing_or_wrong_token_is_401(client, settings, header):
    settings.METRICS_TOKEN = TOKEN

    response = client.get("/metrics", headers={"Authorization": header} if header else {})

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"lifecycle_" not in response.content


def test_staff_without_the_ops_permission_are_not_let_in(client, settings, django_user_model):
    settings.METRICS_TOKEN = ""
    client.force_login(django_user_model.objects.create_user("clerk", password=None, is_staff=True))

    assert client.get("/metrics").status_code == 404


def test_the_token_gets_request_database_and_engine_metrics(client, settings):
    # given
    settings.METRICS_TOKEN = TOKEN
    EventFactory(status=Event.Status.ERROR)
    EventFactory(status=Event.Status.NEW)
    EventFactory(status=Event.Status.NEW)
    OutboxItem.objects.create(object_type="Lead", external_id="lead_1", payload={}, state=OutboxItem.State.DEAD)
    error_record(source="delivery", kind="SMTPServerDisconnected", message="Connection unexpectedly closed")
    error_record(source="delivery", kind="SMTPServerDisconnected", message="Connection unexpectedly closed")
    client.get("/healthz")  # at least one request for django-prometheus to have counted

    # when
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})

    # then
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    got = samples(response)
    assert got[("lifecycle_events", (("status", "new"),))] == 2
    assert got[("lifecycle_events", (("status", "error"),))] == 1
    assert got[("lifecycle_outbox_items", (("state", "dead"),))] == 1
    assert got[("lifecycle_errors_total", (("source", "delivery"),))] == 2
    assert got[("lifecycle_review_open", ())] == 0
    assert ("lifecycle_heartbeat_age_seconds", (("name", "queue"),)) in got
    assert any(name == "django_http_requests_total_by_view_transport_method_total" for name, _ in got)
    assert any(name == "django_db_execute_total" for name, _ in got)


def test_an_admin_login_is_enough(client, settings, django_user_model):
    settings.METRICS_TOKEN = TOKEN
    user = django_user_model.objects.create_user("ops", password=None, is_staff=True)
    user.user_permissions.add(Permission.objects.get(content_type__app_label="ops", codename="view_dashboard"))
    client.force_login(user)

    response = client.get("/metrics")

    assert response.status_code == 200
    assert b"lifecycle_events" in response.content


@pytest.mark.parametrize(("switch", "instrumented"), [("on", True), ("off", False)])
def test_request_and_database_instrumentation_can_be_switched_off(switch, instrumented):
    env = {**os.environ, "DEBUG": "on", "ENV_FILE": "", "METRICS_REQUESTS": switch, "METRICS_DB": switch}
    env["DATABASE_URL"] = "sqlite:////tmp/unused.sqlite3"
    code = "import config.settings as s; print(s.DATABASES['default']['ENGINE']); print(*s.MIDDLEWARE)"
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, check=True)

    engine, middleware = out.stdout.splitlines()
    assert (engine == "django_prometheus.db.backends.sqlite3") is instrumented
    assert ("django_prometheus" in middleware) is instrumented
