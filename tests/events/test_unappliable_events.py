"""One event must not block a workspace (CONTRACT §2, issue 18 item 5): an event the fold cannot apply goes
to `review` with the reason, visible in the admin, and the workspace's other events still apply. Before, a
trial.started dated 9999-12-25 made every fold of its workspace raise OverflowError, for good."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from events.models import Event
from failures.models import ErrorKind
from processing.pipeline import workspace_process, workspaces_process
from tests.events.helpers import T0, lifecycle_event, store
from workspaces import lifecycle
from workspaces.lifecycle import CONVERTED, TRIAL_STARTED, LifecycleEvent, Unapplied, fold
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db

FAR = datetime(9999, 12, 25, tzinfo=UTC)


def test_the_fold_leaves_out_an_event_it_cannot_apply_and_applies_the_others():
    trial = LifecycleEvent("far", TRIAL_STARTED, FAR, {"email": "dana@acme.io"})
    conversion = LifecycleEvent("paid", CONVERTED, T0, {"plan": "team", "mrr": "297.00"})

    state = fold("ws_1", [trial, conversion])

    assert (state.status, state.plan, state.converted_at, state.last_event_at) == ("paid", "team", T0, T0)
    assert state.unapplied == (Unapplied("far", "OverflowError: date value out of range"),)


def statuses() -> dict[str, str]:
    return dict(Event.objects.values_list("external_id", "status"))


@pytest.mark.parametrize("process", ["alone", "together"])
def test_a_stored_event_dated_9999_goes_to_review_and_a_later_conversion_applies(process):
    # given: stored directly, as before the door refused such dates
    store(lifecycle_event("far", "trial.started", at=FAR))
    store(
        lifecycle_event("paid", "subscription.converted", at=T0),
        lifecycle_event("other", "trial.started", workspace_id="ws_2"),
    )

    # when
    if process == "alone":
        outcome = workspace_process(workspace_key="ws_1")
    else:
        outcome = workspaces_process(workspace_keys=["ws_1", "ws_2"])[0]

    # then
    assert not outcome.failed
    assert Workspace.objects.get(workspace_id="ws_1").status == "paid"
    assert statuses() == {"far": "review", "paid": "completed", "other": "new" if process == "alone" else "completed"}
    far = Event.objects.get(external_id="far")
    assert "9999-12-25T00:00:00+00:00 is outside 1970–2999" in far.notes


def test_an_event_the_fold_cannot_apply_goes_to_review_with_the_reason_once(monkeypatch, admin_client, settings):
    # given: an apply that fails for one event's data (dates are refused before the fold now; anything else
    # an apply function may raise is handled the same way)
    settings.SECURE_SSL_REDIRECT = False
    churn = lifecycle.APPLY[lifecycle.CHURNED]

    def overflowing(state, event):
        if event.external_id == "gone":
            return state.churned_at + timedelta(days=1)  # None + 1 day: TypeError, like a bad date's overflow
        return churn(state, event)

    monkeypatch.setitem(lifecycle.APPLY, lifecycle.CHURNED, overflowing)
    store(lifecycle_event("trial", "trial.started"), lifecycle_event("gone", "workspace.churned", at=T0 + timedelta(1)))
    store(lifecycle_event("paid", "subscription.converted", at=T0 + timedelta(days=2)))

    # when: processed, then re-folded
    workspace_process(workspace_key="ws_1")
    workspace_process(workspace_key="ws_1", force=True)

    # then
    assert statuses() == {"trial": "completed", "gone": "review", "paid": "completed"}
    assert Workspace.objects.get(workspace_id="ws_1").status == "paid"
    gone = Event.objects.get(external_id="gone")
    assert gone.notes.startswith("Cannot be applied (TypeError: unsupported operand")
    assert ErrorKind.objects.get(kind="Unapplied").count == 1  # parked once, not again on every re-fold
    page = admin_client.get(reverse("admin:events_event_change", args=[gone.pk]))
    assert "Cannot be applied (TypeError" in page.content.decode()
