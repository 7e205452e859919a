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
from django.db.models import Case, Count, DecimalField, F, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Lower
from django.utils import timezone

from alerts.currency import MoneyTotal, Rates, money_total, rates_current
from alerts.display import event_label, facts
from alerts.messages import rule_label
from alerts.models import Alert, Delivery, Rep
from alerts.roles import REPS_GROUP, user_group_names, user_is_alerts_admin, user_is_api_service, user_is_auditor
from alerts.services import alerts_visible_to
from events.models import Event
from usage.selectors import in_stage, members_of_cohort, with_behaviour
from workspaces.lifecycle import LIFECYCLE_TYPES
from workspaces.models import ReviewItem, Workspace

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
    """All workspaces for an admin; for a rep, the customers they own (the account's owner, or the kept
    owner routing assigned or an admin handed over) and those with an alert routed to them.

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
        | Q(owner=user)
        | Q(pk__in=routed.exclude(workspace__isnull=True).values("workspace_id"))
        | Q(workspace_id__in=routed.exclude(workspace_key="").values("workspace_key"))
    )


#: Sort orders of the alert inbox: key → (label, ordering).
ALERT_SORTS: dict[str, tuple[str, tuple[Any, ...]]] = {
    "newest": ("Newest first", ("-created_at", "-pk")),
    "oldest": ("Oldest first", ("created_at", "pk")),
    "expires": ("Trial expiring soonest", (F("workspace__trial_expires_at").asc(nulls_last=True), "-created_at")),
    "rule": ("Rule", ("rule", "-created_at", "-pk")),
    "status": ("Status", ("status", "-created_at", "-pk")),
    "workspace": ("Workspace", ("workspace_key", "-created_at", "-pk")),
}


def _expiring_within(days: int | None, *, prefix: str = "", now: datetime | None = None) -> Q:
    """Trials that expire between now and `days` from now (any row when `days` is None)."""
    if not days:
        return Q()
    now = now or timezone.now()
    return Q(
        **{
            f"{prefix}status": Workspace.Status.TRIAL,
            f"{prefix}trial_expires_at__gte": now,
            f"{prefix}trial_expires_at__lt": now + timedelta(days=days),
        }
    )


def alerts_for_inbox(
    user: AbstractBaseUser,
    *,
    status: str = "",
    rule: str = "",
    workspace: str = "",
    expiring_within: int | None = None,
    sort: str = "newest",
) -> QuerySet[Alert]:
    """The user's visible alerts, filtered and sorted; snoozed and resolved ones are hidden unless asked
    for by status. `expiring_within` keeps alerts about trials that expire within that many days."""
    alerts = alerts_visible_to(user).select_related("workspace", "recipient")
    if status:
        alerts = alerts.filter(status=status)
    else:
        alerts = alerts.exclude(status__in=[Alert.Status.SNOOZED, Alert.Status.RESOLVED])
    if rule:
        alerts = alerts.filter(rule=rule)
    if workspace:
        alerts = alerts.filter(workspace_key=workspace)
    alerts = alerts.filter(_expiring_within(expiring_within, prefix="workspace__"))
    return alerts.order_by(*ALERT_SORTS.get(sort, ALERT_SORTS["newest"])[1])


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


#: Sort orders of the workspaces list: key → (label, ordering). MRR sorts in the reporting currency.
WORKSPACE_SORTS: dict[str, tuple[str, tuple[Any, ...]]] = {
    "updated": ("Recently changed", ("-updated_at", "workspace_id")),
    "name": ("Name", (Lower("name"), "workspace_id")),
    "status": ("Status", ("status", "workspace_id")),
    "expires": ("Trial expiring soonest", (F("trial_expires_at").asc(nulls_last=True), "workspace_id")),
    # Paying customers by MRR; a churned customer's last MRR is not recurring revenue any more.
    "mrr": ("MRR, highest first", (Case(When(status="paid", then=F("mrr_reporting"))).desc(nulls_last=True), "pk")),
    "active": ("Last active, most recent first", (F("last_active").desc(nulls_last=True), "workspace_id")),
}


def with_reporting_mrr(workspaces: QuerySet[Workspace], rates: Rates) -> QuerySet[Workspace]:
    """Annotate `mrr_reporting`: MRR in the reporting currency, NULL where the currency has no rate."""
    whens = [When(currency=rates.reporting, then=F("mrr"))]
    whens += [When(currency=cur, then=F("mrr") * Value(rate.rate)) for cur, rate in rates.by_currency.items()]
    money = DecimalField(max_digits=30, decimal_places=10)
    return workspaces.annotate(mrr_reporting=Case(*whens, default=Value(None), output_field=money))


def workspaces_for_list(
    user: AbstractBaseUser,
    *,
    status: str = "",
    q: str = "",
    rule: str = "",
    expiring_within: int | None = None,
    cohort: str = "",
    stage: str = "",
    sort: str = "updated",
    rates: Rates | None = None,
) -> QuerySet[Workspace]:
    """The user's workspaces, filtered and sorted; `rule` keeps those with an alert of that rule the user
    may see, `expiring_within` trials that expire within that many days, `cohort` and `stage` those in that
    cohort or stage now. Each carries its stage's name and when it was last active."""
    workspaces = with_behaviour(workspaces_visible_to(user).select_related("account__owner", "owner"))
    if cohort:
        workspaces = workspaces.filter(workspace_id__in=members_of_cohort(cohort))
    if stage:
        workspaces = workspaces.filter(workspace_id__in=in_stage(stage))
    if status:
        workspaces = workspaces.filter(status=status)
    if q:
        workspaces = workspaces.filter(
            Q(workspace_id__icontains=q) | Q(name__icontains=q) | Q(email__icontains=q) | Q(company__icontains=q)
        )
    if rule:
        alerts = alerts_visible_to(user).filter(rule=rule)
        workspaces = workspaces.filter(
            Q(pk__in=alerts.exclude(workspace__isnull=True).values("workspace_id"))
            | Q(workspace_id__in=alerts.exclude(workspace_key="").values("workspace_key"))
        )
    workspaces = with_reporting_mrr(workspaces.filter(_expiring_within(expiring_within)), rates or rates_current())
    return workspaces.order_by(*WORKSPACE_SORTS.get(sort, WORKSPACE_SORTS["updated"])[1])


