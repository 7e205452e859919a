"""Read API (CONTRACT §6): auth, exact shapes, filters, errors, query counts and the OpenAPI schema."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import jsonschema
import pytest
import time_machine
from drf_spectacular.generators import SchemaGenerator
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from api.workspaces import UTCDateTimeField, WorkspaceSerializer
from events.models import Event
from tests.conftest import api_service_user
from tests.factories import AccountFactory, ContactFactory, EventFactory, LeadFactory, WorkspaceFactory
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.fixture
def reader():
    return api_service_user("api-reader")


@pytest.fixture
def api(reader) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=reader).key}")
    return client


@pytest.fixture
def linked_workspace() -> Workspace:
    account = AccountFactory(name="Acme", domain="acme.io")
    contact = ContactFactory(email="dana@acme.io", account=account)
    lead = LeadFactory(email="dana@acme.io", converted_at=NOW, converted_account=account, converted_contact=contact)
    return WorkspaceFactory(
        workspace_id="ws_8812",
        name="Acme team",
        status=Workspace.Status.PAID,
        email="dana@acme.io",
        plan="team",
        mrr=Decimal("297"),
        trial_expires_at=datetime(2026, 12, 1, 9, 30, tzinfo=UTC),
        converted_at=datetime(2026, 11, 20, 14, 3, 11, tzinfo=UTC),
        needs_review=True,
        review_reasons=["Conflicting owner email."],
        lead=lead,
        account=account,
        contact=contact,
    )


# --- Authentication and methods -------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/api/workspaces/", "/api/workspaces/ws_1/", "/api/events/", "/api/schema/"])
def test_no_token_is_401_with_a_challenge(client, url):
    response = client.get(url)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Token")


def test_unknown_token_is_401(client):
    response = client.get("/api/workspaces/", headers={"Authorization": "Token not-a-real-key"})

    assert response.status_code == 401
    assert response.json()["error"] == "authentication_failed"


def test_inactive_users_token_is_401(api, reader):
    reader.is_active = False
    reader.save()

    assert api.get("/api/workspaces/").status_code == 401


def test_token_reads(api):
    response = api.get("/api/workspaces/")

    assert response.status_code == 200
    assert response.json() == {"count": 0, "next": None, "previous": None, "results": []}


def test_logged_in_user_reads_with_the_session(client, reader):
    client.force_login(reader)

    assert client.get("/api/workspaces/").status_code == 200


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
@pytest.mark.parametrize("url", ["/api/workspaces/", "/api/workspaces/ws_8812/", "/api/events/"])
def test_writes_are_405(api, linked_workspace, method, url):
    response = getattr(api, method)(url, data={}, format="json")

    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    assert Workspace.objects.get().name == "Acme team"


# --- Workspace detail ------------------------------------------------------------------------------


def test_workspace_detail_is_the_contract_shape(api, linked_workspace):
    lead, account, contact = linked_workspace.lead, linked_workspace.account, linked_workspace.contact

    response = api.get("/api/workspaces/ws_8812/")

    assert response.status_code == 200
    assert response.json() == {
        "workspace_id": "ws_8812",
        "name": "Acme team",
        "status": "paid",
        "email": "dana@acme.io",
        "plan": "team",
        "mrr": "297.00",
        "trial_expires_at": "2026-12-01T09:30:00Z",
        "converted_at": "2026-11-20T14:03:11Z",
        "churned_at": None,
        "churn_reason": "",
        "needs_review": True,
        "review_reasons": ["Conflicting owner email."],
        "lead": {"id": str(lead.pk), "email": "dana@acme.io", "converted": True},
        "account": {"id": str(account.pk), "name": "Acme", "domain": "acme.io"},
        "contact": {"id": str(contact.pk), "email": "dana@acme.io"},
        "salesforce": None,
        "stage": None,
        "cohorts": [],
    }


def test_unlinked_workspace_has_nulls(api):
    WorkspaceFactory(workspace_id="ws_lonely", trial_expires_at=None)

    body = api.get("/api/workspaces/ws_lonely/").json()

    assert body["lead"] is None
    assert body["account"] is None
    assert body["contact"] is None
    assert body["salesforce"] is None
    assert body["mrr"] is None
    assert body["trial_expires_at"] is None
    assert body["review_reasons"] == []


def test_unconverted_lead_says_so(api):
    WorkspaceFactory(workspace_id="ws_lead", lead=LeadFactory(email="sam@beta.io"))

    assert api.get("/api/workspaces/ws_lead/").json()["lead"]["converted"] is False


def test_unknown_workspace_is_404_json(api):
    response = api.get("/api/workspaces/ws_missing/")

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_workspace_is_found_by_workspace_id_not_pk(api, linked_workspace):
    assert api.get(f"/api/workspaces/{linked_workspace.pk}/").status_code == 404


def test_times_are_utc_whatever_the_offset():
    berlin = datetime(2026, 11, 20, 15, 3, 11, tzinfo=UTC).astimezone(ZoneInfo("Europe/Berlin"))

    assert UTCDateTimeField().to_representation(berlin) == "2026-11-20T15:03:11Z"


def test_salesforce_link_appears_once_the_workspace_has_an_id(linked_workspace):
    linked_workspace.salesforce_id = "a0B5e00000XyZ12"
    linked_workspace.salesforce_state = "synced"
    linked_workspace.salesforce_synced_at = datetime(2026, 11, 20, 14, 3, 15, tzinfo=UTC)

    assert WorkspaceSerializer(linked_workspace).data["salesforce"] == {
        "id": "a0B5e00000XyZ12",
        "state": "synced",
        "synced_at": "2026-11-20T14:03:15Z",
    }


# --- Workspace list and filters -----------------------------------------------------------------


def listed_ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [w["workspace_id"] for w in response.json()["results"]]


def test_list_has_the_detail_shape(api, linked_workspace):
    body = api.get("/api/workspaces/").json()

    assert body["count"] == 1
    assert body["results"] == [api.get("/api/workspaces/ws_8812/").json()]


def test_filter_by_status(api):
    WorkspaceFactory(workspace_id="ws_t", status=Workspace.Status.TRIAL)
    WorkspaceFactory(workspace_id="ws_p", status=Workspace.Status.PAID)
    WorkspaceFactory(workspace_id="ws_c", status=Workspace.Status.CHURNED)

    assert listed_ids(api.get("/api/workspaces/?status=paid")) == ["ws_p"]
    assert listed_ids(api.get("/api/workspaces/?status=churned")) == ["ws_c"]


def test_filter_by_needs_review(api):
    WorkspaceFactory(workspace_id="ws_flagged", needs_review=True)
    WorkspaceFactory(workspace_id="ws_fine", needs_review=False)

    assert listed_ids(api.get("/api/workspaces/?needs_review=true")) == ["ws_flagged"]
    assert listed_ids(api.get("/api/workspaces/?needs_review=false")) == ["ws_fine"]


def test_empty_filter_values_mean_no_filter(api):
    WorkspaceFactory(workspace_id="ws_a")

    assert listed_ids(api.get("/api/workspaces/?status=&expiring_within_days=&needs_review=")) == ["ws_a"]


@time_machine.travel(NOW, tick=False)
def test_expiring_within_days_includes_both_ends(api):
    for workspace_id, expires in [
        ("ws_expired", NOW - timedelta(seconds=1)),
        ("ws_now", NOW),
        ("ws_last", NOW + timedelta(days=7)),
        ("ws_later", NOW + timedelta(days=7, seconds=1)),
    ]:
        WorkspaceFactory(workspace_id=workspace_id, trial_expires_at=expires)
    WorkspaceFactory(workspace_id="ws_paid", status=Workspace.Status.PAID, trial_expires_at=NOW)

    assert listed_ids(api.get("/api/workspaces/?expiring_within_days=7")) == ["ws_last", "ws_now"]
    assert listed_ids(api.get("/api/workspaces/?expiring_within_days=0")) == ["ws_now"]


@time_machine.travel(NOW, tick=False)
def test_filters_combine(api):
    WorkspaceFactory(workspace_id="ws_a", trial_expires_at=NOW + timedelta(days=1), needs_review=True)
    WorkspaceFactory(workspace_id="ws_b", trial_expires_at=NOW + timedelta(days=1), needs_review=False)

    response = api.get("/api/workspaces/?expiring_within_days=3&needs_review=true&status=trial")

    assert listed_ids(response) == ["ws_a"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=active", "status"),
        ("expiring_within_days=-1", "expiring_within_days"),
        ("expiring_within_days=3651", "expiring_within_days"),
        ("expiring_within_days=soon", "expiring_within_days"),
        ("needs_review=maybe", "needs_review"),
    ],
)
def test_bad_workspace_filter_is_400_naming_the_field(api, query, field):
    response = api.get(f"/api/workspaces/?{query}")

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_filter"
    assert list(body["fields"]) == [field]
    assert all(isinstance(message, str) for message in body["fields"][field])


def test_list_query_count_does_not_grow_with_rows(api, django_assert_max_num_queries):
    for n in range(20):
        account = AccountFactory()
        contact = ContactFactory(account=account)
        lead = LeadFactory(converted_at=NOW, converted_account=account, converted_contact=contact)
        WorkspaceFactory(workspace_id=f"ws_{n:02d}", lead=lead, account=account, contact=contact)

    # token lookup, the reader's groups (its role), page count, one joined select, the page's stages and cohorts
    with django_assert_max_num_queries(6):
        response = api.get("/api/workspaces/")

    assert len(response.json()["results"]) == 20
    assert all(w["contact"] is not None for w in response.json()["results"])


# --- Events -------------------------------------------------------------------------------------


def test_events_list_shape_and_no_payload(api):
    event = EventFactory(
        external_id="msg_2mK7",
        type="subscription.converted",
        occurred_at=datetime(2026, 11, 20, 14, 3, 11, tzinfo=UTC),
        received_at=datetime(2026, 11, 20, 14, 3, 12, 250000, tzinfo=UTC),
        workspace_key="ws_8812",
        payload={"data": {"email": "secret-owner@acme.io"}},
        status=Event.Status.COMPLETED,
        retry_count=1,
        notes="Applied.",
    )

    response = api.get("/api/events/")

    assert response.status_code == 200
    assert response.json()["results"] == [
        {
            "id": str(event.pk),
            "source": "provisioning",
            "type": "subscription.converted",
            "timestamp": "2026-11-20T14:03:11Z",
            "received_at": "2026-11-20T14:03:12.250000Z",
            "status": "completed",
            "retry_count": 1,
            "notes": "Applied.",
            "external_id": "msg_2mK7",
            "workspace_id": "ws_8812",
        }
    ]
    assert b"secret-owner" not in response.content


def test_events_newest_first(api):
    EventFactory(external_id="old", received_at=NOW - timedelta(hours=1))
    EventFactory(external_id="new", received_at=NOW)

    results = api.get("/api/events/").json()["results"]

    assert [e["external_id"] for e in results] == ["new", "old"]


def test_events_filter_by_workspace_and_status(api):
    EventFactory(external_id="a", workspace_key="ws_1", status=Event.Status.ERROR)
    EventFactory(external_id="b", workspace_key="ws_1", status=Event.Status.COMPLETED)
    EventFactory(external_id="c", workspace_key="ws_2", status=Event.Status.ERROR)

    def ids(query: str) -> set[str]:
        return {e["external_id"] for e in api.get(f"/api/events/?{query}").json()["results"]}

    assert ids("workspace_id=ws_1") == {"a", "b"}
    assert ids("status=error") == {"a", "c"}
    assert ids("workspace_id=ws_1&status=error") == {"a"}


@pytest.mark.parametrize(("query", "field"), [("status=done", "status"), ("workspace_id=" + "w" * 65, "workspace_id")])
def test_bad_event_filter_is_400_naming_the_field(api, query, field):
    response = api.get(f"/api/events/?{query}")

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_filter"
    assert list(response.json()["fields"]) == [field]


# --- Schema and docs ----------------------------------------------------------------------------


def test_schema_endpoint_lists_the_paths(api):
    response = api.get("/api/schema/?format=json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"/api/workspaces/", "/api/workspaces/{workspace_id}/", "/api/events/"} <= set(paths)


def test_docs_page_for_a_logged_in_user(client, reader):
    client.force_login(reader)

    response = client.get("/api/docs/")

    assert response.status_code == 200
    assert b'<script src="/api/docs/?script="></script>' in response.content  # no inline script (CSP)
    assert b"/api/schema/" in client.get("/api/docs/?script=").content


def test_docs_page_sends_strangers_to_the_login(client):
    response = client.get("/api/docs/")

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")  # reps read the docs too


def as_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema → JSON Schema: `nullable` becomes a null alternative; objects are closed so an
    undocumented field fails too."""
    if isinstance(node, list):
        return [as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: as_json_schema(value) for key, value in node.items()}
    if "properties" in node:
        node.setdefault("additionalProperties", False)
    if node.pop("nullable", False):
        return {"anyOf": [{"type": "null"}, node]}
    return node


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    return SchemaGenerator().get_schema(request=None, public=True)


