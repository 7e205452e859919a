"""The Django admin: every page renders, searches find, actions go through the services, and the
audit history names the admin who made a change."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from auditlog.models import LogEntry
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from events.models import Event
from workspaces.models import Account, Contact, Lead, ReviewItem, Workspace

pytestmark = pytest.mark.django_db


@dataclass
class Records:
    account: Account
    contact: Contact
    lead: Lead
    workspace: Workspace
    event: Event
    item: ReviewItem


@pytest.fixture(autouse=True)
def _plain_http(settings: object) -> None:
    """The suite runs with production settings; the test client speaks plain HTTP."""
    settings.SECURE_SSL_REDIRECT = False  # type: ignore[attr-defined]


@pytest.fixture
def records(admin_user: AbstractBaseUser) -> Records:
    account = Account.objects.create(name="Acme", domain="acme.com", owner=admin_user)
    contact = Contact.objects.create(email="ann@acme.com", first_name="Ann", account=account)
    lead = Lead.objects.create(email="ann@acme.com", first_name="Ann", company="Acme")
    workspace = Workspace.objects.create(
        workspace_id="ws_acme",
        name="Acme team",
        status=Workspace.Status.TRIAL,
        email="ann@acme.com",
        company="Acme",
        lead=lead,
        account=account,
        contact=contact,
    )
    event = Event.objects.create(
        source=Event.Source.PROVISIONING,
        external_id="msg_acme_1",
        type="workspace.created",
        workspace_key="ws_acme",
        payload={"workspace_id": "ws_acme", "name": "<script>alert(1)</script>"},
        status=Event.Status.ERROR,
    )
    item = ReviewItem.objects.create(
        kind=ReviewItem.Kind.NO_ACCOUNT_MATCH, reason="No account for domain acme.com", workspace=workspace
    )
    item.events.add(event)
    return Records(account, contact, lead, workspace, event, item)


def _event(external_id: str, status: str, workspace_key: str = "ws_other") -> Event:
    return Event.objects.create(
        source=Event.Source.STRIPE,
        external_id=external_id,
        type="customer.subscription.updated",
        workspace_key=workspace_key,
        payload={},
        status=status,
    )


def _messages(response: object) -> list[str]:
    return [str(m) for m in response.context["messages"]]  # type: ignore[attr-defined]


MODELS = ["events_event", "workspaces_workspace", "workspaces_lead", "workspaces_account",
          "workspaces_contact", "workspaces_reviewitem"]  # fmt: skip


def _object(records: Records, model: str) -> object:
    return {
        "events_event": records.event,
        "workspaces_workspace": records.workspace,
        "workspaces_lead": records.lead,
        "workspaces_account": records.account,
        "workspaces_contact": records.contact,
        "workspaces_reviewitem": records.item,
    }[model]


@pytest.mark.parametrize("model", MODELS)
def test_changelist_renders(admin_client: Client, records: Records, model: str) -> None:
    response = admin_client.get(reverse(f"admin:{model}_changelist"))

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 1
    assert "/auditlog/" in response.text  # the history link column


@pytest.mark.parametrize("model", MODELS)
def test_change_page_renders(admin_client: Client, records: Records, model: str) -> None:
    obj = _object(records, model)

    response = admin_client.get(reverse(f"admin:{model}_change", args=[obj.pk]))  # type: ignore[attr-defined]

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("model", "query", "found"),
    [
        ("events_event", "msg_acme_1", True),
        ("events_event", "ws_acme", True),
        ("events_event", "msg_nothing", False),
        ("workspaces_workspace", "ann@acme", True),
        ("workspaces_workspace", "ws_acme", True),
        ("workspaces_workspace", "globex", False),
        ("workspaces_lead", "ann@acme.com", True),
        ("workspaces_account", "acme.com", True),
        ("workspaces_contact", "ann@", True),
        ("workspaces_reviewitem", "ws_acme", True),
        ("workspaces_reviewitem", "domain acme", True),
        ("workspaces_reviewitem", "conflict", False),
    ],
)
def test_search(admin_client: Client, records: Records, model: str, query: str, found: bool) -> None:
    response = admin_client.get(reverse(f"admin:{model}_changelist"), {"q": query})

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == (1 if found else 0)


def test_event_page_shows_escaped_payload_and_workspace_link(admin_client: Client, records: Records) -> None:
    response = admin_client.get(reverse("admin:events_event_change", args=[records.event.pk]))

    assert "<pre" in response.text
    assert "&quot;name&quot;: &quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot;" in response.text
    assert "<script>alert(1)" not in response.text
    assert reverse("admin:workspaces_workspace_change", args=[records.workspace.pk]) in response.text


def test_event_cannot_be_added(admin_client: Client) -> None:
    response = admin_client.get(reverse("admin:events_event_add"))

    assert response.status_code == 403


def test_event_payload_is_read_only(admin_client: Client, records: Records) -> None:
    # given
    url = reverse("admin:events_event_change", args=[records.event.pk])

    # when
    response = admin_client.post(url, {"notes": "looked at it", "payload": '{"forged": true}', "status": "new"})

    # then
    assert response.status_code == 302
    records.event.refresh_from_db()
    assert records.event.notes == "looked at it"
    assert records.event.payload == {"workspace_id": "ws_acme", "name": "<script>alert(1)</script>"}
    assert records.event.status == Event.Status.ERROR


def test_retry_requeues_error_and_skips_rejected(admin_client: Client) -> None:
    # given
    failed = _event("evt_failed", Event.Status.ERROR)
    rejected = _event("evt_rejected", Event.Status.REJECTED)

    # when
    response = admin_client.post(
        reverse("admin:events_event_changelist"),
        {"action": "retry_events", ACTION_CHECKBOX_NAME: [failed.pk, rejected.pk]},
        follow=True,
    )

    # then
    failed.refresh_from_db()
    rejected.refresh_from_db()
    assert failed.status == Event.Status.NEW
    assert rejected.status == Event.Status.REJECTED
    assert "Re-queued 1 event(s); skipped 1" in _messages(response)[0]


def test_workspace_page_lists_recent_events(admin_client: Client, records: Records) -> None:
    _event("evt_elsewhere", Event.Status.COMPLETED, workspace_key="ws_other")

    response = admin_client.get(reverse("admin:workspaces_workspace_change", args=[records.workspace.pk]))

    assert reverse("admin:events_event_change", args=[records.event.pk]) in response.text
    assert "evt_elsewhere" not in response.text


def test_review_item_page_links_its_events(admin_client: Client, records: Records) -> None:
    response = admin_client.get(reverse("admin:workspaces_reviewitem_change", args=[records.item.pk]))

    assert reverse("admin:events_event_change", args=[records.event.pk]) in response.text


def _resolve(client: Client, item: ReviewItem, note: str) -> object:
    return client.post(
        reverse("admin:workspaces_reviewitem_changelist"),
        {"action": "resolve_items", ACTION_CHECKBOX_NAME: [item.pk], "note": note},
        follow=True,
    )


def test_resolve_with_note(admin_client: Client, admin_user: AbstractBaseUser, records: Records) -> None:
    response = _resolve(admin_client, records.item, "Matched by hand to Acme")

    records.item.refresh_from_db()
    assert records.item.status == ReviewItem.Status.RESOLVED
    assert records.item.resolution_note == "Matched by hand to Acme"
    assert records.item.resolved_by == admin_user
    assert "Resolved 1 review item(s)" in _messages(response)[0]


def test_resolve_without_note_changes_nothing(admin_client: Client, records: Records) -> None:
    response = _resolve(admin_client, records.item, "   ")

    records.item.refresh_from_db()
    assert records.item.status == ReviewItem.Status.OPEN
    assert records.item.resolved_at is None
    assert "Write a resolution note" in _messages(response)[0]


def test_workspace_history_names_the_admin(
    admin_client: Client, admin_user: AbstractBaseUser, records: Records
) -> None:
    # given
    ws = records.workspace
    form = {"name": "Acme HQ", "company": "Acme", "email": " Ann@Acme.com", "first_name": "", "last_name": "",
            "lead": ws.lead_id, "account": ws.account_id, "contact": ws.contact_id}  # fmt: skip

    # when
    saved = admin_client.post(reverse("admin:workspaces_workspace_change", args=[ws.pk]), form)
    history = admin_client.get(reverse("admin:workspaces_workspace_auditlog", args=[ws.pk]))

    # then
    assert saved.status_code == 302
    ws.refresh_from_db()
    assert (ws.name, ws.email) == ("Acme HQ", "ann@acme.com")
    entry = LogEntry.objects.get_for_object(ws).get(action=LogEntry.Action.UPDATE)
    assert entry.actor == admin_user
    assert history.status_code == 200
    assert f'<span class="entry-user">{admin_user}</span>' in history.text


def _changelist_queries(client: Client, model: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse(f"admin:{model}_changelist")).status_code == 200
    return len(queries)


@pytest.mark.parametrize("model", ["workspaces_workspace", "workspaces_reviewitem", "events_event"])
def test_changelist_queries_do_not_grow_with_rows(admin_client: Client, records: Records, model: str) -> None:
    # given
    before = _changelist_queries(admin_client, model)
    for n in range(3):
        account = Account.objects.create(name=f"Co {n}", domain=f"co{n}.example")
        lead = Lead.objects.create(email=f"x@co{n}.example")
        ws = Workspace.objects.create(workspace_id=f"ws_{n}", status="paid", lead=lead, account=account)
        ReviewItem.objects.create(kind=ReviewItem.Kind.CONFLICTING_DATA, reason="?", workspace=ws)
        _event(f"evt_{n}", Event.Status.COMPLETED, workspace_key=ws.workspace_id)

    # when
    after = _changelist_queries(admin_client, model)

    # then
    assert after == before


@pytest.mark.django_db
def test_alert_and_lock_admins_render(admin_client):
    from alerts.services import alert_raise
    from workspaces.models import WorkspaceLock

    alert, _ = alert_raise(
        rule="event_failed", dedupe_key="k", title="Events need review", reason="boom", context={"event_ids": ["m1"]}
    )
    WorkspaceLock.objects.create(workspace_key="ws_1")
    assert admin_client.get("/admin/alerts/alert/").status_code == 200
    page = admin_client.get(f"/admin/alerts/alert/{alert.pk}/change/")
    assert b"m1" in page.content
    assert admin_client.get("/admin/workspaces/workspacelock/").status_code == 200


def test_an_admin_hands_a_customer_over_to_another_rep(
    admin_client: Client, admin_user: AbstractBaseUser, records: Records, django_user_model
) -> None:
    ws = records.workspace
    bo = django_user_model.objects.create_user("bo")
    form = {"name": ws.name, "company": ws.company, "email": ws.email, "first_name": "", "last_name": "",
            "lead": ws.lead_id, "account": ws.account_id, "contact": ws.contact_id, "owner": bo.pk}  # fmt: skip

    saved = admin_client.post(reverse("admin:workspaces_workspace_change", args=[ws.pk]), form)

    assert saved.status_code == 302
    ws.refresh_from_db()
    assert ws.owner == bo and ws.owner_since is not None
    assert ws.owner_why == f"Assigned by {admin_user.get_username()} in the admin"


def test_admin_index_lists_the_business_records_first_and_every_model(admin_client: Client) -> None:
    from django.contrib import admin

    response = admin_client.get(reverse("admin:index"))

    apps = response.context["app_list"]
    labels = [app["app_label"] for app in apps]
    assert labels[:5] == ["events", "workspaces", "sync", "alerts", "usage"]
    # the plumbing after the records, never before them
    assert labels.index("axes") > labels.index("privacy") and labels.index("django_q") > labels.index("failures")
    first = {app["app_label"]: [model["object_name"] for model in app["models"]] for app in apps}
    assert first["events"][0] == "Event" and first["workspaces"][0] == "Workspace"
    assert first["alerts"][:2] == ["Alert", "Delivery"]
    # nothing hidden: every registered model is listed exactly once
    listed = [(app["app_label"], model["object_name"]) for app in apps for model in app["models"]]
    registered = [(model._meta.app_label, model._meta.object_name) for model in admin.site._registry]
    assert sorted(listed) == sorted(registered)
    # the navigation sidebar and an app's own page follow the same order
    assert [app["app_label"] for app in response.context["available_apps"]] == labels
    alerts_page = admin_client.get(reverse("admin:app_list", args=["alerts"]))
    assert [model["object_name"] for model in alerts_page.context["app_list"][0]["models"]] == first["alerts"]


def test_events_list_links_workspace_keys_to_the_workspace_page(admin_client: Client, records: Records) -> None:
    _event("evt_unknown_ws", Event.Status.NEW, workspace_key="ws_nobody")

    page = admin_client.get(reverse("admin:events_event_changelist")).text

    url = reverse("admin:workspaces_workspace_change", args=[records.workspace.pk])
    assert f'<a href="{url}">ws_acme</a>' in page
    assert "ws_nobody" in page and "/ws_nobody" not in page  # no workspace: the key, unlinked


def test_admin_pages_load_the_layout_stylesheet_and_carry_no_inline_style(
    admin_client: Client, records: Records
) -> None:
    for url in (
        reverse("admin:events_event_changelist"),
        reverse("admin:events_event_change", args=[records.event.pk]),
        reverse("admin:workspaces_workspace_changelist"),
        reverse("admin:workspaces_reviewitem_changelist"),
    ):
        page = admin_client.get(url).text
        assert "/static/engine/admin.css" in page and "/static/engine/admin.js" in page, url
        assert " style=" not in page, url  # the Content-Security-Policy would refuse it