def owner_rep(workspace: Workspace) -> AbstractBaseUser | None:
    """The rep who owns the customer, as routing sees it: the account's owner in Salesforce while an active
    user, else the customer's kept owner (`Workspace.owner`), else an account owner who left."""
    account_owner = workspace.account.owner if workspace.account_id and workspace.account else None
    if account_owner is not None and account_owner.is_active:
        return account_owner
    return workspace.owner or account_owner


def plan_shown(workspace: Workspace) -> str:
    """The plan a rep should read: a trial's plan is the one it trials; "trial" itself says nothing."""
    plan = (workspace.plan or "").strip()
    return "" if plan.lower() == "trial" else plan


# --- Dashboard --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dashboard:
    expiring: list[Workspace]
    converted: list[Workspace]
    churned: list[Workspace]
    mrr_lost: MoneyTotal  # churn in the last 30 days, in the reporting currency where a rate allows
    mrr_won: MoneyTotal  # conversions in the last 30 days, likewise
    review_counts: list[dict[str, Any]]  # admins only: a rep cannot act on the review queue
    review_total: int
    open_alerts: int
    show_reviews: bool


def dashboard_for(user: AbstractBaseUser, *, now: datetime | None = None, limit: int = 50) -> Dashboard:
    """Trials expiring within 7 days, conversions and churn of the last 30 (with the MRR won and lost),
    open alerts, and for admins the open review items."""
    now = now or timezone.now()
    visible = workspaces_visible_to(user).select_related("account__owner", "owner")
    since = now - timedelta(days=RECENT_DAYS)
    expiring = visible.filter(_expiring_within(7, now=now)).order_by("trial_expires_at", "workspace_id")
    converted = visible.filter(status=Workspace.Status.PAID, converted_at__gte=since).order_by("-converted_at")
    churned = visible.filter(status=Workspace.Status.CHURNED, churned_at__gte=since).order_by("-churned_at")
    rates = rates_current()
    admin = user_is_alerts_admin(user)
    reviews = _review_counts(visible) if admin else []
    return Dashboard(
        expiring=list(expiring[:limit]),
        converted=list(converted[:limit]),
        churned=list(churned[:limit]),
        mrr_lost=money_total(_mrr_by_currency(churned), rates),
        mrr_won=money_total(_mrr_by_currency(converted), rates),
        review_counts=reviews,
        review_total=sum(row["count"] for row in reviews),
        open_alerts=alerts_visible_to(user).filter(status=Alert.Status.OPEN).count(),
        show_reviews=admin,
    )


