"""The simulated traffic's personas, run through the real engine in-process: every shipped cohort gets
members and the stages spread the way the demo should show them."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest
import time_machine

from emulators.simulate import simulate_traffic
from events.models import Event
from events.schemas import parse_provisioning_body
from events.services import events_store
from events.views import provisioning_event
from processing.tasks import process_workspaces
from usage.models import CohortMembership, Profile
from usage.services import behaviour_refresh
from usage.tasks import rollup_usage

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
COHORTS = {
    "feature_shallow_frequent",
    "plan_limited_power_user",
    "at_risk",
    "multi_product_candidate",
    "api_partnership_prospect",
}


@pytest.mark.parametrize("seed", [3, 11])
def test_the_personas_fill_every_cohort_and_spread_the_stages(settings, seed: int):
    settings.SALESFORCE_SYNC = "off"
    messages = simulate_traffic(workspaces=160, now=NOW, seed=seed, duplicate_share=0, late_share=0)
    events_store([provisioning_event(m.msg_id, parse_provisioning_body(m.body_json().encode())) for m in messages])
    keys = sorted({m.workspace_id for m in messages})

    with time_machine.travel(NOW, tick=False):
        for start in range(0, len(keys), 50):
            process_workspaces(keys[start : start + 50], False)
        rollup_usage(None)
        behaviour_refresh(workspace_keys=keys)

    assert not Event.objects.filter(status__in=["new", "error", "review"]).exists()
    members = Counter(CohortMembership.objects.filter(exited_at__isnull=True).values_list("cohort__key", flat=True))
    assert set(members) == COHORTS, members
    stages = Counter(Profile.objects.values_list("stage__key", flat=True))
    assert {"onboarding", "activated", "adopted", "dormant", "at_risk"} <= set(stages), stages


@pytest.mark.parametrize("seed", range(8))
def test_every_persona_appears_whatever_the_seed(seed: int, monkeypatch: pytest.MonkeyPatch):
    """Each persona is given once before any repeats, as soon as a workspace's history fits it."""
    from emulators import simulate

    seen: list[str] = []
    original = simulate.persona_for

    def recording(*args, **kwargs):
        persona = original(*args, **kwargs)
        seen.append(persona.name)
        return persona

    monkeypatch.setattr(simulate, "persona_for", recording)
    simulate_traffic(workspaces=300, now=NOW, seed=seed)
    assert set(seen) == {persona.name for persona in simulate.PERSONAS}
