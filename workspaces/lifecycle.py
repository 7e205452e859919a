"""The lifecycle fold: a workspace's state as a pure function of its events (CONTRACT §3).

`fold(workspace_id, events)` sorts the events into contract order and applies them one by one. It
touches no database, so the same events give the same state whatever order they arrived in, however
often they were delivered, and however many times they are re-folded (replay, reprocessing).

The three flows of the self-serve plan:
- trial: existing workspace (paid → record trial history; trial/churned → status trial) or new;
- conversion: existing → paid; new → created paid and flagged for review (no trial data);
- churn: existing → churned; new → created churned and flagged for review.
Conflicting data (another owner email, a second conversion on another plan) flags review too.

Billing inputs from Stripe fold after the contract's three types at equal timestamps:
- payment failed: the workspace is at risk from the first failure until a later conversion (a paid
  invoice or a subscription back to active) or a churn;
- renewal updated: the subscription's next renewal date;
- trial will end: recorded for alerts; it changes no state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

TRIAL_STARTED = "trial.started"
CONVERTED = "subscription.converted"
CHURNED = "workspace.churned"

PAYMENT_FAILED = "billing.payment_failed"
RENEWAL_UPDATED = "billing.renewal_updated"
TRIAL_WILL_END = "billing.trial_will_end"

DEFAULT_TRIAL_DAYS = 30

NO_TRIAL_DATA = "no_trial_data"
CONFLICTING_DATA = "conflicting_data"


@dataclass(frozen=True)
class LifecycleEvent:
    """One stored lifecycle event, reduced to what the fold needs. `data` is validated payload data."""

    external_id: str
    type: str
    occurred_at: datetime
    data: Mapping[str, Any]
    source: str = "provisioning"

    @property
    def sort_key(self) -> tuple[datetime, int, str]:
        return (self.occurred_at, FOLD_RANK[self.type], self.external_id)


@dataclass(frozen=True)
class Review:
    """A question for a person; `key` identifies it so it is asked once."""

    kind: str
    key: str
    reason: str
    event_ids: tuple[str, ...]


@dataclass(frozen=True)
class Unapplied:
    """An event the fold could not apply, and why: left out, so the workspace's other events still apply."""

    external_id: str
    reason: str


@dataclass(frozen=True)
class WorkspaceState:
    workspace_id: str
    status: str | None = None
    name: str = ""
    email: str = ""
    first_name: str = ""
    last_name: str = ""
    company: str = ""
    plan: str = ""
    mrr: Decimal | None = None
    currency: str = "USD"
    subscription_id: str = ""
    billing_interval: str = ""
    trial_started_at: datetime | None = None
    trial_expires_at: datetime | None = None
    converted_at: datetime | None = None
    churned_at: datetime | None = None
    churn_reason: str = ""
    trial_history: tuple[dict[str, Any], ...] = ()
    last_event_at: datetime | None = None
    at_risk: bool = False
    at_risk_since: datetime | None = None
    renews_at: datetime | None = None
    timezone: str = ""
    acquisition_channel: str = ""
    campaign: str = ""
    reviews: tuple[Review, ...] = ()
    unapplied: tuple[Unapplied, ...] = ()
    email_source: str = field(default="", compare=False)

    def fields(self) -> dict[str, Any]:
        """The persisted Workspace fields of this state."""
        return {
            "status": self.status,
            "name": self.name,
            "email": self.email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "company": self.company,
            "plan": self.plan,
            "mrr": self.mrr,
            "currency": self.currency,
            "subscription_id": self.subscription_id,
            "billing_interval": self.billing_interval,
            "trial_started_at": self.trial_started_at,
            "trial_expires_at": self.trial_expires_at,
            "converted_at": self.converted_at,
            "churned_at": self.churned_at,
            "churn_reason": self.churn_reason,
            "trial_history": [dict(entry) for entry in self.trial_history],
            "last_event_at": self.last_event_at,
            "at_risk": self.at_risk,
            "at_risk_since": self.at_risk_since,
            "renews_at": self.renews_at,
            "timezone": self.timezone,
            "acquisition_channel": self.acquisition_channel,
            "campaign": self.campaign,
        }


