"""The pure fold with billing inputs: at risk set by a failed payment, cleared by a conversion or a churn."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from workspaces.lifecycle import (
    CHURNED,
    CONVERTED,
    LIFECYCLE_TYPES,
    PAYMENT_FAILED,
    RENEWAL_UPDATED,
    TRIAL_STARTED,
    TRIAL_WILL_END,
    TYPE_RANK,
    LifecycleEvent,
    fold,
)

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DATA = {
    TRIAL_STARTED: {"workspace_id": "ws_1", "email": "dana@acme.io"},
    CONVERTED: {"workspace_id": "ws_1", "plan": "team", "mrr": Decimal("29.00")},
    CHURNED: {"workspace_id": "ws_1"},
    PAYMENT_FAILED: {"workspace_id": "ws_1", "invoice_id": "in_1"},
    RENEWAL_UPDATED: {"workspace_id": "ws_1", "renews_at": T0 + timedelta(days=30)},
    TRIAL_WILL_END: {"workspace_id": "ws_1"},
}


def event(external_id: str, type_: str, at: datetime, **data) -> LifecycleEvent:
    return LifecycleEvent(external_id, type_, at, {**DATA[type_], **data}, "stripe")


def test_the_contract_order_of_its_own_three_types_is_unchanged():
    assert TYPE_RANK == {TRIAL_STARTED: 0, CONVERTED: 1, CHURNED: 2}
    assert LIFECYCLE_TYPES[:3] == (TRIAL_STARTED, CONVERTED, CHURNED)
    assert set(LIFECYCLE_TYPES[3:]) == {PAYMENT_FAILED, RENEWAL_UPDATED, TRIAL_WILL_END}


def test_payment_failure_puts_a_paid_workspace_at_risk_from_the_first_failure():
    state = fold(
        "ws_1",
        [
            event("e1", TRIAL_STARTED, T0),
            event("e2", CONVERTED, T0 + HOUR),
            event("e3", PAYMENT_FAILED, T0 + 2 * HOUR),
            event("e4", PAYMENT_FAILED, T0 + 3 * HOUR, invoice_id="in_2"),
        ],
    )
    assert state.status == "paid"
    assert state.at_risk is True
    assert state.at_risk_since == T0 + 2 * HOUR


def test_a_later_conversion_clears_the_risk():
    state = fold(
        "ws_1",
        [
            event("e1", TRIAL_STARTED, T0),
            event("e2", CONVERTED, T0 + HOUR),
            event("e3", PAYMENT_FAILED, T0 + 2 * HOUR),
            event("e4", CONVERTED, T0 + 3 * HOUR),
        ],
    )
    assert (state.at_risk, state.at_risk_since) == (False, None)
    assert state.converted_at == T0 + HOUR, "the recovery payment is not a second conversion"
    assert state.reviews == ()


def test_a_churn_clears_the_risk_and_later_failures_do_not_bring_it_back():
    state = fold(
        "ws_1",
        [
            event("e1", TRIAL_STARTED, T0),
            event("e2", PAYMENT_FAILED, T0 + HOUR),
            event("e3", CHURNED, T0 + 2 * HOUR),
            event("e4", PAYMENT_FAILED, T0 + 3 * HOUR),
        ],
    )
    assert state.status == "churned"
    assert state.at_risk is False


def test_failure_in_the_same_second_as_a_conversion_is_applied_after_it():
    state = fold("ws_1", [event("e2", PAYMENT_FAILED, T0), event("e1", CONVERTED, T0), event("e0", TRIAL_STARTED, T0)])
    assert state.at_risk is True


def test_failure_before_the_trial_arrives_still_counts_whatever_the_arrival_order():
    events = [event("e1", TRIAL_STARTED, T0), event("e2", PAYMENT_FAILED, T0 + HOUR)]
    assert fold("ws_1", reversed(events)) == fold("ws_1", events)
    assert fold("ws_1", events[1:]).status is None, "a failure alone creates no workspace"


def test_renewal_sets_renews_at_and_a_churn_clears_it():
    renewed = fold("ws_1", [event("e1", TRIAL_STARTED, T0), event("e2", RENEWAL_UPDATED, T0 + HOUR)])
    assert renewed.renews_at == T0 + timedelta(days=30)
    churned = fold(
        "ws_1",
        [event("e1", TRIAL_STARTED, T0), event("e2", RENEWAL_UPDATED, T0 + HOUR), event("e3", CHURNED, T0 + 2 * HOUR)],
    )
    assert churned.renews_at is None


def test_trial_will_end_changes_no_state():
    trial = [event("e1", TRIAL_STARTED, T0)]
    with_notice = fold("ws_1", [*trial, event("e2", TRIAL_WILL_END, T0 + HOUR)])
    without = fold("ws_1", trial)
    assert with_notice.fields() | {"last_event_at": None} == without.fields() | {"last_event_at": None}
