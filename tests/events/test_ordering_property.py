"""CONTRACT §3 as a property: any arrival order of an event set, with duplicates and equal timestamps,
run through the real processor, ends in the same workspace state and links as sorted order.

Conflicting owner emails are generated per workspace (on a domain of its own). A conflicting email
shared *across* workspaces can convert the wrong lead in some orders before the conflict is visible;
a conversion cannot be undone (nor can Salesforce's convertLead), so that case ends flagged for review
rather than equal, and is covered by its own test in tests/linking.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.store import NewEvent
from processing.pipeline import workspace_process
from tests.events.helpers import T0, lifecycle_event, store
from workspaces.lifecycle import TYPE_RANK
from workspaces.models import Account, ReviewItem, Workspace

pytestmark = pytest.mark.django_db

OWNERS = {"ws_a": "dana@acme.io", "ws_b": "lee@acme.io", "ws_c": "sam@gmail.com"}


@st.composite
def event_sets(draw) -> tuple[list[NewEvent], bool]:
    count = draw(st.integers(min_value=1, max_value=8))
    events = []
    for index in range(count):
        workspace_id = draw(st.sampled_from(sorted(OWNERS)))
        type_ = draw(st.sampled_from(list(TYPE_RANK)))
        at = T0 + timedelta(hours=draw(st.integers(min_value=0, max_value=3)))  # many equal timestamps
        data: dict[str, Any] = {}
        if type_ == "trial.started":
            data["email"] = draw(st.sampled_from([OWNERS[workspace_id], f"intruder@{workspace_id}-conflict.io"]))
        elif draw(st.booleans()):
            data["email"] = OWNERS[workspace_id]
        if type_ == "subscription.converted":
            data["plan"] = draw(st.sampled_from(["team", "business"]))
        if type_ == "workspace.churned":
            data["reason"] = draw(st.sampled_from(["", "budget"]))
        events.append(lifecycle_event(f"msg_{index:02d}", type_, workspace_id=workspace_id, at=at, **data))
    duplicates = draw(st.lists(st.sampled_from(events), max_size=3))
    return events + duplicates, draw(st.booleans())


def snapshot() -> dict[str, Any]:
    """Everything a reader of the workspace sees: state, links, conversion and open questions."""
    result = {}
    for workspace in Workspace.objects.select_related("lead", "account", "contact").order_by("workspace_id"):
        fields = {
            name: getattr(workspace, name)
            for name in (
                "status",
                "email",
                "plan",
                "mrr",
                "currency",
                "trial_started_at",
                "trial_expires_at",
                "converted_at",
                "churned_at",
                "churn_reason",
                "trial_history",
                "needs_review",
                "last_event_at",
            )
        }
        fields["lead"] = (workspace.lead.email, workspace.lead.converted) if workspace.lead else None
        fields["account"] = workspace.account.domain if workspace.account else None
        fields["contact"] = workspace.contact.email if workspace.contact else None
        fields["open_questions"] = sorted(
            ReviewItem.objects.filter(workspace=workspace, status="open").values_list("dedupe_key", flat=True)
        )
        result[workspace.workspace_id] = fields
    return result


def run(deliveries: list[NewEvent], account_exists: bool) -> dict[str, Any]:
    """Deliver one by one, processing after each, the way the webhook and the cluster would."""
    with transaction.atomic():
        if account_exists:
            Account.objects.create(name="Acme", domain="acme.io")
        for event in deliveries:
            store(event)
            workspace_process(workspace_key=event.workspace_key)
        state = snapshot()
        transaction.set_rollback(True)
    return state


def contract_order(event: NewEvent) -> tuple:
    return (event.occurred_at, TYPE_RANK[event.type], event.external_id)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(case=event_sets(), data=st.data())
def test_any_arrival_order_ends_like_sorted_order(case, data):
    events, account_exists = case
    arrival = data.draw(st.permutations(events), label="arrival order")
    got, expected = run(arrival, account_exists), run(sorted(events, key=contract_order), account_exists)
    differences = {
        (workspace, name): (got.get(workspace, {}).get(name), value)
        for workspace, fields in expected.items()
        for name, value in fields.items()
        if got.get(workspace, {}).get(name) != value
    }
    assert got.keys() == expected.keys()
    described = [(e.external_id, e.type, e.workspace_key, e.occurred_at.hour, e.payload["data"]) for e in arrival]
    assert differences == {}, f"arrival order {described} differs (got, sorted): {differences}"


def test_a_known_out_of_order_case_converges():
    """Conversion and churn before the trial, a duplicate, and a tie, in the worst order."""
    events = [
        lifecycle_event("m3", "workspace.churned", workspace_id="ws_a", at=T0 + timedelta(hours=2)),
        lifecycle_event("m2", "subscription.converted", workspace_id="ws_a", at=T0 + timedelta(hours=1)),
        lifecycle_event("m2", "subscription.converted", workspace_id="ws_a", at=T0 + timedelta(hours=1)),
        lifecycle_event("m1", "trial.started", workspace_id="ws_a", at=T0 + timedelta(hours=1)),
    ]
    final = run(events, account_exists=False)["ws_a"]
    assert final["status"] == "churned"
    assert final["contact"] == "dana@acme.io"
    assert final["open_questions"] == []
    assert final == run(sorted(events, key=contract_order), account_exists=False)["ws_a"]
