"""The review queue's admin actions: reprocess, and link a workspace to a lead/account the admin picks."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import AbstractBaseUser
from django.test import Client
from django.urls import reverse

from events.models import Event
from tests.factories import AccountFactory, EventFactory, LeadFactory
from tests.linking.helpers import process, trial
from workspaces.models import ReviewItem, Workspace

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:workspaces_reviewitem_changelist")
TEMPLATE = "admin/linking/reviewitem/link_action.html"


@pytest.fixture
def item() -> ReviewItem:
    """An open "no account match" question for dana@acme.io's trial workspace ws_1."""
    workspace = process(trial("dana@acme.io"))
    return ReviewItem.objects.get(workspace=workspace, kind=ReviewItem.Kind.NO_ACCOUNT_MATCH)


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """What would have gone to the task queue (the engine's wrapper around django-q2's async_task)."""
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr("events.services.async_task", lambda func, *args, **kwargs: calls.append((func, *args)))
    return calls


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def link(client: Client, *items: ReviewItem, apply: bool = True, **fields: str) -> Any:
    data: dict[str, Any] = {"action": "link_item", ACTION_CHECKBOX_NAME: [i.pk for i in items]}
    if apply:
        data |= {"apply": "Link", **{f"link-{name}": value for name, value in fields.items()}}
    return client.post(CHANGELIST, data, follow=True)


# --- Reprocess --------------------------------------------------------------------------------


def test_reprocess_queues_the_items_workspace(
    admin_client: Client, item: ReviewItem, django_capture_on_commit_callbacks, enqueued: list[tuple[Any, ...]]
):
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            CHANGELIST, {"action": "reprocess_items", ACTION_CHECKBOX_NAME: [item.pk]}, follow=True
        )

    # then
    assert ("processing.tasks.process_workspaces", ["ws_1"], True) in enqueued
    assert "Queued 1 workspace(s) for reprocessing" in messages_of(response)[0]
    item.refresh_from_db()
    assert item.status == ReviewItem.Status.OPEN  # a re-fold closes it if the problem is gone


def test_reprocess_returns_the_items_failed_events_to_new(admin_client: Client, django_capture_on_commit_callbacks):
    # given a processing failure: no workspace, its events in review
    event = EventFactory(workspace_key="ws_9", status=Event.Status.REVIEW)
    failed = ReviewItem.objects.create(
        kind=ReviewItem.Kind.PROCESSING_FAILED, dedupe_key="processing_failed:ws_9:1", reason="boom"
    )
    failed.events.add(event)

    # when
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(
            CHANGELIST, {"action": "reprocess_items", ACTION_CHECKBOX_NAME: [failed.pk]}, follow=True
        )

    # then
    event.refresh_from_db()
    assert event.status == Event.Status.NEW
    assert len(callbacks) >= 1
    assert "Queued 1 workspace(s) for reprocessing" in messages_of(response)[0]


# --- Link: the intermediate page --------------------------------------------------------------


def test_link_action_shows_a_labelled_form(admin_client: Client, item: ReviewItem):
    # when
    response = link(admin_client, item, apply=False)

    # then
    assert response.status_code == 200
    assert TEMPLATE in [t.name for t in response.templates]
    html = response.text
    for name in ("lead", "account", "note"):
        assert f'<label for="id_link-{name}">' in html
        assert f'id="id_link-{name}"' in html
    assert f'name="{ACTION_CHECKBOX_NAME}" value="{item.pk}"' in html
    assert 'name="action" value="link_item"' in html
    assert 'name="apply"' in html
    assert "ws_1" in html


def test_link_action_links_the_workspace_and_resolves_the_item(
    admin_client: Client, admin_user: AbstractBaseUser, item: ReviewItem
):
    # given
    lead = LeadFactory(email="buyer@globex.com")
    account = AccountFactory(domain="globex.com", name="Globex")

    # when
    response = link(admin_client, item, lead=" Buyer@Globex.com ", account="globex.com", note="Globex bought it.")

    # then
    workspace = Workspace.objects.get(workspace_id="ws_1")
    assert (workspace.lead, workspace.account, workspace.linked_by_admin) == (lead, account, True)
    assert workspace.needs_review is False
    item.refresh_from_db()
    assert item.status == ReviewItem.Status.RESOLVED
    assert (item.resolution_note, item.resolved_by) == ("Globex bought it.", admin_user)
    assert response.redirect_chain[-1][0] == CHANGELIST
    assert messages_of(response) == ["Linked workspace ws_1 to lead buyer@globex.com and account Globex (globex.com)."]


