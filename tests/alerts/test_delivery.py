"""Delivery over real sockets: email to an aiosmtpd server, Slack to a local Slack-compatible server.

Every attempt lands on the Delivery row; failures are retried with capped backoff, then dead.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client

from alerts.delivery import backoff, deliveries_retry, deliveries_send_due, digests_send_due, next_digest_at
from alerts.models import Alert, Delivery, Rep
from alerts.services import alert_raise
from failures.models import ErrorKind
from messaging.slack import SlackError, slack_post, slack_url_problem
from tests.alerts.conftest import make_rep
from tests.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def rep_alert(rep: Rep, key: str = "k1", **kwargs) -> Alert:
    workspace = WorkspaceFactory(workspace_id=f"ws_{key}", email=f"{key}@gmail.com", company="Acme")
    alert, _ = alert_raise(
        rule="trial_expiring",
        dedupe_key=key,
        title=f"Trial expiring in 3 days: Acme {key}",
        reason="The trial of Acme expires 2026-12-04 & has not converted.",
        audience="rep",
        workspace=workspace,
        context={"event_ids": ["msg_1"], "values": {"days_left": 3}},
        **kwargs,
    )
    return alert


def row(alert: Alert, channel: str) -> Delivery:
    return alert.deliveries.get(channel=channel)


# --- email ------------------------------------------------------------------------------------------


def test_email_goes_out_over_smtp_with_text_html_and_the_workspace_link(smtp, settings):
    settings.PUBLIC_BASE_URL = "https://engine.example"
    alert = rep_alert(make_rep("ann"))

    report = deliveries_send_due()

    assert report.sent == 1
    [message] = smtp.messages
    assert message["To"] == "ann@sales.example"
    assert message["Subject"] == "[Trial expiring] Trial expiring in 3 days: Acme k1"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "https://engine.example/reps/workspaces/ws_k1/" in text
    assert 'href="https://engine.example/reps/workspaces/ws_k1/"' in html
    assert "expires 2026-12-04 &amp; has not converted" in html  # escaped in HTML
    assert "& has not converted" in text
    delivery = row(alert, "email")
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("sent", 1, "")
    assert delivery.sent_at is not None and delivery.next_attempt_at is None


def test_a_temporary_smtp_refusal_is_retried_with_backoff_then_sent(smtp):
    with time_machine.travel(T0 - timedelta(minutes=5), tick=False):  # raised before T0, due at T0
        alert = rep_alert(make_rep("ann"))
    smtp.refuse = (451, "4.3.0 try again later")
    with time_machine.travel(T0, tick=False):
        deliveries_send_due()
    delivery = row(alert, "email")
    assert delivery.status == "failed" and delivery.attempts == 1
    assert "451" in delivery.last_error
    assert delivery.next_attempt_at == T0 + backoff(1)

    smtp.refuse = None
    with time_machine.travel(T0 + backoff(1) - timedelta(seconds=1), tick=False):
        assert deliveries_send_due().sent == 0, "not due yet"
    with time_machine.travel(T0 + backoff(1), tick=False):
        assert deliveries_send_due().sent == 1
    delivery.refresh_from_db()
    assert delivery.status == "sent" and delivery.attempts == 2
    assert len(smtp.messages) == 1


def test_a_permanent_refusal_is_dead_at_once(smtp):
    alert = rep_alert(make_rep("ann"))
    smtp.refuse = (550, "5.1.1 no such user")
    deliveries_send_due()
    delivery = row(alert, "email")
    assert delivery.status == "dead" and delivery.attempts == 1 and "550" in delivery.last_error


def test_out_of_attempts_is_dead_and_an_admin_retry_sends_it(smtp, settings):
    settings.ALERT_DELIVERY_MAX_ATTEMPTS = 3
    with time_machine.travel(T0 - timedelta(minutes=5), tick=False):  # raised before T0, due at T0
        alert = rep_alert(make_rep("ann"))
    smtp.refuse = (421, "4.7.0 busy")
    moment = T0
    for _ in range(3):
        with time_machine.travel(moment, tick=False):
            deliveries_send_due()
        moment += timedelta(hours=2)
    delivery = row(alert, "email")
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("dead", 3, None)

    smtp.refuse = None
    assert deliveries_retry(delivery_ids=[delivery.pk]) == 1
    deliveries_send_due()
    delivery.refresh_from_db()
    assert delivery.status == "sent" and delivery.attempts == 1
    assert len(smtp.messages) == 1


def test_backoff_is_exponential_and_capped(settings):
    settings.ALERT_RETRY_BASE_SECONDS, settings.ALERT_RETRY_MAX_SECONDS = 60, 600
    assert [backoff(n).total_seconds() for n in range(1, 7)] == [60, 120, 240, 480, 600, 600]


def test_an_unreachable_smtp_server_is_retryable(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 2  # discard: refused
    alert = rep_alert(make_rep("ann"))
    deliveries_send_due()
    delivery = row(alert, "email")
    assert delivery.status == "failed" and "ConnectionRefusedError" in delivery.last_error


def test_a_delivery_is_claimed_once(smtp):
    rep_alert(make_rep("ann"))
    assert deliveries_send_due().sent == 1
    assert deliveries_send_due().sent == 0
    assert len(smtp.messages) == 1


# --- digests ------------------------------------------------------------------------------------------


def test_digest_reps_get_one_email_a_day_with_all_their_alerts(smtp, settings):
    settings.ALERT_DIGEST_HOUR = 8
    rep = make_rep("dora", delivery=Rep.Delivery.DIGEST)
    with time_machine.travel(T0, tick=False):  # 09:00: after today's digest hour
        first, second = rep_alert(rep, "a1"), rep_alert(rep, "a2")
        assert deliveries_send_due().sent == 0, "digest rows wait for the digest"
        assert row(first, "email").next_attempt_at == datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
        assert digests_send_due().sent == 0
    with time_machine.travel(datetime(2026, 12, 2, 8, 5, tzinfo=UTC), tick=False):
        report = digests_send_due()
    assert report.sent == 2
    [message] = smtp.messages
    assert message["To"] == "dora@sales.example"
    assert message["Subject"] == "Your alert digest: 2 alerts"
    text = message.get_body(("plain",)).get_content()
    assert "Acme a1" in text and "Acme a2" in text
    assert {row(first, "email").status, row(second, "email").status} == {"sent"}


def test_next_digest_time(settings):
    settings.ALERT_DIGEST_HOUR = 8
    assert next_digest_at(datetime(2026, 12, 1, 7, 0, tzinfo=UTC)) == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert next_digest_at(datetime(2026, 12, 1, 8, 0, tzinfo=UTC)) == datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


# --- Slack ---------------------------------------------------------------------------------------------


def test_slack_gets_block_kit_with_a_link_back_and_a_mention(slack, settings):
    settings.PUBLIC_BASE_URL = "https://engine.example"
    alert = rep_alert(make_rep("ann", slack_member_id="U0ANN"))
    assert sorted(alert.deliveries.values_list("channel", flat=True)) == ["email", "slack"]

    deliveries_send_due()

    [post] = slack.posts
    assert post["method"] == "POST" and post["path"] == "/services/T000/B000/XXXX"
    body = post["body"]
    assert body["text"].startswith("Trial expiring in 3 days: Acme k1")
    header, section, actions, context = body["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": alert.title, "emoji": False}}
    assert "&amp; has not converted" in section["text"]["text"]
    assert {"type": "mrkdwn", "text": "*For*\n<@U0ANN>"} in section["fields"]
    assert actions["elements"][0]["url"] == "https://engine.example/reps/workspaces/ws_k1/"
    assert context["elements"][0]["text"].startswith("Round robin")
    assert row(alert, "slack").status == "sent"


def test_slack_server_errors_are_retried(slack):
    slack.answer = (500, "internal_error", {})
    alert = rep_alert(make_rep("ann"))
    deliveries_send_due()
    delivery = row(alert, "slack")
    assert delivery.status == "failed" and delivery.last_error == "HTTP 500: internal_error"


def test_slack_refusals_are_dead(slack):
    slack.answer = (404, "no_service", {})
    alert = rep_alert(make_rep("ann"))
    deliveries_send_due()
    assert row(alert, "slack").status == "dead"


def test_a_slack_redirect_is_not_followed(slack, other_server):
    slack.answer = (302, "", {"Location": other_server.url + "/stolen"})
    alert = rep_alert(make_rep("ann"))
    deliveries_send_due()
    delivery = row(alert, "slack")
    assert delivery.status == "dead"
    assert "redirects are not followed" in delivery.last_error
    assert len(slack.posts) == 1
    assert other_server.posts == [], "the redirect target was never contacted"


def test_hosts_off_the_allowlist_are_refused_without_a_request(slack, settings):
    assert slack_url_problem("https://hooks.slack.com/services/T/B/X") is None
    assert "not allowed" in slack_url_problem("https://evil.example/services/T/B/X")
    assert "not allowed" in slack_url_problem("http://hooks.slack.com/services/T/B/X")
    with pytest.raises(SlackError) as refused:
        slack_post(url="https://hooks.slack.com.evil.example/x", text="t", blocks=[])
    assert refused.value.retryable is False

    settings.SLACK_ALLOW_LOOPBACK = False
    assert "SLACK_ALLOW_LOOPBACK" in slack_url_problem(slack.url)
    alert = rep_alert(make_rep("ann"))
    deliveries_send_due()
    assert row(alert, "slack").status == "dead"
    assert slack.posts == []


def test_without_a_slack_url_no_slack_delivery_is_planned(settings):
    settings.SLACK_WEBHOOK_URL = ""
    alert = rep_alert(make_rep("ann"))
    assert list(alert.deliveries.values_list("channel", flat=True)) == ["email"]


def test_rule_channels_are_configurable(slack):
    from alerts.models import AlertRule

    AlertRule.objects.filter(key="trial_expiring").update(send_email=False)
    alert = rep_alert(make_rep("ann"))
    assert list(alert.deliveries.values_list("channel", flat=True)) == ["slack"]


# --- admin ---------------------------------------------------------------------------------------------


def test_admin_retry_action_and_pages(admin_client: Client, smtp):
    alert = rep_alert(make_rep("ann"))
    delivery = row(alert, "email")
    Delivery.objects.filter(pk=delivery.pk).update(status="dead", attempts=6, last_error="boom", next_attempt_at=None)

    page = admin_client.get("/admin/alerts/delivery/?status__exact=dead")
    assert page.status_code == 200 and b"ann@sales.example" in page.content
    response = admin_client.post(
        "/admin/alerts/delivery/", {"action": "retry_deliveries", "_selected_action": [delivery.pk]}
    )
    assert response.status_code == 302
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 0)

    for url in (
        "/admin/alerts/alert/",
        f"/admin/alerts/alert/{alert.pk}/change/",
        "/admin/alerts/alertrule/",
        "/admin/alerts/rep/",
        "/admin/alerts/territoryrule/",
        f"/admin/alerts/delivery/{delivery.pk}/change/",
    ):
        assert admin_client.get(url).status_code == 200, url

    admin_client.post("/admin/alerts/alert/", {"action": "acknowledge_alerts", "_selected_action": [alert.pk]})
    alert.refresh_from_db()
    assert alert.status == "acknowledged" and alert.acknowledged_by.username == "admin"
    admin_client.post("/admin/alerts/alert/", {"action": "resolve_alerts", "_selected_action": [alert.pk]})
    alert.refresh_from_db()
    assert alert.status == "resolved" and alert.resolved_at is not None


def test_slack_fallback_text_escapes_the_title(slack):
    """A title from hostile input (`<!channel>`, a disguised link) reaches Slack as text in every part."""
    alert = rep_alert(make_rep("ann"))
    Alert.objects.filter(pk=alert.pk).update(title="Acme <!channel> & <https://evil.example|click>")

    deliveries_send_due()

    [post] = slack.posts
    text = post["body"]["text"]
    assert text.startswith("Acme &lt;!channel&gt; &amp; &lt;https://evil.example|click&gt; — ")
    assert "<!channel>" not in text and "<https://evil" not in text
    assert row(alert, "slack").status == "sent"


# --- a channel that is off (CONTRACT §1: no EMAIL_URL with DEBUG off) ---------------------------------------


def test_with_the_email_channel_off_deliveries_are_skipped_with_the_reason_and_nothing_is_sent(smtp, slack, settings):
    """Before: the console backend printed names and addresses to the log and the rows were marked `sent`."""
    settings.EMAIL_CHANNEL_ENABLED = False
    alert = rep_alert(make_rep("ann"))
    delivery = row(alert, "email")
    assert (delivery.status, delivery.last_error, delivery.next_attempt_at) == (
        "skipped",
        "email channel off: EMAIL_URL not set",
        None,
    )

    report = deliveries_send_due()

    assert smtp.messages == []
    assert (report.sent, report.skipped) == (1, 0)  # Slack still goes; the email row is not even due
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.sent_at) == ("skipped", 0, None)
    assert row(alert, "slack").status == "sent"
    assert not ErrorKind.objects.exists(), "an unconfigured channel is not an error to alert about"


def test_rows_planned_while_the_channel_was_on_are_skipped_not_sent_or_retried(smtp, settings):
    with time_machine.travel(T0 - timedelta(minutes=5), tick=False):
        instant = rep_alert(make_rep("ann"), key="k1")
        digest = rep_alert(make_rep("bob", delivery=Rep.Delivery.DIGEST), key="k2")
    settings.EMAIL_CHANNEL_ENABLED = False

    with time_machine.travel(T0 + timedelta(days=1), tick=False):
        assert deliveries_send_due().skipped == 1
        assert digests_send_due().skipped == 1
        assert deliveries_send_due().skipped == digests_send_due().skipped == 0, "never retried"

    assert smtp.messages == []
    for alert in (instant, digest):
        delivery = row(alert, "email")
        assert (delivery.status, delivery.last_error, delivery.attempts) == (
            "skipped",
            "email channel off: EMAIL_URL not set",
            0,
        )

    # once EMAIL_URL is set, an admin's retry sends them
    settings.EMAIL_CHANNEL_ENABLED = True
    assert deliveries_retry(delivery_ids=[row(instant, "email").pk]) == 1
    assert deliveries_send_due().sent == 1
    assert row(instant, "email").status == "sent" and len(smtp.messages) == 1
