"""Deliveries: one row per alert, channel and recipient; sent after commit, retried with backoff.

A sender claims a row with a conditional UPDATE (its due time moved forward by a lease) and only
sends when that UPDATE changed exactly one row, so two workers never send the same row, and a
worker that dies mid-send leaves a row that is simply due again once the lease is over.
Failures are retried with capped exponential backoff; after ALERT_DELIVERY_MAX_ATTEMPTS, or at
once for a permanent refusal, the row is `dead` and waits in the admin for a person to retry it.
Digest rows wait for the rep's daily digest, which sends all of a recipient's due rows in one email.
A channel that is off (no EMAIL_URL in production, no SLACK_WEBHOOK_URL) sends nothing: its rows are
`skipped` with the reason in `last_error`, never `sent`, never retried; an admin retry sends them once
the channel is configured.
A rep's own settings (alerts.rep_schedule) shape their alerts' rows: a channel they turned off is
`skipped` with that reason, an instant row planned in their quiet hours is due when those end (so is a
retry), and their digest comes at their local digest hour. Admin alerts follow none of them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from alerts.messages import alert_email, alert_slack, digest_email
from alerts.models import Alert, AlertRule, Audience, Delivery, Rep
from alerts.rep_schedule import next_digest_at, past_quiet_hours
from alerts.roles import admin_recipients
from alerts.routing import reps_by_user
from alerts.tables import tables_cached
from failures import retry
from failures.services import error_record
from messaging.registry import Message, TransportError, transport_for

logger = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
SLACK_RECIPIENT = "webhook"
DUE_STATUSES = (Delivery.Status.PENDING, Delivery.Status.FAILED)
REP_EMAIL_OFF = "email off in the rep's settings"
REP_SLACK_OFF = "Slack off in the rep's settings"


class DeliveryError(Exception):
    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class ChannelOff(DeliveryError):
    """Nothing was sent because the channel is not configured: the row is `skipped`, not failed."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


@dataclass
class SendReport:
    sent: int = 0
    failed: int = 0
    dead: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)


# --- Planning (in the alert's transaction) ------------------------------------------------------


def _rep_of(alert: Alert) -> Rep | None:
    """The rep whose settings apply: the recipient of a rep alert; nobody's for an admin alert."""
    if alert.audience == Audience.ADMINS or alert.recipient_id is None:
        return None
    return reps_by_user().get(alert.recipient_id)


def _due(rep: Rep | None, mode: str, now: datetime) -> datetime:
    return next_digest_at(now, rep) if mode == Delivery.Mode.DIGEST else past_quiet_hours(rep, now)


def _email_recipients(alert: Alert, rep: Rep | None) -> list[tuple[object | None, str, str]]:
    """(user, address, mode) for the alert's email."""
    if alert.audience == Audience.ADMINS:
        return [(user, address, Delivery.Mode.INSTANT) for user, address in admin_recipients()]
    user = alert.recipient
    if user is None:
        return []
    address = rep.address if rep else user.email
    mode = Delivery.Mode.DIGEST if rep and rep.delivery == Rep.Delivery.DIGEST else Delivery.Mode.INSTANT
    return [(user, address.strip().lower(), mode)] if address else []


def _rows(alert: Alert, rule: AlertRule, now: datetime) -> list[Delivery]:
    rep = _rep_of(alert)
    rows = []
    if rule.send_email:
        for user, address, mode in _email_recipients(alert, rep):
            row = Delivery(alert=alert, channel="email", recipient=address, user=user, mode=mode)
            off = _channel_off(Delivery.Channel.EMAIL, rep)
            if off:
                row.status, row.last_error = Delivery.Status.SKIPPED, off
            else:
                row.next_attempt_at = _due(rep, mode, now)
            rows.append(row)
    # Without a webhook there is no Slack channel to skip a message on: no row at all.
    if rule.send_slack and not transport_for(Delivery.Channel.SLACK).off_reason():
        row = Delivery(alert=alert, channel="slack", recipient=SLACK_RECIPIENT, user=alert.recipient)
        off = _channel_off(Delivery.Channel.SLACK, rep)
        if off:
            row.status, row.last_error = Delivery.Status.SKIPPED, off
        else:
            row.next_attempt_at = _due(rep, Delivery.Mode.INSTANT, now)
        rows.append(row)
    return rows