def normalise_email(value: str | None) -> str:
    return (value or "").strip().lower()


def fold(workspace_id: str, events: Iterable[LifecycleEvent]) -> WorkspaceState:
    """Apply the events in contract order; duplicates (same external id) count once.

    An event that cannot be applied (a date whose arithmetic overflows, say) is skipped and listed in
    `unapplied` with the reason, instead of failing the fold: one bad event must not stop a workspace.
    """
    unique = {event.external_id: event for event in events if event.type in FOLD_RANK}
    state = WorkspaceState(workspace_id=workspace_id)
    for event in sorted(unique.values(), key=lambda e: e.sort_key):
        try:
            applied = APPLY[event.type](state, event)
        # The apply functions are pure: whatever one raises is about this event's data, nothing else.
        except Exception as exc:
            state = replace(state, unapplied=(*state.unapplied, Unapplied(event.external_id, _reason(exc))))
            continue
        state = replace(applied, last_event_at=event.occurred_at)
    return state


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def _flag(state: WorkspaceState, review: Review) -> WorkspaceState:
    if any(existing.key == review.key for existing in state.reviews):
        return state
    return replace(state, reviews=(*state.reviews, review))


def _owner_email(state: WorkspaceState, event: LifecycleEvent) -> WorkspaceState:
    """The first email wins; a different one later is a conflict for a person to settle."""
    email = normalise_email(event.data.get("email"))
    if not email or email == state.email:
        return state
    if not state.email:
        return replace(state, email=email, email_source=event.external_id)
    return _flag(
        state,
        Review(
            kind=CONFLICTING_DATA,
            key=f"{CONFLICTING_DATA}:email:{event.external_id}",
            reason=(
                f"{event.type} {event.external_id} names owner {email}, but the workspace's owner is "
                f"{state.email} (from {state.email_source or 'an earlier event'})."
            ),
            event_ids=(event.external_id, state.email_source) if state.email_source else (event.external_id,),
        ),
    )


def _created_without_trial(state: WorkspaceState, event: LifecycleEvent, status: str) -> WorkspaceState:
    return _flag(
        replace(state, status=status),
        Review(
            kind=NO_TRIAL_DATA,
            key=NO_TRIAL_DATA,
            reason=f"First event is {event.type} {event.external_id}: no trial data on record for this workspace.",
            event_ids=(event.external_id,),
        ),
    )


def _fill(state: WorkspaceState, **values: Any) -> WorkspaceState:
    """Set the given profile fields where the event supplies a non-empty value."""
    return replace(state, **{name: value for name, value in values.items() if value})


def apply_trial_started(state: WorkspaceState, event: LifecycleEvent) -> WorkspaceState:
    data = event.data
    expires = data.get("trial_expires_at") or event.occurred_at + timedelta(days=DEFAULT_TRIAL_DAYS)
    state = _owner_email(state, event)
    state = _fill(
        state,
        name=data.get("workspace_name", ""),
        first_name=data.get("first_name", ""),
        last_name=data.get("last_name", ""),
        company=data.get("company", ""),
        # Where the trial came from and its zone (day windows of the behaviour metrics): a later trial that
        # names them wins, one that leaves them out keeps what an earlier one said.
        timezone=data.get("timezone", ""),
        acquisition_channel=data.get("acquisition_channel", ""),
        campaign=data.get("campaign", ""),
    )
    if state.status == "paid":
        entry = {
            "event_id": event.external_id,
            "started_at": event.occurred_at.isoformat(),
            "expires_at": expires.isoformat(),
            "plan": data.get("plan", ""),
        }
        return replace(state, trial_history=(*state.trial_history, entry))
    return replace(
        state,
        status="trial",
        plan=data.get("plan") or state.plan,
        trial_started_at=event.occurred_at,
        trial_expires_at=expires,
    )


