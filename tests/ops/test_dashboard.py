"""/ops/: the numbers an admin needs, each a link to the admin list showing exactly those rows."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission
from django.utils import timezone

from alerts.models import Alert, Delivery
from events.models import Event
from failures.services import error_record
from ops.dashboard import ops_overview
from ops.selectors import processing_lag
from privacy.roles import groups_sync
from salesforce.models import OutboxItem, SyncControl
from tests.factories import EventFactory
from workspaces.models import ReviewItem

pytestmark = pytest.mark.django_db


def completed_event(received_ago: timedelta, lag: timedelta, **kwargs) -> Event:
    received = timezone.now() - received_ago
    return EventFactory(status=Event.Status.COMPLETED, received_at=received, completed_at=received + lag, **kwargs)


@pytest.fixture
def engine_state(settings):
    """A bit of everything: a backlog, failures, a review item, outbox rows, API usage, deliveries."""
    settings.SALESFORCE_MAX_API_SHARE = 0.8
    for _ in range(3):
        EventFactory(status=Event.Status.NEW)
    EventFactory(status=Event.Status.ERROR, retry_count=2)
    EventFactory(status=Event.Status.REVIEW, retry_count=8)
    for seconds in range(1, 21):  # lags of 1 … 20 s: p50 = 10 s, p95 = 19 s (nearest rank)
        completed_event(timedelta(minutes=5), timedelta(seconds=seconds))
    completed_event(timedelta(hours=3), timedelta(hours=1))  # outside the window: not in the percentiles
    ReviewItem.objects.create(kind=ReviewItem.Kind.NO_ACCOUNT_MATCH, dedupe_key="q1", reason="no match")
    ReviewItem.objects.create(
        kind="no_account_match", dedupe_key="q2", reason="x", status="resolved", resolved_at=timezone.now()
    )
    OutboxItem.objects.create(object_type="Lead", external_id="lead_1", payload={})
    OutboxItem.objects.create(object_type="Lead", external_id="lead_2", payload={}, state=OutboxItem.State.DEAD)
    OutboxItem.objects.create(object_type="Account", external_id="account_1", payload={}, state="synced")
    SyncControl.objects.update_or_create(
        pk=1,
        defaults={
            "api_used": 850,
            "api_max": 1000,
            "api_checked_at": timezone.now(),
            "last_success_at": timezone.now(),
        },
    )
    alert = Alert.objects.create(rule="sync_paused", dedupe_key="a1", title="t", reason="r")
    Delivery.objects.create(alert=alert, channel="email", recipient="ops@example.com", status=Delivery.Status.FAILED)
    Delivery.objects.create(alert=alert, channel="slack", recipient="webhook", status=Delivery.Status.DEAD)
    error_record(source="sync", kind="UNABLE_TO_LOCK_ROW", message="unable to obtain exclusive access")


@pytest.fixture
def admin_client(client, django_user_model):
    """A superuser without a password: hashing one is most of a test's time on a busy machine."""
    client.force_login(django_user_model.objects.create_superuser("admin", "admin@example.com", None))
    return client


def figures(response) -> dict[str, object]:
    return {figure.label: figure for section in response.context["sections"] for figure in section.figures}


def test_lag_percentiles_are_nearest_rank_over_the_window():
    for seconds in (4, 1, 3, 2, 100):
        completed_event(timedelta(minutes=1), timedelta(seconds=seconds))
    EventFactory(status=Event.Status.NEW, received_at=timezone.now())

    lag = processing_lag(since=timezone.now() - timedelta(hours=1))

    assert (lag.completed, lag.p50, lag.p95) == (5, 3.0, 100.0)


def test_no_completed_events_no_percentiles():
    lag = processing_lag(since=timezone.now() - timedelta(hours=1))
    assert (lag.completed, lag.p50, lag.p95) == (0, None, None)