def deliveries_plan_all(*, planned: Sequence[tuple[Alert, AlertRule]]) -> list[Delivery]:
    """Create the delivery rows of saved alerts per their rules' channels, all in one INSERT; on commit one
    task sends the instant ones of all of them (a queued task costs ~15 ms of CPU of its own)."""
    now = timezone.now()
    rows = [row for alert, rule in planned for row in _rows(alert, rule, now)]
    Delivery.objects.bulk_create(rows)
    instant = sorted(
        {row.alert_id for row in rows if row.mode == Delivery.Mode.INSTANT and row.status == Delivery.Status.PENDING}
    )
    if instant:
        transaction.on_commit(lambda: _enqueue("alerts.tasks.deliver_alerts", instant), robust=True)
    return rows


def _enqueue(func: str, *args: object) -> None:
    """Ring django-q2's doorbell; the every-minute schedule sends anything a lost task leaves behind."""
    from django_q.tasks import async_task

    async_task(func, *args, q_options={"group": "alerts"})


# --- Sending ------------------------------------------------------------------------------------


def backoff(attempts: int) -> timedelta:
    """Deliveries' parameters of the one backoff rule (failures/retry.py): base·2^(n-1) s, capped, no jitter
    (a rep's quiet hours move it anyway)."""
    return retry.backoff(attempts, base=settings.ALERT_RETRY_BASE_SECONDS, cap=settings.ALERT_RETRY_MAX_SECONDS)


def _claim(delivery_id: int, now: datetime) -> bool:
    """Take the row for this worker for LEASE; False if another worker has it or it is not due."""
    claimed = Delivery.objects.filter(pk=delivery_id, status__in=DUE_STATUSES, next_attempt_at__lte=now).update(
        next_attempt_at=now + LEASE, updated_at=now
    )
    return claimed == 1


#: What a rep may turn off per channel (Rep.email_on, Rep.slack_on), and the reason a skipped row shows.
_REP_SWITCH = {"email": ("email_on", REP_EMAIL_OFF), "slack": ("slack_on", REP_SLACK_OFF)}


def _message(alert: Alert, delivery: Delivery, rep: Rep | None) -> Message:
    """The alert rendered once with every channel's parts; the channel's transport takes what it shows."""
    subject, text, html = alert_email(alert)
    slack_text, blocks = alert_slack(alert, mention=rep.slack_member_id if rep else "")
    if delivery.channel == Delivery.Channel.SLACK:
        text = slack_text
    return Message(
        recipient=delivery.recipient,
        subject=subject,
        text=text,
        html=html,
        blocks=blocks,
        key=f"delivery:{delivery.pk}",
    )


def _channel_off(channel: str, rep: Rep | None) -> str | None:
    """Why this channel cannot carry the delivery now: off for the engine, or turned off by the rep."""
    off = transport_for(channel).off_reason()
    if off:
        return off
    switch, reason = _REP_SWITCH.get(channel, ("", ""))
    if rep is not None and switch and not getattr(rep, switch):
        return reason
    return None


def delivery_send(delivery: Delivery) -> None:
    """Send one instant delivery through its channel's transport; raise DeliveryError when it did not go out."""
    alert = delivery.alert
    rep = _rep_of(alert)
    off = _channel_off(delivery.channel, rep)  # planned while it was on, or turned off since
    if off:
        raise ChannelOff(off)
    try:
        transport_for(delivery.channel).send(_message(alert, delivery, rep))
    except TransportError as exc:
        raise DeliveryError(str(exc), retryable=exc.retryable) from exc


