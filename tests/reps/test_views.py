"""The rep pages' content and actions, through the Django test client."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from alerts.models import Alert
from tests.reps.conftest import PASSWORD, make_alert
from workspaces.models import ReviewItem


def act(client: Client, alert: Alert, **data):
    return client.post(f"/reps/alerts/{alert.pk}/", data)


# --- Inbox actions ------------------------------------------------------------------------------


def test_acknowledge_records_who_and_when_and_returns_to_where_it_came_from(client, world):
    client.force_login(world.ann)

    response = act(client, world.alert_ann, action="acknowledge", next="/reps/alerts/?rule=trial_expiring")

    assert response.status_code == 302
    assert response["Location"] == "/reps/alerts/?rule=trial_expiring"
    world.alert_ann.refresh_from_db()
    assert world.alert_ann.status == Alert.Status.ACKNOWLEDGED
    assert world.alert_ann.acknowledged_by == world.ann
    assert world.alert_ann.acknowledged_at is not None


@pytest.mark.parametrize(("choice", "days"), [("1d", 1), ("3d", 3), ("7d", 7)])
def test_snooze_until_the_chosen_time(client, world, choice, days):
    client.force_login(world.ann)
    before = timezone.now()

    act(client, world.alert_ann, action="snooze", snooze_for=choice)

    world.alert_ann.refresh_from_db()
    assert world.alert_ann.status == Alert.Status.SNOOZED
    expected = before + timedelta(days=days)
    assert expected <= world.alert_ann.snoozed_until <= expected + timedelta(minutes=1)


def test_snoozed_alerts_leave_the_default_inbox_and_show_under_their_status(client, world):
    client.force_login(world.ann)
    act(client, world.alert_ann, action="snooze", snooze_for="1d")

    assert list(client.get("/reps/alerts/").context["alerts"]) == []
    assert list(client.get("/reps/alerts/", {"status": "snoozed"}).context["alerts"]) == [world.alert_ann]


def test_snooze_without_a_duration_changes_nothing_and_says_why(client, world):
    client.force_login(world.ann)

    response = act(client, world.alert_ann, action="snooze", snooze_for="forever")
    page = client.get(response["Location"]).content.decode()

    world.alert_ann.refresh_from_db()
    assert world.alert_ann.status == Alert.Status.OPEN
    assert "Nothing changed" in page and "snooze_for" in page


def test_resolve_then_reopen(client, world):
    client.force_login(world.ann)

    act(client, world.alert_ann, action="resolve")
    world.alert_ann.refresh_from_db()
    assert world.alert_ann.status == Alert.Status.RESOLVED
    assert world.alert_ann.resolved_by == world.ann

    act(client, world.alert_ann, action="reopen")
    world.alert_ann.refresh_from_db()
    assert world.alert_ann.status == Alert.Status.OPEN


def test_a_resolved_alert_cannot_be_snoozed(client, world):
    client.force_login(world.ann)
    act(client, world.alert_ann, action="resolve")

    response = act(client, world.alert_ann, action="snooze", snooze_for="1d")

    world.alert_ann.refresh_from_db()
    assert world.alert_ann.status == Alert.Status.RESOLVED
    assert "cannot be snoozed" in client.get(response["Location"]).content.decode()


def test_an_unknown_action_changes_nothing(client, world):
    client.force_login(world.ann)

    act(client, world.alert_ann, action="delete")

    world.alert_ann.refresh_from_db()
    assert world.alert_ann.status == Alert.Status.OPEN


def test_actions_need_the_csrf_token(world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.ann)

    response = act(client, world.alert_ann, action="resolve")

    assert response.status_code == 403
    world.alert_ann.refresh_from_db()
    assert world.alert_ann.status == Alert.Status.OPEN


def test_actions_are_get_or_post_only(client, world):
    client.force_login(world.ann)

    assert client.put(f"/reps/alerts/{world.alert_ann.pk}/").status_code == 405


def test_next_never_leads_off_site(client, world):
    client.force_login(world.ann)

    response = act(client, world.alert_ann, action="acknowledge", next="https://evil.example/phish")

    assert response["Location"] == "/reps/alerts/"


def test_admins_act_on_any_alert(client, world):
    client.force_login(world.admin)

    act(client, world.alert_bo, action="acknowledge")

    world.alert_bo.refresh_from_db()
    assert world.alert_bo.acknowledged_by == world.admin


# --- Inbox filters ------------------------------------------------------------------------------


def test_inbox_filters_by_rule_and_workspace(client, world):
    client.force_login(world.admin)

    by_rule = client.get("/reps/alerts/", {"rule": "converted"}).context["alerts"]
    by_workspace = client.get("/reps/alerts/", {"workspace": "ws_nobody"}).context["alerts"]

    assert list(by_rule) == [world.alert_bo]
    assert list(by_workspace) == [world.alert_admins]


def test_an_invalid_filter_is_named_and_dropped(client, world):
    client.force_login(world.admin)

    response = client.get("/reps/alerts/", {"status": "bogus", "rule": "converted"})

    assert "Select a valid choice" in response.content.decode()
    assert list(response.context["alerts"]) == [world.alert_bo]


def test_the_inbox_shows_each_alerts_reason_and_values(client, world):
    client.force_login(world.ann)

    html = client.get("/reps/alerts/").content.decode()

    assert world.alert_ann.reason in html
    assert "Days left" in html and "days_left" not in html  # labels, not keys
    assert 'for="snooze-' in html  # every control has its label


# --- Dashboard ----------------------------------------------------------------------------------


def test_dashboard_for_a_rep(client, world):
    client.force_login(world.ann)

    response = client.get("/reps/")
    board = response.context["board"]

    assert [ws.workspace_id for ws in board.expiring] == ["ws_ann"]
    assert board.open_alerts == 1
    assert "Acme Analytics" in response.content.decode()


def test_dashboard_for_an_admin_sums_mrr_lost_to_churn_in_30_days(client, world):
    from tests.factories import WorkspaceFactory

    WorkspaceFactory(status="churned", mrr=Decimal("50.00"), churned_at=timezone.now() - timedelta(days=10))
    WorkspaceFactory(status="churned", mrr=Decimal("1000.00"), churned_at=timezone.now() - timedelta(days=45))
    WorkspaceFactory(status="churned", mrr=Decimal("20.00"), currency="EUR", churned_at=timezone.now())
    client.force_login(world.admin)

    response = client.get("/reps/")
    board = response.context["board"]

    # 99 (ws_nobody) + 50 in USD; the 45-day-old churn is out; euros without a rate are never added to dollars
    assert board.mrr_lost.total == Decimal("149.00")
    assert [(p.currency, p.amount) for p in board.mrr_lost.unconverted] == [("EUR", Decimal("20.00"))]
    html = response.content.decode()
    assert "149.00 USD" in html and "20.00 EUR" in html and "no rate to USD" in html
    assert len(board.churned) == 3
    assert board.open_alerts == 3


def test_trials_expiring_after_this_week_or_already_expired_are_not_listed(client, world):
    from tests.factories import WorkspaceFactory

    WorkspaceFactory(trial_expires_at=timezone.now() + timedelta(days=8))
    WorkspaceFactory(trial_expires_at=timezone.now() - timedelta(hours=1))
    client.force_login(world.admin)

    board = client.get("/reps/").context["board"]

    assert [ws.workspace_id for ws in board.expiring] == ["ws_ann"]


def test_review_counts_are_for_admins_only(client, world):
    ReviewItem.objects.create(kind="no_account_match", dedupe_key="a", reason="x", workspace=world.ws_ann)
    ReviewItem.objects.create(kind="no_account_match", dedupe_key="b", reason="x", workspace=world.ws_bo)
    ReviewItem.objects.create(kind="conflicting_data", dedupe_key="c", reason="x", workspace=world.ws_nobody)

    client.force_login(world.ann)
    ann_page = client.get("/reps/")
    client.force_login(world.admin)
    admin_page = client.get("/reps/")

    # a rep cannot act on the review queue: no count, no section
    assert ann_page.context["board"].review_counts == []
    assert "review item" not in ann_page.content.decode() and 'id="review-h"' not in ann_page.content.decode()
    assert admin_page.context["board"].review_total == 3
    assert "open review items" in admin_page.content.decode()


# --- Workspace page -----------------------------------------------------------------------------


def test_workspace_page_links_to_salesforce_records(client, world, settings):
    settings.SALESFORCE_INSTANCE_URL = "https://acme.my.salesforce.com/"
    client.force_login(world.ann)

    html = client.get("/reps/workspaces/ws_ann/").content.decode()

    assert 'href="https://acme.my.salesforce.com/lightning/r/Workspace__c/a0X000000000001AAA/view"' in html
    assert 'href="https://acme.my.salesforce.com/lightning/r/Lead/00Q000000000001AAA/view"' in html
    assert 'href="https://acme.my.salesforce.com/lightning/r/Account/001000000000001AAA/view"' in html
    assert "synced" in html


def test_workspace_page_without_a_salesforce_instance_shows_ids_without_links(client, world, settings):
    settings.SALESFORCE_INSTANCE_URL = ""
    client.force_login(world.ann)

    html = client.get("/reps/workspaces/ws_ann/").content.decode()

    assert "a0X000000000001AAA" in html
    assert "/lightning/" not in html


def test_workspace_page_shows_its_alerts_with_reasons(client, world):
    make_alert(workspace=world.ws_ann, recipient=world.ann, rule="payment_failed", reason="Card declined twice.")
    client.force_login(world.ann)

    html = client.get("/reps/workspaces/ws_ann/").content.decode()

    assert "Card declined twice." in html
    assert world.alert_ann.reason in html


def test_an_alert_routed_before_its_workspace_row_existed_still_opens_the_workspace(client, world):
    from tests.factories import WorkspaceFactory

    late = WorkspaceFactory(workspace_id="ws_late")
    alert = make_alert(workspace=late, recipient=world.bo)
    Alert.objects.filter(pk=alert.pk).update(workspace=None)  # only the key links them
    client.force_login(world.bo)

    assert client.get("/reps/workspaces/ws_late/").status_code == 200


def test_workspace_list_searches_within_what_the_rep_may_see(client, world):
    client.force_login(world.ann)

    assert [ws.workspace_id for ws in client.get("/reps/workspaces/").context["workspaces"]] == ["ws_ann"]
    assert list(client.get("/reps/workspaces/", {"q": "bolt"}).context["workspaces"]) == []


# --- Login, logout, admin link ------------------------------------------------------------------


def test_login_sends_a_rep_to_the_dashboard_and_logout_ends_the_session(client, world):
    page = client.get("/accounts/login/").content.decode()
    assert '<label for="id_username">' in page and '<label for="id_password">' in page

    response = client.post("/accounts/login/", {"username": "ann", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/reps/"

    client.post("/accounts/logout/")
    assert client.get("/reps/").status_code == 302


def test_login_returns_to_the_page_asked_for(client, world):
    response = client.post(
        "/accounts/login/?next=/reps/alerts/", {"username": "ann", "password": PASSWORD, "next": "/reps/alerts/"}
    )

    assert response["Location"] == "/reps/alerts/"


def test_base_template_is_accessible_by_construction(client, world):
    client.force_login(world.ann)

    html = client.get("/reps/alerts/").content.decode()

    assert '<a class="skip-link" href="#main">' in html
    assert '<main id="main"' in html
    assert 'href="/reps/alerts/" aria-current="page"' in html
    assert '<html lang="en">' in html
    assert 'name="viewport"' in html


def test_the_admin_links_to_the_rep_pages(client, world):
    client.force_login(world.admin)

    assert 'href="/reps/">Rep pages</a>' in client.get("/admin/").content.decode()