def test_the_page_shows_each_number(admin_client, engine_state):
    response = admin_client.get("/ops/")

    assert response.status_code == 200
    shown = {label: figure.value for label, figure in figures(response).items()}
    assert shown["Backlog: new"] == "3"
    assert shown["Backlog: error"] == "1"
    assert shown["Backlog: review"] == "1"
    assert shown["Completed"] == "20"
    assert shown["Processing lag p50"] == "10.0 s"
    assert shown["Processing lag p95"] == "19.0 s"
    assert shown["Event error rate"] == "8.0% (2 of 25)"
    assert shown["Review queue (open)"] == "1"
    assert shown["Outbox: pending"] == "1"
    assert shown["Dead letters"] == "1"
    assert shown["API usage today"] == "850 of 1000 (85%; pauses at 80%)"
    assert shown["Last successful sync"].endswith(" ago")
    assert shown["Deliveries: failed (will retry)"] == "1"
    assert shown["Deliveries: dead (out of attempts)"] == "1"
    assert shown["Errors recorded: salesforce sync"] == "1"
    assert shown["Salesforce sync: UNABLE_TO_LOCK_ROW"].startswith("1×")
    assert figures(response)["API usage today"].warn
    assert b"Processing lag p95" in response.content
    assert b'href="/admin/events/event/?status__exact=error"' in response.content


COUNTED = (
    "Backlog: new",
    "Backlog: error",
    "Backlog: review",
    "Completed",
    "Review queue (open)",
    "Outbox: pending",
    "Dead letters",
    "Deliveries: failed (will retry)",
    "Deliveries: dead (out of attempts)",
)


def test_each_number_links_to_the_admin_list_of_exactly_those_rows(admin_client, engine_state):
    shown = figures(admin_client.get("/ops/"))

    for label in COUNTED:
        listing = admin_client.get(shown[label].url)

        assert listing.status_code == 200, label
        assert listing.context["cl"].result_count == int(shown[label].value), label


def test_open_and_waiting_links_filter_by_several_statuses(admin_client, engine_state):
    shown = figures(admin_client.get("/ops/"))

    open_events = admin_client.get(shown["Oldest open event waiting"].url)
    waiting_writes = admin_client.get(shown["Oldest unsent write"].url)

    assert open_events.context["cl"].result_count == 4  # 3 new + 1 error
    assert waiting_writes.context["cl"].result_count == 1


def test_error_rate_link_lists_the_failed_events(admin_client, engine_state):
    listing = admin_client.get(figures(admin_client.get("/ops/"))["Event error rate"].url)

    assert listing.context["cl"].result_count == 2


def test_an_empty_engine_renders(admin_client):
    response = admin_client.get("/ops/")

    assert response.status_code == 200
    shown = {label: figure.value for label, figure in figures(response).items()}
    assert shown["Processing lag p50"] == "—"
    assert shown["API usage today"] == "not reported yet"
    assert shown["Last successful sync"] == "never"
    assert shown["Heartbeat: queue"] == "never"


def test_a_paused_sync_is_shown_with_its_reason():
    SyncControl.objects.update_or_create(
        pk=1, defaults={"paused_until": timezone.now() + timedelta(minutes=9), "pause_reason": "limit"}
    )

    section = next(s for s in ops_overview() if s.title.startswith("Salesforce"))

    paused = next(f for f in section.figures if f.label == "Paused until")
    assert paused.warn and paused.note == "limit"


# --- who may see it ---------------------------------------------------------------------------


def test_anonymous_is_sent_to_the_login(client):
    response = client.get("/ops/")

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_a_non_staff_user_is_refused(client, django_user_model):
    user = django_user_model.objects.create_user("rep", password=None)
    user.user_permissions.add(Permission.objects.get(content_type__app_label="ops", codename="view_dashboard"))
    client.force_login(user)

    response = client.get("/ops/")

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_staff_without_the_permission_get_403(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("clerk", password=None, is_staff=True))

    assert client.get("/ops/").status_code == 403


def test_staff_with_the_permission_through_a_group_see_it(client, django_user_model):
    group = Group.objects.create(name="Ops watchers")
    group.permissions.add(Permission.objects.get(content_type__app_label="ops", codename="view_dashboard"))
    user = django_user_model.objects.create_user("ops", password=None, is_staff=True)
    user.groups.add(group)
    client.force_login(user)

    assert client.get("/ops/").status_code == 200


@pytest.fixture
def role_groups():
    """The groups exactly as migrate leaves them (the same call post_migrate makes): present even if a
    transactional test flushed the database earlier in the run."""
    groups_sync(group_model=Group, permission_model=Permission)


