"""The engine on real behaviour state: usage rolled up, `behaviour_refresh`'s changes in, firings out, the
way the processing run will call it (one transaction: refresh, then evaluate)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from django.test import override_settings

from events.models import Event
from tests.factories import WorkspaceFactory
from tests.triggers.conftest import make_trigger, usage
from triggers.services import triggers_evaluate
from usage.definitions import definitions_load, shipped_document
from usage.models import Cohort, CohortMembership
from usage.rollups import usage_rollup
from usage.services import behaviour_refresh

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


def test_a_cohort_entered_and_a_stage_reached_in_one_run_fire_with_the_values_that_decided_them():
    if not Cohort.objects.exists():
        definitions_load(shipped_document())
    WorkspaceFactory(workspace_id="ws_b", email="o@acme.io", trial_started_at=T0 - timedelta(days=6))
    events = [usage("ws_b", T0 - timedelta(days=day, hours=1), ("envelope.send", "template.create")[day % 2])
              for day in range(5)]  # fmt: skip
    Event.objects.update(status=Event.Status.NEW)  # as received: the rollup counts new events
    with override_settings(BEHAVIOUR_PROFILES=False):
        usage_rollup()
    make_trigger("shallow_tips", {"kind": "cohort", "cohort": "feature_shallow_frequent", "change": "entered"})
    make_trigger("activated_hello", {"kind": "stage", "from": None, "to": "activated"})

    with transaction.atomic():
        changes = behaviour_refresh(workspace_keys=["ws_b"], now=T0)
        firings = triggers_evaluate(workspace_key="ws_b", new_events=events, behaviour_changes=changes, now=T0)

    by_key = {firing.trigger.key: firing for firing in firings}
    assert set(by_key) == {"shallow_tips", "activated_hello"}
    membership = CohortMembership.objects.get(workspace_key="ws_b", cohort__key="feature_shallow_frequent")
    cohort_why = by_key["shallow_tips"].explanation
    assert (cohort_why["membership_id"], cohort_why["why"]) == (membership.pk, membership.entered_why)
    assert cohort_why["why"]["condition"]["all"][0]["actual"] == 5
    assert by_key["activated_hello"].explanation["to"] == "activated"
    assert triggers_evaluate(workspace_key="ws_b", new_events=events, behaviour_changes=changes, now=T0) == []
