"""Alert rules: plain functions from a workspace's facts to the alert it should have, if any.

Each rule returns a `Firing` whose dedupe key names the rule, the workspace and the window (the
moment the state was reached, or the expiry day and offset), so evaluating again, on any worker and
any number of times, raises nothing new. A firing carries its evidence: the ids of the events that
caused it and the values it saw. Rules touch no database; `alerts.services` gathers the facts.

State rules fire only for a state reached within ALERT_RECENT_HOURS, so a replay or the first
deployment does not alert on last year's conversions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from alerts.models import Audience, RuleKey
from workspaces.lifecycle import CHURNED, CONVERTED, PAYMENT_FAILED, TRIAL_STARTED, LifecycleEvent
from workspaces.models import Workspace

#: Who a rule tells when nobody configured it (AlertRule rows override).
DEFAULT_AUDIENCE = {
    RuleKey.NEEDS_REVIEW: Audience.ADMINS,
    RuleKey.SYNC_PAUSED: Audience.ADMINS,
    RuleKey.SYNC_DEAD_LETTER: Audience.ADMINS,
    RuleKey.EVENT_FAILED: Audience.ADMINS,
    RuleKey.BILLING_DRIFT: Audience.ADMINS,
    RuleKey.ERROR_NEW_KIND: Audience.ADMINS,
    RuleKey.ERROR_RATE: Audience.ADMINS,
    RuleKey.SLA_EVENT_DELAY: Audience.ADMINS,
    RuleKey.SLA_SALESFORCE_DELAY: Audience.ADMINS,
    RuleKey.SLA_SOURCE_SILENT: Audience.ADMINS,
}
DEFAULT_DAY_OFFSETS = (7, 3, 1)


@dataclass(frozen=True)
class Facts:
    """What the rules may look at: the workspace, its lifecycle events (sorted), and the clock."""

    workspace: Workspace
    events: Sequence[LifecycleEvent]
    now: datetime
    recent: timedelta
    day_offsets: Sequence[int] = DEFAULT_DAY_OFFSETS

    @property
    def name(self) -> str:
        ws = self.workspace
        return ws.name or ws.company or ws.workspace_id

    def is_recent(self, moment: datetime | None) -> bool:
        return moment is not None and self.now - moment <= self.recent

    def events_of(self, type_: str) -> list[LifecycleEvent]:
        return [event for event in self.events if event.type == type_]


@dataclass(frozen=True)
class Firing:
    rule: str
    dedupe_key: str
    title: str
    reason: str
    event_ids: tuple[str, ...] = ()
    values: dict[str, Any] = field(default_factory=dict)

    def context(self) -> dict[str, Any]:
        return {"event_ids": list(self.event_ids), "values": self.values}


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%S")


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _money(facts: Facts) -> str | None:
    ws = facts.workspace
    return f"{ws.mrr:.2f}" if ws.mrr is not None else None


def _at(events: list[LifecycleEvent], moment: datetime | None) -> tuple[str, ...]:
    """Ids of the events that happened at `moment` (the ones that set it); else the latest one."""
    exact = tuple(event.external_id for event in events if event.occurred_at == moment)
    return exact or ((events[-1].external_id,) if events else ())


# --- Trials -------------------------------------------------------------------------------------


def trial_started(facts: Facts) -> Firing | None:
    """A new self-serve trial, not from an account that is already a customer (that rule is below)."""
    ws = facts.workspace
    if ws.status != Workspace.Status.TRIAL or ws.account_id or not facts.is_recent(ws.trial_started_at):
        return None
    return Firing(
        rule=RuleKey.TRIAL_STARTED,
        dedupe_key=f"trial_started:{ws.workspace_id}:{_stamp(ws.trial_started_at)}",
        title=f"New trial: {facts.name}",
        reason=f"{ws.email or 'Someone'} started a self-serve trial"
        + (f" on plan {ws.plan}" if ws.plan else "")
        + (f"; it expires {ws.trial_expires_at:%Y-%m-%d}." if ws.trial_expires_at else "."),
        event_ids=_at(facts.events_of(TRIAL_STARTED), ws.trial_started_at),
        values={
            "email": ws.email,
            "company": ws.company,
            "plan": ws.plan,
            "trial_started_at": _iso(ws.trial_started_at),
            "trial_expires_at": _iso(ws.trial_expires_at),
        },
    )


def existing_account_trial(facts: Facts) -> Firing | None:
    """A trial from a company that is already an account: a new workspace on it, or a paying one trying more."""
    ws = facts.workspace
    if ws.status == Workspace.Status.TRIAL and ws.account_id and facts.is_recent(ws.trial_started_at):
        account = ws.account
        return Firing(
            rule=RuleKey.EXISTING_ACCOUNT_TRIAL,
            dedupe_key=f"existing_account_trial:{ws.workspace_id}:{_stamp(ws.trial_started_at)}",
            title=f"New trial from existing account {account.name}: {facts.name}",
            reason=f"{ws.email} started a trial; {account.domain or account.name} is already an account.",
            event_ids=_at(facts.events_of(TRIAL_STARTED), ws.trial_started_at),
            values={"email": ws.email, "account": account.name, "domain": account.domain, "plan": ws.plan},
        )
    latest = ws.trial_history[-1] if ws.status == Workspace.Status.PAID and ws.trial_history else None
    if latest is None or not facts.is_recent(datetime.fromisoformat(latest["started_at"])):
        return None
    return Firing(
        rule=RuleKey.EXISTING_ACCOUNT_TRIAL,
        dedupe_key=f"existing_account_trial:{ws.workspace_id}:{latest['event_id']}",
        title=f"Paying customer started a trial: {facts.name}",
        reason=f"{facts.name} pays for plan {ws.plan or '—'} and started a trial"
        + (f" of plan {latest['plan']}." if latest.get("plan") else "."),
        event_ids=(latest["event_id"],),
        values={"plan": ws.plan, "trial_plan": latest.get("plan", ""), "mrr": _money(facts), **latest},
    )


def trial_expiring(facts: Facts) -> Firing | None:
    """The smallest configured offset the trial is now within: 7, then 3, then 1 day(s) before expiry."""
    ws = facts.workspace
    expires = ws.trial_expires_at
    if ws.status != Workspace.Status.TRIAL or expires is None or expires <= facts.now:
        return None
    left = expires - facts.now
    within = [days for days in sorted(facts.day_offsets) if left <= timedelta(days=days)]
    if not within:
        return None
    offset = within[0]
    days_left = max(1, round(left / timedelta(days=1)))
    return Firing(
        rule=RuleKey.TRIAL_EXPIRING,
        dedupe_key=f"trial_expiring:{ws.workspace_id}:{expires:%Y%m%d}:{offset}d",
        title=f"Trial expiring in {days_left} day{'s' if days_left != 1 else ''}: {facts.name}",
        reason=f"The trial of {facts.name} ({ws.email}) expires {expires:%Y-%m-%d %H:%M} UTC "
        f"and has not converted ({offset}-day reminder).",
        event_ids=_at(facts.events_of(TRIAL_STARTED), ws.trial_started_at),
        values={
            "trial_expires_at": _iso(expires),
            "days_left": days_left,
            "offset_days": offset,
            "plan": ws.plan,
            "email": ws.email,
        },
    )


def trial_expired(facts: Facts) -> Firing | None:
    ws = facts.workspace
    expires = ws.trial_expires_at
    if ws.status != Workspace.Status.TRIAL or expires is None or expires > facts.now or not facts.is_recent(expires):
        return None
    return Firing(
        rule=RuleKey.TRIAL_EXPIRED,
        dedupe_key=f"trial_expired:{ws.workspace_id}:{expires:%Y%m%d}",
        title=f"Trial expired without converting: {facts.name}",
        reason=f"The trial of {facts.name} ({ws.email}) expired {expires:%Y-%m-%d %H:%M} UTC with no conversion.",
        event_ids=_at(facts.events_of(TRIAL_STARTED), ws.trial_started_at),
        values={"trial_expires_at": _iso(expires), "plan": ws.plan, "email": ws.email},
    )


# --- Paid, churned, at risk ---------------------------------------------------------------------


def converted(facts: Facts) -> Firing | None:
    ws = facts.workspace
    if ws.status != Workspace.Status.PAID or not facts.is_recent(ws.converted_at):
        return None
    return Firing(
        rule=RuleKey.CONVERTED,
        dedupe_key=f"converted:{ws.workspace_id}:{_stamp(ws.converted_at)}",
        title=f"Converted: {facts.name} on {ws.plan} ({_money(facts)} {ws.currency}/month)",
        reason=f"{facts.name} ({ws.email}) converted to plan {ws.plan} at {_money(facts)} {ws.currency} MRR "
        f"on {ws.converted_at:%Y-%m-%d}.",
        event_ids=_at(facts.events_of(CONVERTED), ws.converted_at),
        values={"plan": ws.plan, "mrr": _money(facts), "currency": ws.currency, "converted_at": _iso(ws.converted_at)},
    )


def churned(facts: Facts) -> Firing | None:
    ws = facts.workspace
    if ws.status != Workspace.Status.CHURNED or not facts.is_recent(ws.churned_at):
        return None
    lost = _money(facts)
    return Firing(
        rule=RuleKey.CHURNED,
        dedupe_key=f"churned:{ws.workspace_id}:{_stamp(ws.churned_at)}",
        title=f"Churned: {facts.name}" + (f" ({lost} {ws.currency} MRR lost)" if lost else ""),
        reason=f"{facts.name} ({ws.email}) churned on {ws.churned_at:%Y-%m-%d}"
        + (f": {ws.churn_reason}" if ws.churn_reason else "")
        + (f". MRR lost: {lost} {ws.currency}." if lost else ". It had no MRR on record."),
        event_ids=_first_churn(facts),
        values={"mrr_lost": lost, "currency": ws.currency, "churn_reason": ws.churn_reason, "plan": ws.plan},
    )


def _first_churn(facts: Facts) -> tuple[str, ...]:
    events = facts.events_of(CHURNED)
    return (events[0].external_id,) if events else ()


def payment_failed(facts: Facts) -> Firing | None:
    ws = facts.workspace
    if not ws.at_risk or not facts.is_recent(ws.at_risk_since):
        return None
    failures = [event for event in facts.events_of(PAYMENT_FAILED) if event.occurred_at >= ws.at_risk_since]
    latest = failures[-1].data if failures else {}
    return Firing(
        rule=RuleKey.PAYMENT_FAILED,
        dedupe_key=f"payment_failed:{ws.workspace_id}:{_stamp(ws.at_risk_since)}",
        title=f"Payment failed: {facts.name}",
        reason=f"A payment for {facts.name} failed on {ws.at_risk_since:%Y-%m-%d}"
        + (f" ({latest['amount_due']} {latest.get('currency', ws.currency)} due)" if latest.get("amount_due") else "")
        + f"; {_money(facts) or 'no'} {ws.currency} MRR is at risk.",
        event_ids=tuple(event.external_id for event in failures),
        values={
            "at_risk_since": _iso(ws.at_risk_since),
            "mrr": _money(facts),
            "failures": len(failures),
            **{key: latest[key] for key in ("amount_due", "attempt_count", "invoice_id") if key in latest},
        },
    )


def needs_review(facts: Facts) -> Firing | None:
    """Open review questions, one alert per distinct set of them (to admins)."""
    ws = facts.workspace
    if not ws.needs_review or not ws.review_reasons:
        return None
    digest = hashlib.sha256("\n".join(sorted(ws.review_reasons)).encode()).hexdigest()[:12]
    return Firing(
        rule=RuleKey.NEEDS_REVIEW,
        dedupe_key=f"needs_review:{ws.workspace_id}:{digest}",
        title=f"Needs review: {facts.name}",
        reason=" ".join(ws.review_reasons)[:2000],
        values={"review_reasons": list(ws.review_reasons)},
    )


#: Rules evaluated whenever a workspace's state may have changed, and on the schedule.
WORKSPACE_RULES: dict[str, Callable[[Facts], Firing | None]] = {
    RuleKey.TRIAL_STARTED: trial_started,
    RuleKey.EXISTING_ACCOUNT_TRIAL: existing_account_trial,
    RuleKey.TRIAL_EXPIRING: trial_expiring,
    RuleKey.TRIAL_EXPIRED: trial_expired,
    RuleKey.CONVERTED: converted,
    RuleKey.CHURNED: churned,
    RuleKey.PAYMENT_FAILED: payment_failed,
    RuleKey.NEEDS_REVIEW: needs_review,
}


def rules_evaluate(facts: Facts, enabled: Callable[[str], bool]) -> list[Firing]:
    """Every enabled rule's firing for these facts."""
    return [firing for key, rule in WORKSPACE_RULES.items() if enabled(key) and (firing := rule(facts)) is not None]
