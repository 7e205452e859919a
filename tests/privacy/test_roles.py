"""The three roles on the admin pages: what Lifecycle admins, Auditors and Reps may see and do
(privacy/roles.py), data requests in the admin, and reps never seeing a raw payload."""

from __future__ import annotations

import io
import json

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Group, Permission, User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from alerts.models import Alert, Rep
from events.models import Event
from privacy.models import DataRequest, Tombstone
from privacy.roles import ADMINS, AUDITORS, REPS
from salesforce.models import OutboxItem
from tests.factories import EventFactory, LeadFactory, WorkspaceFactory
from workspaces.models import ReviewItem

pytestmark = pytest.mark.django_db

PAYLOAD_SECRET = "payload-only-7d1e"


@pytest.fixture
def people(django_user_model) -> dict[str, Client]:
    """A logged-in client per role; the groups are the ones migrate made (re-made after a flush)."""
    call_command("privacy", "groups", stdout=io.StringIO())
    users = {
        "admin": ({"is_staff": True}, ADMINS),
        "auditor": ({"is_staff": True}, AUDITORS),
        "rep": ({}, REPS),
        "staff_rep": ({"is_staff": True}, REPS),  # staff by mistake: the group still grants nothing
    }
    clients = {}
    for name, (flags, group) in users.items():
        user = User.objects.create(username=name, **flags)  # no password: force_login, and no slow hashing
        user.groups.add(Group.objects.get(name=group))
        clients[name] = Client()
        clients[name].force_login(user)
    return clients


@pytest.fixture
def records() -> dict[str, object]:
    workspace = WorkspaceFactory(workspace_id="ws_1")
    event = EventFactory(workspace_key="ws_1", status=Event.Status.ERROR)
    Event.objects.filter(pk=event.pk).update(payload={"data": {"workspace_id": "ws_1", "note": PAYLOAD_SECRET}})
    rep_user = User.objects.create(username="bo")
    return {
        "events_event": event,
        "workspaces_workspace": workspace,
        "workspaces_lead": LeadFactory(),
        "workspaces_reviewitem": ReviewItem.objects.create(kind="no_account_match", reason="x", workspace=workspace),
        "sync_outboxitem": OutboxItem.objects.create(object_type="Lead", external_id="lead_1", payload={}),
        "alerts_alert": Alert.objects.create(rule="needs_review", dedupe_key="k", title="t", reason="r"),
        "alerts_rep": Rep.objects.create(user=rep_user),
        "privacy_tombstone": Tombstone.objects.create(email_hash="a" * 64),
        "privacy_datarequest": DataRequest.objects.create(
            kind="export", status="done", email_hash="b" * 64, requested_by_name="os:root"
        ),
    }


ADMIN_PAGES = [
    "events_event",
    "workspaces_workspace",
    "workspaces_lead",
    "workspaces_reviewitem",
    "sync_outboxitem",
    "alerts_alert",
    "alerts_rep",
    "privacy_tombstone",
    "privacy_datarequest",
    "auditlog_logentry",
]


@pytest.mark.parametrize(("person", "status"), [("admin", 200), ("auditor", 200), ("staff_rep", 403), ("rep", 302)])
def test_changelists(people, records, person, status):
    for model in ADMIN_PAGES:
        response = people[person].get(reverse(f"admin:{model}_changelist"))
        assert response.status_code == status, model
        if status == 302:
            assert reverse("admin:login") in response["Location"]


# (page, person) → expected status; "add"/"delete" pages of models each role may or may not touch.
MATRIX = [
    ("add", "alerts_rep", {"admin": 200, "auditor": 403, "staff_rep": 403}),
    ("add", "privacy_datarequest", {"admin": 200, "auditor": 403, "staff_rep": 403}),
    ("add", "workspaces_lead", {"admin": 403, "auditor": 403, "staff_rep": 403}),
    ("delete", "alerts_rep", {"admin": 200, "auditor": 403, "staff_rep": 403}),
    ("delete", "events_event", {"admin": 403, "auditor": 403, "staff_rep": 403}),
    ("delete", "privacy_datarequest", {"admin": 403, "auditor": 403, "staff_rep": 403}),
    ("delete", "workspaces_workspace", {"admin": 403, "auditor": 403, "staff_rep": 403}),
]


@pytest.mark.parametrize(("page", "model", "expected"), MATRIX)
def test_add_and_delete_pages(people, records, page, model, expected):
    for person, status in expected.items():
        args = [] if page == "add" else [records[model].pk]
        response = people[person].get(reverse(f"admin:{model}_{page}", args=args))
        assert response.status_code == status, (person, page, model)


def test_users_and_groups_are_for_superusers_only(people):
    for person in ("admin", "auditor"):
        assert people[person].get(reverse("admin:auth_user_changelist")).status_code == 403
        assert people[person].get(reverse("admin:auth_group_changelist")).status_code == 403


