"""The ops page's figures: every number paired with the admin list that shows the rows behind it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from alerts.models import Delivery
from events.models import Event
from failures.models import ErrorKind, Heartbeat
from failures.services import admin_change_url
from ops import selectors
from ops.health import heartbeat_report
from salesforce.models import OutboxItem
from workspaces.models import ReviewItem


@dataclass(frozen=True)
class Figure:
    label: str
    value: str
    url: str = ""
    warn: bool = False
    note: str = ""


@dataclass
class Section:
    title: str
    figures: list[Figure] = field(default_factory=list)


def admin_list_url(model: type, **filters: object) -> str:
    """The model's admin changelist filtered by exact field values; '' when the admin has no such list."""
    meta = model._meta
    try:
        url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
    except NoReverseMatch:
        return ""
    return f"{url}?{urlencode(filters)}" if filters else url


def seconds_display(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def age_display(then: datetime | None, now: datetime) -> str:
    return "—" if then is None else seconds_display((now - then).total_seconds())


def ops_overview(*, now: datetime | None = None) -> list[Section]:
    now = now or timezone.now()
    since = now - timedelta(minutes=settings.OPS_WINDOW_MINUTES)
    return [
        _events(now, since),
        _errors(now, since),
        _salesforce(now),
        _alerts(now),
        _heartbeats(now),
    ]


def _events(now: datetime, since: datetime) -> Section:
    section = Section("Events")
    for status, count in selectors.event_counts_by_status().items():
        warn = status in (Event.Status.ERROR, Event.Status.REVIEW) and count > 0
        label = f"Backlog: {Event.Status(status).label.lower()}"
        section.figures.append(Figure(label, str(count), admin_list_url(Event, status__exact=status), warn))
    oldest = selectors.oldest_open_event_received_at()
    late = oldest is not None and (now - oldest).total_seconds() > settings.SLA_EVENT_SECONDS
    open_url = admin_list_url(Event, status__in=",".join(Event.OPEN_STATUSES))
    section.figures.append(Figure("Oldest open event waiting", age_display(oldest, now), open_url, late))
    window = f"received in the last {settings.OPS_WINDOW_MINUTES} min"
    lag = selectors.processing_lag(since=since)
    completed_url = admin_list_url(Event, status__exact=Event.Status.COMPLETED, received_at__gte=since.isoformat())
    section.figures += [
        Figure("Completed", str(lag.completed), completed_url, note=window),
        Figure("Processing lag p50", seconds_display(lag.p50), completed_url, note="received → completed, " + window),
        Figure(
            "Processing lag p95",
            seconds_display(lag.p95),
            completed_url,
            warn=lag.p95 is not None and lag.p95 > settings.SLA_EVENT_SECONDS,
            note="received → completed, " + window,
        ),
    ]
    return section


def _errors(now: datetime, since: datetime) -> Section:
    section = Section("Errors")
    rate = selectors.event_error_rate(since=since)
    share = "—" if rate.share is None else f"{rate.share:.1%} ({rate.failed} of {rate.received})"
    section.figures.append(
        Figure(
            "Event error rate",
            share,
            admin_list_url(Event, retry_count__gt=0, received_at__gte=since.isoformat()),
            warn=bool(rate.failed),
            note=f"failed at least once, of those received in the last {settings.OPS_WINDOW_MINUTES} min",
        )
    )
    for source, total in selectors.errors_total_by_source().items():
        label = f"Errors recorded: {ErrorKind.Source(source).label.lower()}"
        section.figures.append(Figure(label, str(total), admin_list_url(ErrorKind, source__exact=source)))
    for error in selectors.error_kinds_recent(since=since, limit=5):
        link = admin_change_url(error.last_object_type, error.last_object_id)
        section.figures.append(
            Figure(
                f"{error.get_source_display()}: {error.kind}",
                f"{error.count}× (last {age_display(error.last_seen, now)} ago)",
                reverse("admin:failures_errorkind_change", args=[error.pk]),
                warn=error.resolved_at is None,
                note=error.message[:160] + (f" — latest object: {link}" if link else ""),
            )
        )
    reviews = selectors.review_open_count()
    section.figures.append(
        Figure(
            "Review queue (open)",
            str(reviews),
            admin_list_url(ReviewItem, status__exact=ReviewItem.Status.OPEN),
            warn=bool(reviews),
        )
    )
    return section


def _salesforce(now: datetime) -> Section:
    section = Section(f"Salesforce sync ({settings.SALESFORCE_SYNC})")
    for state, count in selectors.outbox_counts_by_state().items():
        warn = state == OutboxItem.State.DEAD and count > 0
        label = "Dead letters" if state == OutboxItem.State.DEAD else f"Outbox: {OutboxItem.State(state).label.lower()}"
        section.figures.append(Figure(label, str(count), admin_list_url(OutboxItem, state__exact=state), warn))
    oldest = selectors.oldest_waiting_write()
    late = oldest is not None and (now - oldest) > timedelta(minutes=settings.SLA_SALESFORCE_MINUTES)
    waiting_url = admin_list_url(OutboxItem, state__in=",".join(selectors.OUTBOX_WAITING))
    section.figures.append(Figure("Oldest unsent write", age_display(oldest, now), waiting_url, late))
    control = selectors.sync_control_row()
    control_url = admin_list_url(type(control)) if control else ""
    if control and control.api_max:
        share = control.api_used / control.api_max
        limit = settings.SALESFORCE_MAX_API_SHARE
        usage = f"{control.api_used} of {control.api_max} ({share:.0%}; pauses at {limit:.0%})"
        checked = f"read {age_display(control.api_checked_at, now)} ago"
        warn = share >= limit
        section.figures.append(Figure("API usage today", usage, control_url, warn, checked))
    else:
        section.figures.append(Figure("API usage today", "not reported yet", control_url))
    last = control.last_success_at if control else None
    section.figures.append(
        Figure("Last successful sync", "never" if last is None else f"{age_display(last, now)} ago", control_url)
    )
    if control and control.paused_until and control.paused_until > now:
        section.figures.append(
            Figure(
                "Paused until", f"{control.paused_until:%Y-%m-%d %H:%M} UTC", control_url, True, control.pause_reason
            )
        )
    section.figures += _pilot()
    return section


def _pilot() -> list[Figure]:
    """Who the pilot covers, how much it holds, and how far the release after a widening has got."""
    pilot = selectors.salesforce_pilot()
    held_url = admin_list_url(OutboxItem, state__exact=OutboxItem.State.HELD)
    applied = "" if pilot.mode == "live" else f"not applied: the sync is {pilot.mode}"
    return [
        Figure("Pilot", pilot.pilot.describe(), note=applied or "SALESFORCE_PILOT_REPS / _PERCENT; takes a restart"),
        Figure("Held outside the pilot", pilot.held, held_url),
        Figure("Release after a widening", "under way" if pilot.passing else "done", held_url, note=pilot.progress),
    ]


#: A due delivery older than this is late: instant rows are swept every minute, digests every 15 minutes.
DELIVERY_BACKLOG_LATE = timedelta(minutes=20)


def _alerts(now: datetime) -> Section:
    """Unsent deliveries split by when they are due: the backlog (due and not sent) warns when it is late;
    rows scheduled for later (daily digests waiting for their hour, instant ones held for quiet hours) never do."""
    section = Section("Alert deliveries")
    queue = selectors.delivery_queue(now=now)
    unsent = ",".join((Delivery.Status.PENDING, Delivery.Status.FAILED))
    late = queue.oldest_due is not None and now - queue.oldest_due > DELIVERY_BACKLOG_LATE
    oldest = f"oldest due {age_display(queue.oldest_due, now)} ago" if queue.oldest_due else "none due"
    section.figures.append(
        Figure(
            "Deliveries backlog (due, not sent)",
            str(queue.backlog),
            admin_list_url(Delivery, status__in=unsent, next_attempt_at__lte=now.isoformat()),
            late,
            note=oldest,
        )
    )
    for label, count, first, mode, why in (
        ("Scheduled: daily digests", queue.digests, queue.next_digest, Delivery.Mode.DIGEST, "waiting for their hour"),
        (
            "Scheduled: instant",
            queue.instant,
            queue.next_instant,
            Delivery.Mode.INSTANT,
            "held for the recipient's quiet hours (or being sent right now)",
        ),
    ):
        url = admin_list_url(
            Delivery, status__exact=Delivery.Status.PENDING, mode__exact=mode, next_attempt_at__gt=now.isoformat()
        )
        note = why + (f"; next at {first:%Y-%m-%d %H:%M} UTC" if first else "")
        section.figures.append(Figure(label, str(count), url, note=note))
    counts = selectors.delivery_counts_by_status()
    for status in (Delivery.Status.FAILED, Delivery.Status.DEAD):
        label = f"Deliveries: {Delivery.Status(status).label.lower()}"
        section.figures.append(
            Figure(label, str(counts[status]), admin_list_url(Delivery, status__exact=status), counts[status] > 0)
        )
    return section


def _heartbeats(now: datetime) -> Section:
    section = Section("Heartbeats")
    for name, beat in heartbeat_report(now=now).items():
        value = "never" if beat["age_seconds"] is None else f"{seconds_display(beat['age_seconds'])} ago"
        note = f"stale after {seconds_display(beat['max_age_seconds'])}"
        url = admin_list_url(Heartbeat)
        section.figures.append(Figure(f"Heartbeat: {name}", value, url, beat["status"] != "ok", note))
    return section
