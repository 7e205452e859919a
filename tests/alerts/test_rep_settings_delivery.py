"""A rep's own settings shape their alerts' deliveries (over the local SMTP and Slack stand-ins):
channels off are skipped with the reason, quiet hours defer (never drop), the digest comes at the
rep's local hour across DST. Admin alerts follow none of them."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.utils import timezone

from alerts.delivery import backoff, deliveries_send_due, digests_send_due, next_digest_at
from alerts.models import Alert, Delivery, Rep
from alerts.rep_schedule import quiet_hours_end
from alerts.services import alert_raise
from tests.alerts.conftest import make_rep
from tests.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db

EMAIL_OFF = "email off in the rep's settings"
SLACK_OFF = "Slack off in the rep's settings"


def rep_alert(rep: Rep, key: str = "k1") -> Alert:
    """An alert routed to `rep` (the only active rep, by round robin)."""
    workspace = WorkspaceFactory(workspace_id=f"ws_{key}", email=f"{key}@gmail.com", company="Acme")
    alert, _ = alert_raise(
        rule="trial_expiring",
        dedupe_key=key,
        title=f"Trial expiring: Acme {key}",
        reason="The trial expires soon.",
        audience="rep",
        workspace=workspace,
    )
    assert alert.recipient == rep.user
    return alert


def row(alert: Alert, channel: str) -> Delivery:
    return alert.deliveries.get(channel=channel)


# --- channels ----------------------------------------------------------------------------------------------


def test_email_off_skips_the_email_with_the_reason_and_slack_still_goes(smtp, slack):
    alert = rep_alert(make_rep("ann", email_on=False))

    report = deliveries_send_due()

    email = row(alert, "email")
    assert (email.status, email.last_error, email.next_attempt_at, email.attempts) == ("skipped", EMAIL_OFF, None, 0)
    assert smtp.messages == []
    assert report.sent == 1 and row(alert, "slack").status == "sent" and len(slack.posts) == 1


def test_slack_off_skips_the_slack_post_with_the_reason_and_email_still_goes(smtp, slack):
    alert = rep_alert(make_rep("ann", slack_on=False))

    deliveries_send_due()

    posted = row(alert, "slack")
    assert (posted.status, posted.last_error, posted.next_attempt_at) == ("skipped", SLACK_OFF, None)
    assert slack.posts == []
    assert row(alert, "email").status == "sent" and len(smtp.messages) == 1


def test_a_channel_turned_off_after_planning_is_skipped_at_send_time(smtp, slack):
    rep, digest_rep = make_rep("ann"), make_rep("dora", delivery=Rep.Delivery.DIGEST)
    instant, digest = rep_alert(rep, "k1"), rep_alert(digest_rep, "k2")  # round robin: ann, then dora
    Rep.objects.update(email_on=False, slack_on=False)

    deliveries_send_due()
    with time_machine.travel(timezone.now() + timedelta(days=1)):
        digests_send_due()

    assert smtp.messages == [] and slack.posts == []
    assert (row(instant, "email").status, row(instant, "email").last_error) == ("skipped", EMAIL_OFF)
    assert (row(instant, "slack").status, row(instant, "slack").last_error) == ("skipped", SLACK_OFF)
    assert (row(digest, "email").status, row(digest, "email").last_error) == ("skipped", EMAIL_OFF)


def test_admin_alerts_ignore_an_admins_own_rep_settings(smtp, slack, settings):
    settings.ALERT_ADMIN_EMAILS = []
    admin = get_user_model().objects.create_superuser("root", "root@ops.example", "x")
    Rep.objects.create(
        user=admin, email_on=False, slack_on=False, time_zone="UTC", quiet_start=time(0), quiet_end=time(23, 59)
    )
    alert, _ = alert_raise(rule="sync_paused", dedupe_key="adm", title="Sync paused", reason="r", audience="admins")

    deliveries_send_due()

    assert {(d.channel, d.status) for d in alert.deliveries.all()} == {("email", "sent"), ("slack", "sent")}
    assert [m["To"] for m in smtp.messages] == ["root@ops.example"]


# --- quiet hours -------------------------------------------------------------------------------------------


def berlin_night_owl(**fields) -> Rep:
    return make_rep("ann", time_zone="Europe/Berlin", quiet_start=time(22), quiet_end=time(7), **fields)


def test_an_alert_in_quiet_hours_waits_until_they_end_then_goes(smtp, slack):
    rep = berlin_night_owl()
    with time_machine.travel(datetime(2026, 12, 1, 22, 30, tzinfo=UTC), tick=False):  # 23:30 in Berlin
        alert = rep_alert(rep)
        assert deliveries_send_due().sent == 0
    morning = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)  # 07:00 CET
    assert row(alert, "email").next_attempt_at == morning
    assert row(alert, "slack").next_attempt_at == morning
    with time_machine.travel(morning - timedelta(seconds=1), tick=False):
        assert deliveries_send_due().sent == 0
    assert smtp.messages == [] and slack.posts == []

    with time_machine.travel(morning, tick=False):
        assert deliveries_send_due().sent == 2
    assert len(smtp.messages) == 1 and len(slack.posts) == 1


def test_quiet_hours_are_in_the_reps_zone_and_outside_them_alerts_go_at_once(smtp):
    rep = berlin_night_owl()
    with time_machine.travel(datetime(2026, 12, 1, 20, 30, tzinfo=UTC), tick=False):  # 21:30 in Berlin: not yet
        alert = rep_alert(rep, "k1")
        assert deliveries_send_due().sent == 1
    assert row(alert, "email").status == "sent"
    with time_machine.travel(datetime(2026, 12, 2, 5, 30, tzinfo=UTC), tick=False):  # 06:30 Berlin: still quiet
        early = rep_alert(rep, "k2")
    assert row(early, "email").next_attempt_at == datetime(2026, 12, 2, 6, 0, tzinfo=UTC)


def test_a_retry_that_falls_in_quiet_hours_waits_for_their_end(smtp, settings):
    settings.ALERT_RETRY_BASE_SECONDS, settings.ALERT_RETRY_MAX_SECONDS = 3600, 3600
    rep = berlin_night_owl()
    smtp.refuse = (451, "4.3.0 try again later")
    with time_machine.travel(datetime(2026, 12, 1, 20, 30, tzinfo=UTC), tick=False):  # 21:30: retry at 22:30
        alert = rep_alert(rep)
        deliveries_send_due()
    email = row(alert, "email")
    assert email.status == "failed" and backoff(1) == timedelta(hours=1)
    assert email.next_attempt_at == datetime(2026, 12, 2, 6, 0, tzinfo=UTC)


def test_a_digest_hour_in_quiet_hours_comes_when_they_end():
    rep = make_rep("ann", delivery=Rep.Delivery.DIGEST, digest_hour=6, quiet_start=time(22), quiet_end=time(7, 30))
    assert next_digest_at(datetime(2026, 12, 1, 12, 0, tzinfo=UTC), rep) == datetime(2026, 12, 2, 7, 30, tzinfo=UTC)


# --- the digest at the rep's local hour ---------------------------------------------------------------------


def test_the_digest_comes_at_the_reps_local_hour(smtp):
    rep = make_rep("nia", delivery=Rep.Delivery.DIGEST, time_zone="America/New_York", digest_hour=8)
    with time_machine.travel(datetime(2026, 12, 1, 15, 0, tzinfo=UTC), tick=False):  # 10:00 in New York
        alert = rep_alert(rep)
    due = datetime(2026, 12, 2, 13, 0, tzinfo=UTC)  # 08:00 EST
    assert row(alert, "email").next_attempt_at == due
    with time_machine.travel(due - timedelta(minutes=1), tick=False):
        assert digests_send_due().sent == 0
    with time_machine.travel(due, tick=False):
        assert digests_send_due().sent == 1
    [message] = smtp.messages
    assert message["To"] == "nia@sales.example"


@pytest.mark.parametrize(
    ("zone", "now", "expected"),
    [
        # New York springs forward on 2026-03-08: 08:00 is 13:00 UTC the day before, 12:00 UTC that day
        ("America/New_York", datetime(2026, 3, 7, 14, 0, tzinfo=UTC), datetime(2026, 3, 8, 12, 0, tzinfo=UTC)),
        # Berlin falls back on 2026-10-25: 08:00 is 06:00 UTC the day before, 07:00 UTC that day
        ("Europe/Berlin", datetime(2026, 10, 24, 7, 0, tzinfo=UTC), datetime(2026, 10, 25, 7, 0, tzinfo=UTC)),
        # Already past 08:00 local (Tokyo, no DST): tomorrow's
        ("Asia/Tokyo", datetime(2026, 12, 1, 0, 0, tzinfo=UTC), datetime(2026, 12, 1, 23, 0, tzinfo=UTC)),
    ],
)
def test_the_digest_hour_is_dst_correct(zone, now, expected):
    rep = Rep(time_zone=zone, digest_hour=8)
    assert next_digest_at(now, rep) == expected
    assert next_digest_at(now, rep).astimezone(rep.zone).hour == 8


def test_without_a_digest_hour_the_default_hour_is_local(settings):
    settings.ALERT_DIGEST_HOUR = 8
    assert next_digest_at(datetime(2026, 12, 1, 9, 0, tzinfo=UTC), Rep(time_zone="Europe/Berlin")) == datetime(
        2026, 12, 2, 7, 0, tzinfo=UTC
    )
    assert next_digest_at(datetime(2026, 12, 1, 9, 0, tzinfo=UTC), Rep()) == datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def test_quiet_hours_end_on_the_local_date_across_dst():
    rep = Rep(time_zone="Europe/Berlin", quiet_start=time(22), quiet_end=time(7))
    # the night Berlin falls back (25 hours long): the end is 07:00 CET, 06:00 UTC
    assert quiet_hours_end(rep, datetime(2026, 10, 24, 21, 0, tzinfo=UTC)) == datetime(2026, 10, 25, 6, 0, tzinfo=UTC)
    assert quiet_hours_end(rep, datetime(2026, 10, 24, 12, 0, tzinfo=UTC)) is None


# --- the footer ------------------------------------------------------------------------------------------------


def test_rep_emails_link_their_footer_to_the_rep_settings_page(smtp, settings):
    settings.PUBLIC_BASE_URL = "https://engine.example"
    rep_alert(make_rep("ann"), "k1")
    dora = make_rep("dora", delivery=Rep.Delivery.DIGEST)
    rep_alert(dora, "k2")  # round robin: dora's turn
    deliveries_send_due()
    with time_machine.travel(timezone.now() + timedelta(days=1)):
        digests_send_due()

    assert len(smtp.messages) == 2
    for message in smtp.messages:
        html = message.get_body(("html",)).get_content()
        text = message.get_body(("plain",)).get_content()
        assert '<a href="https://engine.example/reps/settings/"' in html and ">rep settings</a>" in html
        assert "rep settings: https://engine.example/reps/settings/" in text
