"""The pure fold: every branch of the three flows, ordering, duplicates and conflicts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from workspaces.lifecycle import (
    CHURNED,
    CONFLICTING_DATA,
    CONVERTED,
    NO_TRIAL_DATA,
    TRIAL_STARTED,
    LifecycleEvent,
    fold,
)

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def event(external_id: str, type_: str, at: datetime = T0, **data) -> LifecycleEvent:
    defaults = {
        TRIAL_STARTED: {"workspace_id": "ws_1", "email": "dana@acme.io"},
        CONVERTED: {"workspace_id": "ws_1", "plan": "team", "mrr": Decimal("297.00")},
        CHURNED: {"workspace_id": "ws_1"},
    }[type_]
    return LifecycleEvent(external_id, type_, at, {**defaults, **data})


def kinds(state) -> list[str]:
    return [review.kind for review in state.reviews]


# --- trial ------------------------------------------------------------------------------------


def test_new_trial_creates_a_trial_with_default_30_day_expiry():
    state = fold("ws_1", [event("e1", TRIAL_STARTED, workspace_name="Acme", company="Acme Inc")])
    assert state.status == "trial"
    assert state.email == "dana@acme.io"
    assert state.name == "Acme"
    assert state.trial_started_at == T0
    assert state.trial_expires_at == T0 + timedelta(days=30)
    assert state.reviews == ()


def test_trial_expiry_from_the_event_wins_over_the_default():
    expires = T0 + timedelta(days=14)
    state = fold("ws_1", [event("e1", TRIAL_STARTED, trial_expires_at=expires)])
    assert state.trial_expires_at == expires


def test_trial_email_is_normalised():
    state = fold("ws_1", [event("e1", TRIAL_STARTED, email="  Dana@ACME.io ")])
    assert state.email == "dana@acme.io"


def test_trial_on_a_paid_workspace_is_recorded_as_history_and_stays_paid():
    state = fold(
        "ws_1",
        [
            event("e1", TRIAL_STARTED),
            event("e2", CONVERTED, T0 + timedelta(days=3)),
            event("e3", TRIAL_STARTED, T0 + timedelta(days=40), plan="enterprise"),
        ],
    )
    assert state.status == "paid"
    assert [entry["event_id"] for entry in state.trial_history] == ["e3"]
    assert state.trial_history[0]["plan"] == "enterprise"
    assert state.trial_started_at == T0


def test_trial_on_a_trial_workspace_updates_the_trial():
    later = T0 + timedelta(days=10)
    state = fold("ws_1", [event("e1", TRIAL_STARTED), event("e2", TRIAL_STARTED, later)])
    assert state.status == "trial"
    assert state.trial_started_at == later
    assert state.trial_expires_at == later + timedelta(days=30)


def test_trial_on_a_churned_workspace_reactivates_it():
    state = fold(
        "ws_1",
        [
            event("e1", TRIAL_STARTED),
            event("e2", CHURNED, T0 + timedelta(days=5), reason="too pricey"),
            event("e3", TRIAL_STARTED, T0 + timedelta(days=60)),
        ],
    )
    assert state.status == "trial"
    assert state.trial_started_at == T0 + timedelta(days=60)


# --- conversion -------------------------------------------------------------------------------


def test_conversion_of_a_trial_makes_it_paid():
    at = T0 + timedelta(days=3)
    state = fold(
        "ws_1",
        [event("e1", TRIAL_STARTED), event("e2", CONVERTED, at, currency="eur", billing_interval="year")],
    )
    assert state.status == "paid"
    assert state.converted_at == at
    assert state.plan == "team"
    assert state.mrr == Decimal("297.00")
    assert state.currency == "EUR"
    assert state.billing_interval == "year"
    assert state.reviews == ()


def test_conversion_without_a_trial_creates_paid_and_flags_no_trial_data():
    state = fold("ws_1", [event("e1", CONVERTED, email="dana@acme.io")])
    assert state.status == "paid"
    assert state.email == "dana@acme.io"
    assert kinds(state) == [NO_TRIAL_DATA]
    assert state.reviews[0].event_ids == ("e1",)


def test_late_trial_clears_the_no_trial_data_question():
    state = fold("ws_1", [event("e2", CONVERTED, T0 + timedelta(days=3)), event("e1", TRIAL_STARTED, T0)])
    assert state.status == "paid"
    assert state.reviews == ()


def test_second_conversion_on_another_plan_flags_conflict_and_keeps_the_later_plan():
    state = fold(
        "ws_1",
        [
            event("e1", TRIAL_STARTED),
            event("e2", CONVERTED, T0 + timedelta(days=1)),
            event("e3", CONVERTED, T0 + timedelta(days=2), plan="business", mrr=Decimal("990.00")),
        ],
    )
    assert state.plan == "business"
    assert state.converted_at == T0 + timedelta(days=1)
    assert kinds(state) == [CONFLICTING_DATA]
    assert "business" in state.reviews[0].reason and "team" in state.reviews[0].reason


def test_duplicate_conversion_with_the_same_plan_is_no_conflict():
    state = fold(
        "ws_1",
        [
            event("e1", TRIAL_STARTED),
            event("e2", CONVERTED, T0 + timedelta(days=1)),
            event("e3", CONVERTED, T0 + timedelta(days=1)),
        ],
    )
    assert state.reviews == ()
    assert state.converted_at == T0 + timedelta(days=1)


def test_conversion_after_churn_reactivates_as_paid():
    state = fold(
        "ws_1",
        [
            event("e1", TRIAL_STARTED),
            event("e2", CHURNED, T0 + timedelta(days=1)),
            event("e3", CONVERTED, T0 + timedelta(days=9)),
        ],
    )
    assert state.status == "paid"
    assert state.converted_at == T0 + timedelta(days=9)


# --- churn ------------------------------------------------------------------------------------


def test_churn_of_a_paid_workspace_keeps_date_and_reason():
    churned_at = T0 + timedelta(days=20)
    state = fold(
        "ws_1",
        [
            event("e1", TRIAL_STARTED),
            event("e2", CONVERTED, T0 + timedelta(days=1)),
            event("e3", CHURNED, T0 + timedelta(days=21), churned_at=churned_at, reason="budget"),
        ],
    )
    assert state.status == "churned"
    assert state.churned_at == churned_at
    assert state.churn_reason == "budget"
    assert state.mrr == Decimal("297.00"), "MRR lost stays readable after churn"


def test_churn_without_a_trial_creates_churned_and_flags_review():
    state = fold("ws_1", [event("e1", CHURNED)])
    assert state.status == "churned"
    assert state.churned_at == T0
    assert kinds(state) == [NO_TRIAL_DATA]


def test_repeated_churn_keeps_the_first():
    state = fold(
        "ws_1",
        [
            event("e1", TRIAL_STARTED),
            event("e2", CHURNED, T0 + timedelta(days=1), reason="a"),
            event("e3", CHURNED, T0 + timedelta(days=2), reason="b"),
        ],
    )
    assert state.churn_reason == "a"
    assert state.churned_at == T0 + timedelta(days=1)


# --- ordering, duplicates, conflicts ----------------------------------------------------------


def test_equal_timestamps_follow_contract_type_order():
    # churn, conversion and trial at the same instant: trial < converted < churned
    events = [event("c", CHURNED), event("b", CONVERTED), event("a", TRIAL_STARTED)]
    state = fold("ws_1", events)
    assert state.status == "churned"
    assert state.reviews == ()


def test_equal_timestamp_and_type_break_ties_by_webhook_id():
    events = [
        event("msg_b", CONVERTED, plan="b"),
        event("msg_a", CONVERTED, plan="a"),
        event("t", TRIAL_STARTED, T0 - timedelta(1)),
    ]
    assert fold("ws_1", events).plan == "b"


def test_duplicates_count_once():
    once = fold("ws_1", [event("e1", TRIAL_STARTED), event("e2", CONVERTED, T0 + timedelta(days=1))])
    twice = fold(
        "ws_1",
        [event("e1", TRIAL_STARTED), event("e2", CONVERTED, T0 + timedelta(days=1)), event("e1", TRIAL_STARTED)],
    )
    assert once == twice


def test_another_owner_email_flags_conflict_and_keeps_the_first():
    state = fold(
        "ws_1",
        [event("e1", TRIAL_STARTED), event("e2", TRIAL_STARTED, T0 + timedelta(days=1), email="sam@other.io")],
    )
    assert state.email == "dana@acme.io"
    assert kinds(state) == [CONFLICTING_DATA]
    review = state.reviews[0]
    assert "sam@other.io" in review.reason and "dana@acme.io" in review.reason
    assert set(review.event_ids) == {"e1", "e2"}


def test_usage_and_unknown_types_are_not_folded():
    usage = LifecycleEvent("u1", "usage.recorded", T0, {"workspace_id": "ws_1", "feature": "x"})
    assert fold("ws_1", [usage]).status is None