def _mrr_by_currency(workspaces: QuerySet[Workspace]) -> list[tuple[str, Decimal]]:
    """(currency, total MRR) over all of them, not only the rows a page lists; a trial that never paid adds
    nothing."""
    rows = workspaces.order_by().values("currency").annotate(total=Sum("mrr")).filter(total__gt=0)
    return [(row["currency"], row["total"]) for row in rows]


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
    values: list[tuple[str, str]] = field(default_factory=list)  # (label, formatted value)
    external_id: str = ""

    @property
    def label(self) -> str:
        return event_label(self.type)


def workspace_timeline(workspace: Workspace, *, limit: int = TIMELINE_LIMIT) -> list[TimelineEntry]:
    """Its lifecycle and billing events, oldest first, each with only its whitelisted values."""
    rows = (
        timeline_events()
        .filter(workspace_key=workspace.workspace_id)
        .only("pk", "type", "source", "occurred_at", "status", "payload", "external_id")
        .order_by("-occurred_at", "-pk")[:limit]
    )
    return [_entry(row) for row in reversed(list(rows))]


def _entry(event: Event) -> TimelineEntry:
    data = event.payload.get("data") if isinstance(event.payload, dict) else None
    data = data if isinstance(data, dict) else {}
    names = TIMELINE_VALUES.get(event.type, ())
    shown = facts({name: data[name] for name in names if data.get(name) not in (None, "")})
    return TimelineEntry(event.pk, event.type, event.source, event.occurred_at, event.status, shown, event.external_id)


# --- Alert page -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertPage:
    alert: Alert
    rule_label: str
    facts: list[tuple[str, str]]
    events: list[TimelineEntry]  # the events behind it, oldest first (whitelisted values only)
    missing_events: list[str]  # ids named by the alert that are no longer stored (retention, erasure)
    deliveries: list[Delivery]
    owner: AbstractBaseUser | None


def alert_page(user: AbstractBaseUser, pk: int) -> AlertPage | None:
    """One alert the user may see, with its evidence and deliveries; None when it is not theirs (a 404,
    the same as one that does not exist)."""
    alert = alerts_visible_to(user).select_related("workspace__account__owner", "workspace__owner").filter(pk=pk)
    alert = alert.first()
    if alert is None:
        return None
    context = alert.context if isinstance(alert.context, dict) else {}
    ids = [str(item) for item in context.get("event_ids") or [] if item]
    rows = timeline_events().filter(external_id__in=ids)
    if alert.workspace_key:  # never another workspace's events, whatever the context names
        rows = rows.filter(workspace_key=alert.workspace_key)
    events = [_entry(row) for row in rows.order_by("occurred_at", "pk")]
    found = {entry.external_id for entry in events}
    values = context.get("values") if isinstance(context.get("values"), dict) else {}
    return AlertPage(
        alert=alert,
        rule_label=rule_label(alert.rule),
        facts=facts(values),
        events=events,
        missing_events=[item for item in ids if item not in found],
        deliveries=list(alert.deliveries.order_by("created_at", "pk")),
        owner=owner_rep(alert.workspace) if alert.workspace else None,
    )


def workspace_usage_count(workspace: Workspace) -> int:
    """Usage events are many and say little one by one: the page shows their number only."""
    return Event.objects.filter(workspace_key=workspace.workspace_id, type="usage.recorded").count()


def salesforce_record_url(sobject: str, record_id: str) -> str:
    """Lightning record page under SALESFORCE_INSTANCE_URL; empty when either is unknown."""
    base = settings.SALESFORCE_INSTANCE_URL.rstrip("/")
    if not (base and record_id):
        return ""
    return f"{base}/lightning/r/{sobject}/{record_id}/view"