def test_auditors_read_but_change_nothing(people, records):
    event = records["events_event"]
    url = reverse("admin:events_event_change", args=[event.pk])
    page = people["auditor"].get(url)
    assert page.status_code == 200 and PAYLOAD_SECRET in page.content.decode()
    assert 'name="_save"' not in page.content.decode()
    response = people["auditor"].post(url, {"notes": "auditor was here"})
    assert response.status_code == 403
    actions = people["auditor"].get(reverse("admin:events_event_changelist")).content.decode()
    assert "retry_events" not in actions
    event.refresh_from_db()
    assert event.notes == ""


def test_admins_act_through_the_admin(people, records):
    event = records["events_event"]
    url = reverse("admin:events_event_change", args=[event.pk])
    assert people["admin"].post(url, {"notes": "checked"}).status_code == 302
    event.refresh_from_db()
    assert event.notes == "checked"


def test_reps_never_see_raw_payloads(people, records):
    for person in ("rep", "staff_rep"):
        url = reverse("admin:events_event_change", args=[records["events_event"].pk])
        response = people[person].get(url)
        assert response.status_code in (302, 403)
        assert PAYLOAD_SECRET not in response.content.decode()
        api = people[person].get("/api/events/")
        assert PAYLOAD_SECRET not in api.content.decode()
        assert all("payload" not in row for row in api.json().get("results", []))


def test_group_permissions_are_exactly_the_table():
    call_command("privacy", "groups", stdout=io.StringIO())
    perms = {
        name: set(Group.objects.get(name=name).permissions.values_list("content_type__app_label", "codename"))
        for name in (ADMINS, AUDITORS, REPS)
    }
    assert perms[REPS] == set()
    assert perms[AUDITORS] and all(codename.startswith("view_") for _, codename in perms[AUDITORS])
    assert ("auditlog", "view_logentry") in perms[AUDITORS]
    assert ("events", "change_event") in perms[ADMINS]
    for forbidden in ("delete_event", "delete_logentry", "change_logentry", "delete_datarequest", "add_user"):
        assert not any(codename == forbidden for _, codename in perms[ADMINS] | perms[AUDITORS])


def test_sync_removes_permissions_granted_by_hand():
    auditors = Group.objects.get_or_create(name=AUDITORS)[0]
    auditors.permissions.add(Permission.objects.get(codename="delete_event"))
    out = io.StringIO()
    call_command("privacy", "groups", stdout=out)
    assert not auditors.permissions.filter(codename="delete_event").exists()
    assert "Auditors:" in out.getvalue()


# --- data requests in the admin ------------------------------------------------------------------------


def test_admin_adds_and_carries_out_an_erasure(people):
    lead = LeadFactory(email="zoe@acme.io", first_name="Zoe")
    client = people["admin"]
    response = client.post(
        reverse("admin:privacy_datarequest_add"), {"kind": "erase", "email": " Zoe@Acme.io ", "note": "DSR-9"}
    )
    assert response.status_code == 302
    request = DataRequest.objects.get(kind="erase")
    assert (request.status, request.email, request.requested_by.username) == ("pending", "zoe@acme.io", "admin")
    response = client.post(
        reverse("admin:privacy_datarequest_changelist"),
        {"action": "carry_out", ACTION_CHECKBOX_NAME: [request.pk]},
        follow=True,
    )
    assert "done" in response.content.decode()
    request.refresh_from_db()
    lead.refresh_from_db()
    assert (request.status, request.email) == ("done", "")
    assert lead.email.startswith("erased-") and lead.first_name == ""
    assert Tombstone.objects.filter(email_hash=request.email_hash).exists()


def test_admin_export_downloads_json(people):
    LeadFactory(email="zoe@acme.io")
    client = people["admin"]
    client.post(reverse("admin:privacy_datarequest_add"), {"kind": "export", "email": "zoe@acme.io"})
    request = DataRequest.objects.get(kind="export", status="pending")
    response = client.post(
        reverse("admin:privacy_datarequest_changelist"), {"action": "carry_out", ACTION_CHECKBOX_NAME: [request.pk]}
    )
    assert response["Content-Disposition"] == f'attachment; filename="data-export-{request.pk}.json"'
    document = json.loads(response.content)
    assert [row["fields"]["email"] for row in document["leads"]] == ["zoe@acme.io"]


def test_auditors_cannot_carry_out_requests(people, records):
    request = DataRequest.objects.create(kind="erase", email="zoe@acme.io", email_hash="c" * 64, requested_by_name="x")
    response = people["auditor"].post(
        reverse("admin:privacy_datarequest_changelist"), {"action": "carry_out", ACTION_CHECKBOX_NAME: [request.pk]}
    )
    request.refresh_from_db()
    assert request.status == "pending"
    assert response.status_code in (200, 302, 403)