def apply_converted(state: WorkspaceState, event: LifecycleEvent) -> WorkspaceState:
    data = event.data
    previous = state
    state = _owner_email(state, event)
    if previous.status is None:
        state = _created_without_trial(state, event, "paid")
    elif previous.status == "paid" and previous.plan and previous.plan != data["plan"]:
        state = _flag(
            state,
            Review(
                kind=CONFLICTING_DATA,
                key=f"{CONFLICTING_DATA}:plan:{event.external_id}",
                reason=(
                    f"Conversion {event.external_id} on plan {data['plan']!r} arrived while already paid on "
                    f"plan {previous.plan!r} since {previous.converted_at:%Y-%m-%d %H:%M}Z; kept the later one."
                ),
                event_ids=(event.external_id,),
            ),
        )
    already_paid = previous.status == "paid" and previous.converted_at is not None
    return replace(
        state,
        status="paid",
        plan=data["plan"],
        mrr=Decimal(data["mrr"]),
        currency=str(data.get("currency") or "USD").upper(),
        subscription_id=data.get("subscription_id") or state.subscription_id,
        billing_interval=data.get("billing_interval") or state.billing_interval,
        converted_at=previous.converted_at if already_paid else event.occurred_at,
        at_risk=False,
        at_risk_since=None,
    )


def apply_churned(state: WorkspaceState, event: LifecycleEvent) -> WorkspaceState:
    data = event.data
    previous = state
    state = _owner_email(state, event)
    if previous.status is None:
        state = _created_without_trial(state, event, "churned")
    if previous.status == "churned":
        return state  # a repeated churn keeps the first date and reason
    return replace(
        state,
        status="churned",
        churned_at=data.get("churned_at") or event.occurred_at,
        churn_reason=data.get("reason", "") or "",
        at_risk=False,
        at_risk_since=None,
        renews_at=None,
    )


def apply_payment_failed(state: WorkspaceState, event: LifecycleEvent) -> WorkspaceState:
    """At risk from the first failure on; a churned workspace has nothing left to lose."""
    if state.at_risk or state.status == "churned":
        return state
    return replace(state, at_risk=True, at_risk_since=event.occurred_at)


def apply_renewal_updated(state: WorkspaceState, event: LifecycleEvent) -> WorkspaceState:
    if state.status == "churned":
        return state
    return replace(state, renews_at=event.data.get("renews_at"))


def apply_trial_will_end(state: WorkspaceState, event: LifecycleEvent) -> WorkspaceState:
    return state  # an alert input: stored and folded so it completes, but it changes no state


class Fold(NamedTuple):
    rank: int  # order at equal timestamps
    apply: Callable[[WorkspaceState, LifecycleEvent], WorkspaceState]


#: Every type the fold applies, declared once with its rank and its function. The contract's three come first
#: in CONTRACT §3's order; billing types rank after them, so that order among the three is unchanged.
#: events/schemas.py EVENT_TYPES marks exactly these `folded` (tests/events/test_event_types.py).
FOLDS: dict[str, Fold] = {
    TRIAL_STARTED: Fold(0, apply_trial_started),
    CONVERTED: Fold(1, apply_converted),
    CHURNED: Fold(2, apply_churned),
    PAYMENT_FAILED: Fold(3, apply_payment_failed),
    RENEWAL_UPDATED: Fold(4, apply_renewal_updated),
    TRIAL_WILL_END: Fold(5, apply_trial_will_end),
}
FOLD_RANK = {name: fold.rank for name, fold in FOLDS.items()}
#: Contract order of lifecycle types at equal timestamps (CONTRACT §3), exactly the contract's table.
TYPE_RANK = {name: FOLD_RANK[name] for name in (TRIAL_STARTED, CONVERTED, CHURNED)}
APPLY = {name: fold.apply for name, fold in FOLDS.items()}
#: Every type the processor folds.
LIFECYCLE_TYPES = tuple(FOLDS)
