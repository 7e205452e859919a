"""Reads behind the rep pages and the read API: who may see what, the dashboard, a workspace's timeline.

One rule decides what a rep sees (`workspaces_visible_to`); every page, count and API answer goes
through it, so neither a page nor a token can show a rep something another page would hide. Payloads
never leave this module: the timeline carries only the few named values of each event type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone

from alerts.models import Alert, Rep
from alerts.roles import REPS_GROUP, user_group_names, user_is_alerts_admin, user_is_api_service, user_is_auditor
from alerts.services import alerts_visible_to
from events.models import Event
from linking.models import ReviewItem
from workspaces.lifecycle import LIFECYCLE_TYPES
from workspaces.models import Workspace

#: Per event type, the payload values a rep may see on the timeline (everything else stays hidden).
TIMELINE_VALUES: dict[str, tuple[str, ...]] = {
    "trial.started": ("plan", "trial_expires_at"),
    "subscription.converted": ("plan", "mrr", "currency", "billing_interval"),
    "workspace.churned": ("churned_at", "reason"),
    "billing.payment_failed": ("amount_due", "currency", "attempt_count", "next_payment_attempt"),
    "billing.trial_will_end": ("trial_end",),
    "billing.renewal_updated": ("renews_at",),
}
TIMELINE_LIMIT = 200
RECENT_DAYS = 30


# --- Roles ------------------------------------------------------------------------------------


def user_is_rep(user: AbstractBaseUser) -> bool:
    """An active user in the "Reps" group or with an active Rep row."""
    if not (user.is_authenticated and user.is_active):
        return False
    if Rep.objects.filter(user=user, active=True).exists():
        return True
    return REPS_GROUP in user_group_names(user)


def user_may_use_rep_pages(user: AbstractBaseUser) -> bool:
    return user_is_alerts_admin(user) or user_is_rep(user)


# --- Visibility -------------------------------------------------------------------------------


def workspaces_visible_to(user: AbstractBaseUser) -> QuerySet[Workspace]:
    """All workspaces for an admin; for a rep, those whose account they own or with an alert routed to them.

    An alert is matched by its workspace link and by its workspace key, so an alert raised before its
    workspace row existed still counts.
    """
    workspaces = Workspace.objects.select_related("account", "lead", "contact")
    if user_is_alerts_admin(user):
        return workspaces.all()
    if not user_is_rep(user):
        return workspaces.none()
    routed = Alert.objects.filter(recipient=user)
    return workspaces.filter(
        Q(account__owner=user)
        | Q(pk__in=routed.exclude(workspace__isnull=True).values("workspace_id"))
        | Q(workspace_id__in=routed.exclude(workspace_key="").values("workspace_key"))
    )


def alerts_for_inbox(
    user: AbstractBaseUser, *, status: str = "", rule: str = "", workspace: str = ""
) -> QuerySet[Alert]:
    """The user's visible alerts, filtered; snoozed ones are hidden unless asked for by status."""
    alerts = alerts_visible_to(user).select_related("workspace", "recipient")
    if status:
        alerts = alerts.filter(status=status)
    else:
        alerts = alerts.exclude(status__in=[Alert.Status.SNOOZED, Alert.Status.RESOLVED])
    if rule:
        alerts = alerts.filter(rule=rule)
    if workspace:
        alerts = alerts.filter(workspace_key=workspace)
    return alerts.order_by("-created_at", "-pk")


def timeline_events() -> QuerySet[Event]:
    """The events a workspace page lists: lifecycle and billing types (usage only as a count)."""
    return Event.objects.filter(type__in=LIFECYCLE_TYPES)


# --- The read API (CONTRACT §6): a token sees what its user's rep pages show -------------------


def user_reads_whole_api(user: AbstractBaseUser) -> bool:
    """Auditors and API service accounts: no rep pages, but every record through the read API (auditors
    read every one of them in the admin already)."""
    return user_is_api_service(user) or user_is_auditor(user)


def user_may_read_api(user: AbstractBaseUser) -> bool:
    """Reps and admins (as on the rep pages), auditors and service accounts; anyone else gets 403."""
    return user_reads_whole_api(user) or user_may_use_rep_pages(user)


def api_workspaces(user: AbstractBaseUser) -> QuerySet[Workspace]:
    if user_reads_whole_api(user):
        return Workspace.objects.select_related("account", "lead", "contact")
    return workspaces_visible_to(user)


def api_alerts(user: AbstractBaseUser) -> QuerySet[Alert]:
    if user_reads_whole_api(user):
        return Alert.objects.select_related("workspace", "recipient")
    return alerts_visible_to(user)


