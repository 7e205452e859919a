"""The read API by role (CONTRACT §6): a token sees exactly what its user's rep pages show; users with no
role get 403; admins, auditors and API service accounts see everything. Every endpoint × role, list and
detail; and `page_size`."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from alerts.roles import API_SERVICES_GROUP, AUDITORS_GROUP
from tests.factories import EventFactory, WorkspaceFactory
from tests.reps.conftest import World, make_alert

pytestmark = pytest.mark.django_db

ALL_WORKSPACES = {"ws_ann", "ws_bo", "ws_nobody"}
LIST_URLS = ["/api/workspaces/", "/api/events/", "/api/alerts/", "/api/schema/"]


@pytest.fixture(autouse=True)
def fast_hashing(settings) -> None:
    """Before `world` makes its users: their passwords are never typed here."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def people(world: World) -> dict[str, User]:
    """Every role next to the rep pages' ann (rep by her Rep row), bo (rep by group), lena (admin), sam (none)."""
    now = timezone.now()
    EventFactory(workspace_key="ws_bo", type="subscription.converted", occurred_at=now - timedelta(days=2))
    EventFactory(workspace_key="ws_nobody", type="workspace.churned", occurred_at=now - timedelta(days=1))
    EventFactory(workspace_key="ws_ann", type="usage.recorded", occurred_at=now)  # the page shows a count only
    return {
        "ann": world.ann,
        "bo": world.bo,
        "admin": world.admin,
        "stranger": world.stranger,
        "staff_only": User.objects.create(username="stan", is_staff=True),
        "superuser": User.objects.create(username="root", is_staff=True, is_superuser=True),
        "auditor": in_group(User.objects.create(username="audrey", is_staff=True), AUDITORS_GROUP),
        "service": in_group(User.objects.create(username="reporting"), API_SERVICES_GROUP),
    }


def in_group(user: User, name: str) -> User:
    user.groups.add(Group.objects.get_or_create(name=name)[0])
    return user


def token_client(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def workspace_ids(client: APIClient) -> set[str]:
    response = client.get("/api/workspaces/", {"page_size": 200})
    assert response.status_code == 200, response.content
    return {row["workspace_id"] for row in response.json()["results"]}


def event_workspaces(client: APIClient) -> list[tuple[str, str]]:
    rows = client.get("/api/events/", {"page_size": 200}).json()["results"]
    return sorted((row["workspace_id"], row["type"]) for row in rows)


def alert_ids(client: APIClient) -> set[int]:
    return {int(row["id"]) for row in client.get("/api/alerts/", {"page_size": 200}).json()["results"]}


# --- who is refused --------------------------------------------------------------------------------


@pytest.mark.parametrize("person", ["stranger", "staff_only"])
def test_users_without_a_role_are_refused_everywhere(people, person):
    # given: a user who is neither rep, admin, auditor nor service account (staff alone is no role)
    client = token_client(people[person])

    for url in [*LIST_URLS, "/api/workspaces/ws_ann/", "/api/workspaces/nope/"]:
        # when
        response = client.get(url)

        # then: 403 naming why, and nothing of the records
        assert response.status_code == 403, url
        assert b"no role that may read the API" in response.content, url
        assert b"ws_ann" not in response.content, url


def test_no_token_is_401(people):
    for url in [*LIST_URLS, "/api/workspaces/ws_ann/"]:
        assert APIClient().get(url).status_code == 401, url


def test_a_session_without_a_role_is_refused_too(people):
    client = Client()
    client.force_login(people["stranger"])

    assert client.get("/api/alerts/").status_code == 403


# --- reps: exactly their rep pages -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("person", "visible"),
    [("ann", {"ws_ann"}), ("bo", {"ws_bo"})],
)
def test_a_rep_lists_and_reads_only_their_workspaces(people, person, visible):
    client = token_client(people[person])

    assert workspace_ids(client) == visible
    for workspace_id in ALL_WORKSPACES:
        expected = 200 if workspace_id in visible else 404  # outside the scope: as if it did not exist
        response = client.get(f"/api/workspaces/{workspace_id}/")
        assert response.status_code == expected, workspace_id
        if expected == 404:
            assert response.json()["error"] == "not_found"


