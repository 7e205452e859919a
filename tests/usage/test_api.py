"""CONTRACT §6 for behaviour: stage and cohorts on the workspace, its profile, and the cohorts; each read
within the reader's scope (a rep: their own workspaces; outside is 404)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.reps.conftest import World, world  # noqa: F401 (a fixture: the rep pages' people and workspaces)
from tests.usage.test_behaviour import FEATURES, usage
from usage.metrics import METRICS
from usage.rollups import usage_rollup
from usage.services import behaviour_refresh

pytestmark = pytest.mark.django_db


@pytest.fixture
def evaluated(request: pytest.FixtureRequest) -> World:
    """ws_ann used the product on five of the last seven days with two features; ws_bo never did."""
    people: World = request.getfixturevalue("world")
    now = timezone.now()
    for day in range(5):
        usage("ws_ann", now - timedelta(days=day, minutes=5), FEATURES[day % 2])
    with override_settings(BEHAVIOUR_PROFILES=False):
        usage_rollup()
    behaviour_refresh(workspace_keys=["ws_ann", "ws_bo", "ws_nobody"])
    return people


def token_client(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def test_the_workspace_carries_its_stage_and_cohorts(evaluated: World):
    body = token_client(evaluated.admin).get("/api/workspaces/ws_ann/").json()
    assert body["stage"] == "activated"
    assert body["cohorts"] == ["feature_shallow_frequent"]
    listed = token_client(evaluated.admin).get("/api/workspaces/").json()["results"]
    assert {row["workspace_id"]: row["stage"] for row in listed}["ws_bo"] == "onboarding"


def test_the_profile_is_the_contract_shape(evaluated: World):
    response = token_client(evaluated.ann).get("/api/workspaces/ws_ann/profile/")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"workspace_id", "metrics", "cohorts", "stage", "evaluated_at"}
    assert body["workspace_id"] == "ws_ann"
    assert set(body["metrics"]) == set(METRICS)
    assert body["metrics"]["active_days_7d"] == 5 and body["metrics"]["features_30d"] == 2
    assert [entry["key"] for entry in body["cohorts"]] == ["feature_shallow_frequent"]
    assert body["cohorts"][0]["entered_at"].endswith("Z")
    assert body["stage"]["key"] == "activated" and body["stage"]["since"].endswith("Z")


def test_a_profile_outside_the_readers_scope_is_404(evaluated: World):
    assert token_client(evaluated.bo).get("/api/workspaces/ws_ann/profile/").status_code == 404
    assert token_client(evaluated.stranger).get("/api/workspaces/ws_ann/profile/").status_code == 403
    assert token_client(evaluated.admin).get("/api/workspaces/ws_gone/profile/").status_code == 404


def test_cohorts_count_their_members_within_the_readers_scope(evaluated: World):
    everyone = {row["key"]: row for row in token_client(evaluated.admin).get("/api/cohorts/").json()}
    assert set(everyone) == {
        "feature_shallow_frequent",
        "plan_limited_power_user",
        "at_risk",
        "multi_product_candidate",
        "api_partnership_prospect",
    }
    assert everyone["feature_shallow_frequent"] == {
        "key": "feature_shallow_frequent",
        "name": "Feature-shallow, frequent",
        "members": 1,
    }
    bos = {row["key"]: row["members"] for row in token_client(evaluated.bo).get("/api/cohorts/").json()}
    assert bos["feature_shallow_frequent"] == 0, "ws_ann is not bo's"