def _record(delivery: Delivery, error: DeliveryError | None, now: datetime, report: SendReport) -> None:
    if isinstance(error, ChannelOff):  # no attempt was made, and it is no failure to track or alert about
        Delivery.objects.filter(pk=delivery.pk).update(
            status=Delivery.Status.SKIPPED, next_attempt_at=None, last_error=str(error), updated_at=now
        )
        report.skipped += 1
        return
    attempts = delivery.attempts + 1
    fields: dict[str, object] = {"attempts": attempts, "updated_at": now}
    if error is None:
        fields.update(status=Delivery.Status.SENT, sent_at=now, next_attempt_at=None, last_error="")
        report.sent += 1
    elif error.retryable and attempts < settings.ALERT_DELIVERY_MAX_ATTEMPTS:
        retry_at = past_quiet_hours(_rep_of(delivery.alert), now + backoff(attempts))
        fields.update(status=Delivery.Status.FAILED, next_attempt_at=retry_at, last_error=str(error))
        report.failed += 1
    else:
        fields.update(status=Delivery.Status.DEAD, next_attempt_at=None, last_error=str(error))
        report.dead += 1
    if error is not None:
        report.errors.append(f"{delivery.channel} to {delivery.recipient}: {error}")
        ids = {"delivery_id": delivery.pk, "alert_id": delivery.alert_id, "workspace_id": delivery.alert.workspace_key}
        logger.warning(
            "alert delivery %s (%s to %s) failed: %s",
            delivery.pk,
            delivery.channel,
            delivery.recipient,
            error,
            extra=ids,
        )
    Delivery.objects.filter(pk=delivery.pk).update(**fields)
    if error is not None:  # error tracking groups it by the root exception (SMTPRecipientsRefused, …)
        root: BaseException = error
        while root.__cause__ is not None:
            root = root.__cause__
        kind = type(root).__name__
        error_record(source="delivery", kind=kind, message=str(error), obj=delivery, workspace_key=ids["workspace_id"])


def deliveries_send_due(
    *,
    alert_id: int | None = None,
    alert_ids: Sequence[int] | None = None,
    limit: int = 200,
    now: datetime | None = None,
) -> SendReport:
    """Send the instant deliveries that are due (of one alert, of these alerts, or all); return what happened."""
    now = now or timezone.now()
    due = Delivery.objects.filter(mode=Delivery.Mode.INSTANT, status__in=DUE_STATUSES, next_attempt_at__lte=now)
    if alert_id is not None:
        due = due.filter(alert_id=alert_id)
    if alert_ids is not None:
        due = due.filter(alert_id__in=list(alert_ids))
    report = SendReport()
    with tables_cached():  # the reps' settings, read once for the batch
        for delivery_id in list(due.order_by("next_attempt_at", "pk").values_list("pk", flat=True)[:limit]):
            if not _claim(delivery_id, now):
                continue
            delivery = Delivery.objects.select_related("alert__recipient").get(pk=delivery_id)
            try:
                delivery_send(delivery)
            except DeliveryError as exc:
                _record(delivery, exc, timezone.now(), report)
            else:
                _record(delivery, None, timezone.now(), report)
    return report


def digests_send_due(*, now: datetime | None = None) -> SendReport:
    """One email per recipient with all of their due digest rows; each row records the outcome."""
    now = now or timezone.now()
    due = Delivery.objects.filter(mode=Delivery.Mode.DIGEST, status__in=DUE_STATUSES, next_attempt_at__lte=now)
    report = SendReport()
    for recipient in sorted(set(due.values_list("recipient", flat=True))):
        ids = list(due.filter(recipient=recipient).order_by("alert__created_at", "pk").values_list("pk", flat=True))
        mine = [pk for pk in ids if _claim(pk, now)]
        if not mine:
            continue
        rows = list(Delivery.objects.filter(pk__in=mine).select_related("alert").order_by("alert__created_at", "pk"))
        error: DeliveryError | None = None
        rep = _rep_of(rows[0].alert)
        off = _channel_off(Delivery.Channel.EMAIL, rep)  # off, or turned off since these rows were planned
        if off:
            error = ChannelOff(off)
        else:
            subject, text, html = digest_email([row.alert for row in rows])
            digest = Message(recipient=recipient, subject=subject, text=text, html=html, key=f"digest:{mine[0]}")
            try:
                transport_for(Delivery.Channel.EMAIL).send(digest)
            except TransportError as exc:
                error = DeliveryError(str(exc), retryable=exc.retryable)
        finished = timezone.now()
        for row in rows:
            _record(row, error, finished, report)
    return report


# --- Admin actions ------------------------------------------------------------------------------


def deliveries_retry(*, delivery_ids: Sequence[int]) -> int:
    """Give failed, dead or skipped deliveries a fresh set of attempts, due now; return how many."""
    now = timezone.now()
    retry = Delivery.objects.filter(pk__in=delivery_ids).filter(
        Q(status=Delivery.Status.DEAD) | Q(status=Delivery.Status.FAILED) | Q(status=Delivery.Status.SKIPPED)
    )
    count = retry.update(status=Delivery.Status.PENDING, attempts=0, next_attempt_at=now, updated_at=now)
    if count:
        transaction.on_commit(lambda: _enqueue("alerts.tasks.deliver_due"), robust=True)
    return count
