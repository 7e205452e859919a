"""GET /api/firings/ (CONTRACT §6): the exact shape, the filters, each action's delivery status, the
scope by role (a rep: their workspaces' firings), the query count and the published schema."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from messaging.models import Dispatch
from tests.conftest import api_service_user
from tests.factories import WorkspaceFactory
from tests.reps.conftest import world  # noqa: F401 - the rep pages' people and workspaces
from tests.test_api import RFC3339_UTC, assert_matches_schema, openapi  # noqa: F401 - the schema fixture
from tests.triggers.conftest import event, make_trigger
from triggers.models import Firing, Trigger
from triggers.services import ENABLED_CACHE_KEY, triggers_evaluate
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ACTIONS = [{"channel": "email", "template": "welcome"}, {"channel": "slack", "template": "escalation"}]


@pytest.fixture(autouse=True)
def no_quiet_hours_or_caps(settings) -> None:
    settings.TRIGGERS_QUIET_HOURS = None
    settings.TRIGGERS_WORKSPACE_CAP = None
    settings.TRIGGERS_PERSON_CAP = None
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.delete(ENABLED_CACHE_KEY)


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def api() -> APIClient:
    return token_client(api_service_user("api-reader"))


def fire(workspace: str, trigger: str = "welcome") -> Firing:
    """One trial.started of the workspace (made when new) decided by this trigger (made when new) alone."""
    if not Workspace.objects.filter(workspace_id=workspace).exists():
        WorkspaceFactory(workspace_id=workspace, email=f"owner@{workspace}.example")
    rule = Trigger.objects.filter(key=trigger).first() or make_trigger(
        trigger, {"kind": "event", "event": {"type": "trial.started"}}, actions=ACTIONS
    )
    started = event(workspace, "trial.started", T0)
    [firing] = triggers_evaluate(workspace_key=workspace, new_events=[started], now=T0, triggers=[rule])
    return firing


def test_a_firing_is_the_contract_shape_with_its_deliveries_statuses(api, openapi):  # noqa: F811
    firing = fire("ws_a")
    Dispatch.objects.filter(key=f"firing-{firing.pk}-email-0").update(status="sent")

    body = api.get("/api/firings/").json()

    assert body["count"] == 1
    [row] = body["results"]
    assert row == {
        "id": str(firing.pk), "trigger": "welcome", "trigger_version": 1, "workspace_id": "ws_a",
        "fired_at": "2026-11-23T12:00:00Z", "arm": None,
        "actions": [{"channel": "email", "status": "sent"}, {"channel": "slack", "status": "pending"}],
        "explanation": firing.explanation,
    }  # fmt: skip
    assert row["explanation"]["kind"] == "event" and RFC3339_UTC.match(row["fired_at"])
    assert_matches_schema(openapi, "/api/firings/", 200, body)


def test_a_suppressed_firing_has_no_fired_at_and_says_why(api, settings):
    settings.TRIGGERS_WORKSPACE_CAP = (0, 86400)
    fire("ws_a")

    [row] = api.get("/api/firings/").json()["results"]

    assert row["fired_at"] is None
    assert row["actions"] == [
        {"channel": "email", "status": "suppressed"},
        {"channel": "slack", "status": "suppressed"},
    ]
    assert row["explanation"]["why_not"] == "The workspace cap across triggers"


def test_filters_by_workspace_and_trigger(api):
    fire("ws_a")
    fire("ws_b")
    fire("ws_a", "hello")

    def listed(query: str) -> list[tuple[str, str]]:
        return sorted((r["workspace_id"], r["trigger"]) for r in api.get(f"/api/firings/{query}").json()["results"])

    assert listed("?workspace_id=ws_a") == [("ws_a", "hello"), ("ws_a", "welcome")]
    assert listed("?trigger=welcome") == [("ws_a", "welcome"), ("ws_b", "welcome")]
    assert listed("?workspace_id=ws_a&trigger=hello") == [("ws_a", "hello")]
    assert listed("?workspace_id=nope") == []
    bad = api.get("/api/firings/?trigger=not a key")
    assert (bad.status_code, list(bad.json()["fields"])) == (400, ["trigger"])


def test_a_rep_reads_only_their_workspaces_firings_and_a_stranger_none(world):  # noqa: F811
    for workspace in ("ws_ann", "ws_bo", "ws_nobody"):
        fire(workspace)

    def workspaces(user) -> set[str]:
        response = token_client(user).get("/api/firings/")
        assert response.status_code == 200, response.content
        return {row["workspace_id"] for row in response.json()["results"]}

    assert workspaces(world.ann) == {"ws_ann"}
    assert workspaces(world.bo) == {"ws_bo"}
    assert workspaces(world.admin) == {"ws_ann", "ws_bo", "ws_nobody"}
    assert token_client(world.stranger).get("/api/firings/").status_code == 403
    assert APIClient().get("/api/firings/").status_code == 401


def test_the_query_count_does_not_grow_with_the_page(api, django_assert_max_num_queries):
    for i in range(12):
        fire(f"ws_{i}")
    with django_assert_max_num_queries(6):
        assert len(api.get("/api/firings/?page_size=50").json()["results"]) == 12


def test_the_schema_lists_the_path_and_its_filters(api):
    operation = api.get("/api/schema/?format=json").json()["paths"]["/api/firings/"]["get"]
    assert {"workspace_id", "trigger"} <= {parameter["name"] for parameter in operation["parameters"]}
