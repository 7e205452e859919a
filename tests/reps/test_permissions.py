"""Who may see which rep page: anonymous → login, strangers → 403, reps → their own only, admins → all."""

from __future__ import annotations

from importlib import import_module

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.urls import reverse

from alerts.models import Alert
from tests.reps.conftest import PAYLOAD_SECRET

PAGES = ["/reps/", "/reps/alerts/", "/reps/workspaces/", "/reps/workspaces/ws_ann/"]


@pytest.mark.parametrize("url", PAGES)
def test_anonymous_visitors_are_sent_to_the_login_page(client, world, url):
    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


def test_anonymous_actions_change_nothing(client, world):
    response = client.post(f"/reps/alerts/{world.alert_ann.pk}/", {"action": "resolve"})

    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    world.alert_ann.refresh_from_db()
    assert world.alert_ann.status == Alert.Status.OPEN


@pytest.mark.parametrize("url", PAGES)
def test_users_who_are_neither_rep_nor_admin_are_refused(client, world, url):
    client.force_login(world.stranger)

    assert client.get(url).status_code == 403


def test_an_inactive_rep_row_without_the_group_gives_no_access(client, world):
    world.ann.rep.active = False
    world.ann.rep.save()
    client.force_login(world.ann)

    assert client.get("/reps/").status_code == 403


def test_staff_alone_is_not_a_lifecycle_admin(client, world):
    world.stranger.is_staff = True
    world.stranger.save()
    client.force_login(world.stranger)

    assert client.get("/reps/alerts/").status_code == 403


@pytest.mark.parametrize(
    ("user", "visible", "hidden"),
    [
        ("ann", ["ws_ann"], ["ws_bo", "ws_nobody"]),  # by account ownership
        ("bo", ["ws_bo"], ["ws_ann", "ws_nobody"]),  # by an alert routed to him
        ("admin", ["ws_ann", "ws_bo", "ws_nobody"], []),
    ],
)
def test_workspace_pages_by_role(client, world, user, visible, hidden):
    client.force_login(getattr(world, user))

    for workspace_id in visible:
        assert client.get(f"/reps/workspaces/{workspace_id}/").status_code == 200, workspace_id
    for workspace_id in hidden:
        assert client.get(f"/reps/workspaces/{workspace_id}/").status_code == 404, workspace_id


@pytest.mark.parametrize(
    ("user", "visible", "hidden"),
    [
        ("ann", ["alert_ann"], ["alert_bo", "alert_admins"]),
        ("bo", ["alert_bo"], ["alert_ann", "alert_admins"]),
        ("admin", ["alert_ann", "alert_bo", "alert_admins"], []),
    ],
)
def test_alert_inbox_by_role(client, world, user, visible, hidden):
    client.force_login(getattr(world, user))

    html = client.get("/reps/alerts/").content.decode()

    for name in visible:
        assert getattr(world, name).title in html, name
    for name in hidden:
        assert getattr(world, name).title not in html, name


def test_a_rep_cannot_act_on_someone_elses_alert(client, world):
    client.force_login(world.ann)

    response = client.post(f"/reps/alerts/{world.alert_bo.pk}/", {"action": "resolve"})

    assert response.status_code == 404
    world.alert_bo.refresh_from_db()
    assert world.alert_bo.status == Alert.Status.OPEN


def test_a_rep_cannot_filter_their_way_to_another_workspace(client, world):
    client.force_login(world.ann)

    html = client.get("/reps/alerts/", {"workspace": "ws_bo"}).content.decode()

    assert world.alert_bo.title not in html
    assert "No alerts match." in html


@pytest.mark.parametrize("user", ["ann", "admin"])
def test_the_workspace_page_never_shows_raw_payloads(client, world, user):
    client.force_login(getattr(world, user))

    html = client.get("/reps/workspaces/ws_ann/").content.decode()

    assert "Trial started" in html  # the event is on the timeline, by its label...
    assert "team" in html  # ...with its whitelisted values
    assert PAYLOAD_SECRET not in html  # ...but nothing else from its payload


def test_admins_get_a_link_to_the_event_in_the_admin_reps_do_not(client, world):
    client.force_login(world.admin)
    assert "/admin/events/event/" in client.get("/reps/workspaces/ws_ann/").content.decode()

    client.force_login(world.ann)
    assert "/admin/" not in client.get("/reps/workspaces/ws_ann/").content.decode()


def test_dashboard_counts_only_what_the_rep_may_see(client, world):
    client.force_login(world.bo)

    board = client.get("/reps/").context["board"]

    assert [ws.workspace_id for ws in board.converted] == ["ws_bo"]
    assert board.expiring == [] and board.churned == []
    assert board.open_alerts == 1


def test_the_role_groups_migration_grants_least_privilege_and_is_idempotent(db):
    # Run the migration's function itself: a transactional test elsewhere may have flushed its rows.
    migration = import_module("alerts.migrations.0004_role_groups")
    state = MigrationLoader(connection).project_state(("alerts", "0004_role_groups"))
    Group.objects.filter(name__in=["Lifecycle admins", "Reps"]).delete()

    migration.create_groups(state.apps, None)
    migration.create_groups(state.apps, None)

    admins = Group.objects.get(name="Lifecycle admins")
    codenames = set(admins.permissions.values_list("codename", flat=True))
    assert {"view_event", "change_reviewitem", "change_alertrule", "view_logentry"} <= codenames
    assert {name for name in codenames if name.startswith("delete_")} == {"delete_rep", "delete_territoryrule"}
    assert admins.permissions.count() == sum(len(names) for names in migration.ADMIN_PERMISSIONS.values())
    assert not Group.objects.get(name="Reps").permissions.exists()