def api_events(user: AbstractBaseUser) -> QuerySet[Event]:
    """Every event for admins and whole-API readers; for a rep, the timeline events of the workspaces they
    may see (what their workspace pages list); none for anyone else."""
    if user_reads_whole_api(user) or user_is_alerts_admin(user):
        return Event.objects.all()
    if not user_is_rep(user):
        return Event.objects.none()
    return timeline_events().filter(workspace_key__in=workspaces_visible_to(user).values("workspace_id"))


def workspaces_for_list(user: AbstractBaseUser, *, status: str = "", q: str = "") -> QuerySet[Workspace]:
    workspaces = workspaces_visible_to(user)
    if status:
        workspaces = workspaces.filter(status=status)
    if q:
        workspaces = workspaces.filter(
            Q(workspace_id__icontains=q) | Q(name__icontains=q) | Q(email__icontains=q) | Q(company__icontains=q)
        )
    return workspaces.order_by("-updated_at", "workspace_id")


# --- Dashboard --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dashboard:
    expiring: list[Workspace]
    converted: list[Workspace]
    churned: list[Workspace]
    mrr_lost: list[tuple[str, Decimal]]  # (currency, total), largest first: currencies are never summed together
    review_counts: list[dict[str, Any]]
    review_total: int
    open_alerts: int


def dashboard_for(user: AbstractBaseUser, *, now: datetime | None = None, limit: int = 50) -> Dashboard:
    """Trials expiring within 7 days, conversions and churn of the last 30, open reviews and alerts."""
    now = now or timezone.now()
    visible = workspaces_visible_to(user)
    since = now - timedelta(days=RECENT_DAYS)
    expiring = visible.filter(
        status=Workspace.Status.TRIAL, trial_expires_at__gte=now, trial_expires_at__lt=now + timedelta(days=7)
    ).order_by("trial_expires_at", "workspace_id")
    converted = visible.filter(status=Workspace.Status.PAID, converted_at__gte=since).order_by("-converted_at")
    churned = visible.filter(status=Workspace.Status.CHURNED, churned_at__gte=since).order_by("-churned_at")
    reviews = _review_counts(visible)
    return Dashboard(
        expiring=list(expiring[:limit]),
        converted=list(converted[:limit]),
        churned=list(churned[:limit]),
        mrr_lost=_mrr_lost(churned),
        review_counts=reviews,
        review_total=sum(row["count"] for row in reviews),
        open_alerts=alerts_visible_to(user).filter(status=Alert.Status.OPEN).count(),
    )


def _mrr_lost(churned: QuerySet[Workspace]) -> list[tuple[str, Decimal]]:
    rows = churned.order_by().values("currency").annotate(total=Sum("mrr")).filter(total__gt=0)
    return sorted(((row["currency"], row["total"]) for row in rows), key=lambda pair: (-pair[1], pair[0]))


def _review_counts(visible: QuerySet[Workspace]) -> list[dict[str, Any]]:
    labels = dict(ReviewItem.Kind.choices)
    rows = (
        ReviewItem.objects.filter(status=ReviewItem.Status.OPEN, workspace__in=visible.values("pk"))
        .values("kind")
        .annotate(count=Count("pk"))
        .order_by("kind")
    )
    return [{"kind": row["kind"], "label": labels.get(row["kind"], row["kind"]), "count": row["count"]} for row in rows]


# --- Workspace page ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    event_pk: int
    type: str
    source: str
    occurred_at: datetime | None
    status: str
    values: list[tuple[str, str]] = field(default_factory=list)


def workspace_timeline(workspace: Workspace, *, limit: int = TIMELINE_LIMIT) -> list[TimelineEntry]:
    """Its lifecycle and billing events, oldest first, each with only its whitelisted values."""
    rows = (
        timeline_events()
        .filter(workspace_key=workspace.workspace_id)
        .only("pk", "type", "source", "occurred_at", "status", "payload")
        .order_by("-occurred_at", "-pk")[:limit]
    )
    return [_entry(row) for row in reversed(list(rows))]


def _entry(event: Event) -> TimelineEntry:
    data = event.payload.get("data") if isinstance(event.payload, dict) else None
    data = data if isinstance(data, dict) else {}
    names = TIMELINE_VALUES.get(event.type, ())
    shown = [(name, str(data[name])) for name in names if data.get(name) not in (None, "")]
    return TimelineEntry(event.pk, event.type, event.source, event.occurred_at, event.status, shown)


def workspace_usage_count(workspace: Workspace) -> int:
    """Usage events are many and say little one by one: the page shows their number only."""
    return Event.objects.filter(workspace_key=workspace.workspace_id, type="usage.recorded").count()


def salesforce_record_url(sobject: str, record_id: str) -> str:
    """Lightning record page under SALESFORCE_INSTANCE_URL; empty when either is unknown."""
    base = settings.SALESFORCE_INSTANCE_URL.rstrip("/")
    if not (base and record_id):
        return ""
    return f"{base}/lightning/r/{sobject}/{record_id}/view"