@pytest.mark.parametrize("person", ["ann", "bo"])
def test_a_reps_token_sees_what_their_rep_pages_show(people, world, person):
    # given: the rep's pages, by session
    user = people[person]
    pages = Client()
    pages.force_login(user)
    listed = {w.workspace_id for w in pages.get("/reps/workspaces/").context["workspaces"]}
    timelines = {
        entry.event_pk
        for workspace_id in listed
        for entry in pages.get(f"/reps/workspaces/{workspace_id}/").context["timeline"]
    }
    inbox = {a.pk for status in ("open", "acknowledged", "snoozed", "resolved")
             for a in pages.get("/reps/alerts/", {"status": status}).context["alerts"]}  # fmt: skip

    # when: the same user reads the API by token
    client = token_client(user)
    events = {int(row["id"]) for row in client.get("/api/events/", {"page_size": 200}).json()["results"]}

    # then: the same workspaces, the timeline events of those (no usage one by one), the same alerts
    assert workspace_ids(client) == listed
    assert events == timelines
    assert alert_ids(client) == inbox


def test_a_rep_cannot_filter_their_way_to_another_workspace(people, world):
    client = token_client(people["ann"])

    assert client.get("/api/events/", {"workspace_id": "ws_bo"}).json()["results"] == []
    assert client.get("/api/alerts/", {"workspace_id": "ws_bo"}).json()["results"] == []
    assert client.get("/api/workspaces/", {"status": "paid"}).json()["results"] == []


def test_a_rep_sees_a_workspace_once_an_alert_is_routed_to_them(people, world):
    # given: a workspace bo had no alert on
    client = token_client(people["bo"])
    workspace = WorkspaceFactory(workspace_id="ws_new")
    assert client.get("/api/workspaces/ws_new/").status_code == 404

    # when: an alert on it is routed to him (the rep pages' rule)
    make_alert(workspace=workspace, recipient=people["bo"])

    # then
    assert client.get("/api/workspaces/ws_new/").status_code == 200


# --- admins, auditors, service accounts: everything ------------------------------------------------


@pytest.mark.parametrize("person", ["admin", "superuser", "auditor", "service"])
def test_admins_auditors_and_service_accounts_see_everything(people, world, person):
    client = token_client(people[person])

    assert workspace_ids(client) == ALL_WORKSPACES
    for workspace_id in ALL_WORKSPACES:
        assert client.get(f"/api/workspaces/{workspace_id}/").status_code == 200
    assert {workspace for workspace, _ in event_workspaces(client)} == ALL_WORKSPACES
    assert ("ws_ann", "usage.recorded") in event_workspaces(client)
    assert alert_ids(client) == {world.alert_ann.pk, world.alert_bo.pk, world.alert_admins.pk}
    assert client.get("/api/schema/").status_code == 200


def test_a_service_group_does_not_make_a_staff_user_a_service_account(people):
    # Staff have a second factor to pass; a token cannot, so staff are never service accounts.
    in_group(people["staff_only"], API_SERVICES_GROUP)

    assert token_client(people["staff_only"]).get("/api/workspaces/").status_code == 403


def test_an_inactive_rep_row_alone_gives_no_access(people, world):
    world.ann.rep.active = False
    world.ann.rep.save()

    assert token_client(people["ann"]).get("/api/alerts/").status_code == 403


# --- page_size ---------------------------------------------------------------------------------------


def test_page_size_is_honoured_and_carried_into_next(people):
    client = token_client(people["service"])

    first = client.get("/api/workspaces/", {"page_size": 2}).json()

    assert [row["workspace_id"] for row in first["results"]] == ["ws_ann", "ws_bo"]
    assert "page_size=2" in first["next"] and "page=2" in first["next"]
    second = client.get(first["next"]).json()
    assert [row["workspace_id"] for row in second["results"]] == ["ws_nobody"]
    assert second["next"] is None


@pytest.mark.parametrize("value", ["0", "201", "-1", "abc", "1.5", "²"])
@pytest.mark.parametrize("url", ["/api/workspaces/", "/api/events/", "/api/alerts/"])
def test_a_bad_page_size_names_the_field(people, url, value):
    response = token_client(people["service"]).get(url, {"page_size": value})

    assert response.status_code == 400
    assert response.json() == {"error": "invalid_filter", "fields": {"page_size": ["A whole number from 1 to 200."]}}


def test_the_schema_documents_page_size_and_the_403(people):
    schema = token_client(people["service"]).get("/api/schema/?format=json").json()

    for path in ("/api/workspaces/", "/api/events/", "/api/alerts/"):
        operation = schema["paths"][path]["get"]
        [page_size] = [p for p in operation["parameters"] if p["name"] == "page_size"]
        assert page_size["schema"]["minimum"] == 1 and page_size["schema"]["maximum"] == 200
        assert "403" in operation["responses"]
    assert "403" in schema["paths"]["/api/workspaces/{workspace_id}/"]["get"]["responses"]