def assert_matches_schema(openapi: dict[str, Any], path: str, status: int, body: Any) -> None:
    response_schema = openapi["paths"][path]["get"]["responses"][str(status)]["content"]["application/json"]
    schema = {
        **as_json_schema(response_schema["schema"]),
        "components": as_json_schema(copy.deepcopy(openapi["components"])),
    }
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(body)


def test_responses_match_the_published_schema(api, linked_workspace, openapi):
    WorkspaceFactory(workspace_id="ws_unlinked", trial_expires_at=None)
    EventFactory(occurred_at=None, payload="not json")

    detail = api.get("/api/workspaces/ws_8812/").json()
    assert_matches_schema(openapi, "/api/workspaces/{workspace_id}/", 200, detail)
    assert_matches_schema(
        openapi, "/api/workspaces/{workspace_id}/", 200, api.get("/api/workspaces/ws_unlinked/").json()
    )
    assert_matches_schema(openapi, "/api/workspaces/", 200, api.get("/api/workspaces/").json())
    assert_matches_schema(openapi, "/api/events/", 200, api.get("/api/events/").json())
    assert_matches_schema(openapi, "/api/workspaces/", 400, api.get("/api/workspaces/?status=x").json())
    assert_matches_schema(openapi, "/api/workspaces/{workspace_id}/", 404, api.get("/api/workspaces/nope/").json())
    assert RFC3339_UTC.match(detail["converted_at"])


def test_schema_catches_a_shape_change(openapi, linked_workspace):
    body = WorkspaceSerializer(linked_workspace).data | {"mrr": 297}

    with pytest.raises(jsonschema.ValidationError):
        assert_matches_schema(openapi, "/api/workspaces/{workspace_id}/", 200, body)
