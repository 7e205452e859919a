"""The bulk pass's fast paths give the same answers as the plain ones: compiled conditions agree with
`condition_holds`, and the sweep that reads the next chunk ahead on its own connection (PostgreSQL,
outside a transaction) writes what evaluating each workspace in turn writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.factories import WorkspaceFactory
from tests.usage.test_behaviour import active
from usage import services
from usage.conditions import Facts, condition_holds
from usage.definitions import shipped_document
from usage.models import Cohort, CohortMembership, Profile, StagePeriod
from usage.services import _why, behaviour_refresh, behaviour_sweep, compile_condition, compile_explanation

T0 = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
SHIPPED = [item["condition"] for kind in ("cohorts", "stages") for item in shipped_document()[kind]]
LEAVES = [
    {"metric": "active_days_7d", "op": ">=", "value": 4},
    {"metric": "ticket_ratio_14d", "op": ">", "value": 1.5},
    {"metric": "sessions_trend_14d", "op": "<=", "value": -0.3},
    {"metric": "days_since_last_active", "op": "==", "value": 14},
    {"field": "mrr", "op": ">", "value": 0.1},
    {"field": "status", "op": "in", "value": ["trial", "paid"]},
    {"field": "needs_review", "op": "==", "value": True},
    {"product": "api"},
    {"cohort": "at_risk"},
]
trees = st.recursive(
    st.sampled_from(LEAVES),
    lambda inner: st.one_of(
        st.builds(lambda nodes: {"all": nodes}, st.lists(inner, max_size=3)),
        st.builds(lambda nodes: {"any": nodes}, st.lists(inner, max_size=3)),
        st.builds(lambda node: {"not": node}, inner),
    ),
    max_leaves=8,
)
numbers = st.one_of(st.none(), st.integers(-3, 20), st.floats(-2, 20, allow_nan=False), st.just(0.1), st.just(1.5))
facts = st.builds(
    lambda metrics, mrr, status, review, cohorts: Facts(
        metrics=metrics,
        fields={"mrr": mrr, "status": status, "needs_review": review},
        cohorts=frozenset(cohorts),
    ),
    st.fixed_dictionaries(
        {
            "active_days_7d": numbers,
            "ticket_ratio_14d": numbers,
            "sessions_trend_14d": numbers,
            "days_since_last_active": numbers,
            "depth_api_30d": numbers,
        }
    ),
    st.one_of(st.none(), st.sampled_from([Decimal("0.1"), Decimal("0.10"), Decimal("297"), Decimal("0")])),
    st.sampled_from([None, "trial", "paid", "churned"]),
    st.sampled_from([None, True, False]),
    st.sets(st.sampled_from(["at_risk", "dormant"])),
)


@settings(max_examples=300, deadline=None)
@given(tree=st.one_of(trees, st.sampled_from(SHIPPED)), many=st.lists(facts, min_size=1, max_size=6))
def test_a_compiled_condition_agrees_with_condition_holds(tree: dict, many: list[Facts]) -> None:
    check = compile_condition(tree)
    for one in [*many, *many]:  # the second time from the leaves' remembered verdicts
        assert check(one) == condition_holds(tree, one), (tree, one)


@settings(max_examples=300, deadline=None)
@given(tree=st.one_of(trees, st.sampled_from(SHIPPED)), many=st.lists(facts, min_size=1, max_size=6))
def test_a_remembered_explanation_is_the_one_explaining_again_gives(tree: dict, many: list[Facts]) -> None:
    """Byte for byte as written: 1, 1.0 and True, 0.0 and -0.0, Decimal 0.1 and 0.10 are equal values whose
    explanations differ, so each must be remembered apart."""
    definition = Cohort(pk=7, key="c", version=3, condition=tree)
    explain = compile_explanation(definition)
    for one in [*many, *many]:  # the second time from what it remembered
        assert orjson.dumps(explain(one)) == orjson.dumps(_why(definition, one)), (tree, one)


def test_equal_values_written_differently_are_explained_apart() -> None:
    definition = Cohort(pk=7, key="c", version=1, condition={"metric": "active_days_7d", "op": ">=", "value": 0})
    explain = compile_explanation(definition)
    for value in (1, 1.0, True, 0.0, -0.0, Decimal("0.1"), Decimal("0.10")):
        written = orjson.dumps(explain(Facts(metrics={"active_days_7d": value}, fields={})), default=str)
        assert written == orjson.dumps(_why(definition, Facts(metrics={"active_days_7d": value})), default=str)


def _world(prefix: str) -> list[str]:
    keys = [f"{prefix}{n:02d}" for n in range(7)]
    for n, key in enumerate(keys):
        WorkspaceFactory(workspace_id=key, status=("trial", "paid")[n % 2], trial_started_at=T0 - timedelta(days=n))
        if n % 3:
            active(key, days=n, features=1 + n % 3)
    return keys


def _state(keys: list[str]) -> list[tuple]:
    profiles = Profile.objects.filter(workspace_key__in=keys).order_by("workspace_key")
    members = CohortMembership.objects.filter(workspace_key__in=keys, exited_at__isnull=True)
    periods = StagePeriod.objects.filter(workspace_key__in=keys, exited_at__isnull=True)
    return [
        [(p.workspace_key, p.metrics, p.stage_id, p.next_due_at) for p in profiles],
        sorted((m.workspace_key, m.cohort_id) for m in members),
        sorted((p.workspace_key, p.stage_id, p.previous_id) for p in periods),
    ]


@pytest.mark.django_db(transaction=True)
def test_the_sweep_reading_ahead_writes_what_evaluating_in_turn_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "SWEEP_CHUNK", 2)  # several chunks, so reads run ahead of writes
    ahead, in_turn = _world("ws_ahead_"), _world("ws_turn_")
    assert not connection.in_atomic_block  # on PostgreSQL the sweep reads ahead on a second connection

    behaviour_refresh(workspace_keys=in_turn, now=T0)  # evaluated in turn first: then not due for the sweep
    first = behaviour_sweep(now=T0)
    later = T0 + timedelta(days=9)
    due = [key for key in in_turn if Profile.objects.get(workspace_key=key).next_due_at <= later]
    behaviour_refresh(workspace_keys=due, now=later)
    daily = behaviour_sweep(now=later)

    assert (first.visited, daily.visited) == (len(ahead), len(due)) and due
    renamed = [
        [tuple(str(v).replace("ws_turn_", "ws_ahead_") for v in row) for row in part] for part in _state(in_turn)
    ]
    assert [[tuple(str(v) for v in row) for row in part] for part in _state(ahead)] == renamed


@pytest.mark.django_db
def test_workspaces_over_several_statements_get_what_each_gets_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sessions aggregate runs in statements of at most SESSION_KEYS workspaces; every statement
    after the first must still be whole (a loop once reused the statement's own name for a key)."""
    from usage import metrics_sql
    from usage.metrics import profiles_for

    keys = _world("ws_split_")
    alone = {key: profiles_for([key], now=T0)[key] for key in keys}
    monkeypatch.setattr(metrics_sql, "SESSION_KEYS", 2)
    assert profiles_for(keys, now=T0) == alone
    assert any(profile["sessions_28d"] for profile in alone.values())