@pytest.mark.usefixtures("role_groups")
@pytest.mark.parametrize(("group", "sees", "resolves"), [("Lifecycle admins", True, True), ("Auditors", True, False)])
def test_role_groups_and_the_ops_page(client, django_user_model, group, sees, resolves):
    user = django_user_model.objects.create_user("someone", password=None, is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client.force_login(user)

    assert (client.get("/ops/").status_code == 200) is sees
    assert user.has_perm("failures.change_errorkind") is resolves
    assert not user.has_perm("failures.delete_errorkind")


@pytest.mark.usefixtures("role_groups")
def test_reps_have_no_ops_permission():
    assert not Group.objects.get(name="Reps").permissions.filter(content_type__app_label="ops").exists()


def test_the_admin_links_to_the_ops_page_for_those_allowed(admin_client, client, django_user_model):
    assert b'<a href="/ops/">Operations</a>' in admin_client.get("/admin/").content

    client.force_login(django_user_model.objects.create_user("clerk", password=None, is_staff=True))
    assert b'href="/ops/"' not in client.get("/admin/").content


# --- alert deliveries: scheduled apart from backlog -----------------------------------------------


def test_deliveries_scheduled_for_later_are_shown_apart_from_the_backlog(admin_client):
    """The 63 "pending" deliveries were all digests waiting for 08:00: scheduled, not a backlog."""
    now = timezone.now()
    alert = Alert.objects.create(rule="trial_expiring", dedupe_key="d1", title="t", reason="r")
    tomorrow_8 = (now + timedelta(days=1)).replace(hour=8, minute=0, second=0, microsecond=0)

    def delivery(n: int, **fields) -> Delivery:
        return Delivery.objects.create(alert=alert, channel="email", recipient=f"rep{n}@example.com", **fields)

    for n in range(63):
        delivery(n, mode=Delivery.Mode.DIGEST, next_attempt_at=tomorrow_8)
    delivery(100, next_attempt_at=now + timedelta(hours=6))  # instant, held for the rep's quiet hours
    delivery(101, next_attempt_at=now - timedelta(minutes=30))  # due half an hour ago: late
    delivery(102, mode=Delivery.Mode.DIGEST, next_attempt_at=now - timedelta(minutes=2))  # today's digest, due
    delivery(103, status=Delivery.Status.FAILED, attempts=1, next_attempt_at=now - timedelta(minutes=1))
    delivery(104, status=Delivery.Status.FAILED, attempts=2, next_attempt_at=now + timedelta(minutes=8))
    delivery(105, status=Delivery.Status.SENT, next_attempt_at=None, sent_at=now)

    shown = figures(admin_client.get("/ops/"))

    backlog = shown["Deliveries backlog (due, not sent)"]
    digests, instant = shown["Scheduled: daily digests"], shown["Scheduled: instant"]
    assert (backlog.value, digests.value, instant.value) == ("3", "63", "1")
    assert backlog.warn and re.fullmatch(r"oldest due 30\.\d min ago", backlog.note), backlog.note
    assert not digests.warn and not instant.warn
    assert digests.note == f"waiting for their hour; next at {tomorrow_8:%Y-%m-%d} 08:00 UTC"
    assert shown["Deliveries: failed (will retry)"].value == "2"
    assert "Deliveries: pending" not in shown
    # each number opens the admin list of exactly those rows
    for figure in (backlog, digests, instant):
        assert admin_client.get(figure.url).context["cl"].result_count == int(figure.value), figure.label


def test_a_backlog_just_due_is_not_late(admin_client):
    alert = Alert.objects.create(rule="trial_expiring", dedupe_key="d2", title="t", reason="r")
    Delivery.objects.create(
        alert=alert, channel="email", recipient="ann@example.com", next_attempt_at=timezone.now() - timedelta(minutes=3)
    )

    shown = figures(admin_client.get("/ops/"))

    backlog = shown["Deliveries backlog (due, not sent)"]
    assert backlog.value == "1" and not backlog.warn
    assert (shown["Scheduled: daily digests"].value, shown["Scheduled: daily digests"].note) == (
        "0",
        "waiting for their hour",
    )
