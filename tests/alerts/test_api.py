"""GET /api/alerts/ (CONTRACT §6): exact fields, filters, errors, and who sees what."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from alerts.models import Alert, Delivery
from alerts.services import alert_raise
from tests.alerts.conftest import make_rep
from tests.conftest import api_service_user
from tests.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db

FIELDS = {"id", "rule", "workspace_id", "recipient", "status", "created_at", "reason", "deliveries"}


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def alerts(settings):
    settings.SLACK_WEBHOOK_URL = "https://hooks.slack.com/services/T0/B0/X"
    ann, ben = make_rep("ann"), make_rep("ben")
    made = {}
    for key, rule in (("ws_a", "trial_expiring"), ("ws_b", "converted")):
        made[key], _ = alert_raise(
            rule=rule, dedupe_key=f"{rule}:{key}", title=key, reason=f"why {key}", audience="rep",
            workspace=WorkspaceFactory(workspace_id=key, email=f"{key}@gmail.com"),
        )  # fmt: skip
    made["admin"], _ = alert_raise(rule="sync_paused", dedupe_key="sync_paused:1", title="Paused", reason="limits")
    Delivery.objects.filter(alert=made["ws_a"], channel="email").update(status="dead", attempts=6)
    return {"ann": ann.user, "ben": ben.user, **made}


def test_fields_are_exactly_the_contract(alerts):
    api_user = api_service_user("reporting")
    response = client_for(api_user).get("/api/alerts/", {"workspace_id": "ws_a"})
    assert response.status_code == 200
    [item] = response.json()["results"]
    assert set(item) == FIELDS
    alert = alerts["ws_a"]
    assert item["id"] == str(alert.pk)
    assert item["rule"] == "trial_expiring"
    assert item["workspace_id"] == "ws_a"
    assert item["recipient"] == "ann"
    assert item["status"] == "open"
    assert item["reason"] == "why ws_a"
    assert item["created_at"].endswith("Z")
    assert sorted(item["deliveries"], key=lambda d: d["channel"]) == [
        {"channel": "email", "status": "dead", "attempts": 6},
        {"channel": "slack", "status": "pending", "attempts": 0},
    ]


def test_filters_by_rule_and_status(alerts):
    client = client_for(api_service_user("reporting"))
    Alert.objects.filter(pk=alerts["ws_b"].pk).update(status="resolved")
    by_rule = client.get("/api/alerts/", {"rule": "converted"}).json()["results"]
    assert [item["workspace_id"] for item in by_rule] == ["ws_b"]
    by_status = client.get("/api/alerts/", {"status": "open"}).json()["results"]
    assert {item["rule"] for item in by_status} == {"trial_expiring", "sync_paused"}
    admin_alert = next(item for item in by_status if item["rule"] == "sync_paused")
    assert admin_alert["workspace_id"] is None and admin_alert["recipient"] is None


def test_a_bad_filter_names_the_field(alerts):
    client = client_for(api_service_user("reporting"))
    response = client.get("/api/alerts/", {"rule": "nope", "status": "gone"})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_filter" and set(body["fields"]) == {"rule", "status"}
    assert client.get("/api/alerts/", {"rule": "sla_event_delay"}).json()["results"] == [], "ops rules are rules too"


def test_a_rep_reads_only_their_own_alerts(alerts):
    items = client_for(alerts["ann"]).get("/api/alerts/").json()["results"]
    assert [item["workspace_id"] for item in items] == ["ws_a"]


def test_no_token_no_alerts(alerts):
    response = APIClient().get("/api/alerts/")
    assert response.status_code == 401
