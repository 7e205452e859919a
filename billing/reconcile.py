"""Billing reconciliation: Stripe's subscriptions against the engine's workspaces, field by field.

Stripe is only read (`billing.stripe_adapter`) and the engine is never patched: state is derived from
events (DESIGN.md). With `repair`, each drifted workspace gets the lifecycle events Stripe's state
implies, stored like webhook events (source `stripe`) under `reconcile:<subscription id>:<hash>` of the
values involved, so a second run over the same drift stores nothing new. Processing is enqueued on
commit by `events_store`, and the fold does the rest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.utils import timezone

from billing.stripe_adapter import subscription_retrieve, subscriptions_list
from billing.stripe_objects import Subscription
from workspaces.models import Workspace

#: Stripe subscription status → the engine's workspace status (None: nothing to compare yet).
ENGINE_STATUS = {
    "trialing": "trial",
    "active": "paid",
    "past_due": "paid",
    "unpaid": "paid",
    "canceled": "churned",
    "incomplete_expired": "churned",
}
PAID_FIELDS = ("plan", "mrr", "currency", "subscription_id", "billing_interval")
LIVE = ("trial", "paid")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: (stage, done, total): stage READ counts Stripe subscriptions against an estimate, COMPARE workspaces.
Progress = Callable[[str, int, int], None]
READ, COMPARE = "read", "compare"


@dataclass(frozen=True)
class FieldDrift:
    workspace_id: str
    subscription_id: str
    field: str
    engine: str
    stripe: str


@dataclass
class BillingReport:
    subscriptions: int = 0
    checked: int = 0
    drifts: list[FieldDrift] = field(default_factory=list)
    unknown: list[tuple[str, str, str]] = field(default_factory=list)  # (subscription, workspace_id, status)
    unlabelled: list[str] = field(default_factory=list)  # subscriptions without metadata.workspace_id
    missing: list[tuple[str, str]] = field(default_factory=list)  # (workspace_id, subscription Stripe lacks)
    stored: list[str] = field(default_factory=list)
    already_stored: list[str] = field(default_factory=list)
    invalid: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # corrections the schemas refuse

    @property
    def drifted_workspaces(self) -> list[str]:
        return sorted({drift.workspace_id for drift in self.drifts})

    @property
    def wrong(self) -> int:
        """Everything that needs a correction or a person: drifted and missing workspaces, and subscriptions
        the engine cannot tie to one of its workspaces."""
        return len(self.drifted_workspaces) + len(self.missing) + len(self.unknown) + len(self.unlabelled)

    def by_field(self) -> dict[str, list[FieldDrift]]:
        grouped: dict[str, list[FieldDrift]] = {}
        for drift in self.drifts:
            grouped.setdefault(drift.field, []).append(drift)
        return grouped

    def summary(self) -> dict[str, Any]:
        return {
            "subscriptions": self.subscriptions,
            "checked": self.checked,
            "drifted": self.drifted_workspaces,
            "fields": {name: len(drifts) for name, drifts in self.by_field().items()},
            "unknown": [sub for sub, _, _ in self.unknown],
            "missing": [sub for _, sub in self.missing],
            "stored": self.stored,
        }


@dataclass(frozen=True)
class Correction:
    """One lifecycle event a drift calls for."""

    type: str
    occurred_at: datetime
    data: dict[str, Any]
    engine: dict[str, str]  # the engine's values it corrects: part of its id, so new drift means a new event

    @property
    def payload_data(self) -> dict[str, Any]:
        return {key: value for key, value in self.data.items() if value is not None}

    def external_id(self, subscription_id: str) -> str:
        digest = hashlib.sha256(
            json.dumps({"type": self.type, "data": self.data, "engine": self.engine}, sort_keys=True).encode()
        ).hexdigest()[:16]
        return f"reconcile:{subscription_id}:{digest}"


def billing_reconcile(*, repair: bool, progress: Progress | None = None) -> BillingReport:
    """Compare every workspace Stripe or the engine ties to a subscription; with `repair`, store the fixes."""
    report = BillingReport()
    by_workspace, by_id = _read_stripe(report, progress)
    known: set[str] = set()
    corrections: list[tuple[str, str, Correction]] = []
    total = Workspace.objects.count()
    if progress:
        progress(COMPARE, 0, total)
    # One pass over every workspace (no IN list of Stripe's workspace ids: it can outgrow SQLite's limits).
    for done, workspace in enumerate(Workspace.objects.order_by("workspace_id").iterator(chunk_size=1000), 1):
        known.add(workspace.workspace_id)
        subs = by_workspace.get(workspace.workspace_id, [])
        if workspace.subscription_id or subs:
            corrections.extend(_check(workspace, subs, by_id, report))
        if progress:
            progress(COMPARE, done, max(total, done))
    report.unknown = [
        (sub.id, workspace_id, sub.status)
        for workspace_id, subs in sorted(by_workspace.items())
        if workspace_id not in known
        for sub in subs
    ]
    if repair and corrections:
        _store(corrections, report)
    return report


def _read_stripe(
    report: BillingReport, progress: Progress | None
) -> tuple[dict[str, list[Subscription]], dict[str, Subscription]]:
    """Every subscription, by workspace id and by id. The estimate for progress is the engine's count."""
    estimate = Workspace.objects.exclude(subscription_id="").count()
    by_workspace: dict[str, list[Subscription]] = {}
    by_id: dict[str, Subscription] = {}
    if progress:
        progress(READ, 0, estimate)
    for sub in subscriptions_list():
        report.subscriptions += 1
        by_id[sub.id] = sub
        if sub.workspace_id:
            by_workspace.setdefault(sub.workspace_id, []).append(sub)
        else:
            report.unlabelled.append(sub.id)
        if progress:
            progress(READ, report.subscriptions, max(estimate, report.subscriptions))
    return by_workspace, by_id