def test_link_action_accepts_an_account_alone_by_id(admin_client: Client, item: ReviewItem):
    # given an account with no domain (a free-mail customer) can only be named by its id
    account = AccountFactory(domain=None, name="Dana Reyes")

    # when
    link(admin_client, item, account=str(account.pk))

    # then
    workspace = Workspace.objects.get(workspace_id="ws_1")
    assert workspace.account == account
    assert workspace.lead.email == "dana@acme.io"  # unchanged


def test_link_action_with_an_unknown_email_shows_the_error_and_changes_nothing(admin_client: Client, item: ReviewItem):
    # given
    AccountFactory(domain="globex.com")

    # when
    response = link(admin_client, item, lead="nobody@globex.com", account="globex.com")

    # then
    assert response.status_code == 200
    assert TEMPLATE in [t.name for t in response.templates]
    assert response.context["form"].errors == {"lead": ["No lead has the email nobody@globex.com."]}
    assert "No lead has the email nobody@globex.com." in response.text
    workspace = Workspace.objects.get(workspace_id="ws_1")
    assert (workspace.account, workspace.linked_by_admin) == (None, False)
    item.refresh_from_db()
    assert item.status == ReviewItem.Status.OPEN


@pytest.mark.parametrize("typed", ["initech.com", "@Initech.com", "99999999999999999999999"])
def test_link_action_with_an_unknown_account_shows_the_error(admin_client: Client, item: ReviewItem, typed: str):
    response = link(admin_client, item, account=typed)

    wanted = typed.lower().removeprefix("@")
    assert response.context["form"].errors == {"account": [f"No account has the domain or id {wanted}."]}


def test_link_action_with_nothing_chosen_asks_for_a_lead_or_account(admin_client: Client, item: ReviewItem):
    response = link(admin_client, item, lead=" ", account="", note="why not")

    assert response.context["form"].non_field_errors() == ["Enter a lead email, an account domain, or both."]
    assert Workspace.objects.get(workspace_id="ws_1").linked_by_admin is False


def test_link_action_on_two_items_is_refused(admin_client: Client, item: ReviewItem):
    # given
    other = process(trial("lee@initech.com", workspace_id="ws_2"), workspace_id="ws_2").review_items.get()
    AccountFactory(domain="globex.com")

    # when
    response = link(admin_client, item, other, account="globex.com")

    # then
    assert messages_of(response) == ["Select exactly one review item to link."]
    assert not Workspace.objects.filter(linked_by_admin=True).exists()


def test_link_action_on_an_item_without_workspace_is_refused(admin_client: Client):
    # given
    orphan = ReviewItem.objects.create(kind=ReviewItem.Kind.REJECTED_EVENT, dedupe_key="rejected:1", reason="bad")

    # when
    response = link(admin_client, orphan, apply=False)

    # then
    assert response.redirect_chain[-1][0] == CHANGELIST
    assert messages_of(response) == ["This review item is not about a workspace: there is nothing to link."]


# --- The change page --------------------------------------------------------------------------


def test_change_page_shows_the_workspace_its_links_and_who_linked_them(admin_client: Client, item: ReviewItem):
    # given
    workspace = item.workspace
    account = AccountFactory(domain="globex.com")
    Workspace.objects.filter(pk=workspace.pk).update(account=account, linked_by_admin=True)

    # when
    response = admin_client.get(reverse("admin:workspaces_reviewitem_change", args=[item.pk]))

    # then
    html = response.text
    assert reverse("admin:workspaces_workspace_change", args=[workspace.pk]) in html
    assert reverse("admin:workspaces_lead_change", args=[workspace.lead_id]) in html
    assert reverse("admin:workspaces_account_change", args=[account.pk]) in html
    assert "Linked by an admin" in html
    assert 'alt="True"' in html