def _check(
    workspace: Workspace, subs: list[Subscription], by_id: dict[str, Subscription], report: BillingReport
) -> list[tuple[str, str, Correction]]:
    report.checked += 1
    sub = _current(workspace, subs, by_id)
    if sub is None:
        report.missing.append((workspace.workspace_id, workspace.subscription_id))
        return []
    drifts = compare(workspace, sub)
    report.drifts.extend(drifts)
    return [(workspace.workspace_id, sub.id, fix) for fix in corrections_for(workspace, sub, drifts)]


def _current(workspace: Workspace, subs: list[Subscription], by_id: dict[str, Subscription]) -> Subscription | None:
    """The subscription that speaks for the workspace now: a live one over an ended one, the newest first."""
    mine = {sub.id: sub for sub in subs}
    if workspace.subscription_id and workspace.subscription_id not in mine:
        found = by_id.get(workspace.subscription_id) or subscription_retrieve(workspace.subscription_id)
        if found is not None:
            mine[found.id] = found
    if not mine:
        return None
    return max(mine.values(), key=lambda sub: (ENGINE_STATUS.get(sub.status) in LIVE, sub.created or EPOCH))


def _shown(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return "" if value is None else str(value)


def expected(sub: Subscription) -> dict[str, Any]:
    """The workspace fields Stripe's view of the subscription implies (only those it can speak for)."""
    status = ENGINE_STATUS.get(sub.status)
    if status is None:
        return {}
    wanted: dict[str, Any] = {"status": status}
    if status == "paid":
        wanted.update(
            plan=sub.plan,
            mrr=sub.mrr,
            currency=sub.currency_code,
            subscription_id=sub.id,
            billing_interval=sub.billing_interval,
        )
    wanted["renews_at"] = sub.renews_at if status in LIVE else None
    return wanted


def _differs(name: str, engine: Any, stripe: Any) -> bool:
    if name == "mrr":
        return stripe is not None and (engine is None or Decimal(engine) != Decimal(stripe))
    return (engine or None) != (stripe or None)


def compare(workspace: Workspace, sub: Subscription) -> list[FieldDrift]:
    return [
        FieldDrift(workspace.workspace_id, sub.id, name, _shown(getattr(workspace, name)), _shown(value))
        for name, value in expected(sub).items()
        if _differs(name, getattr(workspace, name), value)
    ]


def corrections_for(workspace: Workspace, sub: Subscription, drifts: Iterable[FieldDrift]) -> list[Correction]:
    """The lifecycle events that bring the fold to Stripe's view. A trial Stripe disagrees about is only
    reported: restarting a trial from a reconciliation would rewrite its start."""
    drifted = {drift.field: drift.engine for drift in drifts}
    status = ENGINE_STATUS.get(sub.status)
    now = timezone.now()
    fixes = []
    if status == "paid" and drifted.keys() & {"status", *PAID_FIELDS}:
        fixes.append(_conversion(workspace, sub, drifted, now))
    if status == "churned" and "status" in drifted:
        ended = sub.ended_at or sub.canceled_at or now
        data = {"workspace_id": workspace.workspace_id, "churned_at": _shown(ended), "reason": sub.cancellation_reason}
        fixes.append(Correction("workspace.churned", ended, data, {"status": drifted["status"]}))
    if status in LIVE and "renews_at" in drifted and workspace.status in LIVE:
        data = {"workspace_id": workspace.workspace_id, "subscription_id": sub.id, "renews_at": _shown(sub.renews_at)}
        fixes.append(Correction("billing.renewal_updated", now, data, {"renews_at": drifted["renews_at"]}))
    return fixes


def _conversion(workspace: Workspace, sub: Subscription, drifted: dict[str, str], now: datetime) -> Correction:
    """Paid in Stripe: a conversion with Stripe's values. Dated when Stripe says it became paid when the
    engine missed the conversion itself; dated now when only the paid values drifted, so they win."""
    data = {
        "workspace_id": workspace.workspace_id,
        "plan": sub.plan,
        "mrr": f"{sub.mrr:.2f}" if sub.mrr is not None else None,
        "currency": sub.currency_code or "USD",
        "subscription_id": sub.id,
        "billing_interval": sub.billing_interval,
    }
    paid_since = now
    if workspace.status != "paid":
        candidates = [moment for moment in (sub.trial_end, sub.start_date) if moment is not None and moment <= now]
        paid_since = max(candidates, default=now)
    engine = {name: drifted[name] for name in ("status", *PAID_FIELDS) if name in drifted}
    return Correction("subscription.converted", paid_since, data, engine)


def _store(corrections: list[tuple[str, str, Correction]], report: BillingReport) -> None:
    """Store the corrections as Stripe-sourced lifecycle events; processing is enqueued on commit."""
    from events.jsonbody import PayloadInvalid
    from events.models import Event  # sync sits below events; the reconciliation alone writes events
    from events.schemas import validate_data
    from events.services import events_store
    from events.store import NewEvent

    valid = []
    for workspace_id, subscription_id, fix in corrections:
        try:
            validate_data(fix.type, fix.payload_data)
        except PayloadInvalid as exc:
            report.invalid[fix.external_id(subscription_id)] = exc.fields
            continue
        valid.append((workspace_id, subscription_id, fix))
    events = [
        NewEvent(
            source=Event.Source.STRIPE,
            external_id=fix.external_id(subscription_id),
            type=fix.type,
            occurred_at=fix.occurred_at,
            workspace_key=workspace_id,
            payload={
                "type": fix.type,
                "timestamp": _shown(fix.occurred_at),
                "data": fix.payload_data,
                "stripe": {"event_id": None, "type": "reconciliation", "object_id": subscription_id},
            },
            notes=f"Billing reconciliation: corrects {', '.join(sorted(fix.engine))} to Stripe's view.",
        )
        for workspace_id, subscription_id, fix in valid
    ]
    for event, is_new in zip(events, events_store(events), strict=True):
        (report.stored if is_new else report.already_stored).append(event.external_id)
